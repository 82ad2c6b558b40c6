//! Registration and email verification.

use chrono::{Duration, Utc};
use secrecy::SecretString;
use sqlx::PgConnection;

use super::{account_event, link, session_event, token_hash};
use crate::{
    accounts::{
        credentials,
        forms::auth::Registration,
        models::{Email, User, UserRow},
        repo,
    },
    audit_log::{self, SessionAction},
    core::{
        AppError, AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        crypto,
        error::{Conflict, ResultExt},
        ratelimit::Action,
    },
    notifications::{self, Message},
};

pub const VERIFY_TOKEN_TTL: Duration = Duration::hours(24);
pub(super) const PURPOSE_VERIFY: &str = "email_verification";

/// Inserts the user, its profile and its first password-history row.
pub(super) async fn create_user(tx: &mut PgConnection, r: &Registration, hash: &str) -> AppResult<UserRow> {
    // The unique constraints decide, not a check-then-insert that two requests could race.
    let user =
        repo::users::insert_user(&mut *tx, r.email.as_str(), r.username.as_str(), hash, &r.first_name, &r.last_name)
            .await
            .on_constraint(&[
                ("auth_user_email_key", Conflict::EmailTaken),
                ("auth_user_username_key", Conflict::UsernameTaken),
            ])?;
    repo::users::insert_profile(&mut *tx, user.id).await?;
    repo::users::insert_password_history(&mut *tx, user.id, hash, "user", "initial").await?;
    Ok(user)
}

#[tracing::instrument(skip_all, fields(username = r.username.as_str()))]
pub async fn register(state: &AppState, client: &ClientContext, r: Registration) -> AppResult<User> {
    state.limits.check(Action::Register, client.ip)?;
    crate::accounts::breached::check(state, &r.password).await?;
    let hash = credentials::hash(state, r.password.clone()).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = create_user(&mut tx, &r, &hash).await?;
    queue_verification(&mut tx, state, client, &user).await?;
    account_event(&mut tx, Some(user.id), "registered", serde_json::json!({}), client).await?;
    audit_log::record_session(&mut *tx, &session_event(user.id, SessionAction::Registered, client)).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(user.into())
}

async fn queue_verification(
    tx: &mut PgConnection,
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
) -> AppResult<()> {
    let token = SecretString::from(crypto::random_token());
    let expires = Utc::now() + VERIFY_TOKEN_TTL;
    repo::one_time_tokens::revoke_one_time_tokens(&mut *tx, user.id, PURPOSE_VERIFY).await?;
    repo::one_time_tokens::insert_one_time_token(
        &mut *tx,
        user.id,
        PURPOSE_VERIFY,
        &token_hash(&token),
        expires,
        client.ip_network(),
        client.user_agent.as_deref(),
    )
    .await?;
    let link = link(state, "verify-email", &token);
    notifications::enqueue_email(
        tx,
        &state.data_keys,
        user.id,
        &Email::from_stored(&user.email),
        Message::EmailVerification { username: user.username.clone(), link },
    )
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn verify_email(state: &AppState, client: &ClientContext, token: SecretString) -> AppResult<User> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user_id = repo::one_time_tokens::consume_one_time_token(&mut *tx, &token_hash(&token), PURPOSE_VERIFY)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    repo::users::set_email_verified(&mut *tx, user_id).await?;
    account_event(&mut tx, Some(user_id), "email_verified", serde_json::json!({}), client).await?;
    audit_log::record_session(&mut *tx, &session_event(user_id, SessionAction::EmailVerified, client)).await?;
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    crate::core::db::commit(tx).await?;
    Ok(user.into())
}

/// Sends a fresh verification link (older ones die); nothing to do once verified.
pub async fn resend_verification(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<()> {
    state.limits.check(Action::EmailResend, client.ip)?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    if user.email_verified {
        return Ok(());
    }
    queue_verification(&mut tx, state, client, &user).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}
