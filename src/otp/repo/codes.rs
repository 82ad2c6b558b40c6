//! Codes sent by email or SMS, the send budget, and the email and SMS methods they prove.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

/// Serialises the sends of one user and method until the transaction ends, then counts
/// the codes sent in the last hour: the hourly cap holds under concurrency and across
/// instances.
pub async fn lock_and_count_sends(db: &mut sqlx::PgConnection, user: Uuid, method: &str) -> sqlx::Result<i64> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))", user.to_string(), method)
        .fetch_one(&mut *db)
        .await?;
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM otp_otp WHERE user_id = $1 AND method = $2 AND created_at > now() - interval '1 hour'"#,
        user,
        method
    )
    .fetch_one(&mut *db)
    .await?;
    Ok(n)
}

/// Stores a new code (its keyed hash); earlier live codes for the same purpose and
/// challenge die, so only the newest one works.
#[allow(clippy::too_many_arguments)]
pub async fn insert_code(
    db: &mut sqlx::PgConnection,
    user: Uuid,
    challenge: Option<Uuid>,
    method: &str,
    purpose: &str,
    code_hash: &str,
    expires_at: DateTime<Utc>,
    max_attempts: i32,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE otp_otp SET is_valid = false
          WHERE user_id = $1 AND method = $2 AND purpose = $3 AND challenge_id IS NOT DISTINCT FROM $4 AND is_valid",
        user,
        method,
        purpose,
        challenge
    )
    .execute(&mut *db)
    .await?;
    sqlx::query!(
        "INSERT INTO otp_otp (user_id, challenge_id, method, code_hash, purpose, expires_at, max_attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user,
        challenge,
        method,
        code_hash,
        purpose,
        expires_at,
        max_attempts
    )
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// Uses the live code matching one of `hashes`: one UPDATE, exactly one winner.
pub async fn use_code(
    db: impl PgExecutor<'_>,
    user: Uuid,
    challenge: Option<Uuid>,
    method: &str,
    purpose: &str,
    hashes: &[String],
    ip: Option<IpNetwork>,
) -> sqlx::Result<bool> {
    let id = sqlx::query_scalar!(
        "UPDATE otp_otp SET used_at = now(), used_by_ip = $6, is_valid = false
          WHERE user_id = $1 AND challenge_id IS NOT DISTINCT FROM $2 AND method = $3 AND purpose = $4
            AND code_hash = ANY($5) AND is_valid AND used_at IS NULL AND expires_at > now()
            AND attempt_count < max_attempts
      RETURNING id",
        user,
        challenge,
        method,
        purpose,
        hashes,
        ip
    )
    .fetch_optional(db)
    .await?;
    Ok(id.is_some())
}

/// Counts a wrong guess against the live code; it dies at its attempt limit. Returns the
/// attempts it has left (0 when none was live).
pub async fn miss_code(
    db: impl PgExecutor<'_>,
    user: Uuid,
    challenge: Option<Uuid>,
    method: &str,
    purpose: &str,
) -> sqlx::Result<i32> {
    let left = sqlx::query_scalar!(
        r#"UPDATE otp_otp SET attempt_count = attempt_count + 1, is_valid = attempt_count + 1 < max_attempts
            WHERE user_id = $1 AND challenge_id IS NOT DISTINCT FROM $2 AND method = $3 AND purpose = $4
              AND is_valid AND used_at IS NULL AND expires_at > now()
        RETURNING max_attempts - attempt_count AS "left!""#,
        user,
        challenge,
        method,
        purpose
    )
    .fetch_optional(db)
    .await?;
    Ok(left.unwrap_or(0))
}

// The email and SMS methods: ownership is proven with a code before they count.

pub async fn put_pending_email_method(db: impl PgExecutor<'_>, user: Uuid, email: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO otp_emailmfamethod (user_id, email) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, updated_at = now()
          WHERE NOT otp_emailmfamethod.is_verified",
        user,
        email
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn put_pending_sms_method(db: impl PgExecutor<'_>, user: Uuid, phone: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO otp_smsmfamethod (user_id, phone_number) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET phone_number = EXCLUDED.phone_number, is_verified = false,
                verified_at = NULL, updated_at = now()",
        user,
        phone
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Counts a code sent for the method (shown in its row).
pub async fn note_sent(db: &mut sqlx::PgConnection, user: Uuid, method: &str) -> sqlx::Result<()> {
    if method == "email" {
        sqlx::query!(
            "UPDATE otp_emailmfamethod SET otp_sent_count = otp_sent_count + 1, last_otp_sent_at = now()
              WHERE user_id = $1",
            user
        )
        .execute(&mut *db)
        .await?;
    } else {
        sqlx::query!(
            "UPDATE otp_smsmfamethod SET otp_sent_count = otp_sent_count + 1, last_otp_sent_at = now()
              WHERE user_id = $1",
            user
        )
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}

pub async fn verify_method(db: &mut sqlx::PgConnection, user: Uuid, method: &str) -> sqlx::Result<()> {
    if method == "email" {
        sqlx::query!(
            "UPDATE otp_emailmfamethod SET is_verified = true, verified_at = now(), updated_at = now() WHERE user_id = $1",
            user
        )
        .execute(&mut *db)
        .await?;
    } else {
        sqlx::query!(
            "UPDATE otp_smsmfamethod SET is_verified = true, verified_at = now(), updated_at = now() WHERE user_id = $1",
            user
        )
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}

pub async fn delete_method(db: &mut sqlx::PgConnection, user: Uuid, method: &str) -> sqlx::Result<bool> {
    let done = if method == "email" {
        sqlx::query!("DELETE FROM otp_emailmfamethod WHERE user_id = $1", user).execute(&mut *db).await?
    } else {
        sqlx::query!("DELETE FROM otp_smsmfamethod WHERE user_id = $1", user).execute(&mut *db).await?
    };
    Ok(done.rows_affected() > 0)
}
