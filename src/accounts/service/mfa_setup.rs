//! Adding a second factor (API.md "MFA management"): set up and confirm TOTP, email and
//! SMS. MFA turns on with the first confirmed factor, when backup codes are issued. Every
//! setup, the first included, needs the password (and while MFA is on a second factor
//! within `STEP_UP_MAX_AGE_SECONDS`), and every factor added sends a security notice: a
//! stolen access token cannot enrol the thief's authenticator unseen. Every change is
//! written to accounts_mfachangelog and audited in its transaction.

use secrecy::SecretString;

use super::challenges::mfa_event;
use crate::{
    accounts::{
        models::{BackupCodes, Email, UserRow},
        repo,
    },
    audit_log::{self, MfaAction, MfaEvent},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, types::Phone},
    notifications::{self, Message, Recipient},
    otp::{
        self, MfaMethod, TotpSetup,
        service::{CodeCheck, CodePurpose},
    },
};

/// Starts TOTP setup: a new secret, not active until `totp_confirm`.
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn totp_setup(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: Option<SecretString>,
) -> AppResult<TotpSetup> {
    let user = super::reauthenticate(state, client, auth, password).await?;
    begin_totp(state, client, &user, None).await
}

/// A new pending TOTP secret for `user`, its method state and the `setup_started` audit
/// row, in one transaction; `note` tells the audit who started it when not the user.
pub(super) async fn begin_totp(
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
    note: Option<serde_json::Value>,
) -> AppResult<TotpSetup> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let setup = otp::service::begin_totp(&mut tx, &state.data_keys, user.id, &Email::from_stored(&user.email)).await?;
    repo::mfa::set_method_state(&mut *tx, user.id, MfaMethod::Totp.as_str(), false, false).await?;
    let event = MfaEvent {
        mfa_method: Some("totp".into()),
        metadata: note,
        ..mfa_event(user.id, MfaAction::SetupStarted, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    Ok(setup)
}

/// Confirms TOTP with a code from the authenticator.
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn totp_confirm(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    code: SecretString,
) -> AppResult<BackupCodes> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let email = Email::from_stored(&user.email);
    if !otp::service::check_totp(&mut tx, &state.data_keys, user.id, &email, &code, true).await? {
        return Err(AppError::MfaCodeInvalid { attempts_remaining: 1 });
    }
    let codes = factor_added(&mut tx, state, client, &user, MfaMethod::Totp).await?;
    crate::core::db::commit(tx).await?;
    Ok(codes)
}

/// Records a newly proven factor; the first one turns MFA on and issues backup codes.
pub(super) async fn factor_added(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
    method: MfaMethod,
) -> AppResult<BackupCodes> {
    repo::mfa::set_method_state(&mut *tx, user.id, method.as_str(), true, true).await?;
    let new_value = Some(serde_json::json!({ "method": method.as_str() }));
    if user.mfa_enabled {
        repo::mfa::insert_mfa_change(
            &mut *tx,
            user.id,
            "method_added",
            Some(method.as_str()),
            None,
            new_value,
            None,
            "not_required",
        )
        .await?;
        let event =
            MfaEvent { mfa_method: Some(method.as_str().into()), ..mfa_event(user.id, MfaAction::MethodAdded, client) };
        audit_log::record_mfa(&mut *tx, &event).await?;
        factor_notice(tx, state, user, method, false).await?;
        return Ok(BackupCodes { backup_codes: Vec::new() });
    }
    repo::mfa::set_mfa_enabled(&mut *tx, user.id, true, Some(method.as_str())).await?;
    // Trust given while there was no second factor was given without one: from now on a
    // device skips MFA only on trust granted with a factor.
    super::recovery::end_trust(&mut *tx, client, user.id, None, "mfa_enabled").await?;
    let codes = otp::service::new_backup_codes(&mut *tx, &state.data_keys, user.id).await?;
    repo::mfa::set_method_state(&mut *tx, user.id, MfaMethod::BackupCode.as_str(), true, true).await?;
    repo::mfa::insert_mfa_change(
        &mut *tx,
        user.id,
        "enabled",
        Some(method.as_str()),
        None,
        new_value,
        None,
        "not_required",
    )
    .await?;
    let event = MfaEvent {
        mfa_method: Some(method.as_str().into()),
        new_value: Some(serde_json::json!({ "enabled": true, "primary_method": method.as_str() })),
        ..mfa_event(user.id, MfaAction::Enabled, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    factor_notice(tx, state, user, method, true).await?;
    Ok(BackupCodes { backup_codes: codes })
}

/// The security notice that a factor was added (`first`: MFA just turned on with it).
async fn factor_notice(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    user: &UserRow,
    method: MfaMethod,
    first: bool,
) -> AppResult<()> {
    let message = Message::MfaMethodAdded { username: user.username.clone(), method: method.label().to_owned(), first };
    let to = Email::from_stored(&user.email);
    notifications::enqueue_email(tx, &state.data_keys, user.id, &to, message).await?;
    Ok(())
}

/// Starts the email method: a code goes to the account's address.
pub async fn email_setup(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: Option<SecretString>,
) -> AppResult<()> {
    let user = super::reauthenticate(state, client, auth, password).await?;
    let email = Email::from_stored(&user.email);
    let mut tx = crate::core::db::begin(&state.db).await?;
    otp::service::begin_email_method(&mut tx, user.id, &email).await?;
    send_setup_code(&mut tx, state, client, &user, Recipient::Email(&email)).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// Starts the SMS method: a code goes to `phone`.
pub async fn sms_setup(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    phone: Phone,
    password: Option<SecretString>,
) -> AppResult<()> {
    let user = super::reauthenticate(state, client, auth, password).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    otp::service::begin_sms_method(&mut tx, user.id, &phone).await?;
    send_setup_code(&mut tx, state, client, &user, Recipient::Sms(&phone)).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

async fn send_setup_code(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
    to: Recipient<'_>,
) -> AppResult<()> {
    let method = to.channel().as_str().to_owned();
    repo::mfa::set_method_state(&mut *tx, user.id, &method, false, false).await?;
    let policy = repo::mfa::policy(&mut *tx, user.id).await?;
    let sent = otp::service::send_code(tx, &state.data_keys, user.id, to, CodePurpose::Setup, None, &policy).await?;
    let event = MfaEvent {
        mfa_method: Some(method),
        request_count_last_hour: i32::try_from(sent).ok(),
        ..mfa_event(user.id, MfaAction::SetupStarted, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    Ok(())
}

/// Confirms the email or SMS method with the code it received.
#[tracing::instrument(skip_all, fields(user = %auth.user_id, method = method.as_str()))]
pub async fn method_confirm(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    method: MfaMethod,
    code: SecretString,
) -> AppResult<BackupCodes> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let outcome = otp::service::check_code(
        &mut tx,
        &state.data_keys,
        user.id,
        method,
        CodePurpose::Setup,
        None,
        &code,
        client.ip_network(),
    )
    .await?;
    if let CodeCheck::Rejected { attempts_left } = outcome {
        // The spent attempt must stick, so commit before refusing.
        crate::core::db::commit(tx).await?;
        return Err(AppError::MfaCodeInvalid { attempts_remaining: attempts_left });
    }
    otp::service::confirm_method(&mut tx, user.id, method).await?;
    let codes = factor_added(&mut tx, state, client, &user, method).await?;
    crate::core::db::commit(tx).await?;
    Ok(codes)
}
