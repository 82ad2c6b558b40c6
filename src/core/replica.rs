//! Reports on a read replica (`DATABASE_REPLICA_URL`), as seed 002's scaling guide lays
//! out: writes and session checks stay on the primary; the administrators' audit lists,
//! summaries and the data exports' reads may go to a streaming replica. The replica is
//! used only while a watcher (one check a second) finds it reachable, in recovery (a
//! promoted or split-off server is no copy of the primary) and no further behind than
//! `REPLICA_MAX_LAG_SECONDS`; otherwise, and for any read that finds it gone, those reads
//! go to the primary. Nothing is ever written through it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::PgPool;

use super::config::Config;

pub struct Replica {
    pool: PgPool,
    max_lag: Duration,
    usable: AtomicBool,
}

/// How often the watcher measures the replica's lag.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Connections to the replica: reports are few and an administrator's.
const REPLICA_CONNECTIONS: u32 = 4;

impl Replica {
    /// The replica of `config`, when `DATABASE_REPLICA_URL` is set. Not usable until the
    /// watcher's first check passes.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Replica>>, sqlx::Error> {
        let database = &config.database;
        let Some(url) = &database.replica_url else { return Ok(None) };
        let pool = super::db::replica_pool(url.expose(), database, REPLICA_CONNECTIONS)?;
        Ok(Some(Arc::new(Replica { pool, max_lag: database.replica_max_lag, usable: AtomicBool::new(false) })))
    }

    /// The replica's pool while it is reachable and within its lag budget.
    pub fn pool(&self) -> Option<&PgPool> {
        self.usable.load(Ordering::Relaxed).then_some(&self.pool)
    }

    /// A read found the replica gone: reports go to the primary until the watcher sees
    /// it back.
    pub fn mark_down(&self) {
        if self.usable.swap(false, Ordering::Relaxed) {
            tracing::warn!("the read replica failed a read; reports go to the primary");
        }
    }

    /// Closes the replica's connections (shutdown, tests).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// How far the standby behind `pool` is behind its primary, in seconds: 0 while it is
/// streaming and has replayed all it received, else the age of the last transaction it
/// replayed (a standby cut off from its primary grows older by the second, however quiet
/// the primary is). None for a server that is not in recovery: a promoted or split-off
/// replica takes writes of its own and is no copy of the primary, so it is never read.
pub async fn lag_seconds(pool: &PgPool) -> Result<Option<f64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT CASE
                    WHEN NOT pg_is_in_recovery() THEN NULL
                    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                         AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0
                    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8, 'Infinity')
                  END::float8 AS lag"#
    )
    .fetch_one(pool)
    .await
}

/// Keeps `replica`'s usability current until `stop`; logs the first verdict and then only
/// the changes.
pub async fn watch(replica: Arc<Replica>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut first = true;
    loop {
        let verdict = lag_seconds(&replica.pool).await;
        let usable = matches!(verdict, Ok(Some(lag)) if lag <= replica.max_lag.as_secs_f64());
        let was = replica.usable.swap(usable, Ordering::Relaxed);
        if usable && !was {
            tracing::info!("the read replica is in use for reports");
        } else if !usable && (was || first) {
            match &verdict {
                Ok(Some(lag)) => {
                    tracing::warn!(lag_seconds = lag, "the read replica lags too far; reports go to the primary")
                }
                Ok(None) => tracing::warn!(
                    "the read replica is not in recovery (promoted or split off): it is never read; reports go to the primary"
                ),
                Err(e) => tracing::warn!(error = %e, "the read replica is unreachable; reports go to the primary"),
            }
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs a read on the replica when it is usable, else (and when the replica fails it for
/// want of a connection) on the primary (`AppState::reports_primary`):
/// `reports!(state, |db| repo::summaries(db, ...))`.
#[macro_export]
macro_rules! reports {
    ($state:expr, |$db:ident| $read:expr) => {{
        let state: &$crate::core::AppState = $state;
        match state.replica.as_ref().and_then(|r| r.pool().map(|p| (r, p))) {
            Some((replica, pool)) => {
                let $db = pool;
                match $read.await {
                    Err(e) if $crate::core::error::database_unavailable(&e) => {
                        replica.mark_down();
                        let $db = state.reports_primary();
                        $read.await
                    }
                    other => other,
                }
            }
            None => {
                let $db = state.reports_primary();
                $read.await
            }
        }
    }};
}
