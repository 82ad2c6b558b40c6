//! The digest's reads and writes on the email outbox and the user's preference.

use sqlx::PgExecutor;
use uuid::Uuid;

/// A held email, as the digest lists it.
pub struct Held {
    pub id: Uuid,
    pub to_email: String,
    pub subject: String,
    pub body: String,
}

/// Users with held emails whose digest period has passed (or who went back to
/// real-time: what they held goes now).
pub async fn due_users(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT e.user_id AS "user_id!"
             FROM notifications_emailnotification e
             LEFT JOIN notifications_notificationpreference p ON p.user_id = e.user_id
            WHERE e.status = 'held'
              AND (p.user_id IS NULL OR p.digest_frequency = 'real-time' OR p.last_digest_at IS NULL
                   OR p.last_digest_at <= now() - CASE p.digest_frequency
                                                       WHEN 'hourly' THEN interval '1 hour'
                                                       WHEN 'daily' THEN interval '1 day'
                                                       ELSE interval '7 days' END)"#
    )
    .fetch_all(db)
    .await
}

/// The user's held emails, oldest first, locked (SKIP LOCKED: a second runner takes none).
pub async fn take_held(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<Held>> {
    sqlx::query_as!(
        Held,
        "SELECT id, to_email, subject, body FROM notifications_emailnotification
          WHERE user_id = $1 AND status = 'held' ORDER BY created_at, id FOR UPDATE SKIP LOCKED",
        user_id,
    )
    .fetch_all(db)
    .await
}

/// The held emails now travel in digest `digest`; the user's last digest is now.
pub async fn mark_digested(db: &mut sqlx::PgConnection, user_id: Uuid, ids: &[Uuid], digest: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE notifications_emailnotification SET status = 'digested', digest_id = $2 WHERE id = ANY($1)",
        ids,
        digest,
    )
    .execute(&mut *db)
    .await?;
    sqlx::query!(
        "INSERT INTO notifications_notificationpreference (user_id, last_digest_at) VALUES ($1, now())
         ON CONFLICT (user_id) DO UPDATE SET last_digest_at = now()",
        user_id,
    )
    .execute(&mut *db)
    .await?;
    Ok(())
}
