//! A software authenticator written to the WebAuthn Level 3 and CTAP2 texts, independent of
//! the library the service uses: it reads the options a browser would be handed, builds
//! `clientDataJSON` and the authenticator data byte by byte, and signs with its own P-256
//! key (ES256, `none` attestation), as a platform authenticator behind
//! `navigator.credentials.create()` / `.get()` does. Knobs let a test lie the way an attacker
//! or a broken authenticator would: another origin, another RP id, a counter set back.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use serde_cbor_2::Value as Cbor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;

pub struct SoftKey {
    key: SigningKey,
    pub credential_id: Vec<u8>,
    /// The user handle the relying party gave at registration (returned on sign-in).
    pub user_handle: Vec<u8>,
    /// The signature counter; `synced` keys keep it at 0 (as iCloud or Google passkeys do).
    pub counter: u32,
    pub synced: bool,
    /// Whether the authenticator verifies its user (PIN, biometrics).
    pub verifies_user: bool,
    /// The origin the "browser" reports in clientDataJSON.
    pub origin: String,
    /// Overrides the RP id the authenticator data is bound to (an attacker's site).
    pub rp_id_override: Option<String>,
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("randomness");
    out
}

impl SoftKey {
    pub fn new(origin: &str) -> SoftKey {
        let key = loop {
            if let Ok(key) = SigningKey::from_slice(&random::<32>()) {
                break key;
            }
        };
        SoftKey {
            key,
            credential_id: random::<32>().to_vec(),
            user_handle: Vec::new(),
            counter: 0,
            synced: false,
            verifies_user: true,
            origin: origin.to_owned(),
            rp_id_override: None,
        }
    }

    /// A synced passkey: its counter stays 0 and it says it is backed up.
    pub fn synced(origin: &str) -> SoftKey {
        SoftKey { synced: true, ..SoftKey::new(origin) }
    }

    fn flags(&self) -> u8 {
        let mut flags = FLAG_UP;
        if self.verifies_user {
            flags |= FLAG_UV;
        }
        if self.synced {
            flags |= FLAG_BE | FLAG_BS;
        }
        flags
    }

    fn rp_id_hash(&self, rp_id: &str) -> [u8; 32] {
        Sha256::digest(self.rp_id_override.as_deref().unwrap_or(rp_id).as_bytes()).into()
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .expect("client data")
    }

    /// The COSE_Key of the public key (RFC 9053: kty EC2, alg ES256, crv P-256, x, y).
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let (x, y) = (point.x().expect("x").to_vec(), point.y().expect("y").to_vec());
        let map = [
            (Cbor::Integer(1), Cbor::Integer(2)),
            (Cbor::Integer(3), Cbor::Integer(-7)),
            (Cbor::Integer(-1), Cbor::Integer(1)),
            (Cbor::Integer(-2), Cbor::Bytes(x)),
            (Cbor::Integer(-3), Cbor::Bytes(y)),
        ];
        serde_cbor_2::to_vec(&Cbor::Map(map.into_iter().collect())).expect("cose key")
    }

    fn next_counter(&mut self) -> u32 {
        if !self.synced {
            self.counter += 1;
        }
        self.counter
    }

    /// `navigator.credentials.create({publicKey: options})`: the `PublicKeyCredential` JSON.
    pub fn create(&mut self, options: &Value) -> Value {
        let challenge = options["challenge"].as_str().expect("a challenge");
        let rp_id = options["rp"]["id"].as_str().expect("an rp id");
        self.user_handle = B64.decode(options["user"]["id"].as_str().expect("a user id")).expect("base64url");
        let counter = self.next_counter();
        let mut auth_data = self.rp_id_hash(rp_id).to_vec();
        auth_data.push(self.flags() | FLAG_AT);
        auth_data.extend(counter.to_be_bytes());
        auth_data.extend([0u8; 16]); // AAGUID: none (a software key)
        auth_data.extend((self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&self.credential_id);
        auth_data.extend(self.cose_key());
        let attestation = Cbor::Map(
            [
                (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
                (Cbor::Text("attStmt".into()), Cbor::Map(Default::default())),
                (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
            ]
            .into_iter()
            .collect(),
        );
        let client_data = self.client_data("webauthn.create", challenge);
        json!({
            "id": B64.encode(&self.credential_id),
            "rawId": B64.encode(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": B64.encode(serde_cbor_2::to_vec(&attestation).expect("cbor")),
                "clientDataJSON": B64.encode(client_data),
                "transports": ["internal"],
            },
            "extensions": {},
        })
    }

    /// `navigator.credentials.get({publicKey: options})`: the assertion JSON.
    pub fn get(&mut self, options: &Value) -> Value {
        let challenge = options["challenge"].as_str().expect("a challenge");
        let rp_id = options["rpId"].as_str().expect("an rp id");
        let counter = self.next_counter();
        self.assert_with(challenge, rp_id, counter)
    }

    /// An assertion with a chosen counter (a clone that has fallen behind).
    pub fn assert_with(&self, challenge: &str, rp_id: &str, counter: u32) -> Value {
        let mut auth_data = self.rp_id_hash(rp_id).to_vec();
        auth_data.push(self.flags());
        auth_data.extend(counter.to_be_bytes());
        let client_data = self.client_data("webauthn.get", challenge);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": B64.encode(&self.credential_id),
            "rawId": B64.encode(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": B64.encode(&auth_data),
                "clientDataJSON": B64.encode(client_data),
                "signature": B64.encode(signature.to_der().as_bytes()),
                "userHandle": B64.encode(&self.user_handle),
            },
            "extensions": {},
        })
    }
}
