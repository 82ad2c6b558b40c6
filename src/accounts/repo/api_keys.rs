//! accounts_apikey. Authentication by key is `core::auth::authenticate_key` (one statement
//! on every keyed request); here are the owner's own operations.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::accounts::models::ApiKeyView;

pub async fn insert_key(
    db: impl PgExecutor<'_>,
    user: Uuid,
    name: &str,
    prefix: &str,
    key_hash: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> sqlx::Result<ApiKeyView> {
    sqlx::query_as!(
        ApiKeyView,
        "INSERT INTO accounts_apikey (user_id, name, prefix, key_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, name, prefix, scopes, expires_at, last_used_at, revoked_at, created_at",
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
            WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"#,
        user
    )
    .fetch_one(db)
    .await
}

/// Revokes one of the user's live keys; false when there is none by that id.
pub async fn revoke_key(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "UPDATE accounts_apikey SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
         RETURNING prefix",
        id,
        user
    )
    .fetch_optional(db)
    .await
}
