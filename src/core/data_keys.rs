//! Data keys: one key per purpose, derived with HKDF-SHA-256 from `DATA_ENCRYPTION_KEY`, so a
//! key leaked or misused for one purpose says nothing about another. Every ciphertext and
//! keyed hash carries the id of the root key it was made under, so the root can rotate
//! (`DATA_ENCRYPTION_KEYS_OLD` keeps older roots readable) without losing what was stored.
//!
//! Formats: a ciphertext is `kid (8 bytes) || nonce (12 bytes) || AES-256-GCM output`, with
//! the purpose as associated data; a keyed hash is `kid$hex(HMAC-SHA-256)`.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::crypto::{constant_time_eq, hex_encode, random_bytes};

/// What a derived key is for; its text is the HKDF `info`, so it may never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// TOTP shared secrets at rest (AES-256-GCM).
    TotpSecret,
    /// Keyed hashes of low-entropy codes: email/SMS codes, backup codes.
    CodeHash,
    /// Outbox bodies that carry a code or a live link, while they wait (AES-256-GCM).
    OutboxBody,
    /// A rotated refresh token's child, kept on the parent for the reuse leeway (AES-256-GCM).
    RefreshChild,
    /// The staff page's session-bound CSRF tokens (HMAC).
    Csrf,
    /// Keyed hashes that let audit rows correlate personal data (an email address) without
    /// holding it (HMAC).
    AuditHash,
    /// What a social-login provider hands us: its access tokens at rest, and our PKCE
    /// verifier while a flow waits for its callback (AES-256-GCM).
    ProviderToken,
}

impl Purpose {
    const ALL: [Purpose; 7] = [
        Purpose::TotpSecret,
        Purpose::CodeHash,
        Purpose::OutboxBody,
        Purpose::RefreshChild,
        Purpose::Csrf,
        Purpose::AuditHash,
        Purpose::ProviderToken,
    ];

    fn info(self) -> &'static [u8] {
        match self {
            Purpose::TotpSecret => b"gatehouse/v1/totp-secret",
            Purpose::CodeHash => b"gatehouse/v1/code-hash",
            Purpose::OutboxBody => b"gatehouse/v1/outbox-body",
            Purpose::RefreshChild => b"gatehouse/v1/refresh-child",
            Purpose::Csrf => b"gatehouse/v1/csrf",
            Purpose::AuditHash => b"gatehouse/v1/audit-hash",
            Purpose::ProviderToken => b"gatehouse/v1/provider-token",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const KID_LEN: usize = 8;
/// Marks a text column's value as sealed.
const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// One root key with its id and the keys derived from it, one per purpose.
struct Root {
    id: [u8; KID_LEN],
    derived: [[u8; 32]; Purpose::ALL.len()],
}

impl Root {
    fn new(root: &[u8; 32]) -> Root {
        // The id names the root without revealing it: a hash under a fixed label.
        let digest = Sha256::new().chain_update(b"gatehouse/v1/key-id").chain_update(root).finalize();
        let mut id = [0u8; KID_LEN];
        id.copy_from_slice(hex_encode(&digest[..KID_LEN / 2]).as_bytes());
        let hkdf = Hkdf::<Sha256>::new(Some(b"gatehouse data keys"), root);
        let mut derived = [[0u8; 32]; Purpose::ALL.len()];
        for purpose in Purpose::ALL {
            // 32 bytes is far below HKDF-SHA-256's 8160-byte limit.
            let _ = hkdf.expand(purpose.info(), &mut derived[purpose.index()]);
        }
        Root { id, derived }
    }

    fn key(&self, purpose: Purpose) -> &[u8; 32] {
        &self.derived[purpose.index()]
    }

    fn kid(&self) -> &str {
        std::str::from_utf8(&self.id).unwrap_or("")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("ciphertext made under an unknown key id")]
    UnknownKey,
    #[error("ciphertext is malformed or was tampered with")]
    Invalid,
}

/// The current root first, then older ones that still decrypt and verify.
pub struct DataKeys {
    roots: Vec<Root>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.roots.iter().map(Root::kid).collect();
        f.debug_struct("DataKeys").field("key_ids", &ids).finish()
    }
}

impl DataKeys {
    pub fn new<'a>(current: &'a [u8; 32], older: impl IntoIterator<Item = &'a [u8; 32]>) -> DataKeys {
        let roots = std::iter::once(current).chain(older).map(Root::new).collect();
        DataKeys { roots }
    }

    fn current(&self) -> &Root {
        &self.roots[0]
    }

    fn root(&self, kid: &[u8]) -> Option<&Root> {
        self.roots.iter().find(|r| r.id == kid)
    }

    /// The id of the current root key.
    pub fn current_kid(&self) -> &str {
        self.current().kid()
    }

    /// Encrypts under the current root's key for `purpose`, with a fresh random nonce.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        let root = self.current();
        let nonce = random_bytes::<NONCE_LEN>();
        let cipher = Aes256Gcm::new(root.key(purpose).into());
        let payload = Payload { msg: plaintext, aad: purpose.info() };
        // AES-GCM encryption fails only past 64 GiB per message.
        let sealed = cipher.encrypt(&Nonce::from(nonce), payload).unwrap_or_default();
        let mut out = Vec::with_capacity(KID_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&root.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what `seal` made, under whichever known root its key id names.
    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < KID_LEN + NONCE_LEN + 16 {
            return Err(SealError::Invalid);
        }
        let (kid, rest) = sealed.split_at(KID_LEN);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let root = self.root(kid).ok_or(SealError::UnknownKey)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Invalid)?;
        let cipher = Aes256Gcm::new(root.key(purpose).into());
        cipher.decrypt(&Nonce::from(nonce), Payload { msg: body, aad: purpose.info() }).map_err(|_| SealError::Invalid)
    }

    /// `seal` for a text column: `sealed:v1:` and the ciphertext in URL-safe base64.
    pub fn seal_text(&self, purpose: Purpose, text: &str) -> String {
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.seal(purpose, text.as_bytes())))
    }

    /// The text `seal_text` sealed; text that was never sealed comes back as it is.
    pub fn open_text(&self, purpose: Purpose, stored: &str) -> Result<String, SealError> {
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else { return Ok(stored.to_owned()) };
        let sealed = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| SealError::Invalid)?;
        String::from_utf8(self.open(purpose, &sealed)?).map_err(|_| SealError::Invalid)
    }

    fn mac_with(root: &Root, purpose: Purpose, input: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(root.key(purpose)).expect("HMAC accepts keys of any length");
        mac.update(input.as_bytes());
        format!("{}${}", root.kid(), hex_encode(&mac.finalize().into_bytes()))
    }

    /// The keyed hash of `input` under the current root, as stored.
    pub fn mac(&self, purpose: Purpose, input: &str) -> String {
        Self::mac_with(self.current(), purpose, input)
    }

    /// The keyed hash of `input` under every known root: a lookup matches rows stored
    /// before a rotation too.
    pub fn macs(&self, purpose: Purpose, input: &str) -> Vec<String> {
        self.roots.iter().map(|r| Self::mac_with(r, purpose, input)).collect()
    }

    /// Whether `stored` is the keyed hash of `input`, under the root its id names.
    pub fn verify_mac(&self, purpose: Purpose, input: &str, stored: &str) -> bool {
        let Some((kid, _)) = stored.split_once('$') else { return false };
        let Some(root) = self.root(kid.as_bytes()) else { return false };
        constant_time_eq(Self::mac_with(root, purpose, input).as_bytes(), stored.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_for_its_purpose_and_after_rotation() {
        let old = DataKeys::new(&[1u8; 32], &[]);
        let sealed = old.seal(Purpose::TotpSecret, b"JBSWY3DPEHPK3PXP");
        assert!(!sealed.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(old.open(Purpose::TotpSecret, &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        assert_eq!(old.open(Purpose::OutboxBody, &sealed), Err(SealError::Invalid));
        // Two seals of one secret differ (random nonce).
        assert_ne!(sealed, old.seal(Purpose::TotpSecret, b"JBSWY3DPEHPK3PXP"));

        let rotated = DataKeys::new(&[2u8; 32], &[[1u8; 32]]);
        assert_eq!(rotated.open(Purpose::TotpSecret, &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        assert_ne!(rotated.current_kid(), old.current_kid());
        let forgotten = DataKeys::new(&[2u8; 32], &[]);
        assert_eq!(forgotten.open(Purpose::TotpSecret, &sealed), Err(SealError::UnknownKey));

        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(old.open(Purpose::TotpSecret, &tampered), Err(SealError::Invalid));
    }

    #[test]
    fn sealed_text_round_trips_and_plain_text_passes() {
        let keys = DataKeys::new(&[1u8; 32], &[]);
        let sealed = keys.seal_text(Purpose::OutboxBody, "Your code: 482913");
        assert!(sealed.starts_with("sealed:v1:") && !sealed.contains("482913"));
        assert_eq!(keys.open_text(Purpose::OutboxBody, &sealed).unwrap(), "Your code: 482913");
        assert_eq!(keys.open_text(Purpose::OutboxBody, "plain").unwrap(), "plain");
        assert_eq!(keys.open_text(Purpose::OutboxBody, "sealed:v1:!!"), Err(SealError::Invalid));
    }

    #[test]
    fn keyed_hashes_carry_their_key_id() {
        let old = DataKeys::new(&[1u8; 32], &[]);
        let stored = old.mac(Purpose::CodeHash, "123456");
        assert!(stored.starts_with(&format!("{}$", old.current_kid())));
        assert!(old.verify_mac(Purpose::CodeHash, "123456", &stored));
        assert!(!old.verify_mac(Purpose::CodeHash, "123457", &stored));
        let rotated = DataKeys::new(&[2u8; 32], &[[1u8; 32]]);
        assert!(rotated.verify_mac(Purpose::CodeHash, "123456", &stored));
        assert!(rotated.macs(Purpose::CodeHash, "123456").contains(&stored));
        assert_ne!(rotated.mac(Purpose::CodeHash, "123456"), stored);
        assert!(format!("{rotated:?}").contains(rotated.current_kid()));
    }
}
