//! MFA challenges: opened at login, locked while answered, failed, closed.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::otp::models::Challenge;

pub async fn insert_challenge(
    db: impl PgExecutor<'_>,
    user: Uuid,
    session: Option<Uuid>,
    kind: &str,
    expires_at: DateTime<Utc>,
    metadata: serde_json::Value,
) -> sqlx::Result<Challenge> {
    sqlx::query_as!(
        Challenge,
        "INSERT INTO otp_mfachallenge (user_id, session_id, challenge_type, expires_at, metadata)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, challenge_id, user_id, session_id, device_id, challenge_type, expires_at, verified_at,
                   failed_attempts, max_attempts, metadata",
        user,
        session,
        kind,
        expires_at,
        metadata
    )
    .fetch_one(db)
    .await
}

/// The challenge clients call `challenge_id`, locked until the transaction ends: the
/// verifications of one challenge run one after another.
pub async fn lock_challenge(db: impl PgExecutor<'_>, challenge_id: Uuid) -> sqlx::Result<Option<Challenge>> {
    sqlx::query_as!(
        Challenge,
        "SELECT id, challenge_id, user_id, session_id, device_id, challenge_type, expires_at, verified_at,
                failed_attempts, max_attempts, metadata
           FROM otp_mfachallenge WHERE challenge_id = $1 FOR UPDATE",
        challenge_id
    )
    .fetch_optional(db)
    .await
}

/// Ends the user's challenges still waiting for a second factor; returns how many. A
/// verification in flight holds its challenge's row lock, so this waits for it: a session
/// it opened is committed before the caller revokes the sessions.
pub async fn end_open_challenges(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"UPDATE otp_mfachallenge SET expires_at = now(), metadata = COALESCE(metadata, '{}') || '{"ended": true}'
            WHERE user_id = $1 AND verified_at IS NULL AND expires_at > now()"#,
        user
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Counts a wrong code; returns the attempts left.
pub async fn fail_challenge(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        r#"UPDATE otp_mfachallenge SET failed_attempts = failed_attempts + 1 WHERE id = $1
        RETURNING max_attempts - failed_attempts AS "left!""#,
        id
    )
    .fetch_one(db)
    .await
}

/// Serialises the answers of one user and method until the transaction ends.
pub async fn lock_answers(db: &mut sqlx::PgConnection, user: Uuid, method: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('answer/' || $1::text || '/' || $2, 0))",
        user.to_string(),
        method
    )
    .fetch_one(&mut *db)
    .await?;
    Ok(())
}

/// Ends a challenge at its attempt limit (a method with fewer attempts than the challenge
/// was answered wrongly too often).
pub async fn exhaust_challenge(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("UPDATE otp_mfachallenge SET failed_attempts = max_attempts WHERE id = $1", id).execute(db).await?;
    Ok(())
}

pub async fn close_challenge(db: impl PgExecutor<'_>, id: Uuid, device: Option<Uuid>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE otp_mfachallenge SET verified_at = now(), device_id = COALESCE($2, device_id) WHERE id = $1",
        id,
        device
    )
    .execute(db)
    .await?;
    Ok(())
}
