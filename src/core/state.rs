//! The one cheap-to-clone state every handler and job receives.

use std::{ops::Deref, sync::Arc};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};

use super::{
    auth_cache::AuthCache,
    config::Config,
    cpu::CpuPool,
    data_keys::DataKeys,
    jwt::JwtKeys,
    metrics::Metrics,
    oidc::OidcProviders,
    ratelimit::{AddressLimits, KeyLimits},
    webauthn::RelyingParty,
};

/// What every handler, middleware and job shares. A clone is one reference count: the
/// router clones the state for every extractor and middleware of a request, and a clone
/// per field (two dozen counts, bouncing between the workers' caches) was a fifth of
/// whoami's CPU.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Clone)]
pub struct Shared {
    pub db: PgPool,
    /// A pool on `DATABASE_ADMIN_URL` (the role that owns the schema), for the partition
    /// job's DDL; None when the service's own role does everything.
    pub admin_db: Option<PgPool>,
    /// The primary's pool for reports (`db::reports_pool`), read through `reports!` when no
    /// replica serves; None: they read `db` (tests, tools).
    pub reports_db: Option<PgPool>,
    /// The read replica for reports (`DATABASE_REPLICA_URL`); read through `reports!`.
    pub replica: Option<Arc<super::replica::Replica>>,
    pub config: Arc<Config>,
    pub keys: Arc<JwtKeys>,
    /// Per-purpose keys for secrets at rest and keyed hashes of codes.
    pub data_keys: Arc<DataKeys>,
    pub metrics: Metrics,
    /// Wakes the outbox worker as soon as a message is queued.
    pub outbox_wakeup: Arc<Notify>,
    /// Threads for CPU-heavy work (password hashing), `HASH_CONCURRENCY` of them, with at
    /// most `HASH_QUEUE_DEPTH` jobs waiting.
    pub cpu: CpuPool,
    /// Per-address budgets of unauthenticated work (this instance's count).
    pub limits: Arc<AddressLimits>,
    /// Verified access tokens and API keys, kept honest by `auth_cache::run_listener`.
    pub auth_cache: Arc<AuthCache>,
    /// Per-key budgets of API-key requests (this instance's count).
    pub key_limits: Arc<KeyLimits>,
    /// The WebAuthn relying party (passkeys; off when reached by IP address).
    pub relying_party: RelyingParty,
    /// The OpenID providers of social login.
    pub oidc: Arc<OidcProviders>,
    /// Slots for work done after the answer (`spawn_bounded`).
    background: Arc<Semaphore>,
}

/// Background tasks one instance runs at once; more are refused with 503.
const BACKGROUND_TASKS: usize = 256;

impl AppState {
    pub fn new(db: PgPool, config: Config, keys: JwtKeys) -> Self {
        let limits = AddressLimits::new(&config.rate_limits);
        let config_key_limit = config.rate_limits.api_key_per_minute;
        let (threads, depth) = (config.hash_concurrency, config.hash_queue_depth);
        let data_keys = DataKeys::new(config.encryption_key(), config.old_encryption_keys());
        // `serve` refuses contradictory settings before it gets here (main.rs).
        let relying_party = RelyingParty::from_config(&config)
            .unwrap_or_else(|_| RelyingParty::off("passkeys are off: the WebAuthn settings contradict each other"));
        let oidc = Arc::new(OidcProviders::from_config(&config));
        let auth_cache = Arc::new(AuthCache::with_capacity(config.auth_cache_entries));
        AppState(Arc::new(Shared {
            db,
            admin_db: None,
            reports_db: None,
            replica: None,
            data_keys: Arc::new(data_keys),
            config: Arc::new(config),
            keys: Arc::new(keys),
            metrics: Metrics::new(),
            outbox_wakeup: Arc::new(Notify::new()),
            cpu: CpuPool::new(threads, depth),
            auth_cache,
            key_limits: Arc::new(KeyLimits::new(config_key_limit)),
            limits: Arc::new(limits),
            relying_party,
            oidc,
            background: Arc::new(Semaphore::new(BACKGROUND_TASKS)),
        }))
    }

    /// The primary's pool for admin reads: the reports pool, else the requests' pool.
    pub fn reports_primary(&self) -> &PgPool {
        self.reports_db.as_ref().unwrap_or(&self.db)
    }

    /// The fields, to set before the state is shared (start-up) or in a copy of it that
    /// differs (the jobs' pools): copied first when shared.
    pub fn edit(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }

    /// Runs CPU-bound `f` on the CPU pool, so it never stalls the async workers.
    pub async fn run_cpu<T, F>(&self, f: F) -> Result<T, super::error::AppError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        use super::{cpu::PoolError, error::AppError};
        self.cpu.run(f).await.map_err(|e| match e {
            PoolError::Busy => AppError::Unavailable { retry_after_secs: 1 },
            PoolError::Lost => AppError::internal(e),
        })
    }

    /// Runs `task` after the request has its answer, so its work does not show in the
    /// answer's timing. 503 at once when `BACKGROUND_TASKS` are already running. Work is
    /// lost if the process stops before it ends; callers use it only for what a client
    /// may simply ask again (a reset email).
    pub fn spawn_bounded<F>(&self, task: F) -> Result<(), super::error::AppError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let slot = Arc::clone(&self.background)
            .try_acquire_owned()
            .map_err(|_| super::error::AppError::Unavailable { retry_after_secs: 1 })?;
        tokio::spawn(async move {
            task.await;
            drop(slot);
        });
        Ok(())
    }

    /// Background tasks still running (tests wait for this to reach 0).
    pub fn background_in_flight(&self) -> usize {
        BACKGROUND_TASKS - self.background.available_permits()
    }
}
