//! accounts_apikey. Authentication by key is `core::auth::authenticate_key` (one statement
//! on every keyed request); here are the owner's own operations.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::accounts::models::admin::ApiKeyView;

/// Inserts a key with the session of `session_type` `api` that backs it (its requests run
/// under that session and are counted on it; it ends with the key, and expires with it).
pub async fn insert_key(
    db: impl PgExecutor<'_>,
    user: Uuid,
    name: &str,
    prefix: &str,
    key_hash: &str,
    scopes: &[String],
    expires_at: DateTime<Utc>,
) -> sqlx::Result<ApiKeyView> {
    sqlx::query_as!(
        ApiKeyView,
        r#"WITH session AS (
               INSERT INTO accounts_session (user_id, access_jti, refresh_jti, expires_at, session_type, aal, amr)
               VALUES ($1, 'apikey:' || $3, 'apikey:' || $3, $6, 'api', 1, '{}')
               RETURNING id
           )
           INSERT INTO accounts_apikey (user_id, name, prefix, key_hash, scopes, expires_at, session_id)
           SELECT $1, $2, $3, $4, $5, $6, session.id FROM session
           RETURNING id, name, prefix, scopes, expires_at, last_used_at, revoked_at, created_at"#,
        user,
        name,
        prefix,
        key_hash,
        scopes,
        expires_at
    )
    .fetch_one(db)
    .await
}

/// The user's keys, newest first, revoked ones included (they show when and that they died).
pub async fn keys(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<ApiKeyView>> {
    sqlx::query_as!(
        ApiKeyView,
        "SELECT id, name, prefix, scopes, expires_at, last_used_at, revoked_at, created_at
           FROM accounts_apikey WHERE user_id = $1 ORDER BY created_at DESC",
        user
    )
    .fetch_all(db)
    .await
}

/// Keys of the user that still work, for the per-user cap.
pub async fn live_key_count(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM accounts_apikey
            WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()"#,
        user
    )
    .fetch_one(db)
    .await
}

/// Revokes one of the user's live keys; false when there is none by that id.
pub async fn revoke_key(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        r#"WITH revoked AS (
               UPDATE accounts_apikey SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
               RETURNING prefix, session_id, user_id
           ), ended AS (
               UPDATE accounts_session s
                  SET status = 'revoked', revoked_at = now(), revoked_reason = 'api_key_revoked', updated_at = now()
                 FROM revoked WHERE s.id = revoked.session_id AND s.status = 'active'
               RETURNING s.id, s.user_id
           ), audit AS (
               INSERT INTO audit_log_sessionauditlog (user_id, session_id, action, session_type)
               SELECT user_id, id, 'session_revoked', 'api' FROM ended
               RETURNING 1
           )
           SELECT prefix AS "prefix!" FROM revoked"#,
        id,
        user
    )
    .fetch_optional(db)
    .await
}

/// A key as the recovery notices list it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyNote {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// Which of a user's live keys a remediation revokes (API.md "Recovery").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySelection {
    All,
    /// All but keys whose only scope is `introspect`: a gateway's key survives its owner's
    /// password reset, so one user's remediation does not take the gateways down.
    AllButIntrospectOnly,
    /// Keys with a staff scope (`audit:read`, `introspect`): they stop when the owner loses
    /// staff or has MFA reset.
    AdminScoped,
}

/// Revokes the user's live keys that `which` selects; returns them.
pub async fn revoke_keys(db: impl PgExecutor<'_>, user: Uuid, which: KeySelection) -> sqlx::Result<Vec<KeyNote>> {
    let which = match which {
        KeySelection::All => "all",
        KeySelection::AllButIntrospectOnly => "all_but_introspect",
        KeySelection::AdminScoped => "admin",
    };
    // The keys' sessions end with them, audited (a data-modifying CTE always runs).
    sqlx::query_as!(
        KeyNote,
        r#"WITH revoked AS (
               UPDATE accounts_apikey SET revoked_at = now()
                WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
                  AND CASE $2::text WHEN 'all' THEN true
                                    WHEN 'all_but_introspect' THEN scopes <> ARRAY['introspect']::text[]
                                    ELSE scopes && ARRAY['audit:read', 'introspect']::text[] END
               RETURNING id, name, prefix, scopes, expires_at, session_id
           ), ended AS (
               UPDATE accounts_session s
                  SET status = 'revoked', revoked_at = now(), revoked_reason = 'api_key_revoked', updated_at = now()
                 FROM revoked WHERE s.id = revoked.session_id AND s.status = 'active'
               RETURNING s.id, s.user_id
           ), audit AS (
               INSERT INTO audit_log_sessionauditlog (user_id, session_id, action, session_type)
               SELECT user_id, id, 'session_revoked', 'api' FROM ended
               RETURNING 1
           )
           SELECT id AS "id!", name AS "name!", prefix AS "prefix!", scopes AS "scopes!", expires_at AS "expires_at!"
             FROM revoked"#,
        user,
        which
    )
    .fetch_all(db)
    .await
}

/// The user's keys that still work, oldest first.
pub async fn live_keys(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<KeyNote>> {
    sqlx::query_as!(
        KeyNote,
        "SELECT id, name, prefix, scopes, expires_at FROM accounts_apikey
          WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() ORDER BY created_at",
        user
    )
    .fetch_all(db)
    .await
}

/// Live keys that expire within `within_secs` and whose owner has not been told yet: each
/// is marked told and returned with its owner, once across instances (the rows are
/// claimed with `SKIP LOCKED` and marked in the caller's transaction).
pub async fn claim_expiring_keys(db: impl PgExecutor<'_>, within_secs: f64) -> sqlx::Result<Vec<(Uuid, KeyNote)>> {
    let rows = sqlx::query!(
        "UPDATE accounts_apikey k SET expiry_notice_at = now()
          WHERE k.id IN (SELECT id FROM accounts_apikey
                          WHERE revoked_at IS NULL AND expiry_notice_at IS NULL AND expires_at > now()
                            AND expires_at <= now() + make_interval(secs => $1)
                          ORDER BY expires_at FOR UPDATE SKIP LOCKED LIMIT 500)
         RETURNING k.user_id, k.id, k.name, k.prefix, k.scopes, k.expires_at",
        within_secs
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let note = KeyNote { id: r.id, name: r.name, prefix: r.prefix, scopes: r.scopes, expires_at: r.expires_at };
            (r.user_id, note)
        })
        .collect())
}
