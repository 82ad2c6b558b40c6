//! The one cheap-to-clone state every handler and job receives.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use secrecy::ExposeSecret;

use super::{config::Config, cpu::CpuPool, crypto::JwtKeys, keys::DataKeys, metrics::Metrics};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub keys: Arc<JwtKeys>,
    /// Per-purpose keys for secrets at rest and keyed hashes of codes.
    pub data_keys: Arc<DataKeys>,
    pub metrics: Metrics,
    /// Wakes the outbox worker as soon as a message is queued.
    pub outbox_wakeup: Arc<Notify>,
    /// Threads for CPU-heavy work (password hashing), `HASH_CONCURRENCY` of them.
    pub cpu: CpuPool,
}

impl AppState {
    pub fn new(db: PgPool, config: Config, keys: JwtKeys) -> Self {
        let threads = config.hash_concurrency;
        let data_keys = DataKeys::new(config.encryption_key().expose_secret(), &config.data_encryption_keys_old);
        AppState {
            db,
            data_keys: Arc::new(data_keys),
            config: Arc::new(config),
            keys: Arc::new(keys),
            metrics: Metrics::new(),
            outbox_wakeup: Arc::new(Notify::new()),
            cpu: CpuPool::new(threads),
        }
    }

    /// Runs CPU-bound `f` on the CPU pool, so it never stalls the async workers.
    pub async fn run_cpu<T, F>(&self, f: F) -> Result<T, super::error::AppError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.cpu.run(f).await.map_err(super::error::AppError::internal)
    }
}
