//! accounts_device and accounts_trusteddevice as the device API sees them; every query
//! is scoped to the owner, so another user's device is simply not found. (Logins create
//! and update devices inside `open_session`; MFA trust at verify is in `mfa.rs`.)

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::accounts::models::DeviceView;

/// The user's devices (or the one `only`), most recently used first; `current` marks the
/// device of the asking session.
pub async fn devices(
    db: impl PgExecutor<'_>,
    user: Uuid,
    session: Uuid,
    only: Option<Uuid>,
) -> sqlx::Result<Vec<DeviceView>> {
    sqlx::query_as!(
        DeviceView,
        r#"SELECT d.id, d.device_name, d.device_type, d.os, d.browser, d.browser_version, d.is_verified,
                  (d.is_trusted AND COALESCE(d.trust_expires_at > now(), false)) AS "is_trusted!",
                  d.trust_expires_at, d.is_compromised, d.risk_score, d.last_used_at, d.created_at,
                  EXISTS (SELECT 1 FROM accounts_session s WHERE s.id = $2 AND s.device_id = d.id) AS "current!"
             FROM accounts_device d
            WHERE d.user_id = $1 AND ($3::uuid IS NULL OR d.id = $3)
            ORDER BY d.last_used_at DESC NULLS LAST, d.created_at DESC"#,
        user,
        session,
        only,
    )
    .fetch_all(db)
    .await
}

/// Renames; returns the old name (Some(None) when it had none), None when not found.
pub async fn rename_device(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
    name: &str,
) -> sqlx::Result<Option<Option<String>>> {
    sqlx::query_scalar!(
        r#"UPDATE accounts_device d SET device_name = $3, updated_at = now()
             FROM accounts_device old WHERE old.id = d.id AND d.id = $2 AND d.user_id = $1
           RETURNING old.device_name"#,
        user,
        id,
        name
    )
    .fetch_optional(db)
    .await
}

pub enum TrustOutcome {
    Trusted,
    NotFound,
    Compromised,
}

/// Trusts the device (skip MFA) until `until`, replacing any live grant.
pub async fn trust_device_by_id(
    db: &mut PgConnection,
    user: Uuid,
    id: Uuid,
    until: DateTime<Utc>,
) -> sqlx::Result<TrustOutcome> {
    let compromised = sqlx::query_scalar!(
        "SELECT is_compromised FROM accounts_device WHERE id = $1 AND user_id = $2 FOR UPDATE",
        id,
        user
    )
    .fetch_optional(&mut *db)
    .await?;
    match compromised {
        None => return Ok(TrustOutcome::NotFound),
        Some(true) => return Ok(TrustOutcome::Compromised),
        Some(false) => {}
    }
    sqlx::query!(
        "UPDATE accounts_device SET is_trusted = true, trust_expires_at = $2, can_skip_mfa = true,
                mfa_skip_until = $2, updated_at = now()
          WHERE id = $1",
        id,
        until
    )
    .execute(&mut *db)
    .await?;
    end_trust_grants(&mut *db, id).await?;
    sqlx::query!(
        "INSERT INTO accounts_trusteddevice (user_id, device_id, trust_expires_at, can_skip_mfa, mfa_skip_until)
         VALUES ($1, $2, $3, true, $3)",
        user,
        id,
        until
    )
    .execute(&mut *db)
    .await?;
    Ok(TrustOutcome::Trusted)
}

async fn end_trust_grants(db: &mut PgConnection, device: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_trusteddevice SET is_trusted = false, revoked_at = now(), updated_at = now()
          WHERE device_id = $1 AND is_trusted AND NOT is_deleted",
        device
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ends the device's trust; false when it is not the user's.
pub async fn untrust_device(db: &mut PgConnection, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let found = sqlx::query!(
        "UPDATE accounts_device SET is_trusted = false, trust_expires_at = NULL, can_skip_mfa = false,
                mfa_skip_until = NULL, updated_at = now()
          WHERE id = $1 AND user_id = $2",
        id,
        user
    )
    .execute(&mut *db)
    .await?
    .rows_affected()
        == 1;
    if found {
        end_trust_grants(db, id).await?;
    }
    Ok(found)
}

/// Marks the device compromised and ends its trust; false when it is not the user's.
pub async fn mark_device_compromised(db: &mut PgConnection, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let found = sqlx::query!(
        "UPDATE accounts_device SET is_compromised = true, is_trusted = false, trust_expires_at = NULL,
                can_skip_mfa = false, mfa_skip_until = NULL, risk_score = 100, last_risk_assessment = now(),
                updated_at = now()
          WHERE id = $1 AND user_id = $2",
        id,
        user
    )
    .execute(&mut *db)
    .await?
    .rows_affected()
        == 1;
    if found {
        end_trust_grants(db, id).await?;
    }
    Ok(found)
}

/// Revokes the user's active sessions on the device, with their refresh tokens.
pub async fn revoke_device_sessions(
    db: &mut PgConnection,
    user: Uuid,
    device: Uuid,
    reason: &str,
) -> sqlx::Result<Vec<Uuid>> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM accounts_session WHERE user_id = $1 AND device_id = $2 AND status = 'active'",
        user,
        device
    )
    .fetch_all(&mut *db)
    .await?;
    let mut revoked = Vec::with_capacity(ids.len());
    for id in ids {
        revoked.extend(super::revoke_sessions(db, user, Some(id), None, reason).await?);
    }
    Ok(revoked)
}

pub async fn delete_device(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM accounts_device WHERE id = $1 AND user_id = $2", id, user).execute(db).await?;
    Ok(done.rows_affected() == 1)
}
