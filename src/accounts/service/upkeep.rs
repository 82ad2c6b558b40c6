//! accounts' share of the background upkeep (the cleanup job runs it; `jobs` is only the
//! loop): rows past their use deleted after a grace, expired trust ended, owners of keys
//! about to expire told, and old client addresses cut to their network.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::{
    accounts::repo,
    core::{AppResult, AppState},
};

/// How long dead rows stay before the cleanup deletes them: one-time tokens and refresh
/// records a day past their expiry; sessions 30 days after they were revoked or expired
/// (long enough for a user's or an admin's question about them); login attempts once they
/// are older than any lockout looks back (twice the 30-minute window).
pub mod grace {
    pub const TOKENS_SECS: f64 = 24.0 * 3600.0;
    pub const SESSIONS_SECS: f64 = 30.0 * 24.0 * 3600.0;
    pub const ATTEMPTS_SECS: f64 = 2.0 * 30.0 * 60.0;
}

/// What one cleanup did in accounts, by kind of row (the job run's `details`).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Cleaned {
    pub refresh_children: u64,
    pub device_trust_ended: u64,
    pub one_time_tokens: u64,
    pub refresh_records: u64,
    pub sessions: u64,
    /// Active sessions past their expiry marked `expired` (audited `session_expired`).
    pub sessions_expired: u64,
    pub login_attempts: u64,
    pub api_key_expiry_notices: u64,
    /// Social sign-in flows past their ten minutes (and their login code's sixty seconds).
    pub oidc_flows: u64,
}

impl Cleaned {
    /// Rows changed, for the run's `rows_affected` (the notices are not rows).
    pub fn rows(&self) -> u64 {
        self.refresh_children
            + self.device_trust_ended
            + self.one_time_tokens
            + self.refresh_records
            + self.sessions
            + self.sessions_expired
            + self.login_attempts
            + self.oidc_flows
    }
}

/// One cleanup of accounts' rows, in the job's transaction.
pub async fn cleanup(state: &AppState, tx: &mut PgConnection) -> AppResult<Cleaned> {
    // A rotated refresh token's sealed child lives for the reuse leeway only.
    let leeway = state.config.refresh_reuse_leeway.as_secs_f64();
    Ok(Cleaned {
        refresh_children: repo::refresh::wipe_refresh_children(&mut *tx, leeway).await?,
        device_trust_ended: repo::devices::expire_device_trust(&mut *tx).await?,
        one_time_tokens: repo::one_time_tokens::delete_expired_tokens(&mut *tx, grace::TOKENS_SECS).await?,
        refresh_records: repo::refresh::delete_expired_refresh_records(&mut *tx, grace::TOKENS_SECS).await?,
        sessions: repo::sessions::delete_dead_sessions(&mut *tx, grace::SESSIONS_SECS).await?,
        sessions_expired: expire_sessions(tx).await?,
        login_attempts: repo::attempts::delete_old_attempts(&mut *tx, grace::ATTEMPTS_SECS).await?,
        // Not a deletion: owners of keys that expire within 7 days are told, once.
        api_key_expiry_notices: super::warn_expiring_keys(state, tx).await?,
        oidc_flows: repo::social::delete_expired_flows(&mut *tx).await?,
    })
}

/// Sessions marked expired per statement: a cleanup of millions goes in bounded steps (one
/// index walk in all). The job's transaction holds the rows it marked until it commits;
/// revocations skip rows past their expiry, so none waits for it.
const EXPIRE_BATCH: i64 = 5_000;

async fn expire_sessions(tx: &mut PgConnection) -> AppResult<u64> {
    let (mut total, mut after) = (0, uuid::Uuid::nil());
    loop {
        let (done, last) = repo::sessions::expire_sessions(&mut *tx, after, EXPIRE_BATCH).await?;
        total += done;
        match last {
            Some(last) => after = last,
            None => return Ok(total),
        }
    }
}

/// Cuts the client addresses of accounts' rows dated in `[from, to)` to their network.
pub async fn truncate_ips(tx: &mut PgConnection, from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> AppResult<u64> {
    let mut rows = 0;
    for column in repo::devices::IP_COLUMNS {
        rows += crate::core::db::truncate_ips(&mut *tx, *column, from, to).await?;
    }
    Ok(rows)
}
