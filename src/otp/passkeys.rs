//! Passkeys (WebAuthn, with kanidm's webauthn-rs): registering one, answering an MFA
//! challenge with one, signing in with one alone. The library checks the cryptography (the
//! challenge, origin, RP id hash, signature, user verification); this module keeps each
//! ceremony's state server-side in a row (five minutes, taken once) and the credentials in
//! otp_webauthncredential, and checks every signature counter against the stored one under
//! a row lock: a counter that does not move forward, once either side is non-zero, is a
//! cloned authenticator (refused, audited as critical). Synced passkeys keep the counter at
//! 0 and are accepted.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, WebauthnError,
};
use webauthn_rs_core::proto::{Registration, ResidentKeyRequirement};

use super::{
    models::{MfaMethod, PasskeyInfo},
    repo::{self, passkeys::NewPasskey},
};
use crate::{
    audit_log::{self, MfaAction, MfaEvent, Origin, RiskLevel},
    core::{AppError, AppResult, error::Conflict, webauthn::RelyingParty},
};

/// How long a ceremony waits for its answer.
pub const CEREMONY_TTL: Duration = Duration::minutes(5);

/// The longest passkey name, in characters.
pub const NAME_MAX: usize = 64;

/// `POST /mfa/passkeys/register/start` and `POST /auth/passkey/options`: the ceremony to
/// answer and what the browser hands to `navigator.credentials.create()` / `.get()`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CeremonyOptions {
    pub ceremony_id: Uuid,
    /// The `publicKey` member of the options, binary fields base64url-encoded.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// `POST /auth/mfa/passkey/options`: the assertion options for a challenge.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssertionOptions {
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// How an assertion went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assertion {
    /// Verified and recorded (counter, last use): `credential` is the passkey's row id.
    Right { user: Uuid, credential: Uuid },
    /// Not this user's key, a bad signature or origin, no user verification.
    Wrong { user: Option<Uuid> },
    /// A counter that went backwards: refused, audited as critical.
    Cloned { user: Uuid, credential: Uuid },
}

fn expiry(cap: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let at = Utc::now() + CEREMONY_TTL;
    cap.map_or(at, |cap| cap.min(at))
}

fn json<T: Serialize>(value: &T) -> AppResult<serde_json::Value> {
    serde_json::to_value(value).map_err(AppError::internal)
}

/// The library's record of a stored passkey.
fn passkey_of(stored: &serde_json::Value) -> AppResult<Passkey> {
    serde_json::from_value(stored.clone()).map_err(AppError::internal)
}

fn rejected(e: &WebauthnError) -> AppError {
    AppError::validation("credential", format!("was not accepted ({e})"))
}

/// A passkey name: trimmed, 1 to 64 printable characters.
pub fn parse_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(format!("must be 1 to {NAME_MAX} printable characters"));
    }
    Ok(name.to_owned())
}

/// Starts registering a passkey for `user` from `session`: only that session finishes it.
pub async fn begin_registration(
    tx: &mut PgConnection,
    rp: &RelyingParty,
    user: Uuid,
    session: Uuid,
    username: &str,
    display_name: &str,
) -> AppResult<CeremonyOptions> {
    let webauthn = rp.get()?;
    let existing = repo::passkeys::passkeys_of(&mut *tx, user).await?;
    let exclude = existing.iter().map(|p| passkey_of(p).map(|p| p.cred_id().clone())).collect::<AppResult<_>>()?;
    let (mut creation, state): (_, PasskeyRegistration) =
        webauthn.start_passkey_registration(user, username, display_name, Some(exclude)).map_err(AppError::internal)?;
    // A discoverable credential where the authenticator can make one, so the same passkey
    // also signs in without an email (platform passkeys always are).
    if let Some(selection) = creation.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Preferred);
    }
    let id = repo::passkeys::insert_registration(&mut *tx, user, session, json(&state)?, expiry(None)).await?;
    Ok(CeremonyOptions { ceremony_id: id, options: json(&creation.public_key)? })
}

/// Finishes a registration `user` started from `session`: 401 `CHALLENGE_EXPIRED` for a
/// ceremony that is unknown, used, expired or another user's or session's; 422 for a
/// credential the relying party refuses (wrong origin, RP id, challenge, no user
/// verification). Stores the passkey.
pub async fn finish_registration(
    tx: &mut PgConnection,
    rp: &RelyingParty,
    ceremony: Uuid,
    user: Uuid,
    session: Uuid,
    name: &str,
    credential: &RegisterPublicKeyCredential,
) -> AppResult<PasskeyInfo> {
    let webauthn = rp.get()?;
    let state = repo::passkeys::take_registration(&mut *tx, ceremony, user, session)
        .await?
        .ok_or(AppError::ChallengeExpired)?;
    let state: PasskeyRegistration = serde_json::from_value(state).map_err(AppError::internal)?;
    let passkey = webauthn.finish_passkey_registration(credential, &state).map_err(|e| rejected(&e))?;
    let data = AuthenticatorFacts::of(&credential.response.attestation_object)?;
    let transports: Vec<String> = credential
        .response
        .transports
        .iter()
        .flatten()
        .filter_map(|t| serde_json::to_value(t).ok()?.as_str().map(str::to_owned))
        .collect();
    let new = NewPasskey {
        user,
        credential_id: passkey.cred_id().as_ref(),
        public_key: &data.public_key,
        sign_count: i64::from(data.counter),
        backup_eligible: data.backup_eligible,
        backup_state: data.backup_state,
        transports: &transports,
        aaguid: data.aaguid,
        name,
        passkey: json(&passkey)?,
    };
    match repo::passkeys::insert_passkey(&mut *tx, &new).await {
        Err(sqlx::Error::Database(db)) if db.constraint() == Some("otp_webauthncredential_credential_id_key") => {
            Err(AppError::Conflict(Conflict::PasskeyExists))
        }
        other => Ok(other?),
    }
}

/// What a registration's authenticator data says beyond the library's record.
struct AuthenticatorFacts {
    aaguid: Option<Uuid>,
    public_key: Vec<u8>,
    counter: u32,
    backup_eligible: bool,
    backup_state: bool,
}

impl AuthenticatorFacts {
    /// From the attestation object (CBOR: `authData`) the library has just verified.
    fn of(attestation_object: &[u8]) -> AppResult<AuthenticatorFacts> {
        use serde_cbor_2::Value;
        let object: Value = serde_cbor_2::from_slice(attestation_object).map_err(AppError::internal)?;
        let Value::Map(map) = object else { return Err(AppError::internal("an attestation object is a map")) };
        let Some(Value::Bytes(auth_data)) = map.get(&Value::Text("authData".into())) else {
            return Err(AppError::internal("an attestation object has authData"));
        };
        let data = webauthn_rs_core::internals::AuthenticatorData::<Registration>::try_from(auth_data.as_slice())
            .map_err(AppError::internal)?;
        let acd = data.acd.ok_or_else(|| AppError::internal("a registration carries its credential data"))?;
        let public_key = serde_cbor_2::to_vec(&acd.credential_pk).map_err(AppError::internal)?;
        let aaguid = Uuid::from_bytes(acd.aaguid);
        Ok(AuthenticatorFacts {
            aaguid: (!aaguid.is_nil()).then_some(aaguid),
            public_key,
            counter: data.counter,
            backup_eligible: data.backup_eligible,
            backup_state: data.backup_state,
        })
    }
}

pub async fn list(db: &mut PgConnection, user: Uuid) -> AppResult<Vec<PasskeyInfo>> {
    Ok(repo::passkeys::list_passkeys(db, user).await?)
}

/// Renames one of `user`'s passkeys; another user's id is 404.
pub async fn rename(db: &mut PgConnection, user: Uuid, id: Uuid, name: &str) -> AppResult<PasskeyInfo> {
    repo::passkeys::rename_passkey(db, user, id, name).await?.ok_or(AppError::NotFound)
}

/// Deletes one of `user`'s passkeys; false when there is none by that id.
pub async fn remove(tx: &mut PgConnection, user: Uuid, id: Uuid) -> AppResult<bool> {
    Ok(repo::passkeys::delete_passkey(tx, user, id).await?)
}

/// Deletes `user`'s passkeys registered after `since` (every one without it).
pub async fn remove_since(tx: &mut PgConnection, user: Uuid, since: Option<DateTime<Utc>>) -> AppResult<Vec<Uuid>> {
    Ok(repo::passkeys::delete_passkeys_since(tx, user, since).await?)
}

/// The assertion options for MFA challenge `challenge` (its row id) of `user`, valid while
/// the challenge is; asking again replaces them. 422 when the user has no passkey.
pub async fn challenge_options(
    tx: &mut PgConnection,
    rp: &RelyingParty,
    user: Uuid,
    challenge: Uuid,
    challenge_expires: DateTime<Utc>,
) -> AppResult<AssertionOptions> {
    let webauthn = rp.get()?;
    let stored = repo::passkeys::passkeys_of(&mut *tx, user).await?;
    if stored.is_empty() {
        return Err(AppError::validation("challenge_id", "this account has no passkey"));
    }
    let passkeys = stored.iter().map(passkey_of).collect::<AppResult<Vec<_>>>()?;
    let (request, state): (_, PasskeyAuthentication) =
        webauthn.start_passkey_authentication(&passkeys).map_err(AppError::internal)?;
    let expires = expiry(Some(challenge_expires));
    repo::passkeys::put_challenge_assertion(&mut *tx, user, challenge, json(&state)?, expires).await?;
    Ok(AssertionOptions { options: json(&request.public_key)? })
}

/// Checks an assertion answering MFA challenge `challenge` (its row id) of `user`, taking
/// the challenge's ceremony: none (never asked for, already answered, expired) is 401
/// `CHALLENGE_EXPIRED`.
pub async fn check_challenge_assertion(
    tx: &mut PgConnection,
    rp: &RelyingParty,
    user: Uuid,
    challenge: Uuid,
    credential: &PublicKeyCredential,
    origin: &Origin,
) -> AppResult<Assertion> {
    let webauthn = rp.get()?;
    let state =
        repo::passkeys::take_challenge_assertion(&mut *tx, challenge).await?.ok_or(AppError::ChallengeExpired)?;
    let state: PasskeyAuthentication = serde_json::from_value(state).map_err(AppError::internal)?;
    let Some(stored) = repo::passkeys::lock_passkey(&mut *tx, user, &credential.raw_id).await? else {
        return Ok(Assertion::Wrong { user: Some(user) });
    };
    let verified = webauthn.finish_passkey_authentication(credential, &state);
    settle(tx, user, &stored, verified, origin).await
}

/// Options for a sign-in with a passkey alone: any discoverable credential of this relying
/// party, user verification required.
pub async fn sign_in_options(db: &mut PgConnection, rp: &RelyingParty) -> AppResult<CeremonyOptions> {
    let webauthn = rp.get()?;
    let (request, state): (_, DiscoverableAuthentication) =
        webauthn.start_discoverable_authentication().map_err(AppError::internal)?;
    let id = repo::passkeys::insert_login(db, json(&state)?, expiry(None)).await?;
    Ok(CeremonyOptions { ceremony_id: id, options: json(&request.public_key)? })
}

/// Checks a sign-in assertion, taking ceremony `ceremony` (401 `CHALLENGE_EXPIRED` when it
/// is unknown, used or expired). The user is the one whose handle the authenticator
/// returned and who holds the credential; an unknown credential is `Wrong { user: None }`.
pub async fn check_sign_in(
    tx: &mut PgConnection,
    rp: &RelyingParty,
    ceremony: Uuid,
    credential: &PublicKeyCredential,
    origin: &Origin,
) -> AppResult<Assertion> {
    let webauthn = rp.get()?;
    let state = repo::passkeys::take_login(&mut *tx, ceremony).await?.ok_or(AppError::ChallengeExpired)?;
    let state: DiscoverableAuthentication = serde_json::from_value(state).map_err(AppError::internal)?;
    let Ok((user, credential_id)) = webauthn.identify_discoverable_authentication(credential) else {
        return Ok(Assertion::Wrong { user: None });
    };
    let Some(stored) = repo::passkeys::lock_passkey(&mut *tx, user, credential_id).await? else {
        return Ok(Assertion::Wrong { user: None });
    };
    let passkey = passkey_of(&stored.passkey)?;
    let verified = webauthn.finish_discoverable_authentication_v2(credential, state, &passkey);
    settle(tx, user, &stored, verified, origin).await
}

/// The verdict on a verified (or refused) assertion of `stored`, whose row is locked: the
/// counter is checked against the stored one (the library compared it with the copy in the
/// ceremony, which another sign-in may have passed since), and a good use is recorded.
async fn settle(
    tx: &mut PgConnection,
    user: Uuid,
    stored: &repo::passkeys::StoredPasskey,
    verified: Result<AuthenticationResult, WebauthnError>,
    origin: &Origin,
) -> AppResult<Assertion> {
    let result = match verified {
        Ok(result) => result,
        Err(WebauthnError::CredentialPossibleCompromise) => return cloned(tx, user, stored, None, origin).await,
        Err(e) => {
            tracing::debug!(error = %e, "a passkey assertion was refused");
            return Ok(Assertion::Wrong { user: Some(user) });
        }
    };
    let counter = i64::from(result.counter());
    if (counter > 0 || stored.sign_count > 0) && counter <= stored.sign_count {
        return cloned(tx, user, stored, Some(counter), origin).await;
    }
    let mut passkey = passkey_of(&stored.passkey)?;
    passkey.update_credential(&result);
    repo::passkeys::record_use(&mut *tx, stored.id, counter, result.backup_state(), json(&passkey)?).await?;
    Ok(Assertion::Right { user, credential: stored.id })
}

/// A counter that did not move forward: two copies of the key exist. Refused and audited.
async fn cloned(
    tx: &mut PgConnection,
    user: Uuid,
    stored: &repo::passkeys::StoredPasskey,
    counter: Option<i64>,
    origin: &Origin,
) -> AppResult<Assertion> {
    tracing::warn!(%user, passkey = %stored.id, "a passkey's signature counter went backwards: a cloned authenticator?");
    let event = MfaEvent {
        origin: origin.clone(),
        mfa_method: Some(MfaMethod::Passkey.as_str().into()),
        risk_level: RiskLevel::Critical,
        metadata: Some(serde_json::json!({
            "passkey_id": stored.id,
            "stored_counter": stored.sign_count,
            "presented_counter": counter,
        })),
        ..MfaEvent::new(user, MfaAction::CloneSuspected)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    Ok(Assertion::Cloned { user, credential: stored.id })
}

/// Ceremonies past their five minutes (the cleanup job).
pub async fn delete_expired(tx: &mut PgConnection) -> AppResult<u64> {
    Ok(repo::passkeys::delete_expired_ceremonies(tx).await?)
}
