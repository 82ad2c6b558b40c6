//! Changing one's email address: the password, then a link to the new address and a notice
//! to the old one. Nothing changes until the link is used, so the old address still signs
//! in until then and a typo costs nothing.

use chrono::{Duration, Utc};
use minijinja::context;
use secrecy::SecretString;

use super::{
    account_event, link, lockout::confirm_password, passwords::PURPOSE_RESET, registration::PURPOSE_VERIFY, token_hash,
};
use crate::{
    accounts::{
        models::{Email, User},
        repo,
    },
    core::{
        AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, crypto, error::constraint,
        ratelimit::Action,
    },
    notifications::{self, NotificationType},
};

pub const EMAIL_CHANGE_TTL: Duration = Duration::hours(1);
const PURPOSE_EMAIL_CHANGE: &str = "email_change";

fn email_taken() -> AppError {
    AppError::Conflict {
        code: "EMAIL_TAKEN",
        field: "new_email",
        message: "An account with this email already exists.",
    }
}

/// `POST /users/me/email`: checks the password (403 `PASSWORD_INCORRECT`, counted against
/// the lockout), refuses an address in use (409 `EMAIL_TAKEN`), then sends the link
/// (earlier ones die) and tells the old address, in one transaction.
pub async fn request_email_change(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: SecretString,
    new_email: Email,
) -> AppResult<()> {
    state.limits.check(Action::EmailResend, client.ip)?;
    let user = repo::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    confirm_password(state, client, &user, password).await?;
    if new_email.as_str() == user.email {
        return Err(AppError::validation("new_email", "is already this account's address"));
    }
    if repo::user_by_email(&state.db, new_email.as_str()).await?.is_some() {
        return Err(email_taken());
    }
    let token = SecretString::from(crypto::random_token());
    let mut tx = crate::core::db::begin(&state.db).await?;
    repo::revoke_one_time_tokens(&mut *tx, user.id, PURPOSE_EMAIL_CHANGE).await?;
    repo::insert_email_change_token(
        &mut *tx,
        user.id,
        &token_hash(&token),
        new_email.as_str(),
        Utc::now() + EMAIL_CHANGE_TTL,
        client.ip_network(),
        client.user_agent.as_deref(),
    )
    .await?;
    let link = link(state, "confirm-email-change", &token);
    let username = user.username.as_str();
    notifications::enqueue_email(
        &mut tx,
        &state.data_keys,
        user.id,
        &new_email,
        NotificationType::EmailChange,
        context! { username, link },
    )
    .await?;
    let time = Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    notifications::enqueue_email(
        &mut tx,
        &state.data_keys,
        user.id,
        &Email::from_stored(&user.email),
        NotificationType::EmailChangeRequested,
        context! { username, new_email => new_email.as_str(), time },
    )
    .await?;
    let details = serde_json::json!({ "new_email": new_email.as_str() });
    account_event(&mut tx, Some(user.id), "email_change_requested", details, client).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// `POST /auth/email/change/confirm`: uses the token and moves the account. Links sent
/// to the old address (verification, password reset) die with the move; an address
/// taken meanwhile is 409 `EMAIL_TAKEN` and the token stays unused.
pub async fn confirm_email_change(state: &AppState, client: &ClientContext, token: SecretString) -> AppResult<User> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let (user_id, new_email) =
        repo::consume_email_change_token(&mut *tx, &token_hash(&token)).await?.ok_or(AppError::TokenInvalid)?;
    let old = repo::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    repo::set_email(&mut *tx, user_id, &new_email).await.map_err(|e| match constraint(&e) {
        Some("auth_user_email_key") => email_taken(),
        _ => e.into(),
    })?;
    repo::revoke_one_time_tokens(&mut *tx, user_id, PURPOSE_VERIFY).await?;
    repo::revoke_one_time_tokens(&mut *tx, user_id, PURPOSE_RESET).await?;
    let details = serde_json::json!({ "old_email": old.email, "new_email": new_email });
    account_event(&mut tx, Some(user_id), "email_changed", details, client).await?;
    let user = repo::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    crate::core::db::commit(tx).await?;
    Ok(user.into())
}
