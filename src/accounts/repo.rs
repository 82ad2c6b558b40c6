//! SQL of the accounts app. Functions take any executor, so the service decides which
//! run together in one transaction.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

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

pub async fn set_last_login(db: impl PgExecutor<'_>, user_id: Uuid, at: DateTime<Utc>) -> sqlx::Result<()> {
    sqlx::query!("UPDATE auth_user SET last_login = $2 WHERE id = $1", user_id, at).execute(db).await?;
    Ok(())
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

// Login attempts: every attempt is written before the password is checked, so the
// lockout counts concurrent attempts too (see service::login).

pub async fn reserve_attempt(
    db: impl PgExecutor<'_>,
    identifier: &str,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO accounts_loginattempt (identifier, ip_address, user_agent, outcome, failure_reason)
         VALUES ($1, $2, $3, 'failure', 'in_progress') RETURNING id",
        identifier,
        ip,
        user_agent,
    )
    .fetch_one(db)
    .await
}

/// For the identifier's failures since its last success or unlock: the latest failure
/// other than `own`, and how many failures (counting `own`) fall within `window_secs` of it.
pub async fn identifier_failures(
    db: impl PgExecutor<'_>,
    identifier: &str,
    own: Uuid,
    window_secs: f64,
) -> sqlx::Result<(Option<DateTime<Utc>>, i64)> {
    let row = sqlx::query!(
        r#"WITH reset AS (
               SELECT COALESCE(max(created_at), '-infinity'::timestamptz) AS at FROM accounts_loginattempt
                WHERE identifier = $1 AND outcome IN ('success', 'unlock')
           ), failures AS (
               SELECT a.id, a.created_at FROM accounts_loginattempt a, reset
                WHERE a.identifier = $1 AND a.outcome = 'failure' AND a.created_at > reset.at
                  AND a.created_at > now() - make_interval(secs => $3::float8 * 2)
           ), latest AS (SELECT max(created_at) AS at FROM failures WHERE id <> $2)
           SELECT latest.at AS "last", count(f.id) AS "n!"
             FROM latest LEFT JOIN failures f ON f.created_at >= latest.at - make_interval(secs => $3)
            GROUP BY latest.at"#,
        identifier,
        own,
        window_secs,
    )
    .fetch_one(db)
    .await?;
    Ok((row.last, row.n))
}

/// Failures from `ip` within the last `window_secs` (counting `own`), and the latest.
pub async fn ip_failures(
    db: impl PgExecutor<'_>,
    ip: IpNetwork,
    window_secs: f64,
) -> sqlx::Result<(Option<DateTime<Utc>>, i64)> {
    let row = sqlx::query!(
        r#"SELECT max(created_at) AS "last", count(*) AS "n!" FROM accounts_loginattempt
            WHERE ip_address = $1 AND outcome = 'failure' AND created_at > now() - make_interval(secs => $2)"#,
        ip,
        window_secs,
    )
    .fetch_one(db)
    .await?;
    Ok((row.last, row.n))
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

pub async fn insert_session(db: impl PgExecutor<'_>, s: &NewSession<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_session
             (id, user_id, device_id, access_jti, refresh_jti, ip_address, user_agent, country, city, expires_at, aal,
              amr, mfa_verified, mfa_verified_at, mfa_method_used, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11::smallint = 2,
                 CASE WHEN $11::smallint = 2 THEN $14::timestamptz END, $13, $14, $14)",
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
    )
    .execute(db)
    .await?;
    Ok(())
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
