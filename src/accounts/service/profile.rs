//! The signed-in user: reading, editing and deleting one's own account.

use secrecy::SecretString;

use super::account_event;
use crate::{
    accounts::{
        forms::auth::MeChanges,
        models::{Me, User},
        repo,
    },
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext},
};

/// One statement; with the session cached, the request's only round trip.
pub async fn me(state: &AppState, auth: &AuthUser) -> AppResult<Me> {
    let (user, profile) = repo::users::me(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    Ok(Me { user: user.into(), profile })
}

/// `GET /users/me` as its JSON body, from the instance's cache when it holds it: kept
/// coherent by the notifications of every change to the user, the profile and the MFA
/// switch (migration `20261212000002_me_cache`); `last_login` may lag by `ME_TTL` (60 s).
pub async fn me_json(state: &AppState, auth: &AuthUser) -> AppResult<axum::body::Bytes> {
    if let Some(body) = state.auth_cache.me(auth.user_id) {
        return Ok(body);
    }
    let ticket = state.auth_cache.ticket();
    let body = serde_json::to_vec(&me(state, auth).await?).map_err(AppError::internal)?;
    Ok(state.auth_cache.put_me(ticket, auth.user_id, body.into()))
}

/// Applies checked changes to the names and the profile.
pub async fn update_me(state: &AppState, client: &ClientContext, auth: &AuthUser, changes: MeChanges) -> AppResult<Me> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let mut profile = repo::users::profile(&mut *tx, auth.user_id).await?;
    let (mut first, mut last) = (user.first_name.clone(), user.last_name.clone());
    let changed = changes.apply(&mut first, &mut last, &mut profile);
    repo::users::set_names(&mut *tx, user.id, &first, &last).await?;
    repo::users::save_profile(&mut *tx, user.id, &profile).await?;
    // Field names only: the audit trail holds no personal data.
    account_event(&mut tx, Some(user.id), "profile_updated", serde_json::json!({ "fields": changed }), client).await?;
    let user: User = repo::users::user_by_id(&mut *tx, user.id).await?.ok_or(AppError::Unauthenticated)?.into();
    crate::core::db::commit(tx).await?;
    // This instance reads its own write at once (others hear the trigger's notification).
    state.auth_cache.evict(user.id);
    Ok(Me { user, profile })
}

/// Deletes the account and, by cascade, everything of it; its export files go at once,
/// after the commit (a build still running finds its row gone and deletes its own file).
/// The record of the deletion stays in accounts_auditlog (its user_id set to null), with
/// no address or name in it; the login attempts kept under its address go too.
#[tracing::instrument(skip_all, fields(user = %auth.user_id))]
pub async fn delete_me(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: SecretString,
) -> AppResult<()> {
    let user = repo::users::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    super::lockout::confirm_password(state, client, &user, password).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    account_event(&mut tx, Some(user.id), "deleted", serde_json::json!({ "user_id": user.id }), client).await?;
    let exports = repo::exports::lock_exports(&mut *tx, user.id).await?;
    repo::attempts::delete_attempts_of(&mut *tx, &user.email).await?;
    repo::users::delete_user(&mut *tx, user.id).await?;
    crate::core::db::commit(tx).await?;
    super::exports::remove_export_files(state, &exports).await;
    Ok(())
}
