//! The rules of accounts, one file per concern, found by its name: registration, login,
//! lockout, challenges (the second step of a login, step-up), mfa (managing one's factors),
//! mfa_setup (adding one), passkeys (theirs, and signing in with one), mfa_admin (approvals, the operator's enrolment), sessions, tokens (refresh, logout),
//! passwords, profile, admin, devices, recovery (what a remediation ends). Each public function
//! owns its transaction; audit rows and queued emails commit with the change, and the
//! outbox is woken after commit. API keys and exports join as files of their own.

mod admin;
mod api_keys;
mod challenges;
mod connections;
mod console;
mod devices;
mod email_change;
mod exports;
mod lockout;
mod login;
mod magic_link;
mod mfa;
mod mfa_admin;
mod mfa_setup;
mod passkeys;
mod passwords;
mod profile;
mod recovery;
mod registration;
mod sessions;
mod social;
mod tokens;
pub mod upkeep;

pub use admin::{
    admin_logout_all, admin_unlock, create_superuser, list_users, lock_of, update_user, user_detail, usernames,
};
pub use api_keys::{EXPIRY_NOTICE, MAX_KEYS, api_keys, create_api_key, revoke_api_key, warn_expiring_keys};
pub use challenges::{
    TRUST_DAYS, passkey_options as mfa_passkey_options, send as mfa_send, step_up, verify as mfa_verify,
};
pub use connections::{connections, unlink as unlink_connection};
pub use console::{
    Expected as ChallengeExpected, confirm_session_password, console_user, open_console_session,
    verify_expected as mfa_verify_expected,
};
pub use devices::{
    delete_device, device, devices, devices_near, mark_compromised, rename_device, trust_device, untrust_device,
};
pub use email_change::{EMAIL_CHANGE_TTL, UNDO_TTL, confirm_email_change, request_email_change, undo_email_change};
pub use exports::{EXPORT_TTL, expire_exports, export_file, export_status, request_export, run_exports_once};
pub use lockout::{IP_WINDOW, LOCKOUT, MAX_FAILURES, MAX_IP_FAILURES};
pub use login::login;
pub use magic_link::{MAGIC_LINK_TTL, confirm_magic_link, request_magic_link};
pub use mfa::{Removal, mfa_status, regenerate_backup_codes, remove_factor, set_primary};
pub use mfa_admin::{
    approve_mfa_change, change_requests, operator_totp_confirm, operator_totp_setup, reject_mfa_change,
    request_mfa_reset,
};
pub use mfa_setup::{email_setup, method_confirm, sms_setup, totp_confirm, totp_setup};
pub use passkeys::{
    delete_passkey, passkeys, register_finish as passkey_register_finish, register_start as passkey_register_start,
    rename_passkey, sign_in as passkey_sign_in, sign_in_options as passkey_sign_in_options,
};
pub use passwords::{
    ChangeOptions, PASSWORD_HISTORY, RESET_TOKEN_TTL, change_password, confirm_password_reset, request_password_reset,
};
pub use profile::{delete_me, me, me_json, update_me};
pub use registration::{VERIFY_TOKEN_TTL, register, resend_verification, verify_email};
pub use sessions::{NewSession, revoke_session, sessions, start_session};
pub use social::{
    Callback as OidcCallback, Intent as OidcIntent, Start as OidcStart, callback as oidc_callback,
    console_return as oidc_console_return, exchange as oidc_exchange, providers as oidc_providers, start as oidc_start,
};
pub use tokens::{logout, logout_all, refresh};

use chrono::Duration;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    models::{Authenticated, User, UserRow},
    repo,
};
use crate::{
    audit_log::{Origin, SessionAction, SessionEvent},
    core::{
        AppError, AppResult, AppState,
        auth::{self, AuthUser, Claims},
        client::ClientContext,
    },
};

/// The signed-in user, after the checks that actions a stolen access token must not be
/// enough for ask (API.md "Recovery"): the password (missing: 422; wrong: 403
/// `PASSWORD_INCORRECT`, counted against the lockout) and, while MFA is on, a second factor
/// within `STEP_UP_MAX_AGE_SECONDS` (403 `MFA_REQUIRED`; `POST /auth/mfa/step-up` renews it).
/// The hash is checked before any transaction opens.
async fn reauthenticate(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: Option<SecretString>,
) -> AppResult<UserRow> {
    let user = repo::users::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    if user.mfa_enabled && !auth.has_recent_mfa(state.config.step_up_max_age) {
        return Err(AppError::MfaRequired);
    }
    let password = password.ok_or_else(|| AppError::validation("password", "is required"))?;
    lockout::confirm_password(state, client, &user, password).await?;
    Ok(user)
}

/// Inside the action's transaction, after `reauthenticate`: the session is still active and
/// the password the one checked, and both stay so until the commit (401 otherwise). Closes
/// the gap between a check made before the transaction and a remediation committing in it.
async fn hold(tx: &mut PgConnection, auth: &AuthUser, checked: Option<&UserRow>) -> AppResult<()> {
    let hash = checked.map(|u| u.password_hash.as_str());
    if repo::sessions::hold_session(&mut *tx, auth.session_id, auth.user_id, hash).await? {
        Ok(())
    } else {
        Err(AppError::Unauthenticated)
    }
}

fn origin(client: &ClientContext) -> Origin {
    Origin { ip: client.ip_network(), country: client.country.clone(), city: client.city.clone() }
}

/// A session audit event about `user`, from where the request came.
fn session_event(user: Uuid, action: SessionAction, client: &ClientContext) -> SessionEvent {
    SessionEvent { origin: origin(client), ..SessionEvent::new(user, action) }
}

/// A row of accounts_auditlog, the account's own history.
async fn account_event(
    db: &mut PgConnection,
    user: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
    client: &ClientContext,
) -> sqlx::Result<()> {
    repo::users::insert_account_event(db, user, action, details, client.ip_network(), client.user_agent.as_deref())
        .await
}

/// A link the service emails: `{PUBLIC_BASE_URL}/{path}?token=...`.
fn link(state: &AppState, path: &str, token: &SecretString) -> String {
    format!("{}/{path}?token={}", state.config.public_base_url, token.expose_secret())
}

/// Mails a one-time link of `purpose` to the active account at `email`, or does nothing: at
/// most one a minute and `per_hour` an hour per account (counted in PostgreSQL, so across
/// instances; more are dropped and recorded as `{purpose}_throttled`), the newest link
/// revoking the earlier ones. Runs after the request was answered, so neither time nor
/// answer tells a known address from an unknown one.
async fn mail_link(
    state: &AppState,
    client: &ClientContext,
    email: &crate::core::types::Email,
    (purpose, ttl, per_hour): (&str, chrono::Duration, i64),
    url: impl FnOnce(&SecretString) -> String,
    message: impl FnOnce(String, String) -> crate::notifications::Message,
) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let Some(user) = repo::users::user_by_email(&mut *tx, email.as_str()).await?.filter(|u| u.is_active) else {
        return Ok(());
    };
    let (last_minute, last_hour) =
        repo::one_time_tokens::lock_and_count_recent_tokens(&mut tx, user.id, purpose).await?;
    if last_minute > 0 || last_hour >= per_hour {
        account_event(&mut tx, Some(user.id), &format!("{purpose}_throttled"), serde_json::json!({}), client).await?;
        crate::core::db::commit(tx).await?;
        return Ok(());
    }
    let token = SecretString::from(crate::core::crypto::random_token());
    repo::one_time_tokens::revoke_one_time_tokens(&mut *tx, user.id, purpose).await?;
    repo::one_time_tokens::insert_one_time_token(
        &mut *tx,
        user.id,
        purpose,
        &token_hash(&token),
        chrono::Utc::now() + ttl,
        client.ip_network(),
        client.user_agent.as_deref(),
    )
    .await?;
    let message = message(user.username.clone(), url(&token));
    crate::notifications::enqueue_email(&mut tx, &state.data_keys, user.id, email, message).await?;
    account_event(&mut tx, Some(user.id), &format!("{purpose}_requested"), serde_json::json!({}), client).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// The stored form of a one-time or refresh token: its SHA-256.
fn token_hash(token: &SecretString) -> String {
    crate::core::crypto::sha256_hex(token.expose_secret())
}

/// Seconds an access token lives.
fn access_ttl(state: &AppState) -> i64 {
    state.config.access_token_ttl.as_secs() as i64
}

/// The absolute lifetime of a session (SESSION_MAX_AGE_SECONDS).
fn session_max_age(state: &AppState) -> Duration {
    Duration::seconds(state.config.session_max_age.as_secs() as i64)
}

/// How long a refresh token, and the session it keeps alive, lasts from its issue.
fn refresh_ttl(state: &AppState) -> Duration {
    Duration::seconds(state.config.refresh_token_ttl.as_secs() as i64)
}

/// The body of a successful login, MFA verification or refresh.
fn authenticated(
    state: &AppState,
    claims: &Claims,
    refresh_token: SecretString,
    user: User,
) -> AppResult<Authenticated> {
    Ok(Authenticated {
        status: "authenticated",
        access_token: auth::sign(&state.keys, &claims.clone().issued_by(&state.config.public_base_url))?,
        refresh_token: refresh_token.expose_secret().to_owned(),
        token_type: "Bearer",
        expires_in: claims.exp - claims.iat,
        session_id: claims.sid,
        user,
        backup_codes_remaining: None,
    })
}
