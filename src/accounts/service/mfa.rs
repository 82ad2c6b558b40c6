//! Managing one's own second factors (API.md "MFA management"): the status, new backup
//! codes, the primary method, removal (adding one is `mfa_setup`). A staff user's removal
//! waits for another staff member's approval. Every change is written to
//! accounts_mfachangelog and audited in its transaction.

use secrecy::SecretString;
use uuid::Uuid;

use super::challenges::mfa_event;
use crate::{
    accounts::{
        models::{BackupCodes, Email, MethodStatus, MfaStatus, UserRow},
        repo,
    },
    audit_log::{self, MfaAction, MfaEvent, RiskLevel},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, error::Conflict},
    notifications::{self, Message},
    otp::{self, Factors, MfaMethod},
};

/// What a removal did: applied at once, or waiting for approval (staff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Done,
    ApprovalRequired(Uuid),
}

pub async fn mfa_status(state: &AppState, auth: &AuthUser) -> AppResult<MfaStatus> {
    let mut conn = state.db.acquire().await?;
    mfa_status_of(&mut conn, auth.user_id).await
}

pub(super) async fn mfa_status_of(conn: &mut sqlx::PgConnection, user: Uuid) -> AppResult<MfaStatus> {
    let settings = repo::mfa::mfa_settings(&mut *conn, user).await?;
    let f = otp::service::factors(conn, user).await?;
    Ok(status(&settings, &f))
}

fn status(settings: &repo::mfa::MfaSettingsRow, f: &Factors) -> MfaStatus {
    // A factor counts once its setup is proven; until then (a code awaited) it is neither.
    let method = |method, proven: bool| MethodStatus { method, enabled: proven, setup_completed: proven };
    MfaStatus {
        enabled: settings.is_enabled,
        primary_method: settings.is_enabled.then(|| MfaMethod::parse(&settings.primary_method)).flatten(),
        methods: vec![
            method(MfaMethod::Totp, f.totp),
            method(MfaMethod::Email, f.email),
            method(MfaMethod::Sms, f.sms),
            method(MfaMethod::BackupCode, f.backup_codes_remaining > 0),
        ],
        backup_codes_remaining: f.backup_codes_remaining,
    }
}

/// Whether `code` is a current TOTP code or an unused backup code of the user (used up
/// when it is).
async fn current_code(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
    code: &SecretString,
) -> AppResult<bool> {
    let email = Email::from_stored(&user.email);
    if otp::service::check_totp(tx, &state.data_keys, user.id, &email, code, false).await? {
        return Ok(true);
    }
    Ok(otp::service::use_backup_code(tx, &state.data_keys, user.id, code, client.ip_network()).await?.is_some())
}

/// Removes a factor after the password and a current code. A staff user's removal becomes
/// a change request that another staff member approves. Removing the last factor turns
/// MFA off.
#[tracing::instrument(skip_all, fields(user = %auth.user_id, method = method.as_str()))]
pub async fn remove_factor(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    method: MfaMethod,
    password: SecretString,
    code: SecretString,
) -> AppResult<Removal> {
    let user = super::reauthenticate(state, client, auth, Some(password)).await?;
    if !user.mfa_enabled {
        return Err(AppError::NotFound);
    }
    let mut tx = crate::core::db::begin(&state.db).await?;
    if !current_code(&mut tx, state, client, &user, &code).await? {
        return Err(AppError::MfaCodeInvalid { attempts_remaining: 0 });
    }
    if user.is_staff {
        let id = request_removal(&mut tx, client, &user, method, None).await?;
        crate::core::db::commit(tx).await?;
        return Ok(Removal::ApprovalRequired(id));
    }
    apply_removal(&mut tx, state, user.id, method, None, client, None).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(Removal::Done)
}

/// A staff member's removal of their own factor, as a change request another staff member
/// decides (audited); returns the request.
pub(super) async fn request_removal(
    tx: &mut sqlx::PgConnection,
    client: &ClientContext,
    user: &UserRow,
    method: MfaMethod,
    passkey: Option<Uuid>,
) -> AppResult<Uuid> {
    let id = repo::mfa::insert_change_request(
        &mut *tx,
        user.id,
        "method_removed",
        Some(method.as_str()),
        Some("requested by the user"),
        user.id,
        passkey,
    )
    .await?;
    let event = MfaEvent {
        mfa_method: Some(method.as_str().into()),
        metadata: Some(serde_json::json!({ "change_request_id": id, "passkey_id": passkey })),
        risk_level: RiskLevel::Medium,
        ..mfa_event(user.id, MfaAction::ChangeRequested, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    Ok(id)
}

/// Removes `method` (for `Passkey`, the one named, or every one when none is), then
/// `settle_removal`.
pub(super) async fn apply_removal(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    user: Uuid,
    method: MfaMethod,
    passkey: Option<Uuid>,
    client: &ClientContext,
    approved_change: Option<Uuid>,
) -> AppResult<()> {
    let removed = match (method, passkey) {
        (MfaMethod::Passkey, Some(id)) => otp::passkeys::remove(tx, user, id).await?,
        _ => otp::service::remove_method(tx, user, method).await?,
    };
    if !removed {
        return Err(AppError::NotFound);
    }
    let detail = passkey.map(|id| serde_json::json!({ "passkey_id": id }));
    settle_removal(tx, state, user, method, client, approved_change, detail).await
}

/// After a factor (or one passkey, `detail` naming it) is gone: the primary method moves
/// on, and the owner hears of it (`mfa_method_removed`); when no factor is left, MFA goes
/// off, the backup codes die and the message is `mfa_disabled`. Logged and audited.
pub(super) async fn settle_removal(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    user: Uuid,
    method: MfaMethod,
    client: &ClientContext,
    approved_change: Option<Uuid>,
    detail: Option<serde_json::Value>,
) -> AppResult<()> {
    let left = otp::service::factors(tx, user).await?;
    let still_usable = left.usable().contains(&method);
    if !still_usable {
        repo::mfa::set_method_state(&mut *tx, user, method.as_str(), false, false).await?;
    }
    let settings = repo::mfa::mfa_settings(&mut *tx, user).await?;
    let mut old_value = serde_json::json!({ "method": method.as_str() });
    if let (Some(all), Some(serde_json::Value::Object(detail))) = (old_value.as_object_mut(), detail) {
        all.extend(detail);
    }
    let old_value = Some(old_value);
    let owner = repo::users::user_by_id(&mut *tx, user).await?.ok_or(AppError::NotFound)?;
    let to = Email::from_stored(&owner.email);
    let (action, audit) = if left.any() {
        if settings.primary_method == method.as_str()
            && !still_usable
            && let Some(next) = left.usable().into_iter().find(|m| *m != MfaMethod::BackupCode)
        {
            repo::mfa::set_mfa_enabled(&mut *tx, user, true, Some(next.as_str())).await?;
        }
        let message = Message::MfaMethodRemoved {
            username: owner.username.clone(),
            method: method.label().to_owned(),
            factors: left.labels(),
        };
        notifications::enqueue_email(tx, &state.data_keys, user, &to, message).await?;
        ("method_removed", MfaAction::MethodRemoved)
    } else {
        otp::service::remove_backup_codes(tx, user).await?;
        repo::mfa::set_method_state(&mut *tx, user, MfaMethod::BackupCode.as_str(), false, false).await?;
        repo::mfa::set_mfa_enabled(&mut *tx, user, false, None).await?;
        // enforce_for_api: keys of an account that had MFA need it to stay on. The row
        // trigger's NOTIFY evicts them from every instance's cache at commit.
        let keys_revoked = if repo::mfa::enforce_for_api(&mut *tx, user).await? {
            repo::api_keys::revoke_keys(&mut *tx, user, repo::api_keys::KeySelection::All).await?
        } else {
            Vec::new()
        };
        if !keys_revoked.is_empty() {
            let ids: Vec<Uuid> = keys_revoked.iter().map(|k| k.id).collect();
            let details = serde_json::json!({ "reason": "mfa_disabled", "keys": ids });
            super::account_event(tx, Some(user), "api_keys_revoked", details, client).await?;
        }
        let message = Message::MfaDisabled {
            username: owner.username.clone(),
            method: method.as_str().to_owned(),
            approved: approved_change.is_some(),
            keys_revoked: keys_revoked.into_iter().map(|k| k.name).collect(),
        };
        notifications::enqueue_email(tx, &state.data_keys, user, &to, message).await?;
        ("disabled", MfaAction::Disabled)
    };
    if approved_change.is_none() {
        repo::mfa::insert_mfa_change(
            &mut *tx,
            user,
            action,
            Some(method.as_str()),
            old_value.clone(),
            None,
            None,
            "not_required",
        )
        .await?;
    }
    let event = MfaEvent {
        mfa_method: Some(method.as_str().into()),
        old_value,
        risk_level: if audit == MfaAction::Disabled { RiskLevel::High } else { RiskLevel::Medium },
        metadata: approved_change.map(|id| serde_json::json!({ "change_request_id": id })),
        ..mfa_event(user, audit, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    Ok(())
}

/// A new set of backup codes (the old set dies), after the password and a recent factor.
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn regenerate_backup_codes(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: SecretString,
) -> AppResult<BackupCodes> {
    let user = super::reauthenticate(state, client, auth, Some(password)).await?;
    if !user.mfa_enabled {
        return Err(AppError::Conflict(Conflict::MfaNotEnabled));
    }
    let mut tx = crate::core::db::begin(&state.db).await?;
    let codes = otp::service::new_backup_codes(&mut tx, &state.data_keys, user.id).await?;
    repo::mfa::insert_mfa_change(
        &mut *tx,
        user.id,
        "codes_regenerated",
        Some("backup_code"),
        None,
        None,
        None,
        "not_required",
    )
    .await?;
    audit_log::record_mfa(&mut *tx, &mfa_event(user.id, MfaAction::CodesRegenerated, client)).await?;
    crate::core::db::commit(tx).await?;
    Ok(BackupCodes { backup_codes: codes })
}

/// Makes a set-up factor (not a backup code) the primary one.
pub async fn set_primary(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    method: MfaMethod,
) -> AppResult<MfaStatus> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let f = otp::service::factors(&mut tx, auth.user_id).await?;
    let settings = repo::mfa::mfa_settings(&mut *tx, auth.user_id).await?;
    if method == MfaMethod::BackupCode || !f.usable().contains(&method) || !settings.is_enabled {
        return Err(AppError::validation("method", "must be a factor that is set up: totp, email or sms"));
    }
    repo::mfa::set_mfa_enabled(&mut *tx, auth.user_id, true, Some(method.as_str())).await?;
    let old_value = Some(serde_json::json!({ "primary_method": settings.primary_method }));
    let new_value = Some(serde_json::json!({ "primary_method": method.as_str() }));
    repo::mfa::insert_mfa_change(
        &mut *tx,
        auth.user_id,
        "primary_changed",
        Some(method.as_str()),
        old_value.clone(),
        new_value.clone(),
        None,
        "not_required",
    )
    .await?;
    let event = MfaEvent { old_value, new_value, ..mfa_event(auth.user_id, MfaAction::PrimaryChanged, client) };
    audit_log::record_mfa(&mut *tx, &event).await?;
    let settings = repo::mfa::mfa_settings(&mut *tx, auth.user_id).await?;
    crate::core::db::commit(tx).await?;
    Ok(status(&settings, &f))
}
