//! The in-app inbox (API.md "Magic link and in-app notifications"): what the policy let
//! through the in-app channel, newest first, with the unread count.

use uuid::Uuid;

use super::{models::Inbox, repo};
use crate::core::{
    AppError, AppResult, AppState,
    extract::{Page, Paginated},
};

pub async fn inbox(state: &AppState, user_id: Uuid, unread_only: bool, page: Page) -> AppResult<Inbox> {
    let items = repo::inbox::list(&state.db, user_id, unread_only, page.limit, page.offset()).await?;
    let (total, unread_count) = repo::inbox::counts(&state.db, user_id, unread_only).await?;
    let Paginated { items, pagination } = Paginated::new(items, page, total);
    Ok(Inbox { items, unread_count, pagination })
}

/// Another user's message is 404, as if it did not exist.
pub async fn mark_read(state: &AppState, user_id: Uuid, id: Uuid) -> AppResult<()> {
    if repo::inbox::mark_read(&state.db, user_id, id).await? { Ok(()) } else { Err(AppError::NotFound) }
}

pub async fn mark_all_read(state: &AppState, user_id: Uuid) -> AppResult<()> {
    repo::inbox::mark_all_read(&state.db, user_id).await?;
    Ok(())
}
