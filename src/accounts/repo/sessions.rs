//! accounts_session and accounts_refreshtokenrecord.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{
    accounts::models::{DeviceSeen, SessionView},
    audit_log::SessionEvent,
};

pub struct NewSessionRow<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The device it runs on, found or created by (user, fingerprint hash).
    pub device: &'a DeviceSeen,
    /// The login's risk score; the device keeps the latest.
    pub risk_score: i32,
    /// High risk: the session is marked suspicious (with the reasons) and for MFA recheck.
    pub suspicious_reason: Option<String>,
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

/// Opens a session in one statement: the device (found or created by user and fingerprint,
/// its usage and risk updated), the session linked to it, its first refresh token, the
/// user's last login, the settled password attempt, the `login` audit row (and
/// `suspicious_activity` when the risk is high), the link audit row and the device audit
/// rows: `registered` (new), `new_location` (a known device from a new country),
/// `risk_changed` (anomalous), `seen` (a known device used again), `verified` (its first
/// second factor). One statement is
/// one atomic commit without BEGIN/COMMIT round trips, and the user row's lock is held for
/// this statement only (login is the hot path; see docs/performance.md). The audit columns
/// are audit_log's own view of the event (`SessionEvent::columns`).
pub async fn open_session(
    db: &mut PgConnection,
    s: &NewSessionRow<'_>,
    r: &NewRefreshRow<'_>,
    attempt: Option<Uuid>,
    event: &SessionEvent,
) -> sqlx::Result<OpenedSession> {
    let e = event.columns();
    let d = s.device;
    let (latitude, longitude) = d.coordinates.unzip();
    // A device row another login inserted after this statement's snapshot was taken and
    // that the upsert then left alone is invisible to the fallback SELECT: nothing was
    // opened (the session insert hangs off `device`), so the statement runs once more with
    // a fresh snapshot. The writes not tied to the device repeat idempotently.
    for _ in 0..2 {
        let row = sqlx::query!(
            r#"WITH upserted AS (
                   INSERT INTO accounts_device AS d
                       (user_id, fingerprint_hash, is_verified, device_type, os, browser, browser_version, user_agent,
                        ip_address, latitude, longitude, last_used_at, risk_score, last_risk_assessment)
                   VALUES ($2, $3, $31, $32, $33, $34, $35, $7, $6, $36::float8, $37::float8, $14, $38, $14)
                   ON CONFLICT (user_id, fingerprint_hash) DO UPDATE
                      SET is_verified = d.is_verified OR EXCLUDED.is_verified, device_type = EXCLUDED.device_type,
                          os = EXCLUDED.os, browser = EXCLUDED.browser, browser_version = EXCLUDED.browser_version,
                          user_agent = EXCLUDED.user_agent, ip_address = EXCLUDED.ip_address,
                          latitude = COALESCE(EXCLUDED.latitude, d.latitude),
                          longitude = COALESCE(EXCLUDED.longitude, d.longitude),
                          last_used_at = EXCLUDED.last_used_at, risk_score = EXCLUDED.risk_score,
                          last_risk_assessment = EXCLUDED.last_risk_assessment, updated_at = now()
                      -- The same device signing in again within a minute, from the same place
                      -- with the same score, leaves its row as it is: last_used_at keeps a
                      -- minute's resolution and a burst of logins writes no device versions.
                      WHERE d.last_used_at IS NULL OR d.last_used_at < EXCLUDED.last_used_at - interval '1 minute'
                         OR (EXCLUDED.is_verified AND NOT d.is_verified)
                         OR d.risk_score IS DISTINCT FROM EXCLUDED.risk_score
                         OR d.ip_address IS DISTINCT FROM EXCLUDED.ip_address
                         OR d.user_agent IS DISTINCT FROM EXCLUDED.user_agent
                         OR (EXCLUDED.latitude IS NOT NULL
                             AND (d.latitude, d.longitude) IS DISTINCT FROM (EXCLUDED.latitude, EXCLUDED.longitude))
                   RETURNING d.id, (d.xmax = 0) AS created
               ), device AS (
                   -- touched: a known device whose row this login updated (not within a
                   -- minute of its last use), which the device audit records as `seen`.
                   SELECT id, created, NOT created AS touched FROM upserted
                   UNION ALL
                   SELECT id, false, false FROM accounts_device
                    WHERE user_id = $2 AND fingerprint_hash = $3 AND NOT EXISTS (SELECT 1 FROM upserted)
               ), session AS (
                   INSERT INTO accounts_session
                       (id, user_id, device_id, access_jti, refresh_jti, ip_address, user_agent, country, city, expires_at,
                        aal, amr, mfa_verified, mfa_verified_at, mfa_method_used, created_at, last_seen_at,
                        is_suspicious, suspicious_reason, requires_mfa_recheck)
                   SELECT $1, $2, device.id, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11::smallint = 2,
                          CASE WHEN $11::smallint = 2 THEN $14::timestamptz END, $13, $14, $14,
                          $39::text IS NOT NULL, $39, $39::text IS NOT NULL
                     FROM device
                   RETURNING id, device_id
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
                   SELECT $2, session.id, session.device_id, a.action, $19, $20, $21, $22, $23, $30, $24, $25, $26, $27,
                          $28, $29, $14
                     FROM session,
                          -- A high-risk login (marked for review) is also `suspicious_activity`.
                          (VALUES ($18::varchar), ('suspicious_activity')) a(action)
                    WHERE a.action = $18 OR $27
                   RETURNING 1
               ), link AS (
                   INSERT INTO audit_log_sessiondevicelinkauditlog
                       (user_id, session_id, device_id, link_action, ip_address, risk_level, is_anomalous, anomaly_reasons,
                        requires_review, created_at)
                   SELECT $2, session.id, session.device_id, a.action, $30, $24, $25, $26, $27, $14
                     FROM session, (VALUES ('linked'), ('verified')) a(action)
                    -- An aal 2 session's link is proven by its second factor from the start.
                    WHERE a.action = 'linked' OR $11::smallint = 2
                   RETURNING 1
               ), device_audit AS (
                   INSERT INTO audit_log_deviceauditlog
                       (user_id, device_id, session_id, action, device_type, browser, os, risk_score, risk_level,
                        is_anomalous, anomaly_reasons, country, city, latitude, longitude, ip_address, requires_review,
                        created_at)
                   SELECT $2, device.id, $1, a.action,
                          $32, $34, $33, $38, $24, $25, $26, $22, $23, $36::float8, $37::float8, $30, $27, $14
                     FROM device,
                          LATERAL (VALUES
                              (CASE WHEN device.created THEN 'registered'
                                    WHEN 'new_country' = ANY($26::text[]) THEN 'new_location'
                                    WHEN $25 THEN 'risk_changed'
                                    WHEN device.touched THEN 'seen' END),
                              -- The first second factor proven on this device.
                              (CASE WHEN $11::smallint = 2 AND NOT EXISTS (
                                        SELECT 1 FROM accounts_session x WHERE x.device_id = device.id AND x.mfa_verified)
                                    THEN 'verified' END)
                          ) a(action)
                    WHERE a.action IS NOT NULL
                   RETURNING 1
               )
               SELECT device.id AS "device_id!", device.created AS "created!",
                      (SELECT count(*) FROM refresh) AS "refresh!", (SELECT count(*) FROM stamped) AS "stamped!",
                      (SELECT count(*) FROM settled) AS "settled!", (SELECT count(*) FROM audit) AS "audit!",
                      (SELECT count(*) FROM link) AS "link!", (SELECT count(*) FROM device_audit) AS "device_audit!"
                 FROM device"#,
            s.id,
            s.user_id,
            d.fingerprint_hash,
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
            d.verified,
            d.agent.device_type,
            d.agent.os.as_deref(),
            d.agent.browser.as_deref(),
            d.agent.browser_version.as_deref(),
            latitude,
            longitude,
            s.risk_score,
            s.suspicious_reason.as_deref(),
        )
        .fetch_optional(&mut *db)
        .await?;
        if let Some(row) = row {
            return Ok(OpenedSession { device_id: row.device_id, new_device: row.created });
        }
    }
    Err(sqlx::Error::RowNotFound)
}

/// What opening a session found out about its device.
#[derive(Debug, Clone, Copy)]
pub struct OpenedSession {
    pub device_id: Uuid,
    /// The user had never used this device before.
    pub new_device: bool,
}

/// Revokes the given sessions of `user_id` that are still active, with their refresh
/// tokens, and ends each one's link to its device in the link audit (with how long it
/// lasted); returns the ids revoked.
pub async fn revoke_sessions(
    db: &mut sqlx::PgConnection,
    user_id: Uuid,
    only: Option<Uuid>,
    except: Option<Uuid>,
    reason: &str,
) -> sqlx::Result<Vec<Uuid>> {
    let ids = sqlx::query_scalar!(
        r#"WITH revoked AS (
               UPDATE accounts_session SET status = 'revoked', revoked_at = now(), revoked_reason = $4, updated_at = now()
                WHERE user_id = $1 AND status = 'active' AND ($2::uuid IS NULL OR id = $2)
                  AND ($3::uuid IS NULL OR id <> $3)
                  -- An API key's session lives and ends with its key (`api_keys::revoke_keys`).
                  AND session_type <> 'api'
                  -- A session past its expiry is dead already; the cleanup may hold its row
                  -- while it marks it `expired`, and a revocation must not wait for that.
                  AND expires_at > now()
               RETURNING id, device_id, created_at, ip_address
           ), unlinked AS (
               INSERT INTO audit_log_sessiondevicelinkauditlog
                   (user_id, session_id, device_id, link_action, revoked_at, link_duration_seconds, ip_address, metadata)
               SELECT $1, id, device_id, 'revoked', now(),
                      LEAST(extract(epoch FROM now() - created_at), 2147483647)::int, ip_address,
                      jsonb_build_object('reason', $4::text)
                 FROM revoked WHERE device_id IS NOT NULL
               RETURNING 1
           )
           SELECT id AS "id!" FROM revoked"#,
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
        r#"SELECT s.id, s.device_id, s.ip_address, s.user_agent, s.country, s.city, s.created_at, s.expires_at,
                  s.mfa_verified, d.device_name AS "device_name?", s.id = $2 AS "current!"
             FROM accounts_session s LEFT JOIN accounts_device d ON d.id = s.device_id
            WHERE s.user_id = $1 AND s.status = 'active' AND s.expires_at > now() AND s.session_type <> 'api'
            ORDER BY s.created_at DESC"#,
        user_id,
        current,
    )
    .fetch_all(db)
    .await
}

/// Deletes sessions revoked or expired for over `grace_secs` (their refresh records go
/// with them; audit rows keep their own copy of what happened, the link set to null).
/// Marks up to `batch` active sessions past their expiry `expired`, walking the primary
/// key from `after` (one pass over the table however many batches), with a
/// `session_expired` audit row each and the end of its device link (`unlinked`: it ran out,
/// nobody revoked it). Rows a request holds are skipped until the next run. The status
/// change sends no NOTIFY (the session trigger ignores it). Returns how many, and the last
/// id seen (None when the walk is done).
pub async fn expire_sessions(db: &mut PgConnection, after: Uuid, batch: i64) -> sqlx::Result<(u64, Option<Uuid>)> {
    let row = sqlx::query!(
        r#"WITH due AS (
               SELECT id FROM accounts_session
                WHERE id > $1 AND status = 'active' AND expires_at <= now()
                ORDER BY id LIMIT $2
                  FOR UPDATE SKIP LOCKED
           ), expired AS (
               UPDATE accounts_session s SET status = 'expired', updated_at = now()
                 FROM due WHERE s.id = due.id
               RETURNING s.id, s.user_id, s.device_id, s.session_type, s.expires_at, s.created_at
           ), audit AS (
               INSERT INTO audit_log_sessionauditlog (user_id, session_id, device_id, action, session_type, metadata)
               SELECT user_id, id, device_id, 'session_expired', session_type,
                      jsonb_build_object('expired_at', expires_at)
                 FROM expired
               RETURNING 1
           ), unlinked AS (
               INSERT INTO audit_log_sessiondevicelinkauditlog
                   (user_id, session_id, device_id, link_action, link_duration_seconds, metadata)
               SELECT user_id, id, device_id, 'unlinked',
                      LEAST(extract(epoch FROM expires_at - created_at), 2147483647)::int,
                      jsonb_build_object('reason', 'expired')
                 FROM expired WHERE device_id IS NOT NULL
               RETURNING 1
           )
           SELECT (SELECT count(*) FROM expired) AS "n!", (SELECT id FROM due ORDER BY id DESC LIMIT 1) AS last,
                  (SELECT count(*) FROM audit) + (SELECT count(*) FROM unlinked) AS "audited!""#,
        after,
        batch
    )
    .fetch_one(&mut *db)
    .await?;
    let done = row.n as u64;
    Ok((done, row.last.filter(|_| row.n >= batch)))
}

/// Records that the session's link to its device was proven by a second factor (a
/// step-up), in the link audit.
pub async fn link_verified(db: impl PgExecutor<'_>, session: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO audit_log_sessiondevicelinkauditlog
             (user_id, session_id, device_id, link_action, ip_address, verified_at)
         SELECT user_id, id, device_id, 'verified', ip_address, now() FROM accounts_session
          WHERE id = $1 AND device_id IS NOT NULL",
        session
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_dead_sessions(db: impl PgExecutor<'_>, grace_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM accounts_session
          WHERE (status <> 'active' AND COALESCE(revoked_at, updated_at) < now() - make_interval(secs => $1))
             OR expires_at < now() - make_interval(secs => $1)",
        grace_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Locks the session and its user's row until the transaction ends, when the session is
/// still active and (given one) the password hash is still the one checked: an action
/// whose checks ran before its transaction commits only if no remediation came in between,
/// and a remediation that comes after waits for it, then ends what it made.
pub async fn hold_session(
    db: impl PgExecutor<'_>,
    session: Uuid,
    user: Uuid,
    password_hash: Option<&str>,
) -> sqlx::Result<bool> {
    let held = sqlx::query_scalar!(
        "SELECT s.id FROM accounts_session s JOIN auth_user u ON u.id = s.user_id
          WHERE s.id = $1 AND s.user_id = $2 AND s.status = 'active' AND s.expires_at > now() AND u.is_active
            AND ($3::text IS NULL OR u.password_hash = $3)
            FOR SHARE OF s, u",
        session,
        user,
        password_hash,
    )
    .fetch_optional(db)
    .await?;
    Ok(held.is_some())
}

/// When `user` last signed in with the password (a session whose methods include `pwd`).
pub async fn last_password_sign_in(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!("SELECT max(created_at) FROM accounts_session WHERE user_id = $1 AND 'pwd' = ANY(amr)", user)
        .fetch_one(db)
        .await
}

/// Raises a live session to aal 2 after a step-up, with fresh token ids; returns whether
/// the session was still active.
pub async fn raise_session(
    db: impl PgExecutor<'_>,
    session: Uuid,
    amr: &[String],
    method: &str,
    access_jti: &str,
    refresh_jti: &str,
) -> sqlx::Result<bool> {
    let id = sqlx::query_scalar!(
        "UPDATE accounts_session
            SET aal = 2, amr = $2, mfa_verified = true, mfa_verified_at = now(), mfa_method_used = $3,
                access_jti = $4, refresh_jti = $5, requires_mfa_recheck = false, updated_at = now()
          WHERE id = $1 AND status = 'active' AND expires_at > now()
      RETURNING id",
        session,
        amr,
        method,
        access_jti,
        refresh_jti
    )
    .fetch_optional(db)
    .await?;
    Ok(id.is_some())
}

/// Retires a session's refresh tokens (after a step-up hands out a new pair).
pub async fn retire_session_refresh(db: impl PgExecutor<'_>, session: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_refreshtokenrecord SET is_valid = false, revoked_at = COALESCE(revoked_at, now()),
                revocation_reason = COALESCE(revocation_reason, $2)
          WHERE session_id = $1 AND is_valid",
        session,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}
