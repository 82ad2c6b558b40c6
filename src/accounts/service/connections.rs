//! The signed-in user's linked identities (social login): the list, and unlinking under
//! the rule that an account keeps at least one way in.

use uuid::Uuid;

use super::{account_event, hold};
use crate::{
    accounts::{credentials, models::social::Connection, repo},
    core::{
        AppError, AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        error::Conflict,
        extract::{Page, Paginated},
        types::Email,
    },
    notifications::{self, Message},
    otp,
};

/// `GET /users/me/connections`.
pub async fn connections(state: &AppState, auth: &AuthUser, page: Page) -> AppResult<Paginated<Connection>> {
    let items = repo::social::connections(&state.db, auth.user_id, page.limit, page.offset()).await?;
    let total = repo::social::count_connections(&state.db, auth.user_id).await?;
    Ok(Paginated::new(items, page, total))
}

/// `DELETE /users/me/connections/{id}`: refused while it is the only way in (no usable
/// password, no passkey, no other active identity); another user's id is 404.
pub async fn unlink(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    hold(&mut tx, auth, None).await?;
    let owned = repo::social::lock_connections(&mut *tx, auth.user_id).await?;
    if !owned.iter().any(|c| c.id == id) {
        return Err(AppError::NotFound);
    }
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let others = owned.iter().filter(|c| c.id != id && c.status == "active").count();
    let factors = otp::service::factors(&mut tx, user.id).await?;
    let password = credentials::is_usable(&user.password_hash);
    if !password && factors.passkeys == 0 && others == 0 {
        return Err(AppError::Conflict(Conflict::LastSignInMethod));
    }
    let provider = repo::social::delete_connection(&mut *tx, user.id, id).await?.ok_or(AppError::NotFound)?;
    let details = serde_json::json!({ "provider": provider, "connection_id": id });
    account_event(&mut tx, Some(user.id), "identity_unlinked", details, client).await?;
    let message = Message::IdentityUnlinked {
        username: user.username.clone(),
        provider: super::social::display_name(state, &provider),
    };
    notifications::enqueue_email(&mut tx, &state.data_keys, user.id, &Email::from_stored(&user.email), message).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}
