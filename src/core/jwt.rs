//! The Ed25519 keys that sign and verify access tokens, and the JWKS that publishes them.
//! (Keys for data at rest and keyed hashes are `core::data_keys`.)

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{DecodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::crypto::random_bytes;

/// One verification key, published in the JWKS.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: String,
    pub x: String,
    pub decoding: DecodingKey,
}

/// The signing key and every key that still verifies (current first).
#[derive(Clone)]
pub struct JwtKeys {
    pub kid: String,
    /// Kept parsed: see `sign_jws`.
    signing: SigningKey,
    pub verifying: Vec<PublicKey>,
    /// True when made up at start-up (development and tests only).
    pub ephemeral: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not an Ed25519 PKCS#8 or SPKI PEM key")]
    Parse { path: String },
}

fn public_key(verifying: &VerifyingKey) -> PublicKey {
    let bytes = verifying.to_bytes();
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(bytes)[..12]);
    PublicKey { kid, x: URL_SAFE_NO_PAD.encode(bytes), decoding: DecodingKey::from_ed_der(&bytes) }
}

impl JwtKeys {
    fn from_signing(signing: &SigningKey, ephemeral: bool) -> Result<Self, KeyError> {
        let current = public_key(&signing.verifying_key());
        Ok(JwtKeys { kid: current.kid.clone(), signing: signing.clone(), verifying: vec![current], ephemeral })
    }

    /// `claims` as a compact JWS (RFC 7515) under `header`, signed by the current key: what
    /// `jsonwebtoken::encode` makes, byte for byte (Ed25519 signatures are deterministic;
    /// a unit test compares them). That call parses its key from DER on every signature,
    /// and the parse derives the public key, a scalar multiplication as dear as signing;
    /// here the key is parsed once.
    pub fn sign_jws<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, serde_json::Error> {
        use ed25519_dalek::Signer;
        let mut jws = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header)?);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims)?, &mut jws);
        let signature = self.signing.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut jws);
        Ok(jws)
    }

    /// A fresh random key that lives as long as the process.
    pub fn ephemeral() -> Result<Self, KeyError> {
        Self::from_signing(&SigningKey::from_bytes(&random_bytes::<32>()), true)
    }

    /// The signing key from `signing`, plus older keys (private or public PEM) that still verify.
    pub fn load(signing: &Path, older: &[impl AsRef<Path>]) -> Result<Self, KeyError> {
        let mut keys = Self::from_signing(&read_private(signing)?, false)?;
        for path in older {
            let path = path.as_ref();
            let pem = read(path)?;
            let verifying = SigningKey::from_pkcs8_pem(&pem)
                .map(|k| k.verifying_key())
                .or_else(|_| VerifyingKey::from_public_key_pem(&pem))
                .map_err(|_| KeyError::Parse { path: path.display().to_string() })?;
            let key = public_key(&verifying);
            if keys.verifying.iter().all(|k| k.kid != key.kid) {
                keys.verifying.push(key);
            }
        }
        Ok(keys)
    }

    /// The key that verifies tokens carrying `kid`.
    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.iter().find(|k| k.kid == kid).map(|k| &k.decoding)
    }

    /// RFC 7517 JWK Set of the verification keys.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .verifying
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid, "x": k.x,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })
}

fn read_private(path: &Path) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(&read(path)?).map_err(|_| KeyError::Parse { path: path.display().to_string() })
}

/// A new Ed25519 private key as PKCS#8 v1 PEM (`gatehouse keys generate`): the seed alone,
/// as `openssl genpkey -algorithm ed25519` writes it (RFC 8410). The v2 form with the public
/// key inside is refused by OpenSSL 3 and Python's `cryptography`.
pub fn generate_signing_key_pem() -> Result<String, KeyError> {
    let seed = random_bytes::<32>();
    ed25519_dalek::ed25519::pkcs8::KeypairBytes { secret_key: seed, public_key: None }
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|_| KeyError::Parse { path: "generated key".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pem_loads_and_signs() {
        let dir = std::env::temp_dir().join(format!("gh-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.pem");
        std::fs::write(&path, generate_signing_key_pem().unwrap()).unwrap();
        let keys = JwtKeys::load(&path, &[] as &[&Path]).unwrap();
        assert!(!keys.ephemeral);
        assert_eq!(keys.jwks()["keys"][0]["kid"], keys.kid.as_str());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn tokens_are_what_jsonwebtoken_signs_and_verifies() {
        let pem = generate_signing_key_pem().unwrap();
        let keys = JwtKeys::from_signing(&SigningKey::from_pkcs8_pem(&pem).unwrap(), false).unwrap();
        let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        let claims = serde_json::json!({ "sub": "u", "exp": 4_000_000_000_i64, "amr": ["pwd"] });
        let ours = keys.sign_jws(&header, &claims).unwrap();
        let encoding = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        assert_eq!(ours, jsonwebtoken::encode(&header, &claims, &encoding).unwrap());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        let key = keys.decoding_key(&keys.kid).unwrap();
        let decoded = jsonwebtoken::decode::<serde_json::Value>(&ours, key, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        // Another key's signature does not verify.
        let other = JwtKeys::ephemeral().unwrap();
        let forged = other.sign_jws(&header, &claims).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, key, &validation).is_err());
    }

    #[test]
    fn generated_keys_are_pkcs8_v1_as_openssl_writes_them() {
        use base64::engine::general_purpose::STANDARD;
        let pem = generate_signing_key_pem().unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).unwrap();
        // RFC 8410 section 10.3: SEQUENCE { INTEGER 0 (v1), AlgorithmIdentifier 1.3.101.112,
        // OCTET STRING { OCTET STRING seed } }, 48 bytes, no public key attached.
        let prefix = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], prefix);
        // The key as `openssl genpkey -algorithm ed25519` writes it (RFC 8410's example) loads.
        let openssl = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        assert!(SigningKey::from_pkcs8_pem(openssl).is_ok());
    }
}
