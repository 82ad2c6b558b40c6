//! Administration of one user (API.md "Administration") and the operator's
//! `createsuperuser`. The caller's permission is checked by the handler.

use uuid::Uuid;

use super::{account_event, registration::create_user, session_event, sessions::revoke};
use crate::{
    accounts::{forms::Registration, models::User, passwords, repo},
    audit_log::{self, SessionAction, SessionEvent},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext},
};

/// `gatehouse createsuperuser`: a verified staff superuser.
#[tracing::instrument(skip_all, fields(username = r.username.as_str()))]
pub async fn create_superuser(state: &AppState, r: Registration) -> AppResult<User> {
    let hash = passwords::hash(state, r.password.clone()).await?;
    let mut tx = state.db.begin().await?;
    let user = create_user(&mut tx, &r, &hash).await?;
    repo::make_superuser(&mut *tx, user.id).await?;
    account_event(&mut tx, Some(user.id), "superuser_created", serde_json::json!({}), &ClientContext::default())
        .await?;
    let user = repo::user_by_id(&mut *tx, user.id).await?.ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(user.into())
}

/// Lifts a login lock: an `unlock` row restarts the identifier's failure count.
pub async fn admin_unlock(state: &AppState, client: &ClientContext, admin: &AuthUser, user_id: Uuid) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = repo::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::NotFound)?;
    repo::insert_unlock(&mut *tx, &user.email, user.id).await?;
    let details = serde_json::json!({ "by": admin.user_id });
    account_event(&mut tx, Some(user.id), "unlocked", details.clone(), client).await?;
    let event =
        SessionEvent { metadata: Some(details), ..session_event(user.id, SessionAction::AccountUnlocked, client) };
    audit_log::record_session(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes every session of a user.
pub async fn admin_logout_all(
    state: &AppState,
    client: &ClientContext,
    admin: &AuthUser,
    user_id: Uuid,
) -> AppResult<usize> {
    if repo::user_by_id(&state.db, user_id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let revoked = revoke(state, client, user_id, None, None, SessionAction::SessionRevoked, "revoked_by_admin").await?;
    let mut tx = state.db.begin().await?;
    account_event(
        &mut tx,
        Some(user_id),
        "sessions_revoked",
        serde_json::json!({ "by": admin.user_id, "count": revoked.len() }),
        client,
    )
    .await?;
    tx.commit().await?;
    Ok(revoked.len())
}

/// Usernames of the given users, for staff pages that show who an event is about.
pub async fn usernames(state: &AppState, ids: &[Uuid]) -> AppResult<Vec<(Uuid, String)>> {
    Ok(repo::usernames(&state.db, ids).await?)
}
