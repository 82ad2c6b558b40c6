//! The hot path's memory: verified access tokens with their session and identity, API
//! keys, and `/users/me` bodies, held per instance so a request that presents a known token costs no database
//! round trip (and no signature check). PostgreSQL keeps it honest: triggers on
//! `accounts_session`, `auth_user`, `accounts_profile`, `accounts_mfasettings` and
//! `accounts_apikey` publish `NOTIFY gatehouse_auth`
//! in the transaction of every change that matters (revocation, logout, password change,
//! deactivation, device compromise, key revocation), and each instance's listener evicts.
//!
//! The cache is used only while its listener is healthy: connected, and hearing its own
//! heartbeat (a `NOTIFY` sent through the pool every 250 ms) within 750 ms. Otherwise
//! every request reads PostgreSQL, and each loss or reconnect starts a new epoch, which
//! empties the cache: notifications sent while nobody listened are never needed. So a
//! revocation reaches every instance within a second, listener or not.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use moka::sync::Cache;
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;
use uuid::Uuid;

/// The channel the triggers publish on (migration `20261203000001_auth_cache`).
pub const CHANNEL: &str = "gatehouse_auth";
/// How long an entry may serve before it is read again, whatever happens.
const ENTRY_TTL: Duration = Duration::from_secs(300);
/// Entries per kind by default (`AUTH_CACHE_ENTRIES`); past it the least useful go.
pub const DEFAULT_ENTRIES: u64 = 100_000;
/// How long a cached `/users/me` body may serve: `last_login` is stamped by every login
/// without a notification (one per login would serialise commits), so it may lag this much.
pub const ME_TTL: Duration = Duration::from_secs(60);
/// Eviction records kept before the cache starts over (a new epoch).
const MAX_EVICTIONS: usize = 100_000;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
const HEARTBEAT_DEADLINE: Duration = Duration::from_millis(750);

/// What a verified access token stands for, as of `loaded_at`.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub user_id: Uuid,
    pub session_id: Uuid,
    /// The token's own expiry (`exp`), checked on every hit.
    pub token_expires_at: i64,
    pub aal: u8,
    pub amr: Vec<String>,
    pub authenticated_at: DateTime<Utc>,
    pub session_expires_at: DateTime<Utc>,
    pub mfa_verified_at: Option<DateTime<Utc>>,
    pub device_id: Option<Uuid>,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub email: String,
    pub username: String,
    pub email_verified: bool,
    pub issued_at: i64,
    /// The `whoami` body of this token, serialized by the first whoami that read the entry
    /// (everything in it is above, fixed for the entry's life): later hits send it as is.
    pub whoami: std::sync::OnceLock<Bytes>,
}

/// An API key row as authentication needs it.
#[derive(Debug)]
pub struct CachedKey {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The `api` session that backs the key (None for a key made before they existed).
    pub session_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub expires_at: DateTime<Utc>,
    /// When this instance last wrote the key's `last_used_at` (unix seconds).
    pub stamped_at: AtomicI64,
}

struct Entry<T> {
    value: Arc<T>,
    epoch: u64,
    loaded_at: Instant,
}

// Not derived: that would ask `T: Clone`, and only the Arc is cloned.
impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry { value: self.value.clone(), epoch: self.epoch, loaded_at: self.loaded_at }
    }
}

pub struct AuthCache {
    /// Keyed by the access token itself: only a token whose signature was checked is ever
    /// inserted, so a hit needs no second check.
    tokens: Cache<String, Entry<CachedSession>>,
    /// Keyed by the SHA-256 of the API key.
    keys: Cache<String, Entry<CachedKey>>,
    /// `GET /users/me` bodies (the user and the profile, as JSON), by user id.
    me: Cache<Uuid, Entry<Bytes>>,
    /// Session, user or key ids evicted by a notification, and when: an entry loaded
    /// before its id's eviction is a miss. Not a cache with an admission policy: a record
    /// it declined or dropped would let a revoked entry answer. Records older than
    /// `ENTRY_TTL` are pruned (every entry they could stop has expired by then); past
    /// `MAX_EVICTIONS` the instance starts a new epoch instead of forgetting any.
    evicted: RwLock<HashMap<Uuid, Instant>>,
    healthy: AtomicBool,
    epoch: AtomicU64,
    /// Requests made with API keys since the last flush, by the key's session: counted
    /// here, written to `total_api_calls` in batches (`core::auth::flush_api_calls`).
    api_calls: std::sync::Mutex<HashMap<Uuid, i64>>,
}

/// A read about to fill the cache: the epoch and time it started, so that a flush or an
/// eviction during the read discards what it brings back.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    started: Instant,
    usable: bool,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache::with_capacity(DEFAULT_ENTRIES)
    }
}

impl AuthCache {
    /// A cache holding at most `entries` of each kind (tokens, keys, `/users/me` bodies).
    pub fn with_capacity(entries: u64) -> Self {
        AuthCache {
            tokens: Cache::builder().max_capacity(entries).time_to_live(ENTRY_TTL).build(),
            keys: Cache::builder().max_capacity(entries).time_to_live(ENTRY_TTL).build(),
            me: Cache::builder().max_capacity(entries).time_to_live(ME_TTL).build(),
            evicted: RwLock::new(HashMap::new()),
            healthy: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            api_calls: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Marks the listener healthy without one (benchmarks of the cache alone).
    #[doc(hidden)]
    pub fn assume_listening(&self) {
        self.healthy.store(true, Ordering::Release);
    }

    /// Runs the caches' pending maintenance (so their entry counts are current).
    #[doc(hidden)]
    pub fn settle(&self) -> (u64, u64) {
        self.tokens.run_pending_tasks();
        self.me.run_pending_tasks();
        (self.tokens.entry_count(), self.me.entry_count())
    }
    /// Counts one request made under an API key's session.
    pub fn count_api_call(&self, session: Uuid) {
        if let Ok(mut calls) = self.api_calls.lock() {
            *calls.entry(session).or_default() += 1;
        }
    }

    /// The counts since the last take, emptied.
    pub fn take_api_calls(&self) -> Vec<(Uuid, i64)> {
        self.api_calls.lock().map(|mut calls| calls.drain().collect()).unwrap_or_default()
    }

    /// Puts back counts a flush could not write.
    pub fn return_api_calls(&self, counts: &[(Uuid, i64)]) {
        if let Ok(mut calls) = self.api_calls.lock() {
            for (session, n) in counts {
                *calls.entry(*session).or_default() += n;
            }
        }
    }

    /// Whether the cache may answer now (its listener is up and hearing itself).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn valid<T>(&self, entry: &Entry<T>, ids: &[Uuid]) -> bool {
        if !self.is_healthy() || entry.epoch != self.epoch.load(Ordering::Acquire) {
            return false;
        }
        // A poisoned lock (a panic while it was held) proves nothing: read PostgreSQL.
        let Ok(evicted) = self.evicted.read() else { return false };
        ids.iter().all(|id| evicted.get(id).is_none_or(|at| *at < entry.loaded_at))
    }

    pub fn session(&self, token: &str) -> Option<Arc<CachedSession>> {
        let entry = self.tokens.get(token)?;
        let s = &entry.value;
        let live = s.token_expires_at > Utc::now().timestamp() && s.session_expires_at > Utc::now();
        if live && self.valid(&entry, &[s.session_id, s.user_id]) {
            Some(entry.value.clone())
        } else {
            self.tokens.invalidate(token);
            None
        }
    }

    pub fn key(&self, key_hash: &str) -> Option<Arc<CachedKey>> {
        let entry = self.keys.get(key_hash)?;
        let k = &entry.value;
        let live = k.expires_at > Utc::now();
        if live && self.valid(&entry, &[k.id, k.user_id]) {
            Some(entry.value.clone())
        } else {
            self.keys.invalidate(key_hash);
            None
        }
    }

    /// The cached `/users/me` body of `user`, unless a change to the user, the profile or
    /// the MFA switch was published since it was read.
    pub fn me(&self, user: Uuid) -> Option<Bytes> {
        let entry = self.me.get(&user)?;
        if self.valid(&entry, &[user]) {
            Some(entry.value.as_ref().clone())
        } else {
            self.me.invalidate(&user);
            None
        }
    }

    pub fn put_me(&self, ticket: Ticket, user: Uuid, body: Bytes) -> Bytes {
        if ticket.usable && ticket.epoch == self.epoch.load(Ordering::Acquire) {
            let entry = Entry { value: Arc::new(body.clone()), epoch: ticket.epoch, loaded_at: ticket.started };
            self.me.insert(user, entry);
        }
        body
    }

    /// Taken before the database read whose result `put_*` will store.
    pub fn ticket(&self) -> Ticket {
        Ticket { epoch: self.epoch.load(Ordering::Acquire), started: Instant::now(), usable: self.is_healthy() }
    }

    /// Stores what a read brought back (unless the listener was down, or changed epoch,
    /// during the read) and hands it on.
    pub fn put_session(&self, ticket: Ticket, token: &str, session: CachedSession) -> Arc<CachedSession> {
        let value = Arc::new(session);
        if ticket.usable && ticket.epoch == self.epoch.load(Ordering::Acquire) {
            let entry = Entry { value: value.clone(), epoch: ticket.epoch, loaded_at: ticket.started };
            self.tokens.insert(token.to_owned(), entry);
        }
        value
    }

    pub fn put_key(&self, ticket: Ticket, key_hash: &str, key: CachedKey) -> Arc<CachedKey> {
        let value = Arc::new(key);
        if ticket.usable && ticket.epoch == self.epoch.load(Ordering::Acquire) {
            let entry = Entry { value: value.clone(), epoch: ticket.epoch, loaded_at: ticket.started };
            self.keys.insert(key_hash.to_owned(), entry);
        }
        value
    }

    /// Forgets everything about a session, user or key id (a notification, or a change
    /// this instance just committed). When the record of evictions is full of live records
    /// (more than `MAX_EVICTIONS / 2` within `ENTRY_TTL`, some 170 a second), nothing cached
    /// so far may answer again (a new epoch) and the record restarts: the cache starts
    /// over, never trusted past an eviction it forgot.
    pub fn evict(&self, id: Uuid) {
        let now = Instant::now();
        let overflow = match self.evicted.write() {
            Ok(mut evicted) => {
                evicted.insert(id, now);
                let mut overflow = false;
                if evicted.len() > MAX_EVICTIONS {
                    evicted.retain(|_, at| now.duration_since(*at) < ENTRY_TTL);
                    // Still more than half full of live records: start over rather than
                    // prune again on every eviction (each prune then frees half the record,
                    // so pruning stays amortised O(1) per eviction).
                    overflow = evicted.len() > MAX_EVICTIONS / 2;
                    if overflow {
                        evicted.clear();
                    }
                }
                overflow
            }
            Err(_) => true,
        };
        if overflow {
            self.flush();
        }
    }

    /// Nothing cached so far may answer again; the listener's health is unchanged.
    fn flush(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.tokens.invalidate_all();
        self.keys.invalidate_all();
        self.me.invalidate_all();
    }

    /// The listener is down (or just came back): nothing cached so far may answer again.
    fn new_epoch(&self, healthy: bool) {
        self.healthy.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.tokens.invalidate_all();
        self.keys.invalidate_all();
        self.me.invalidate_all();
        if healthy {
            self.healthy.store(true, Ordering::Release);
        }
    }

    /// Applies one notification payload: `s:<session>`, `u:<user>`, `k:<key>`.
    fn apply(&self, payload: &str) {
        if let Some((kind, id)) = payload.split_once(':')
            && matches!(kind, "s" | "u" | "k")
            && let Ok(id) = Uuid::parse_str(id)
        {
            self.evict(id);
        }
    }
}

/// Keeps `cache` in step with PostgreSQL until shutdown: listens, checks its own
/// heartbeat, and on any loss marks the cache unusable and reconnects every 250 ms.
/// `name` is the listener's `application_name` (operators and tests can find it).
pub async fn run_listener(db: PgPool, cache: Arc<AuthCache>, name: String, mut shutdown: watch::Receiver<bool>) {
    let nonce = Uuid::new_v4().simple().to_string();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match listen(&db, &cache, &name, &nonce, &mut shutdown).await {
            Ok(()) => {
                // Nobody keeps the cache honest any more.
                cache.new_epoch(false);
                return;
            }
            Err(e) => {
                if cache.is_healthy() {
                    tracing::warn!(error = %e, "auth cache listener lost; every request reads PostgreSQL until it is back");
                }
                cache.new_epoch(false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One listening connection's life; Ok on shutdown, Err when it is lost.
async fn listen(
    db: &PgPool,
    cache: &AuthCache,
    name: &str,
    nonce: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), sqlx::Error> {
    let options = db.connect_options().as_ref().clone().application_name(name);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool).await?;
    // Report a lost connection (Ok(None)) instead of quietly reconnecting: notifications
    // during a gap are lost, so a gap must end the epoch. (`try_recv` is cancel-safe.)
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    // Listening from here on: what is cached from now can be kept honest.
    cache.new_epoch(true);
    tracing::info!("auth cache listener up");
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    let mut sent: u64 = 0;
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            note = listener.try_recv() => match note? {
                Some(note) => match note.payload().strip_prefix("hb:") {
                    Some(rest) if rest.starts_with(nonce) => heard = Instant::now(),
                    Some(_) => {}
                    None => cache.apply(note.payload()),
                },
                None => return Err(sqlx::Error::Protocol("listener connection closed".into())),
            },
            _ = heartbeat.tick() => {
                if heard.elapsed() > HEARTBEAT_DEADLINE {
                    return Err(sqlx::Error::Protocol("listener heartbeat missed".into()));
                }
                sent += 1;
                // Through the pool, so a database that stopped answering stops the beat.
                let beat = format!("hb:{nonce}:{sent}");
                let send = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(beat).execute(db);
                if tokio::time::timeout(HEARTBEAT_DEADLINE, send).await.is_err() {
                    return Err(sqlx::Error::PoolTimedOut);
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "auth_cache_tests.rs"]
mod tests;
