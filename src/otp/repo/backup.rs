//! Backup codes (hashed, each good once) and the recoveries that used them.

use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

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
