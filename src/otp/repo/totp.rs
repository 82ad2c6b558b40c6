//! TOTP devices: the pending secret, the confirmed one, and the last step accepted (a
//! code is good once).

use sqlx::PgExecutor;
use uuid::Uuid;

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
