//! Refresh tokens: rotation (one statement in the common case), the careful path's row
//! locks, family revocation, and the cleanup of dead records.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::sessions::NewRefreshRow;
use crate::audit_log::SessionEvent;

pub async fn insert_refresh(db: impl PgExecutor<'_>, r: &NewRefreshRow<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_refreshtokenrecord (user_id, session_id, jti, family_id, parent_jti, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        r.user_id,
        r.session_id,
        r.jti,
        r.family_id,
        r.parent_jti,
        r.created_at,
        r.expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A refresh token record with its session, locked for the rest of the transaction.
#[derive(Debug)]
pub struct RefreshRecord {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub family_id: Uuid,
    pub is_valid: bool,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub session_active: bool,
    pub session_created_at: DateTime<Utc>,
    pub session_access_jti: String,
    pub aal: i16,
    pub amr: Vec<String>,
    /// The child token, sealed, while the reuse leeway lasts.
    pub child_sealed: Option<Vec<u8>>,
}

pub async fn lock_refresh(db: impl PgExecutor<'_>, jti: &str) -> sqlx::Result<Option<RefreshRecord>> {
    sqlx::query_as!(
        RefreshRecord,
        r#"SELECT r.user_id, r.session_id, r.family_id, r.is_valid, r.expires_at, r.rotated_at, r.revoked_at,
                  (s.status = 'active' AND s.expires_at > now()) AS "session_active!",
                  s.created_at AS session_created_at, s.access_jti AS session_access_jti, s.aal, s.amr,
                  r.child_sealed
             FROM accounts_refreshtokenrecord r JOIN accounts_session s ON s.id = r.session_id
            WHERE r.jti = $1
              FOR UPDATE OF r, s"#,
        jti
    )
    .fetch_optional(db)
    .await
}

/// Marks a token rotated at `at`; `child_sealed` keeps its child for the reuse leeway.
pub async fn mark_rotated(
    db: impl PgExecutor<'_>,
    jti: &str,
    at: DateTime<Utc>,
    child_sealed: Option<&[u8]>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_refreshtokenrecord SET is_valid = false, rotated_at = $2, child_sealed = $3 WHERE jti = $1",
        jti,
        at,
        child_sealed
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Wipes the sealed children kept past the reuse leeway (the cleanup job).
pub async fn wipe_refresh_children(db: impl PgExecutor<'_>, leeway_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE accounts_refreshtokenrecord SET child_sealed = NULL
          WHERE child_sealed IS NOT NULL AND rotated_at < now() - make_interval(secs => $1)",
        leeway_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn update_session_tokens(
    db: impl PgExecutor<'_>,
    session_id: Uuid,
    access_jti: &str,
    refresh_jti: &str,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_session
            SET access_jti = $2, refresh_jti = $3, expires_at = $4, last_seen_at = now(), updated_at = now(),
                total_requests = total_requests + 1
          WHERE id = $1",
        session_id,
        access_jti,
        refresh_jti,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes a token family. A family is one session's chain, so it is found through the
/// session's index (migration `20261205000001_refresh_lean` dropped the family's own).
pub async fn revoke_family(
    db: impl PgExecutor<'_>,
    session_id: Uuid,
    family_id: Uuid,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_refreshtokenrecord SET is_valid = false, revoked_at = COALESCE(revoked_at, now()),
                revocation_reason = COALESCE(revocation_reason, $3)
          WHERE session_id = $1 AND family_id = $2",
        session_id,
        family_id,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes refresh records expired for over `grace_secs`: past its expiry a token is
/// refused anyway, so its record no longer serves reuse detection.
pub async fn delete_expired_refresh_records(db: impl PgExecutor<'_>, grace_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM accounts_refreshtokenrecord WHERE expires_at < now() - make_interval(secs => $1)",
        grace_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// What the one-statement rotation needs besides the presented token's hash.
pub struct Rotation<'a> {
    /// SHA-256 of the presented refresh token.
    pub jti: &'a str,
    pub child_jti: &'a str,
    pub access_jti: &'a str,
    /// The rotated token's child, sealed, kept for the reuse leeway (None: no leeway).
    pub child_sealed: Option<&'a [u8]>,
    pub now: DateTime<Utc>,
    pub refresh_ttl_secs: f64,
    pub session_max_age_secs: f64,
    /// Whether the rotation's commit waits for its WAL flush (`REFRESH_SYNCHRONOUS_COMMIT`).
    pub synchronous_commit: bool,
    /// The hashed `X-Device-Fingerprint` the client sent, if any: a refresh from another
    /// known device of the same user is recorded (`switched`).
    pub fingerprint_hash: Option<&'a str>,
}

/// A rotation done: the user (for the response) and the session's assurance.
pub struct Rotated {
    pub user: crate::accounts::models::UserRow,
    pub session_id: Uuid,
    pub aal: i16,
    pub amr: Vec<String>,
}

/// Rotates a live, unrotated refresh token in one statement (autocommit, one round trip):
/// claims it (`rotated_at` set; a concurrent rotation of the same token waits on its row
/// and then finds it rotated), inserts the child in the family, moves the session to the
/// new token ids (expiry capped by the session's maximum age) and writes the `refresh`
/// audit row (`event`'s columns, with the claimed user and session). None when the token
/// is not live and unrotated: the caller's careful path tells replay, reuse and invalid.
/// With `synchronous_commit` false the statement's own transaction commits without waiting
/// for its WAL flush (docs/performance.md, "Refresh and the WAL flush").
pub async fn rotate_refresh(
    db: impl PgExecutor<'_>,
    r: &Rotation<'_>,
    event: &SessionEvent,
) -> sqlx::Result<Option<Rotated>> {
    let e = event.columns();
    let row = sqlx::query!(
        r#"WITH claimed AS (
               UPDATE accounts_refreshtokenrecord t
                  SET is_valid = false, rotated_at = $2, child_sealed = $3
                 FROM accounts_session s, auth_user u
                WHERE t.jti = $1 AND t.rotated_at IS NULL AND t.is_valid AND t.revoked_at IS NULL AND t.expires_at > $2
                  AND s.id = t.session_id AND s.status = 'active' AND s.expires_at > $2
                  AND s.created_at + make_interval(secs => $7) > $2
                  AND u.id = t.user_id AND u.is_active
               RETURNING t.user_id, t.session_id, t.family_id, s.aal, s.amr, s.device_id AS previous_device,
                         LEAST($2 + make_interval(secs => $6), s.created_at + make_interval(secs => $7)) AS expires_at
           ), switch AS (
               -- Another known device of the same user presents the session's refresh token:
               -- allowed, and recorded (`switched`, with the device the session runs on as
               -- `previous_device_id`) as a risk signal for review. The session stays on the
               -- device it was opened on: a fingerprint is the client's word, and trusting a
               -- device needs a session opened on it.
               SELECT d.id FROM accounts_device d, claimed
                WHERE $21::text IS NOT NULL AND d.user_id = claimed.user_id AND d.fingerprint_hash = $21
                  AND d.id IS DISTINCT FROM claimed.previous_device
           ), switched AS (
               INSERT INTO audit_log_sessiondevicelinkauditlog
                   (user_id, session_id, device_id, link_action, previous_device_id, ip_address, risk_level,
                    is_anomalous, anomaly_reasons, requires_review, created_at)
               SELECT claimed.user_id, claimed.session_id, switch.id, 'switched', claimed.previous_device, $14,
                      'medium', true, ARRAY['device_switched'], true, $2
                 FROM claimed, switch
               RETURNING 1
           ), child AS (
               INSERT INTO accounts_refreshtokenrecord (user_id, session_id, jti, family_id, parent_jti, created_at, expires_at)
               SELECT user_id, session_id, $4, family_id, $1, $2, expires_at FROM claimed
               RETURNING 1
           ), moved AS (
               UPDATE accounts_session s
                  SET access_jti = $5, refresh_jti = $4, expires_at = claimed.expires_at, last_seen_at = $2,
                      updated_at = $2, total_requests = s.total_requests + 1
                 FROM claimed WHERE s.id = claimed.session_id
               RETURNING 1
           ), audit AS (
               INSERT INTO audit_log_sessionauditlog
                   (user_id, session_id, action, session_type, mfa_verified, mfa_method, country, city, ip_address,
                    risk_level, is_anomalous, anomaly_reasons, requires_review, metadata, created_at)
               SELECT user_id, session_id, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $2 FROM claimed
               RETURNING 1
           ), durability AS (
               SELECT set_config('synchronous_commit', CASE WHEN $20 THEN 'on' ELSE 'off' END, true) AS setting
           )
           SELECT u.id, u.email, u.username, u.password_hash, u.first_name, u.last_name, u.is_active, u.is_staff,
                  u.is_superuser, u.email_verified, COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined,
                  u.last_login, claimed.session_id, claimed.aal, claimed.amr,
                  (SELECT count(*) FROM child) + (SELECT count(*) FROM moved) + (SELECT count(*) FROM audit)
                    + (SELECT count(*) FROM switched) AS "writes!",
                  (SELECT setting FROM durability) AS durability
             FROM claimed JOIN auth_user u ON u.id = claimed.user_id
             LEFT JOIN accounts_mfasettings m ON m.user_id = u.id"#,
        r.jti,
        r.now,
        r.child_sealed,
        r.child_jti,
        r.access_jti,
        r.refresh_ttl_secs,
        r.session_max_age_secs,
        e.action,
        e.session_type,
        event.mfa_verified,
        e.mfa_method,
        e.country,
        e.city,
        event.origin.ip,
        e.risk_level,
        event.flags.is_anomalous,
        e.anomaly_reasons.as_deref(),
        event.flags.requires_review,
        event.metadata,
        r.synchronous_commit,
        r.fingerprint_hash,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| Rotated { user: user_row!(r), session_id: r.session_id, aal: r.aal, amr: r.amr }))
}
