//! The account console's cookie sessions: a column of `accounts_session` (the secret's
//! hash), so a console session is a Gatehouse session and ends with it.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Binds the console secret `hash` to a session just opened.
pub async fn set_console_secret(db: impl PgExecutor<'_>, session: Uuid, hash: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE accounts_session SET console_secret_hash = $2
          WHERE id = $1 AND status = 'active' AND expires_at > now()",
        session,
        hash
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What a console request runs as: the live session behind the cookie.
pub struct ConsoleSession {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub aal: i16,
    pub amr: Vec<String>,
    pub mfa_verified_at: Option<DateTime<Utc>>,
    pub is_staff: bool,
    pub is_superuser: bool,
}

/// The active, unexpired session (of an active user) whose console secret hashes to `hash`.
pub async fn console_session(db: impl PgExecutor<'_>, hash: &str) -> sqlx::Result<Option<ConsoleSession>> {
    sqlx::query_as!(
        ConsoleSession,
        "SELECT s.id AS session_id, s.user_id, s.aal, s.amr, s.mfa_verified_at, u.is_staff, u.is_superuser
           FROM accounts_session s JOIN auth_user u ON u.id = s.user_id
          WHERE s.console_secret_hash = $1 AND s.status = 'active' AND s.expires_at > now() AND u.is_active",
        hash
    )
    .fetch_optional(db)
    .await
}
