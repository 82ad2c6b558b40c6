//! SQL of the otp app: TOTP devices, backup codes, emailed/texted codes, the email and SMS
//! methods, recoveries and challenges. Functions take any executor; the caller's
//! transaction decides what commits together. Every "use once" is one UPDATE, so of
//! concurrent uses exactly one finds the row still unused.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::models::{Challenge, Factors};

/// Every factor of a user in one round trip.
pub async fn factors(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Factors> {
    let r = sqlx::query!(
        r#"SELECT
             COALESCE((SELECT is_verified FROM otp_totpdevice WHERE user_id = $1), false) AS "totp!",
             (SELECT is_verified FROM otp_emailmfamethod WHERE user_id = $1) AS email_verified,
             (SELECT email FROM otp_emailmfamethod WHERE user_id = $1) AS email_address,
             (SELECT is_verified FROM otp_smsmfamethod WHERE user_id = $1) AS sms_verified,
             (SELECT phone_number FROM otp_smsmfamethod WHERE user_id = $1) AS phone,
             (SELECT count(*) FROM otp_backupcode WHERE user_id = $1 AND used_at IS NULL) AS "backup!""#,
        user
    )
    .fetch_one(db)
    .await?;
    Ok(Factors {
        totp: r.totp,
        email: r.email_verified == Some(true),
        sms: r.sms_verified == Some(true),
        backup_codes_remaining: r.backup,
        phone: r.phone.filter(|_| r.sms_verified.is_some()),
        email_address: r.email_address,
    })
}

/// The factors of a user proven after `since` (an undone email change lists them).
pub async fn factors_added_since(
    db: impl PgExecutor<'_>,
    user: Uuid,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT m AS "m!" FROM (
               SELECT 'totp' AS m FROM otp_totpdevice WHERE user_id = $1 AND is_verified AND verified_at > $2
               UNION ALL
               SELECT 'email' FROM otp_emailmfamethod WHERE user_id = $1 AND is_verified AND verified_at > $2
               UNION ALL
               SELECT 'sms' FROM otp_smsmfamethod WHERE user_id = $1 AND is_verified AND verified_at > $2
           ) added"#,
        user,
        since
    )
    .fetch_all(db)
    .await
}

// TOTP devices.

/// Stores a new, unconfirmed secret; returns false when a confirmed device already exists
/// (it must be removed first).
pub async fn put_pending_totp(db: impl PgExecutor<'_>, user: Uuid, sealed: &[u8]) -> sqlx::Result<bool> {
    let id = sqlx::query_scalar!(
        "INSERT INTO otp_totpdevice (user_id, secret_encrypted) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE
            SET secret_encrypted = EXCLUDED.secret_encrypted, last_used_step = NULL, updated_at = now()
          WHERE NOT otp_totpdevice.is_verified
         RETURNING id",
        user,
        sealed
    )
    .fetch_optional(db)
    .await?;
    Ok(id.is_some())
}

/// The sealed secret and whether the device is confirmed.
pub async fn totp_secret(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Option<(Vec<u8>, bool)>> {
    let row = sqlx::query!("SELECT secret_encrypted, is_verified FROM otp_totpdevice WHERE user_id = $1", user)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| (r.secret_encrypted, r.is_verified)))
}

/// Accepts the code of time step `step`: only a step later than the last one accepted, so
/// a code is good once (replay refused, also under concurrency: the row lock orders the
/// updates and the later one finds the step taken). `confirm` also marks the device
/// verified; otherwise the device must be verified already.
pub async fn accept_totp_step(db: impl PgExecutor<'_>, user: Uuid, step: i64, confirm: bool) -> sqlx::Result<bool> {
    let id = sqlx::query_scalar!(
        "UPDATE otp_totpdevice
            SET last_used_step = $2, is_verified = true, verified_at = COALESCE(verified_at, now()), updated_at = now()
          WHERE user_id = $1 AND (last_used_step IS NULL OR last_used_step < $2) AND (is_verified OR $3)
      RETURNING id",
        user,
        step,
        confirm
    )
    .fetch_optional(db)
    .await?;
    Ok(id.is_some())
}

pub async fn delete_totp(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM otp_totpdevice WHERE user_id = $1", user).execute(db).await?;
    Ok(done.rows_affected() > 0)
}

// Backup codes.

/// Replaces the user's backup codes with these keyed hashes: the old set dies.
pub async fn replace_backup_codes(db: &mut sqlx::PgConnection, user: Uuid, hashes: &[String]) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM otp_backupcode WHERE user_id = $1", user).execute(&mut *db).await?;
    sqlx::query!(
        "INSERT INTO otp_backupcode (user_id, code_hash) SELECT $1, h FROM unnest($2::text[]) AS h",
        user,
        hashes
    )
    .execute(&mut *db)
    .await?;
    sqlx::query!("UPDATE otp_totpdevice SET backup_codes_generated_at = now() WHERE user_id = $1", user)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// Uses the unused code whose hash is among `hashes` (one per known key); one UPDATE, so
/// of concurrent uses exactly one succeeds.
pub async fn use_backup_code(
    db: impl PgExecutor<'_>,
    user: Uuid,
    hashes: &[String],
    ip: Option<IpNetwork>,
) -> sqlx::Result<bool> {
    let id = sqlx::query_scalar!(
        "UPDATE otp_backupcode SET used_at = now(), used_by_ip = $3
          WHERE id = (SELECT id FROM otp_backupcode
                       WHERE user_id = $1 AND code_hash = ANY($2) AND used_at IS NULL LIMIT 1)
            AND used_at IS NULL
      RETURNING id",
        user,
        hashes,
        ip
    )
    .fetch_optional(db)
    .await?;
    Ok(id.is_some())
}

pub async fn delete_backup_codes(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM otp_backupcode WHERE user_id = $1", user).execute(db).await?;
    Ok(())
}

pub async fn insert_recovery(
    db: impl PgExecutor<'_>,
    user: Uuid,
    method: &str,
    ip: Option<IpNetwork>,
    successful: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO otp_mfarecovery (user_id, recovery_method, used_at, used_by_ip, is_successful)
         VALUES ($1, $2, now(), $3, $4)",
        user,
        method,
        ip,
        successful
    )
    .execute(db)
    .await?;
    Ok(())
}

// Emailed and texted codes.

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
pub async fn note_sent(db: impl PgExecutor<'_>, user: Uuid, method: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE otp_emailmfamethod SET otp_sent_count = otp_sent_count + 1, last_otp_sent_at = now()
          WHERE user_id = $1 AND $2 = 'email'",
        user,
        method
    )
    .execute(db)
    .await?;
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

// Challenges.

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
        "UPDATE otp_mfachallenge SET expires_at = now()
          WHERE user_id = $1 AND verified_at IS NULL AND expires_at > now()",
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

/// Expired challenges and codes, deleted by the cleanup job; returns (challenges, codes).
pub async fn delete_expired(db: &mut sqlx::PgConnection) -> sqlx::Result<(u64, u64)> {
    let codes = sqlx::query!("DELETE FROM otp_otp WHERE expires_at < now() - interval '1 hour'")
        .execute(&mut *db)
        .await?
        .rows_affected();
    let challenges = sqlx::query!("DELETE FROM otp_mfachallenge WHERE expires_at < now() - interval '1 hour'")
        .execute(&mut *db)
        .await?
        .rows_affected();
    Ok((challenges, codes))
}

/// The addresses codes were used from, and what dates them (core::db::truncate_ips).
pub const IP_COLUMNS: &[crate::core::db::IpColumn] = &[
    crate::core::db::IpColumn { table: "otp_backupcode", ip: "used_by_ip", dated_by: "used_at" },
    crate::core::db::IpColumn { table: "otp_mfarecovery", ip: "used_by_ip", dated_by: "used_at" },
    crate::core::db::IpColumn { table: "otp_otp", ip: "used_by_ip", dated_by: "used_at" },
];
