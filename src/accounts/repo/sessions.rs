//! accounts_session and accounts_refreshtokenrecord.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::{accounts::models::SessionView, audit_log::SessionEvent};

pub struct NewSessionRow<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub device_id: Option<Uuid>,
    pub access_jti: &'a str,
    pub refresh_jti: &'a str,
    pub ip: Option<IpNetwork>,
    pub user_agent: Option<&'a str>,
    pub country: Option<&'a str>,
    pub city: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    pub aal: i16,
    pub amr: &'a [String],
    pub mfa_method: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

pub struct NewRefreshRow<'a> {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// SHA-256 of the token.
    pub jti: &'a str,
    pub family_id: Uuid,
    pub parent_jti: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session in one statement: the session, its first refresh token, the user's
/// last login, the settled password attempt and the `login` audit row. One statement is
/// one atomic commit without BEGIN/COMMIT round trips, and the user row's lock is held for
/// this statement only (login is the hot path; see docs/performance.md). The audit columns
/// are audit_log's own view of the event (`SessionEvent::columns`).
pub async fn open_session(
    db: impl PgExecutor<'_>,
    s: &NewSessionRow<'_>,
    r: &NewRefreshRow<'_>,
    attempt: Option<Uuid>,
    event: &SessionEvent,
) -> sqlx::Result<()> {
    let e = event.columns();
    sqlx::query!(
        r#"WITH session AS (
               INSERT INTO accounts_session
                   (id, user_id, device_id, access_jti, refresh_jti, ip_address, user_agent, country, city, expires_at,
                    aal, amr, mfa_verified, mfa_verified_at, mfa_method_used, created_at, last_seen_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11::smallint = 2,
                       CASE WHEN $11::smallint = 2 THEN $14::timestamptz END, $13, $14, $14)
               RETURNING id
           ), refresh AS (
               INSERT INTO accounts_refreshtokenrecord (user_id, session_id, jti, family_id, created_at, expires_at)
               SELECT $2, session.id, $15, $16, $14, $10 FROM session
               RETURNING id
           ), stamped AS (
               UPDATE auth_user SET last_login = $14 WHERE id = $2 RETURNING id
           ), settled AS (
               UPDATE accounts_loginattempt SET user_id = $2, outcome = 'success', failure_reason = NULL
                WHERE id = $17 RETURNING id
           ), audit AS (
               INSERT INTO audit_log_sessionauditlog
                   (user_id, session_id, device_id, action, session_type, mfa_verified, mfa_method, country, city,
                    ip_address, risk_level, is_anomalous, anomaly_reasons, requires_review, metadata, error_message,
                    created_at)
               SELECT $2, session.id, $3, $18, $19, $20, $21, $22, $23, $30, $24, $25, $26, $27, $28, $29, $14
                 FROM session
               RETURNING 1
           )
           SELECT (SELECT count(*) FROM refresh) AS "refresh!", (SELECT count(*) FROM stamped) AS "stamped!",
                  (SELECT count(*) FROM settled) AS "settled!", (SELECT count(*) FROM audit) AS "audit!""#,
        s.id,
        s.user_id,
        s.device_id,
        s.access_jti,
        s.refresh_jti,
        s.ip,
        s.user_agent,
        s.country,
        s.city,
        s.expires_at,
        s.aal,
        s.amr,
        s.mfa_method,
        s.created_at,
        r.jti,
        r.family_id,
        attempt,
        e.action,
        e.session_type,
        event.mfa_verified,
        e.mfa_method,
        e.country,
        e.city,
        e.risk_level,
        event.flags.is_anomalous,
        e.anomaly_reasons.as_deref(),
        event.flags.requires_review,
        event.metadata,
        event.error_message,
        event.origin.ip,
    )
    .fetch_one(db)
    .await?;
    Ok(())
}

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

pub async fn revoke_family(db: impl PgExecutor<'_>, family_id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_refreshtokenrecord SET is_valid = false, revoked_at = COALESCE(revoked_at, now()),
                revocation_reason = COALESCE(revocation_reason, $2)
          WHERE family_id = $1",
        family_id,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes the given sessions of `user_id` that are still active, with their refresh
/// tokens; returns the ids revoked.
pub async fn revoke_sessions(
    db: &mut sqlx::PgConnection,
    user_id: Uuid,
    only: Option<Uuid>,
    except: Option<Uuid>,
    reason: &str,
) -> sqlx::Result<Vec<Uuid>> {
    let ids = sqlx::query_scalar!(
        "UPDATE accounts_session SET status = 'revoked', revoked_at = now(), revoked_reason = $4, updated_at = now()
          WHERE user_id = $1 AND status = 'active' AND ($2::uuid IS NULL OR id = $2)
            AND ($3::uuid IS NULL OR id <> $3)
      RETURNING id",
        user_id,
        only,
        except,
        reason,
    )
    .fetch_all(&mut *db)
    .await?;
    if !ids.is_empty() {
        sqlx::query!(
            "UPDATE accounts_refreshtokenrecord SET is_valid = false, revoked_at = COALESCE(revoked_at, now()),
                    revocation_reason = COALESCE(revocation_reason, $2)
              WHERE session_id = ANY($1) AND is_valid",
            &ids,
            reason,
        )
        .execute(&mut *db)
        .await?;
    }
    Ok(ids)
}

pub async fn active_sessions(db: impl PgExecutor<'_>, user_id: Uuid, current: Uuid) -> sqlx::Result<Vec<SessionView>> {
    sqlx::query_as!(
        SessionView,
        r#"SELECT id, device_id, ip_address, user_agent, country, city, created_at, expires_at, mfa_verified,
                  id = $2 AS "current!"
             FROM accounts_session
            WHERE user_id = $1 AND status = 'active' AND expires_at > now()
            ORDER BY created_at DESC"#,
        user_id,
        current,
    )
    .fetch_all(db)
    .await
}
