//! notifications_inappnotification: the in-app inbox.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::notifications::models::InboxItem;

pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    kind: &str,
    title: &str,
    body: &str,
    priority: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO notifications_inappnotification (user_id, notification_type, title, body, priority)
         VALUES ($1, $2, $3, $4, $5)",
        user_id,
        kind,
        title,
        body,
        priority,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The user's messages, newest first (only unread ones when asked).
pub async fn list(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    unread_only: bool,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<InboxItem>> {
    sqlx::query_as!(
        InboxItem,
        "SELECT id, notification_type, title, body, priority, read_at, created_at
           FROM notifications_inappnotification
          WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL)
          ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
        user_id,
        unread_only,
        limit,
        offset,
    )
    .fetch_all(db)
    .await
}

/// (all matching the filter, unread).
pub async fn counts(db: impl PgExecutor<'_>, user_id: Uuid, unread_only: bool) -> sqlx::Result<(i64, i64)> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE NOT $2 OR read_at IS NULL) AS "total!",
                  count(*) FILTER (WHERE read_at IS NULL) AS "unread!"
             FROM notifications_inappnotification WHERE user_id = $1"#,
        user_id,
        unread_only,
    )
    .fetch_one(db)
    .await?;
    Ok((row.total, row.unread))
}

/// Marks one of the user's messages read; false when it is not theirs.
pub async fn mark_read(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let row = sqlx::query_scalar!(
        "UPDATE notifications_inappnotification SET read_at = COALESCE(read_at, now())
          WHERE id = $1 AND user_id = $2 RETURNING id",
        id,
        user_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.is_some())
}

pub async fn mark_all_read(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE notifications_inappnotification SET read_at = now() WHERE user_id = $1 AND read_at IS NULL",
        user_id,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
