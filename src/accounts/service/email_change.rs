//! Changing one's email address: the password, then a link to the new address and a notice
//! to the old one. Nothing changes until the link is used, so the old address still signs
//! in until then and a typo costs nothing. Once it is used, the old address gets an undo
//! link that no remediation ends: an attacker who moved the address and then reset the
//! password cannot take away the owner's way back.

use chrono::{Duration, Utc};
use secrecy::SecretString;

use super::{
    account_event, link,
    lockout::confirm_password,
    passwords::{PURPOSE_RESET, RESET_TOKEN_TTL},
    recovery::{Remedy, end_grants},
    registration::PURPOSE_VERIFY,
    token_hash,
};
use crate::{
    accounts::{
        credentials::UNUSABLE_PASSWORD,
        models::{Email, User},
        repo,
    },
    audit_log::SessionAction,
    core::{
        AppError, AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        crypto,
        data_keys::Purpose,
        error::{Conflict, ResultExt},
        ratelimit::Action,
    },
    notifications::{self, Message},
    otp,
};

pub const EMAIL_CHANGE_TTL: Duration = Duration::hours(1);
const PURPOSE_EMAIL_CHANGE: &str = "email_change";

fn email_taken() -> AppError {
    AppError::Conflict(Conflict::NewEmailTaken)
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
    let user = repo::users::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    confirm_password(state, client, &user, password).await?;
    if new_email.as_str() == user.email {
        return Err(AppError::validation("new_email", "is already this account's address"));
    }
    if repo::users::user_by_email(&state.db, new_email.as_str()).await?.is_some() {
        return Err(email_taken());
    }
    let token = SecretString::from(crypto::random_token());
    let mut tx = crate::core::db::begin(&state.db).await?;
    super::hold(&mut tx, auth, Some(&user)).await?;
    repo::one_time_tokens::revoke_one_time_tokens(&mut *tx, user.id, PURPOSE_EMAIL_CHANGE).await?;
    repo::one_time_tokens::insert_email_change_token(
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
    let username = user.username.clone();
    let message = Message::EmailChange { username: username.clone(), link };
    notifications::enqueue_email(&mut tx, &state.data_keys, user.id, &new_email, message).await?;
    let message = Message::EmailChangeRequested { username, new_email: new_email.as_str().to_owned() };
    notifications::enqueue_email(&mut tx, &state.data_keys, user.id, &Email::from_stored(&user.email), message).await?;
    // The audit trail outlives the account: a keyed hash of the address, never the address.
    let details = serde_json::json!({ "new_email_hash": address_hash(state, &new_email) });
    account_event(&mut tx, Some(user.id), "email_change_requested", details, client).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// `POST /auth/email/change/confirm`: uses the token and moves the account. A token of an
/// inactive account, or of one whose password changed or was reset since the request, is
/// `TOKEN_INVALID` (the remediation was maybe against whoever asked). Links sent to the old
/// address (verification, password reset, magic link) die with the move; the old address gets a
/// notice with an undo link (`UNDO_TTL`) that only its use or expiry ends. An address
/// taken meanwhile is 409 `EMAIL_TAKEN` and the token stays unused.
pub async fn confirm_email_change(state: &AppState, client: &ClientContext, token: SecretString) -> AppResult<User> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let (user_id, new_email) = repo::one_time_tokens::consume_email_change_token(&mut *tx, &token_hash(&token))
        .await?
        .ok_or(AppError::TokenInvalid)?;
    let old = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    repo::users::set_email(&mut *tx, user_id, &new_email)
        .await
        .on_constraint(&[("auth_user_email_key", Conflict::NewEmailTaken)])?;
    repo::one_time_tokens::revoke_one_time_tokens(&mut *tx, user_id, PURPOSE_VERIFY).await?;
    repo::one_time_tokens::revoke_one_time_tokens(&mut *tx, user_id, PURPOSE_RESET).await?;
    repo::one_time_tokens::revoke_one_time_tokens(&mut *tx, user_id, super::magic_link::PURPOSE_MAGIC).await?;
    let undo = SecretString::from(crypto::random_token());
    repo::one_time_tokens::insert_undo_token(&mut *tx, user_id, &token_hash(&undo), &old.email, Utc::now() + UNDO_TTL)
        .await?;
    let message = Message::EmailChanged {
        username: old.username.clone(),
        new_email: new_email.clone(),
        link: link(state, "undo-email-change", &undo),
    };
    notifications::enqueue_email(&mut tx, &state.data_keys, user_id, &Email::from_stored(&old.email), message).await?;
    let details = serde_json::json!({ "new_email_hash": address_hash(state, &Email::from_stored(&new_email)) });
    account_event(&mut tx, Some(user_id), "email_changed", details, client).await?;
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(user.into())
}

/// How long the old address can undo a change.
pub const UNDO_TTL: Duration = Duration::days(7);

/// `POST /auth/email/change/undo` (and its page): the old address takes the account back.
/// The address is restored (and counts as verified: its owner just used a link sent to
/// it), the password stops working, and everything a password reset ends ends
/// (`Remedy::PasswordReset`): whoever moved the address may also have reset the password.
/// A reset link goes to the restored address with the factors added since the change,
/// for the owner to remove; the address it replaces is told it no longer signs in. The
/// undo links of later changes die; earlier ones stay.
pub async fn undo_email_change(state: &AppState, client: &ClientContext, token: SecretString) -> AppResult<User> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let undo =
        repo::one_time_tokens::consume_undo_token(&mut tx, &token_hash(&token)).await?.ok_or(AppError::TokenInvalid)?;
    let user_id = undo.user_id;
    let replaced = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    repo::users::set_email(&mut *tx, user_id, &undo.address)
        .await
        .on_constraint(&[("auth_user_email_key", Conflict::NewEmailTaken)])?;
    repo::users::set_email_verified(&mut *tx, user_id).await?;
    repo::users::set_password(&mut *tx, user_id, UNUSABLE_PASSWORD).await?;
    repo::one_time_tokens::revoke_one_time_tokens(&mut *tx, user_id, PURPOSE_VERIFY).await?;
    let ended = end_grants(
        &mut tx,
        client,
        user_id,
        Remedy::PasswordReset,
        SessionAction::SessionRevoked,
        "email_change_undone",
    )
    .await?;
    let reset = SecretString::from(crypto::random_token());
    repo::one_time_tokens::insert_one_time_token(
        &mut *tx,
        user_id,
        PURPOSE_RESET,
        &token_hash(&reset),
        Utc::now() + RESET_TOKEN_TTL,
        client.ip_network(),
        client.user_agent.as_deref(),
    )
    .await?;
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    let added = otp::service::factors_added_since(&mut tx, user_id, undo.changed_at).await?;
    let factors = otp::service::factors(&mut tx, user_id).await?;
    let message = Message::EmailChangeUndone {
        username: user.username.clone(),
        link: link(state, "reset-password", &reset),
        factors_added: added.iter().map(|m| m.label().to_owned()).collect(),
        grants: ended.notice(&factors),
    };
    let to = Email::from_stored(&user.email);
    notifications::enqueue_email(&mut tx, &state.data_keys, user_id, &to, message).await?;
    if replaced.email != user.email {
        // Whoever holds the replaced address (maybe the owner, who moved away from a mailbox
        // they lost) hears that it no longer signs in.
        let message = Message::EmailChangeReverted { username: user.username.clone() };
        let was = Email::from_stored(&replaced.email);
        notifications::enqueue_email(&mut tx, &state.data_keys, user_id, &was, message).await?;
    }
    let mut details = ended.details();
    details["factors_added_since"] = serde_json::json!(added.iter().map(|m| m.as_str()).collect::<Vec<_>>());
    account_event(&mut tx, Some(user_id), "email_change_undone", details, client).await?;
    crate::core::db::commit(tx).await?;
    ended.settle(state).await;
    Ok(user.into())
}

/// A keyed hash of an address: audit rows can tell two events about the same address
/// apart from two about different ones, and hold nothing a reader could turn back into it.
fn address_hash(state: &AppState, email: &Email) -> String {
    state.data_keys.mac(Purpose::AuditHash, email.as_str())
}
