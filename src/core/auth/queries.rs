//! The documented exception to "core reads no app's tables": authentication runs before
//! any app's handler, on every request, so the four statements it needs on accounts' tables
//! (`auth_user`, `accounts_session`, `accounts_apikey`, `accounts_mfasettings`, the
//! permission tables) live here, in one place, rather than core importing accounts (which
//! would point an arrow the wrong way). A change to those tables' columns is checked here
//! by sqlx at compile time like any other query; docs/architecture.md names this file.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A live API key (not revoked, not expired, of an active user) with its owner's staff flags.
pub struct LiveKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub is_staff: bool,
    pub is_superuser: bool,
    /// Whether this lookup stamped `last_used_at` (at most once a minute per key).
    pub touched: i64,
}

/// The key whose prefix is `prefix`, stamping its last use in the same statement when
/// `hash` matches and the stamp is a minute old.
pub async fn live_key(db: &PgPool, prefix: &str, hash: &str) -> Result<Option<LiveKey>, sqlx::Error> {
    sqlx::query_as!(
        LiveKey,
        r#"WITH key AS (
               SELECT k.id, k.user_id, k.session_id, k.key_hash, k.scopes, k.expires_at, u.is_staff, u.is_superuser
                 FROM accounts_apikey k JOIN auth_user u ON u.id = k.user_id
                WHERE k.prefix = $1 AND k.revoked_at IS NULL AND k.expires_at > now()
                  AND u.is_active
           ), touched AS (
               UPDATE accounts_apikey k SET last_used_at = now()
                 FROM key
                WHERE k.id = key.id AND key.key_hash = $2
                  AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
               RETURNING 1
           )
           SELECT id AS "id!", user_id AS "user_id!", session_id, key_hash AS "key_hash!", scopes AS "scopes!",
                  expires_at AS "expires_at!", is_staff AS "is_staff!", is_superuser AS "is_superuser!",
                  (SELECT count(*) FROM touched) AS "touched!"
             FROM key"#,
        prefix,
        hash,
    )
    .fetch_optional(db)
    .await
}

/// `last_used_at` of a key served from the cache, unless stamped within the minute.
pub async fn stamp_key_use(db: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE accounts_apikey SET last_used_at = now()
          WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        id
    )
    .execute(db)
    .await
    .map(drop)
}

/// An active, unexpired session of an active user, with what the cache keeps of both.
pub struct LiveSession {
    pub is_staff: bool,
    pub is_superuser: bool,
    pub email: String,
    pub username: String,
    pub email_verified: bool,
    pub mfa_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub device_id: Option<Uuid>,
}

pub async fn live_session(db: &PgPool, session_id: Uuid, user_id: Uuid) -> Result<Option<LiveSession>, sqlx::Error> {
    sqlx::query_as!(
        LiveSession,
        r#"SELECT u.is_staff, u.is_superuser, u.email, u.username, u.email_verified, s.mfa_verified_at,
                  s.created_at, s.expires_at, s.device_id
             FROM accounts_session s JOIN auth_user u ON u.id = s.user_id
            WHERE s.id = $1 AND s.user_id = $2 AND s.status = 'active' AND s.expires_at > now()
              AND u.is_active"#,
        session_id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// Adds the counted requests to their API sessions (`total_api_calls`, `total_requests`,
/// `last_seen_at`) and to each owner's summary row of the day (UTC), in one statement.
/// The summary job leaves `total_api_calls` as this counts it (docs/audit.md).
pub async fn flush_api_calls(db: &PgPool, sessions: &[Uuid], counts: &[i32]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"WITH calls AS (
               SELECT session_id, n FROM unnest($1::uuid[], $2::int[]) AS c(session_id, n)
           ), bumped AS (
               UPDATE accounts_session s
                  SET total_api_calls = s.total_api_calls + calls.n, total_requests = s.total_requests + calls.n,
                      last_seen_at = now()
                 FROM calls WHERE s.id = calls.session_id
               RETURNING s.user_id, calls.n
           )
           INSERT INTO audit_log_auditlogsummary AS s (user_id, date, total_api_calls)
           SELECT user_id, (now() AT TIME ZONE 'UTC')::date, sum(n) FROM bumped GROUP BY user_id
           ON CONFLICT ON CONSTRAINT audit_log_auditlogsummary_user_date_key
           DO UPDATE SET total_api_calls = s.total_api_calls + EXCLUDED.total_api_calls, updated_at = now()"#,
        sessions,
        counts
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A staff user's standing for one permission: whether admin work needs MFA
/// (`enforce_for_admin`, on unless turned off) and whether the permission is held, directly
/// or through a group.
pub struct StaffGrant {
    pub enforce: bool,
    pub granted: bool,
    /// Within `grace_period_days` of being made staff, MFA still off: admin reads without it.
    pub in_grace: bool,
}

pub async fn staff_grant(
    db: &PgPool,
    user_id: Uuid,
    app_label: &str,
    codename: &str,
) -> Result<StaffGrant, sqlx::Error> {
    sqlx::query_as!(
        StaffGrant,
        r#"SELECT COALESCE((SELECT enforce_for_admin FROM accounts_mfasettings WHERE user_id = $1), true) AS "enforce!",
                  COALESCE((SELECT grace_period_days > 0 AND NOT is_enabled
                                   AND grace_started_at + make_interval(days => grace_period_days) > now()
                              FROM accounts_mfasettings WHERE user_id = $1), false) AS "in_grace!",
                  EXISTS (SELECT 1 FROM auth_permission p
                           WHERE p.app_label = $2 AND p.codename = $3
                             AND (p.id IN (SELECT permission_id FROM auth_user_user_permissions WHERE user_id = $1)
                                  OR p.id IN (SELECT gp.permission_id FROM auth_group_permissions gp
                                                JOIN auth_user_groups ug ON ug.group_id = gp.group_id
                                               WHERE ug.user_id = $1))) AS "granted!""#,
        user_id,
        app_label,
        codename,
    )
    .fetch_one(db)
    .await
}
