//! notifications_pushnotification: the push outbox, claimed like the SMS outbox.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::notifications::models::ClaimedPush;

pub struct NewPush<'a> {
    pub user_id: Uuid,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub priority: &'a str,
    pub due: chrono::DateTime<chrono::Utc>,
}

pub async fn insert(db: impl PgExecutor<'_>, p: &NewPush<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO notifications_pushnotification (user_id, notification_type, title, body, priority, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        p.user_id,
        p.kind,
        p.title,
        p.body,
        p.priority,
        p.due,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Claims up to `limit` due pushes, the most urgent first (SKIP LOCKED: workers share).
pub async fn claim(db: impl PgExecutor<'_>, limit: i64, claim_secs: f64) -> sqlx::Result<Vec<ClaimedPush>> {
    sqlx::query_as!(
        ClaimedPush,
        r#"WITH claimed AS (
               UPDATE notifications_pushnotification p
                  SET status = 'sending', claimed_until = now() + make_interval(secs => $2)
                WHERE p.id IN (
                    SELECT id FROM notifications_pushnotification
                     WHERE (status = 'pending' AND next_attempt_at <= now())
                        OR (status = 'sending' AND claimed_until < now())
                     ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low']::varchar[], priority),
                              next_attempt_at
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED)
            RETURNING p.id, p.user_id, p.notification_type, p.title, p.body, p.retry_count, p.priority,
                      p.next_attempt_at
           )
           SELECT id AS "id!", user_id AS "user_id!", notification_type AS "notification_type!", title AS "title!",
                  body AS "body!", retry_count AS "retry_count!"
             FROM claimed
            ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low']::varchar[], priority), next_attempt_at, id"#,
        limit,
        claim_secs,
    )
    .fetch_all(db)
    .await
}

pub async fn mark_sent(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE notifications_pushnotification SET status = 'sent', sent_at = now(), claimed_until = NULL,
                error_message = NULL
          WHERE id = $1 AND status = 'sending'",
        id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A failed attempt: back to pending with a backoff, or `failed` after the last retry
/// (returned as true).
pub async fn mark_failed(db: impl PgExecutor<'_>, id: Uuid, error: &str, backoff_secs: f64) -> sqlx::Result<bool> {
    let status = sqlx::query_scalar!(
        "UPDATE notifications_pushnotification
            SET retry_count = retry_count + 1,
                status = CASE WHEN retry_count + 1 > max_retries THEN 'failed' ELSE 'pending' END,
                next_attempt_at = now() + make_interval(secs => $3), claimed_until = NULL, error_message = $2
          WHERE id = $1 AND status = 'sending'
      RETURNING status",
        id,
        error,
        backoff_secs,
    )
    .fetch_optional(db)
    .await?;
    Ok(status.as_deref() == Some("failed"))
}
