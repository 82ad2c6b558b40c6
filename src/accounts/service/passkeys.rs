//! Passkeys as the account sees them (API.md "Passkeys"): registering one (the password,
//! and with MFA on a fresh factor, as for every factor), naming, listing and removing them,
//! and signing in with one alone. otp keeps the credentials and checks the ceremonies
//! (`otp::passkeys`); here are the rules of the account: the first passkey turns MFA on,
//! every change is audited and noticed, and a passwordless sign-in obeys the lockout, risk,
//! device and audit rules of a password login.

use uuid::Uuid;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::{
    devices, hold,
    lockout::{Admitted, admit_known},
    mfa::{Removal, settle_removal},
    mfa_setup::factor_added,
    origin, session_event,
    sessions::{NewSession, start_session},
};
use crate::{
    accounts::{
        models::{Authenticated, PasskeyRegistered},
        repo,
    },
    audit_log::{self, MfaAction, MfaEvent, RiskLevel, SessionAction, SessionEvent},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, ratelimit::Action},
    otp::{
        self, MfaMethod, PasskeyInfo,
        passkeys::{Assertion, CeremonyOptions},
    },
};

use super::challenges::mfa_event;

/// `POST /mfa/passkeys/register/start`: the password (and, with MFA on, a factor within
/// `STEP_UP_MAX_AGE_SECONDS`), then creation options for this session only.
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn register_start(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: Option<secrecy::SecretString>,
) -> AppResult<CeremonyOptions> {
    state.relying_party.get()?;
    let user = super::reauthenticate(state, client, auth, password).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    hold(&mut tx, auth, Some(&user)).await?;
    let rp = &state.relying_party;
    let options =
        otp::passkeys::begin_registration(&mut tx, rp, user.id, auth.session_id, &user.email, &user.username).await?;
    let event = MfaEvent {
        mfa_method: Some(MfaMethod::Passkey.as_str().into()),
        session_id: Some(auth.session_id),
        ..mfa_event(user.id, MfaAction::SetupStarted, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    Ok(options)
}

/// `POST /mfa/passkeys/register/finish`: stores the passkey the browser made for the
/// ceremony this session started. The first factor turns MFA on and brings backup codes;
/// the owner gets the factor-added notice either way.
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn register_finish(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    ceremony: Uuid,
    name: &str,
    credential: &RegisterPublicKeyCredential,
) -> AppResult<PasskeyRegistered> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    hold(&mut tx, auth, None).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let rp = &state.relying_party;
    let passkey =
        otp::passkeys::finish_registration(&mut tx, rp, ceremony, user.id, auth.session_id, name, credential).await?;
    let codes = factor_added(&mut tx, state, client, &user, MfaMethod::Passkey).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    state.metrics.mfa(MfaMethod::Passkey.as_str(), "registered");
    let backup_codes = (!codes.backup_codes.is_empty()).then_some(codes.backup_codes);
    Ok(PasskeyRegistered { passkey, backup_codes })
}

pub async fn passkeys(state: &AppState, auth: &AuthUser) -> AppResult<Vec<PasskeyInfo>> {
    let mut conn = state.db.acquire().await?;
    otp::passkeys::list(&mut conn, auth.user_id).await
}

/// `PATCH /mfa/passkeys/{id}`: a new name; another user's passkey is 404.
pub async fn rename_passkey(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    id: Uuid,
    name: &str,
) -> AppResult<PasskeyInfo> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let renamed = otp::passkeys::rename(&mut tx, auth.user_id, id, name).await?;
    let details = serde_json::json!({ "passkey_id": id, "name": renamed.name });
    super::account_event(&mut tx, Some(auth.user_id), "passkey_renamed", details, client).await?;
    crate::core::db::commit(tx).await?;
    Ok(renamed)
}

/// `DELETE /mfa/passkeys/{id}` under the step-up rule (a factor within
/// `STEP_UP_MAX_AGE_SECONDS`). A staff member's passkey goes only with another staff
/// member's approval, as every factor of theirs; the last of anyone else turns MFA off.
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn delete_passkey(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<Removal> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    // Ordered per user, first: two removals at once must not each count the other's
    // passkey as a remaining factor (a staff member's last one goes only with approval).
    repo::users::lock_user(&mut *tx, auth.user_id).await?;
    hold(&mut tx, auth, None).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let owned = otp::passkeys::list(&mut tx, user.id).await?;
    if !owned.iter().any(|p| p.id == id) {
        return Err(AppError::NotFound);
    }
    // Whoever holds a passkey has MFA on: removing one needs a recent factor.
    if !auth.has_recent_mfa(state.config.step_up_max_age) {
        return Err(AppError::MfaRequired);
    }
    // A staff member's factor goes only with another staff member's approval, as every
    // factor of theirs does (docs/mfa.md), and the request names this passkey.
    if user.is_staff {
        let request = super::mfa::request_removal(&mut tx, client, &user, MfaMethod::Passkey, Some(id)).await?;
        crate::core::db::commit(tx).await?;
        return Ok(Removal::ApprovalRequired(request));
    }
    if !otp::passkeys::remove(&mut tx, user.id, id).await? {
        return Err(AppError::NotFound);
    }
    let detail = serde_json::json!({ "passkey_id": id });
    settle_removal(&mut tx, state, user.id, MfaMethod::Passkey, client, None, Some(detail)).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(Removal::Done)
}

/// `POST /auth/passkey/options`: a sign-in ceremony for any discoverable passkey, limited
/// per address (each keeps a row for five minutes).
pub async fn sign_in_options(state: &AppState, client: &ClientContext) -> AppResult<CeremonyOptions> {
    state.relying_party.get()?;
    state.limits.check(Action::PasskeyOptions, client.ip)?;
    let mut conn = state.db.acquire().await?;
    otp::passkeys::sign_in_options(&mut conn, &state.relying_party).await
}

/// `POST /auth/passkey/login`: a session at aal 2 (`amr` `hwk`, `mfa`: the key and its user
/// verification are two factors) for the owner of the passkey. The ceremony is used up
/// whatever the answer; a wrong one counts as a failed login of the account (or of the
/// address, for a key nobody here holds), and a locked account or address is refused (429)
/// even with a good key.
#[tracing::instrument(skip_all)]
pub async fn sign_in(
    state: &AppState,
    client: &ClientContext,
    ceremony: Uuid,
    credential: &PublicKeyCredential,
) -> AppResult<Authenticated> {
    state.relying_party.get()?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    let verdict =
        otp::passkeys::check_sign_in(&mut tx, &state.relying_party, ceremony, credential, &origin(client)).await?;
    let (ip, agent) = (client.ip_network(), client.user_agent.as_deref());
    let (user_id, passkey) = match verdict {
        Assertion::Right { user, credential } => (user, credential),
        Assertion::Wrong { user: Some(user) } | Assertion::Cloned { user, .. } => {
            let reason = if matches!(verdict, Assertion::Cloned { .. }) { "passkey_cloned" } else { "bad_passkey" };
            if let Some(owner) = repo::users::user_by_id(&mut *tx, user).await? {
                repo::attempts::insert_failed_attempt(&mut *tx, &owner.email, owner.id, reason, ip, agent).await?;
                let event = SessionEvent {
                    risk_level: if reason == "passkey_cloned" { RiskLevel::Critical } else { RiskLevel::Medium },
                    metadata: Some(serde_json::json!({ "method": "passkey", "reason": reason })),
                    ..session_event(owner.id, SessionAction::LoginFailed, client)
                };
                audit_log::record_session(&mut *tx, &event).await?;
            }
            crate::core::db::commit(tx).await?;
            state.metrics.mfa(MfaMethod::Passkey.as_str(), "sign_in_refused");
            return Err(AppError::InvalidCredentials);
        }
        Assertion::Wrong { user: None } => {
            // Nobody's key: a failure of the address, as an unknown email's password is.
            let attempt = repo::attempts::reserve_attempt(&mut *tx, "", ip, agent).await?;
            repo::attempts::finish_attempt(&mut *tx, attempt, None, "failure", Some("unknown_passkey")).await?;
            crate::core::db::commit(tx).await?;
            state.metrics.mfa(MfaMethod::Passkey.as_str(), "sign_in_refused");
            return Err(AppError::InvalidCredentials);
        }
    };
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::InvalidCredentials)?;
    let Admitted { attempt, device, facts } = match admit_known(&mut tx, client, &user, None).await? {
        Ok(admitted) => admitted,
        Err(refusal) => {
            crate::core::db::commit(tx).await?;
            return Err(refusal);
        }
    };
    let risk = devices::assess(client, &device, &facts);
    let used = MfaEvent {
        mfa_method: Some(MfaMethod::Passkey.as_str().into()),
        metadata: Some(serde_json::json!({ "passkey_id": passkey, "passwordless": true })),
        ..mfa_event(user.id, MfaAction::Verified, client)
    };
    audit_log::record_mfa(&mut *tx, &used).await?;
    let owner = user.clone();
    let session = NewSession {
        user,
        client,
        attempt: Some(attempt),
        aal: 2,
        amr: vec![MfaMethod::Passkey.amr().to_owned(), "mfa".to_owned()],
        mfa_method: Some(MfaMethod::Passkey.as_str()),
        device: device.clone(),
        risk,
        audit_note: Some(serde_json::json!({ "passkey_id": passkey, "passwordless": true })),
    };
    let opened = start_session(&mut tx, state, session).await?;
    if opened.new_device {
        devices::alert_new_device(&mut tx, state, &owner, &device, client).await?;
    }
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    state.metrics.mfa(MfaMethod::Passkey.as_str(), "signed_in");
    Ok(opened.authenticated)
}
