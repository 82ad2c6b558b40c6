//! SQL of the accounts app. Functions take any executor, so the service decides which
//! run together in one transaction.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::audit_log::SessionEvent;

use super::models::{Profile, SessionView, UserRow};

pub async fn insert_user(
    db: impl PgExecutor<'_>,
    email: &str,
    username: &str,
    password_hash: &str,
    first_name: &str,
    last_name: &str,
) -> sqlx::Result<UserRow> {
    sqlx::query_as!(
        UserRow,
        r#"INSERT INTO auth_user (email, username, password_hash, first_name, last_name)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, email, username, password_hash, first_name, last_name, is_active, is_staff, is_superuser,
                     email_verified, false AS "mfa_enabled!", date_joined, last_login"#,
        email,
        username,
        password_hash,
        first_name,
        last_name,
    )
    .fetch_one(db)
    .await
}

pub async fn insert_profile(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("INSERT INTO accounts_profile (user_id) VALUES ($1)", user_id).execute(db).await?;
    Ok(())
}

pub async fn user_by_email(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.email, u.username, u.password_hash, u.first_name, u.last_name, u.is_active, u.is_staff,
                  u.is_superuser, u.email_verified, COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined,
                  u.last_login
             FROM auth_user u LEFT JOIN accounts_mfasettings m ON m.user_id = u.id
            WHERE u.email = $1"#,
        email
    )
    .fetch_optional(db)
    .await
}

pub async fn user_by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.email, u.username, u.password_hash, u.first_name, u.last_name, u.is_active, u.is_staff,
                  u.is_superuser, u.email_verified, COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined,
                  u.last_login
             FROM auth_user u LEFT JOIN accounts_mfasettings m ON m.user_id = u.id
            WHERE u.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn set_email_verified(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("UPDATE auth_user SET email_verified = true, updated_at = now() WHERE id = $1", user_id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_password(db: impl PgExecutor<'_>, user_id: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query!("UPDATE auth_user SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_names(db: impl PgExecutor<'_>, user_id: Uuid, first: &str, last: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth_user SET first_name = $2, last_name = $3, updated_at = now() WHERE id = $1",
        user_id,
        first,
        last
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn make_superuser(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth_user SET is_staff = true, is_superuser = true, email_verified = true, updated_at = now()
          WHERE id = $1",
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM auth_user WHERE id = $1", user_id).execute(db).await?;
    Ok(())
}

pub async fn profile(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Profile> {
    sqlx::query_as!(
        Profile,
        "SELECT phone_number, date_of_birth, address, city, state, country, postal_code, timezone, language,
                preferred_mfa_method
           FROM accounts_profile WHERE user_id = $1",
        user_id
    )
    .fetch_one(db)
    .await
}

pub async fn save_profile(db: impl PgExecutor<'_>, user_id: Uuid, p: &Profile) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_profile
            SET phone_number = $2, date_of_birth = $3, address = $4, city = $5, state = $6, country = $7,
                postal_code = $8, timezone = $9, language = $10, preferred_mfa_method = $11, updated_at = now()
          WHERE user_id = $1",
        user_id,
        p.phone_number,
        p.date_of_birth,
        p.address,
        p.city,
        p.state,
        p.country,
        p.postal_code,
        p.timezone,
        p.language,
        p.preferred_mfa_method,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_password_history(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    hash: &str,
    changed_by: &str,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_passwordhistory (user_id, password_hash, changed_by, reason) VALUES ($1, $2, $3, $4)",
        user_id,
        hash,
        changed_by,
        reason,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The `n` most recent password hashes (the current one first).
pub async fn recent_password_hashes(db: impl PgExecutor<'_>, user_id: Uuid, n: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT password_hash FROM accounts_passwordhistory WHERE user_id = $1 ORDER BY changed_at DESC, id DESC
          LIMIT $2",
        user_id,
        n
    )
    .fetch_all(db)
    .await
}

pub async fn insert_account_event(
    db: impl PgExecutor<'_>,
    user_id: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_auditlog (user_id, action, details, ip_address, user_agent) VALUES ($1, $2, $3, $4, $5)",
        user_id,
        action,
        details,
        ip,
        user_agent,
    )
    .execute(db)
    .await?;
    Ok(())
}

// One-time tokens (email verification, password reset): only their SHA-256 is stored.

pub async fn insert_one_time_token(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    purpose: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_onetimetoken (user_id, purpose, token_hash, expires_at, ip_address, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6)",
        user_id,
        purpose,
        token_hash,
        expires_at,
        ip,
        user_agent,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a live token used and returns its user: one UPDATE, so of concurrent
/// attempts exactly one succeeds.
pub async fn consume_one_time_token(
    db: impl PgExecutor<'_>,
    token_hash: &str,
    purpose: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE accounts_onetimetoken SET used_at = now()
          WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
      RETURNING user_id",
        token_hash,
        purpose
    )
    .fetch_optional(db)
    .await
}

pub async fn revoke_one_time_tokens(db: impl PgExecutor<'_>, user_id: Uuid, purpose: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_onetimetoken SET revoked_at = now()
          WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL AND revoked_at IS NULL",
        user_id,
        purpose
    )
    .execute(db)
    .await?;
    Ok(())
}

// Login attempts: every attempt is written (as 'pending') before the password is checked,
// so the identifier's lockout counts concurrent attempts too (see service::login).

pub async fn reserve_attempt(
    db: impl PgExecutor<'_>,
    identifier: &str,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO accounts_loginattempt (identifier, ip_address, user_agent, outcome, failure_reason)
         VALUES ($1, $2, $3, 'pending', NULL) RETURNING id",
        identifier,
        ip,
        user_agent,
    )
    .fetch_one(db)
    .await
}

/// Everything login needs to know before checking a password, in one round trip: the
/// identifier's failures since its last success or unlock (the latest other than `own`,
/// and how many, `own` included, fall within `window_secs` of it), the same for the IP
/// within `ip_window_secs`, and the account, if any.
pub struct LoginFacts {
    pub identifier_last: Option<DateTime<Utc>>,
    pub identifier_failures: i64,
    pub ip_last: Option<DateTime<Utc>>,
    pub ip_failures: i64,
    pub user: Option<UserRow>,
}

pub async fn login_facts(
    db: impl PgExecutor<'_>,
    identifier: &str,
    own: Uuid,
    ip: Option<IpNetwork>,
    window_secs: f64,
    ip_window_secs: f64,
) -> sqlx::Result<LoginFacts> {
    let row = sqlx::query!(
        r#"WITH failures AS (
               SELECT a.id, a.created_at FROM accounts_loginattempt a
                WHERE a.identifier = $1
                  -- Since the last success or unlock, as a bound of the index range (an
                  -- InitPlan), so the scan never walks the account's older attempts.
                  AND a.created_at > GREATEST(
                        now() - make_interval(secs => $4::float8 * 2),
                        (SELECT created_at FROM accounts_loginattempt
                          WHERE identifier = $1 AND outcome IN ('success', 'unlock')
                          ORDER BY created_at DESC LIMIT 1))
                  -- Attempts still being checked count too; one pending for over 30 s was
                  -- cut off (a crash) and no longer counts.
                  AND (a.outcome = 'failure' OR (a.outcome = 'pending' AND a.created_at > now() - interval '30 seconds'))
           ), latest AS (SELECT max(created_at) AS at FROM failures WHERE id <> $2),
           ident AS (
               SELECT latest.at AS last, count(f.id) AS n
                 FROM latest LEFT JOIN failures f ON f.created_at >= latest.at - make_interval(secs => $4)
                GROUP BY latest.at
           ), by_ip AS (
               SELECT max(created_at) AS last, count(*) AS n FROM accounts_loginattempt
                WHERE ip_address = $3 AND outcome = 'failure' AND created_at > now() - make_interval(secs => $5)
           )
           SELECT ident.last AS identifier_last, ident.n AS "identifier_failures!", by_ip.last AS ip_last,
                  by_ip.n AS "ip_failures!",
                  u.id AS "id?", u.email AS "email?", u.username AS "username?", u.password_hash AS "password_hash?",
                  u.first_name AS "first_name?", u.last_name AS "last_name?", u.is_active AS "is_active?",
                  u.is_staff AS "is_staff?", u.is_superuser AS "is_superuser?", u.email_verified AS "email_verified?",
                  COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined AS "date_joined?", u.last_login
             FROM ident CROSS JOIN by_ip
             LEFT JOIN auth_user u ON u.email = $1
             LEFT JOIN accounts_mfasettings m ON m.user_id = u.id"#,
        identifier,
        own,
        ip,
        window_secs,
        ip_window_secs,
    )
    .fetch_one(db)
    .await?;
    let user = match (row.id, row.email, row.username, row.password_hash, row.date_joined) {
        (Some(id), Some(email), Some(username), Some(password_hash), Some(date_joined)) => Some(UserRow {
            id,
            email,
            username,
            password_hash,
            first_name: row.first_name.unwrap_or_default(),
            last_name: row.last_name.unwrap_or_default(),
            is_active: row.is_active.unwrap_or(false),
            is_staff: row.is_staff.unwrap_or(false),
            is_superuser: row.is_superuser.unwrap_or(false),
            email_verified: row.email_verified.unwrap_or(false),
            mfa_enabled: row.mfa_enabled,
            date_joined,
            last_login: row.last_login,
        }),
        _ => None,
    };
    Ok(LoginFacts {
        identifier_last: row.identifier_last,
        identifier_failures: row.identifier_failures,
        ip_last: row.ip_last,
        ip_failures: row.ip_failures,
        user,
    })
}

pub async fn finish_attempt(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Option<Uuid>,
    outcome: &str,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_loginattempt SET user_id = $2, outcome = $3, failure_reason = $4 WHERE id = $1",
        id,
        user_id,
        outcome,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A refused (locked) attempt is not a failure: it must not extend the lock.
pub async fn delete_attempt(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM accounts_loginattempt WHERE id = $1", id).execute(db).await?;
    Ok(())
}

pub async fn insert_unlock(db: impl PgExecutor<'_>, identifier: &str, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_loginattempt (identifier, user_id, outcome) VALUES ($1, $2, 'unlock')",
        identifier,
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

// Sessions and refresh tokens.

pub struct NewSession<'a> {
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

pub struct NewRefresh<'a> {
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
    s: &NewSession<'_>,
    r: &NewRefresh<'_>,
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

pub async fn insert_refresh(db: impl PgExecutor<'_>, r: &NewRefresh<'_>) -> sqlx::Result<()> {
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
    pub session_access_jti: String,
    pub aal: i16,
    pub amr: Vec<String>,
}

pub async fn lock_refresh(db: impl PgExecutor<'_>, jti: &str) -> sqlx::Result<Option<RefreshRecord>> {
    sqlx::query_as!(
        RefreshRecord,
        r#"SELECT r.user_id, r.session_id, r.family_id, r.is_valid, r.expires_at, r.rotated_at, r.revoked_at,
                  (s.status = 'active' AND s.expires_at > now()) AS "session_active!",
                  s.access_jti AS session_access_jti, s.aal, s.amr
             FROM accounts_refreshtokenrecord r JOIN accounts_session s ON s.id = r.session_id
            WHERE r.jti = $1
              FOR UPDATE OF r, s"#,
        jti
    )
    .fetch_optional(db)
    .await
}

pub async fn mark_rotated(db: impl PgExecutor<'_>, jti: &str, at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!("UPDATE accounts_refreshtokenrecord SET is_valid = false, rotated_at = $2 WHERE jti = $1", jti, at)
        .execute(db)
        .await?;
    Ok(())
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

/// Usernames of the given users (for the admin page).
pub async fn usernames(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query!("SELECT id, username FROM auth_user WHERE id = ANY($1)", ids).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.username)).collect())
}
