//! accounts_onetimetoken (email verification, password reset, email change and its undo): only a token's SHA-256 is
//! stored, and a token is consumed by one UPDATE, so of concurrent uses exactly one wins.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

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

/// The user of a live token, without using it (checks that come before the transaction).
pub async fn peek_one_time_token(
    db: impl PgExecutor<'_>,
    token_hash: &str,
    purpose: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT user_id FROM accounts_onetimetoken
          WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
        token_hash,
        purpose
    )
    .fetch_optional(db)
    .await
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

/// Tokens of `purpose` issued to `user` within the last minute and the last hour (used,
/// revoked or live), after taking a lock that serialises this count per user and purpose
/// until the transaction ends, so two requests cannot both pass a cap.
pub async fn lock_and_count_recent_tokens(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    purpose: &str,
) -> sqlx::Result<(i64, i64)> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))",
        user_id.to_string(),
        purpose
    )
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE created_at > now() - interval '1 minute') AS "minute!",
                  count(*) AS "hour!"
             FROM accounts_onetimetoken
            WHERE user_id = $1 AND purpose = $2 AND created_at > now() - interval '1 hour'"#,
        user_id,
        purpose
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.minute, row.hour))
}

/// An email-change token: the address it will confirm travels with it.
#[allow(clippy::too_many_arguments)]
pub async fn insert_email_change_token(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    token_hash: &str,
    new_email: &str,
    expires_at: DateTime<Utc>,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_onetimetoken (user_id, purpose, token_hash, new_email, expires_at, ip_address, user_agent)
         VALUES ($1, 'email_change', $2, $3, $4, $5, $6)",
        user_id,
        token_hash,
        new_email,
        expires_at,
        ip,
        user_agent,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Uses a live email-change token: its user and the address it confirms. One UPDATE, so
/// of concurrent uses exactly one wins. A token of an account that is inactive, or whose
/// password was changed or reset after the request, is dead: whoever asked may have been
/// the one the remediation was against.
pub async fn consume_email_change_token(
    db: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<(Uuid, String)>> {
    let row = sqlx::query!(
        r#"UPDATE accounts_onetimetoken t SET used_at = now()
             FROM auth_user u
            WHERE t.token_hash = $1 AND t.purpose = 'email_change' AND t.used_at IS NULL AND t.revoked_at IS NULL
              AND t.expires_at > now() AND u.id = t.user_id AND u.is_active
              AND NOT EXISTS (SELECT 1 FROM accounts_passwordhistory h
                               WHERE h.user_id = t.user_id AND h.changed_at > t.created_at)
        RETURNING t.user_id, t.new_email AS "new_email!""#,
        token_hash,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user_id, r.new_email)))
}

/// Deletes tokens expired for over `grace_secs` (used or not: past expiry they open
/// nothing, and the per-hour caps count only the last hour's).
pub async fn delete_expired_tokens(db: impl PgExecutor<'_>, grace_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM accounts_onetimetoken WHERE expires_at < now() - make_interval(secs => $1)",
        grace_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// The purposes of the links a remediation cancels (API.md "Recovery"): whoever held the
/// account may have asked for them. Email verification is not among them (it only proves
/// an address), nor is the undo of an email change, which only its use or expiry ends.
pub const REVOCABLE_LINKS: &[&str] = &["email_change", "password_reset", "magic_link"];

/// Revokes the user's pending links of `REVOCABLE_LINKS`; returns how many.
pub async fn revoke_links(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<u64> {
    let purposes: Vec<String> = REVOCABLE_LINKS.iter().map(|p| (*p).to_owned()).collect();
    let done = sqlx::query!(
        "UPDATE accounts_onetimetoken SET revoked_at = now()
          WHERE user_id = $1 AND purpose = ANY($2) AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()",
        user_id,
        &purposes,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// The undo link of an email change: sent to the old address, it restores `address`.
pub async fn insert_undo_token(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    token_hash: &str,
    address: &str,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_onetimetoken (user_id, purpose, token_hash, new_email, expires_at)
         VALUES ($1, 'email_change_undo', $2, $3, $4)",
        user_id,
        token_hash,
        address,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A used undo link: whose, the address it restores, and when the change it undoes was made.
pub struct UsedUndo {
    pub user_id: Uuid,
    pub address: String,
    pub changed_at: DateTime<Utc>,
}

/// Uses a live undo link (one UPDATE: of concurrent uses exactly one wins), and ends the
/// undo links of the changes made after it: those addresses came later, so an attacker
/// who moved the account twice cannot move it back to their own address.
pub async fn consume_undo_token(db: &mut sqlx::PgConnection, token_hash: &str) -> sqlx::Result<Option<UsedUndo>> {
    let row = sqlx::query!(
        r#"UPDATE accounts_onetimetoken SET used_at = now()
            WHERE token_hash = $1 AND purpose = 'email_change_undo' AND used_at IS NULL AND revoked_at IS NULL
              AND expires_at > now()
        RETURNING user_id, new_email AS "address!", created_at"#,
        token_hash,
    )
    .fetch_optional(&mut *db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    sqlx::query!(
        "UPDATE accounts_onetimetoken SET revoked_at = now()
          WHERE user_id = $1 AND purpose = 'email_change_undo' AND used_at IS NULL AND revoked_at IS NULL
            AND created_at > $2",
        row.user_id,
        row.created_at,
    )
    .execute(&mut *db)
    .await?;
    Ok(Some(UsedUndo { user_id: row.user_id, address: row.address, changed_at: row.created_at }))
}
