//! The signed-in user's API keys: created with the password and scopes from a fixed list,
//! shown once, stored as a SHA-256 hash (the secret is 32 random bytes, so a fast hash is
//! enough: there is nothing to guess) behind a public prefix for lookup, revoked at will,
//! expiring after at most 365 days (their owner is told 7 days before).

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::account_event;
use crate::{
    accounts::{
        forms::api_keys::NewApiKey,
        models::{
            Email,
            admin::{ApiKeyView, CreatedApiKey},
        },
        repo,
    },
    core::{
        AppError, AppResult, AppState,
        auth::{AuthUser, is_admin_scope},
        client::ClientContext,
        crypto,
        error::Conflict,
    },
    notifications::{self, Message, message::KeyLine},
};

/// Live keys one user may hold.
pub const MAX_KEYS: i64 = 25;

/// A fresh key: `gh_` + 12 alphanumerics (the lookup prefix; public, so the slight bias
/// of `% 62` costs nothing) + `_` + 43 characters of base64url (32 random bytes).
fn new_key() -> (String, SecretString) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let prefix: String =
        crypto::random_bytes::<12>().iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    let key = SecretString::from(format!("gh_{prefix}_{}", crypto::random_token()));
    (prefix, key)
}

/// Creates a key after the password (and, while MFA is on, a recent second factor): a key
/// outlives every session, so a stolen access token alone must not make one. Admin scopes
/// (`audit:read`, `introspect`) need a staff owner and a recent second factor, as any admin
/// action does. The owner gets a security email in the same transaction as the key.
pub async fn create_api_key(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    new: NewApiKey,
    password: SecretString,
) -> AppResult<CreatedApiKey> {
    if new.scopes.iter().any(|s| is_admin_scope(s)) {
        if !auth.is_staff {
            return Err(AppError::Forbidden);
        }
        if !auth.has_recent_mfa(state.config.step_up_max_age) {
            return Err(AppError::MfaRequired);
        }
    }
    let checked = super::reauthenticate(state, client, auth, Some(password)).await?;
    let (prefix, key) = new_key();
    let hash = crypto::sha256_hex(key.expose_secret());
    let mut tx = crate::core::db::begin(&state.db).await?;
    super::hold(&mut tx, auth, Some(&checked)).await?;
    let owner = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    // The owner's row lock orders concurrent creations, so the cap holds.
    repo::users::lock_user(&mut *tx, owner.id).await?;
    if repo::api_keys::live_key_count(&mut *tx, owner.id).await? >= MAX_KEYS {
        return Err(AppError::Conflict(Conflict::ApiKeyLimit));
    }
    let view =
        repo::api_keys::insert_key(&mut *tx, owner.id, &new.name, &prefix, &hash, &new.scopes, new.expires_at).await?;
    let details = serde_json::json!({ "api_key_id": view.id, "prefix": prefix, "scopes": new.scopes });
    account_event(&mut tx, Some(owner.id), "api_key_created", details, client).await?;
    let key_line = KeyLine {
        name: view.name.clone(),
        prefix: prefix.clone(),
        scopes: new.scopes.join(", "),
        expires: view.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    };
    let message = Message::ApiKeyCreated { username: owner.username.clone(), key: key_line };
    let to = Email::from_stored(&owner.email);
    notifications::enqueue_email(&mut tx, &state.data_keys, owner.id, &to, message).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(CreatedApiKey { key: view, secret: key.expose_secret().to_owned() })
}

pub async fn api_keys(state: &AppState, auth: &AuthUser) -> AppResult<Vec<ApiKeyView>> {
    Ok(repo::api_keys::keys(&state.db, auth.user_id).await?)
}

/// How long before a key expires its owner is told.
pub const EXPIRY_NOTICE: chrono::Duration = chrono::Duration::days(7);

/// Tells the owners of keys that expire within `EXPIRY_NOTICE` (once per key, across
/// instances); returns how many were told. Run by the cleanup job.
pub async fn warn_expiring_keys(state: &AppState, tx: &mut sqlx::PgConnection) -> AppResult<u64> {
    let keys = repo::api_keys::claim_expiring_keys(&mut *tx, EXPIRY_NOTICE.num_seconds() as f64).await?;
    for (user, key) in &keys {
        let Some(owner) = repo::users::user_by_id(&mut *tx, *user).await? else { continue };
        let key = KeyLine {
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            scopes: key.scopes.join(", "),
            expires: key.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        };
        let message = Message::ApiKeyExpiring { username: owner.username.clone(), key };
        let to = Email::from_stored(&owner.email);
        notifications::enqueue_email(&mut *tx, &state.data_keys, owner.id, &to, message).await?;
    }
    Ok(keys.len() as u64)
}

/// Revokes one of the caller's live keys; anyone else's (or a dead one) is "not found".
pub async fn revoke_api_key(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let prefix = repo::api_keys::revoke_key(&mut *tx, auth.user_id, id).await?.ok_or(AppError::NotFound)?;
    let details = serde_json::json!({ "api_key_id": id, "prefix": prefix });
    account_event(&mut tx, Some(auth.user_id), "api_key_revoked", details, client).await?;
    crate::core::db::commit(tx).await?;
    Ok(())
}
