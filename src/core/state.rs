//! The one cheap-to-clone state every handler and job receives.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};

use super::{config::Config, crypto::JwtKeys, metrics::Metrics};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub keys: Arc<JwtKeys>,
    pub metrics: Metrics,
    /// Wakes the outbox worker as soon as a message is queued.
    pub outbox_wakeup: Arc<Notify>,
    /// Bounds CPU-heavy work (password hashing) on the blocking pool to the cores.
    pub cpu_permits: Arc<Semaphore>,
}

impl AppState {
    pub fn new(db: PgPool, config: Config, keys: JwtKeys) -> Self {
        let permits = config.hash_concurrency;
        AppState {
            db,
            config: Arc::new(config),
            keys: Arc::new(keys),
            metrics: Metrics::new(),
            outbox_wakeup: Arc::new(Notify::new()),
            cpu_permits: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Runs CPU-bound `f` on the blocking pool, at most `hash_concurrency` at a time, so
    /// it never stalls the async workers nor queues unboundedly many threads.
    pub async fn run_cpu<T, F>(&self, f: F) -> Result<T, super::error::AppError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self.cpu_permits.acquire().await.map_err(super::error::AppError::internal)?;
        tokio::task::spawn_blocking(f).await.map_err(super::error::AppError::internal)
    }
}
