//! Changing a password (signed in) and resetting a forgotten one by an emailed link. The
//! policy and the hashing are in `accounts::credentials`.

use chrono::Duration;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{
    account_event, link, mail_link,
    recovery::{Ended, Remedy, end_grants},
    session_event, token_hash,
};
use crate::{
    accounts::{
        credentials,
        models::{Email, UserRow},
        repo,
    },
    audit_log::{self, SessionAction, SessionEvent},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, error::Problems, ratelimit::Action},
    notifications::{self, Message, message::PasswordChange},
    otp,
};

/// Password history depth: a new password may not match any of these.
pub const PASSWORD_HISTORY: i64 = 5;
pub const RESET_TOKEN_TTL: Duration = Duration::hours(1);
pub(super) const PURPOSE_RESET: &str = "password_reset";

/// Refuses one of the last `PASSWORD_HISTORY` passwords. Reads on the pool and hashes with
/// no connection held: the hashing waits for the CPU pool, never while a request holds
/// one of the database's.
async fn check_not_reused(state: &AppState, user: Uuid, password: &SecretString) -> AppResult<()> {
    let recent = repo::users::recent_password_hashes(&state.db, user, PASSWORD_HISTORY).await?;
    if credentials::matches_any(state, password.clone(), recent).await? {
        return Err(AppError::PasswordReused);
    }
    Ok(())
}

/// The policy for a new password of `user`, who may not lean on their own words.
fn policy(password: &SecretString, user: &UserRow) -> AppResult<()> {
    let context = [user.email.as_str(), user.username.as_str(), user.first_name.as_str(), user.last_name.as_str()];
    let mut problems = Problems::new();
    for p in credentials::policy_problems(password.expose_secret(), &context) {
        problems.add("new_password", p);
    }
    problems.into_result()
}

/// What a password change ends beyond the other sessions (API.md "Recovery").
#[derive(Debug, Clone, Copy, Default)]
pub struct ChangeOptions {
    /// This session too.
    pub sign_out_everywhere: bool,
    /// Every API key too.
    pub revoke_api_keys: bool,
}

/// Changes the password: the other sessions (all with `sign_out_everywhere`), pending links
/// and the other devices' trust end with it (`recovery::Remedy::PasswordChange`).
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn change_password(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    current: SecretString,
    new: SecretString,
    options: ChangeOptions,
) -> AppResult<()> {
    let user = repo::users::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    super::lockout::confirm_password(state, client, &user, current).await?;
    policy(&new, &user)?;
    crate::accounts::breached::check(state, &new).await?;
    check_not_reused(state, user.id, &new).await?;
    let hash = credentials::hash(state, new).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    repo::users::set_password(&mut *tx, user.id, &hash).await?;
    repo::users::insert_password_history(&mut *tx, user.id, &hash, "user", "change").await?;
    let remedy = Remedy::PasswordChange {
        session: auth.session_id,
        everywhere: options.sign_out_everywhere,
        revoke_keys: options.revoke_api_keys,
    };
    let ended = end_grants(&mut tx, client, user.id, remedy, SessionAction::SessionRevoked, "password_changed").await?;
    account_event(&mut tx, Some(user.id), "password_changed", ended.details(), client).await?;
    let event = SessionEvent {
        session_id: Some(auth.session_id),
        ..session_event(user.id, SessionAction::PasswordChanged, client)
    };
    audit_log::record_session(&mut *tx, &event).await?;
    let how = if options.sign_out_everywhere { PasswordChange::ChangedEverywhere } else { PasswordChange::Changed };
    password_changed_notice(&mut tx, state, &user, how, &ended).await?;
    crate::core::db::commit(tx).await?;
    ended.settle(state).await;
    Ok(())
}

/// Reset emails to one account: at most one a minute and `RESET_EMAILS_PER_HOUR` an
/// hour. Further requests answer the same and send nothing, so a victim's inbox is not
/// flooded and their newest link stays valid.
pub const RESET_EMAILS_PER_HOUR: i64 = 3;

/// Answers at once and the same for every address: looking the email up, the per-account
/// caps and the mail happen after the answer (`issue_reset`), so neither the time taken
/// nor the writes made tell a known email from an unknown one.
pub async fn request_password_reset(state: &AppState, client: &ClientContext, email: Email) -> AppResult<()> {
    state.limits.check(Action::PasswordReset, client.ip)?;
    let (state2, client) = (state.clone(), client.clone());
    state.spawn_bounded(async move {
        if let Err(e) = issue_reset(&state2, &client, &email).await {
            tracing::warn!(error = %e, "password reset not issued");
        }
    })
}

/// Queues a reset link when an active account has this email and its caps allow; silent
/// otherwise.
async fn issue_reset(state: &AppState, client: &ClientContext, email: &Email) -> AppResult<()> {
    let url = |token: &SecretString| link(state, "reset-password", token);
    let message = |username, link| Message::PasswordReset { username, link };
    mail_link(state, client, email, (PURPOSE_RESET, RESET_TOKEN_TTL, RESET_EMAILS_PER_HOUR), url, message).await
}

/// Sets a new password from a reset token (single use); every grant a past sign-in left
/// ends with it (`recovery::Remedy::PasswordReset`). The token is consumed only if the
/// whole change commits.
#[tracing::instrument(skip_all)]
pub async fn confirm_password_reset(
    state: &AppState,
    client: &ClientContext,
    token: SecretString,
    new: SecretString,
) -> AppResult<()> {
    // Checks and hashing first, with no connection held; then the token is used in the
    // transaction of the change, so it is consumed only if the change commits.
    let stored = token_hash(&token);
    let user_id = repo::one_time_tokens::peek_one_time_token(&state.db, &stored, PURPOSE_RESET)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    let user = repo::users::user_by_id(&state.db, user_id).await?.ok_or(AppError::TokenInvalid)?;
    policy(&new, &user)?;
    crate::accounts::breached::check(state, &new).await?;
    check_not_reused(state, user.id, &new).await?;
    let hash = credentials::hash(state, new).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    if repo::one_time_tokens::consume_one_time_token(&mut *tx, &stored, PURPOSE_RESET).await? != Some(user.id) {
        return Err(AppError::TokenInvalid);
    }
    repo::users::set_password(&mut *tx, user.id, &hash).await?;
    repo::users::insert_password_history(&mut *tx, user.id, &hash, "user", "reset").await?;
    let ended =
        end_grants(&mut tx, client, user.id, Remedy::PasswordReset, SessionAction::SessionRevoked, "password_reset")
            .await?;
    account_event(&mut tx, Some(user.id), "password_reset", ended.details(), client).await?;
    audit_log::record_session(&mut *tx, &session_event(user.id, SessionAction::PasswordReset, client)).await?;
    password_changed_notice(&mut tx, state, &user, PasswordChange::Reset, &ended).await?;
    crate::core::db::commit(tx).await?;
    ended.settle(state).await;
    Ok(())
}

/// The security message that the password changed (by the user or by a reset link): it
/// goes whatever the user's notification settings say, so a takeover cannot be muted.
/// It lists the API keys that still work and the factors that remain.
async fn password_changed_notice(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    user: &UserRow,
    how: PasswordChange,
    ended: &Ended,
) -> AppResult<()> {
    let factors = otp::service::factors(&mut *tx, user.id).await?;
    let message = Message::PasswordChanged { username: user.username.clone(), how, grants: ended.notice(&factors) };
    let to = Email::from_stored(&user.email);
    notifications::enqueue_email(tx, &state.data_keys, user.id, &to, message).await?;
    Ok(())
}
