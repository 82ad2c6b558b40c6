//! accounts_device and accounts_trusteddevice: the device API, trust (granted by the API or
//! at MFA verify), and what remediations end; every query is scoped to the owner, so
//! another user's device is simply not found. (Logins create and update devices inside
//! `open_session`.)

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
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

/// What trusting a device depends on, read under the device's row lock.
pub struct TrustFacts {
    pub compromised: bool,
    /// Known by its `X-Device-Fingerprint` (not only by its user agent).
    pub verified: bool,
    /// The asking session was opened on this device.
    pub current: bool,
}

/// Locks the user's device and reads what trusting it depends on; None when it is not
/// theirs.
pub async fn lock_for_trust(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
    session: Uuid,
) -> sqlx::Result<Option<TrustFacts>> {
    let row = sqlx::query!(
        r#"SELECT d.is_compromised, d.is_verified,
                  EXISTS (SELECT 1 FROM accounts_session s WHERE s.id = $3 AND s.device_id = d.id) AS "current!"
             FROM accounts_device d WHERE d.id = $1 AND d.user_id = $2 FOR UPDATE OF d"#,
        id,
        user,
        session
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| TrustFacts { compromised: r.is_compromised, verified: r.is_verified, current: r.current }))
}

/// Trusts the device (skip MFA) until `until`, replacing any live grant. The caller has
/// checked `lock_for_trust`.
pub async fn trust_device_by_id(db: &mut PgConnection, user: Uuid, id: Uuid, until: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_device SET is_trusted = true, trust_expires_at = $2, can_skip_mfa = true,
                mfa_skip_until = $2, updated_at = now()
          WHERE id = $1",
        id,
        until
    )
    .execute(&mut *db)
    .await?;
    renew_trust_grant(db, user, id, until).await
}

/// Records a trust grant in accounts_trusteddevice, ending the device's live one: at most
/// one is live per device.
async fn renew_trust_grant(db: &mut PgConnection, user: Uuid, device: Uuid, until: DateTime<Utc>) -> sqlx::Result<()> {
    end_trust_grants(&mut *db, device).await?;
    sqlx::query!(
        "INSERT INTO accounts_trusteddevice (user_id, device_id, trust_expires_at, can_skip_mfa, mfa_skip_until)
         VALUES ($1, $2, $3, true, $3)",
        user,
        device,
        until
    )
    .execute(db)
    .await?;
    Ok(())
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
        revoked.extend(super::sessions::revoke_sessions(db, user, Some(id), None, reason).await?);
    }
    Ok(revoked)
}

/// Locks the user's device until the transaction ends; false when it is not theirs.
pub async fn lock_own_device(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let found =
        sqlx::query_scalar!("SELECT id FROM accounts_device WHERE id = $1 AND user_id = $2 FOR UPDATE", id, user)
            .fetch_optional(db)
            .await?;
    Ok(found.is_some())
}

pub async fn delete_device(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM accounts_device WHERE id = $1 AND user_id = $2", id, user).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// Devices whose last coordinates lie within `km` of a point, nearest first: a box test
/// the GiST index on `ll_to_earth` answers, then the exact great-circle distance.
pub async fn devices_near(
    db: impl PgExecutor<'_>,
    lat: f64,
    lon: f64,
    km: f64,
    limit: i64,
) -> sqlx::Result<Vec<crate::accounts::models::NearDevice>> {
    sqlx::query_file_as!(crate::accounts::models::NearDevice, "queries/devices_near.sql", lat, lon, km, limit)
        .fetch_all(db)
        .await
}

/// The plan of `devices_near` (tests and diagnosis).
pub async fn explain_devices_near(db: impl PgExecutor<'_>, lat: f64, lon: f64, km: f64) -> sqlx::Result<Vec<String>> {
    let sql = include_str!("../../../queries/devices_near.sql");
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (COSTS OFF) {sql}")))
        .bind(lat)
        .bind(lon)
        .bind(km)
        .bind(100_i64)
        .fetch_all(db)
        .await
}

/// The raw client addresses accounts keeps, and what dates them (core::db::truncate_ips).
/// Consent records are not here: notifications keeps their address as evidence.
pub const IP_COLUMNS: &[crate::core::db::IpColumn] = &[
    crate::core::db::IpColumn { table: "accounts_session", ip: "ip_address", dated_by: "created_at" },
    crate::core::db::IpColumn { table: "accounts_device", ip: "ip_address", dated_by: "updated_at" },
    crate::core::db::IpColumn { table: "accounts_loginattempt", ip: "ip_address", dated_by: "created_at" },
    crate::core::db::IpColumn { table: "accounts_onetimetoken", ip: "ip_address", dated_by: "created_at" },
    crate::core::db::IpColumn { table: "accounts_auditlog", ip: "ip_address", dated_by: "created_at" },
];

/// Ends trust that has expired: the device no longer skips MFA, its grant is closed, and
/// a `trust_expired` device audit row says so. Returns the devices changed.
pub async fn expire_device_trust(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let n = sqlx::query_scalar!(
        r#"WITH expired AS (
               UPDATE accounts_device SET is_trusted = false, can_skip_mfa = false, updated_at = now()
                WHERE (is_trusted OR can_skip_mfa)
                  AND COALESCE(LEAST(trust_expires_at, mfa_skip_until), '-infinity') <= now()
               RETURNING id, user_id
           ), grants AS (
               UPDATE accounts_trusteddevice t SET is_trusted = false, revoked_at = now(), updated_at = now()
                 FROM expired WHERE t.device_id = expired.id AND t.is_trusted AND NOT t.is_deleted
               RETURNING 1
           ), audited AS (
               INSERT INTO audit_log_deviceauditlog (user_id, device_id, action, trust_state_change)
               SELECT user_id, id, 'trust_expired', 'trust expired' FROM expired
               RETURNING 1
           )
           SELECT count(*) AS "n!" FROM expired"#
    )
    .fetch_one(db)
    .await?;
    Ok(n as u64)
}

/// Ends the trust of the user's devices, all of them or all but the device of the session
/// `keep` (a password change keeps the device it was made from); returns the devices.
pub async fn end_trust(db: impl PgExecutor<'_>, user: Uuid, keep: Option<Uuid>) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        r#"WITH ended AS (
               UPDATE accounts_device SET is_trusted = false, trust_expires_at = NULL, can_skip_mfa = false,
                      mfa_skip_until = NULL, updated_at = now()
                WHERE user_id = $1 AND (is_trusted OR can_skip_mfa)
                  AND id IS DISTINCT FROM (SELECT device_id FROM accounts_session WHERE id = $2)
               RETURNING id
           ), grants AS (
               UPDATE accounts_trusteddevice t SET is_trusted = false, revoked_at = now(), updated_at = now()
                 FROM ended WHERE t.device_id = ended.id AND t.is_trusted AND NOT t.is_deleted
               RETURNING 1
           )
           SELECT id AS "id!" FROM ended"#,
        user,
        keep,
    )
    .fetch_all(db)
    .await
}

/// Whether the session runs on the user's device with this fingerprint key.
pub async fn session_on_device(db: impl PgExecutor<'_>, session: Uuid, fingerprint_hash: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM accounts_session s JOIN accounts_device d ON d.id = s.device_id
                           WHERE s.id = $1 AND d.fingerprint_hash = $2) AS "on!""#,
        session,
        fingerprint_hash
    )
    .fetch_one(db)
    .await
}

/// Finds or creates the user's device for this fingerprint and trusts it (skip MFA)
/// until `until`; the grant is recorded in accounts_trusteddevice. Returns the device id,
/// or None for a device marked compromised (it is never trusted again).
pub async fn trust_device(
    db: &mut sqlx::PgConnection,
    user: Uuid,
    fingerprint_hash: &str,
    user_agent: Option<&str>,
    ip: Option<IpNetwork>,
    until: DateTime<Utc>,
) -> sqlx::Result<Option<Uuid>> {
    let device = sqlx::query_scalar!(
        "INSERT INTO accounts_device
             (user_id, fingerprint_hash, user_agent, ip_address, is_verified, is_trusted, trust_expires_at,
              can_skip_mfa, mfa_skip_until, last_used_at)
         VALUES ($1, $2, $3, $4, true, true, $5, true, $5, now())
         ON CONFLICT (user_id, fingerprint_hash) DO UPDATE
            SET is_verified = true, is_trusted = true, trust_expires_at = $5, can_skip_mfa = true,
                mfa_skip_until = $5, last_used_at = now(), user_agent = COALESCE($3, accounts_device.user_agent),
                ip_address = COALESCE($4, accounts_device.ip_address), updated_at = now()
          WHERE NOT accounts_device.is_compromised
         RETURNING id",
        user,
        fingerprint_hash,
        user_agent,
        ip,
        until
    )
    .fetch_optional(&mut *db)
    .await?;
    let Some(device) = device else { return Ok(None) };
    renew_trust_grant(db, user, device, until).await?;
    Ok(Some(device))
}
