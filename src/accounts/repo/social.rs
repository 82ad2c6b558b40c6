//! accounts_socialconnection and accounts_oidcflow (social login).

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::accounts::models::social::{Connection, ConnectionRow, FlowRow, NewFlow, Redeemed};

pub async fn insert_flow(db: impl PgExecutor<'_>, f: &NewFlow<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_oidcflow
             (state_hash, provider, intent, user_id, session_id, nonce, pkce_verifier, redirect_uri, code_challenge,
              expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + interval '10 minutes')",
        f.state_hash,
        f.provider,
        f.intent,
        f.user_id,
        f.session_id,
        f.nonce,
        f.pkce_verifier,
        f.redirect_uri,
        f.code_challenge,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Takes a live, unused state of `provider`: one statement, so of two callbacks with the
/// same state exactly one gets the row.
pub async fn take_state(db: impl PgExecutor<'_>, state_hash: &str, provider: &str) -> sqlx::Result<Option<FlowRow>> {
    sqlx::query_as!(
        FlowRow,
        "UPDATE accounts_oidcflow SET state_used_at = now()
          WHERE state_hash = $1 AND provider = $2 AND state_used_at IS NULL AND expires_at > now()
          RETURNING id, intent, user_id, session_id, nonce, pkce_verifier, redirect_uri",
        state_hash,
        provider,
    )
    .fetch_optional(db)
    .await
}

/// The return URL of a state this service issued, used or not (to say `invalid_state`).
pub async fn flow_return(db: impl PgExecutor<'_>, state_hash: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT redirect_uri FROM accounts_oidcflow WHERE state_hash = $1", state_hash)
        .fetch_optional(db)
        .await
}

/// Binds a sixty-second login code to the flow (the account and the connection found).
pub async fn set_login_code(
    db: impl PgExecutor<'_>,
    flow: Uuid,
    code_hash: &str,
    user_id: Uuid,
    connection: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_oidcflow
            SET login_code_hash = $2, login_code_expires_at = now() + interval '60 seconds', user_id = $3,
                connection_id = $4
          WHERE id = $1",
        flow,
        code_hash,
        user_id,
        connection,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_flow(db: impl PgExecutor<'_>, flow: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM accounts_oidcflow WHERE id = $1", flow).execute(db).await?;
    Ok(())
}

/// Takes a live login code: deleted by the one request that gets it.
pub async fn take_login_code(db: impl PgExecutor<'_>, code_hash: &str) -> sqlx::Result<Option<Redeemed>> {
    sqlx::query_as!(
        Redeemed,
        r#"DELETE FROM accounts_oidcflow WHERE login_code_hash = $1 AND login_code_expires_at > now()
           RETURNING user_id AS "user_id!", code_challenge, provider, connection_id AS "connection_id!""#,
        code_hash,
    )
    .fetch_optional(db)
    .await
}

/// The connection of (provider, subject), locked until the transaction ends.
pub async fn connection_by_subject(
    db: impl PgExecutor<'_>,
    provider: &str,
    subject: &str,
) -> sqlx::Result<Option<ConnectionRow>> {
    sqlx::query_as!(
        ConnectionRow,
        "SELECT id, user_id, status FROM accounts_socialconnection WHERE provider = $1 AND subject = $2 FOR UPDATE",
        provider,
        subject,
    )
    .fetch_optional(db)
    .await
}

/// A new connection; None when (provider, subject) was linked meanwhile.
pub async fn insert_connection(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    provider: &str,
    subject: &str,
    email: Option<&str>,
    access_token: &[u8],
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "INSERT INTO accounts_socialconnection (user_id, provider, subject, email, access_token, last_sync_at)
         VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (provider, subject) DO NOTHING
         RETURNING id",
        user_id,
        provider,
        subject,
        email,
        access_token,
    )
    .fetch_optional(db)
    .await
}

/// A sign-in through the connection: the provider's address and token as of now.
pub async fn sync_connection(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: Option<&str>,
    access_token: &[u8],
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_socialconnection
            SET email = $2, access_token = $3, last_sync_at = now(), status = 'active'
          WHERE id = $1",
        id,
        email,
        access_token,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn connections(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<Connection>> {
    sqlx::query_as!(
        Connection,
        "SELECT id, provider, email, status, last_sync_at, created_at FROM accounts_socialconnection
          WHERE user_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
        user_id,
        limit,
        offset,
    )
    .fetch_all(db)
    .await
}

pub async fn count_connections(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM accounts_socialconnection WHERE user_id = $1"#, user_id)
        .fetch_one(db)
        .await
}

/// The user's connections, locked (the last-method rule reads them before a removal).
pub async fn lock_connections(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<ConnectionRow>> {
    sqlx::query_as!(
        ConnectionRow,
        "SELECT id, user_id, status FROM accounts_socialconnection WHERE user_id = $1 FOR UPDATE",
        user_id,
    )
    .fetch_all(db)
    .await
}

/// Removes one of the user's connections; None when it is not theirs.
pub async fn delete_connection(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "DELETE FROM accounts_socialconnection WHERE id = $1 AND user_id = $2 RETURNING provider",
        id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// A deactivated account's connections: revoked, their tokens wiped.
pub async fn revoke_connections(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE accounts_socialconnection SET status = 'revoked', access_token = NULL
          WHERE user_id = $1 AND status = 'active' RETURNING id",
        user_id,
    )
    .fetch_all(db)
    .await
}

/// Unlinks the identities linked after `since` (the last sign-in that checked the
/// password); without one, all but those made with the account (same transaction, so the
/// same `created_at` as the user's `date_joined`).
pub async fn delete_connections_since(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "DELETE FROM accounts_socialconnection c USING auth_user u
          WHERE c.user_id = $1 AND u.id = c.user_id AND c.created_at > coalesce($2, u.date_joined)
          RETURNING c.id",
        user_id,
        since,
    )
    .fetch_all(db)
    .await
}

/// The user's flows in flight: links they started and login codes issued for them.
pub async fn delete_user_flows(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query!("DELETE FROM accounts_oidcflow WHERE user_id = $1", user_id).execute(db).await?;
    Ok(done.rows_affected())
}

pub async fn delete_expired_flows(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM accounts_oidcflow
          WHERE expires_at < now() AND (login_code_expires_at IS NULL OR login_code_expires_at < now())"
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
