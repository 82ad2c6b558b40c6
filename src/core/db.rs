//! The PostgreSQL pool, the embedded migrations, and the pending-migration check.

use std::collections::HashSet;

use sqlx::{
    PgPool,
    migrate::{MigrateDatabase, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};

use super::{config::DatabaseConfig, error::AppResult};

/// Every migration under `migrations/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The pool that serves requests. It connects on first use, so the service starts (and
/// `/readyz` answers 503) while the database is down. Every wait is bounded: a connection
/// within `DATABASE_ACQUIRE_TIMEOUT_SECONDS`, a statement within
/// `DATABASE_STATEMENT_TIMEOUT_SECONDS` (both answer 503 past their budget).
pub fn lazy_pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    pool(config, config.max_connections, config.statement_timeout)
}

/// The pool of the background jobs and the outbox worker: a few connections whose
/// statements may run for `DATABASE_JOB_STATEMENT_TIMEOUT_SECONDS` (the daily summary,
/// the address truncation and the exports scan a day or an account at a time), kept apart
/// so a long job neither holds a request's connection nor lifts a request's budget.
pub fn jobs_pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    pool(config, JOB_CONNECTIONS, config.job_statement_timeout)
}

/// The schema owner's pool (`DATABASE_ADMIN_URL`), when one is configured: migrations and
/// the partition job's DDL. Two connections, the jobs' statement budget.
pub fn admin_pool(config: &DatabaseConfig) -> Result<Option<PgPool>, sqlx::Error> {
    if config.admin_url.is_none() {
        return Ok(None);
    }
    pool(&config.schema_owner(), 2, config.job_statement_timeout).map(Some)
}

/// What a fresh connection of the reports pool runs before it serves (see `reports_pool`).
pub type WarmUp =
    for<'c> fn(&'c mut sqlx::PgConnection) -> std::pin::Pin<Box<dyn Future<Output = sqlx::Result<()>> + Send + 'c>>;

/// Connections of the reports pool: the admin lists take a few milliseconds each.
const REPORT_CONNECTIONS: u32 = 4;

/// The pool of the admin reads on the primary (`reports!`, when no replica serves them):
/// a few connections, opened at start (`open_reports`) and kept open, each prepared by
/// `warm` when it opens (the audit lists' generic plans), so neither the lists' plans nor
/// their number weigh on the requests' pool. The requests' statement budget.
pub fn reports_pool(config: &DatabaseConfig, warm: WarmUp) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(
        config.url.expose(),
        config,
        REPORT_CONNECTIONS,
        config.statement_timeout,
        "gatehouse-reports-primary",
    )?;
    let options = reports_settings(options);
    Ok(pool.min_connections(REPORT_CONNECTIONS).after_connect(move |conn, _| warm(conn)).connect_lazy_with(options))
}

/// Opens every connection of the reports pool now, each with its `warm` hook run. A lazy
/// pool opens its `min_connections` only once something uses it: the first admin list of
/// every process (130-230 ms, connect and four plans) used to pay for one. Holding each
/// connection while taking the next makes the pool open them all. A failure is logged (the
/// first admin reads then open them).
pub async fn open_reports(pool: PgPool) {
    let mut held = Vec::with_capacity(REPORT_CONNECTIONS as usize);
    for _ in 0..REPORT_CONNECTIONS {
        match pool.acquire().await {
            Ok(conn) => held.push(conn),
            Err(error) => return tracing::warn!(%error, "the reports connections were not opened at start"),
        }
    }
}

/// The session settings of a reports connection (the primary's reports pool and the
/// replica's), given at connect so a list is one round trip, not BEGIN, SET LOCAL, the
/// list and COMMIT (each a wait for a core under load: a list's p50 was 4.5 ms for ~1 ms
/// of PostgreSQL's work). Generic plans: a custom plan of an audit list costs more to make
/// than to run (`audit_log::repo::review`; the lists that need one ask for it locally). No
/// parallel workers: starting them cost 7 ms of an 8 ms list at 10 M events in a month.
pub(crate) fn reports_settings(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("plan_cache_mode", "force_generic_plan"), ("max_parallel_workers_per_gather", "0")])
}

/// Connections of the jobs pool: a job holds one for its advisory lock and works on another,
/// and the outbox worker, the export and the summary may run at once.
const JOB_CONNECTIONS: u32 = 4;

fn pool(config: &DatabaseConfig, size: u32, statement_timeout: std::time::Duration) -> Result<PgPool, sqlx::Error> {
    pool_on(config.url.expose(), config, size, statement_timeout, "gatehouse")
}

/// A lazy pool on `url` with `config`'s acquire budget; `application_name` tells its
/// connections apart in `pg_stat_activity`.
fn pool_on(
    url: &str,
    config: &DatabaseConfig,
    size: u32,
    statement_timeout: std::time::Duration,
    application_name: &str,
) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(url, config, size, statement_timeout, application_name)?;
    Ok(pool.connect_lazy_with(options))
}

/// The replica's lazy pool of `size` reports connections (`reports_settings`).
pub(crate) fn replica_pool(url: &str, config: &DatabaseConfig, size: u32) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(url, config, size, config.statement_timeout, "gatehouse-reports")?;
    Ok(pool.connect_lazy_with(reports_settings(options)))
}

fn pool_options(
    url: &str,
    config: &DatabaseConfig,
    size: u32,
    statement_timeout: std::time::Duration,
    application_name: &str,
) -> Result<(PgPoolOptions, PgConnectOptions), sqlx::Error> {
    let mut options = url.parse::<PgConnectOptions>()?;
    // A name given in the URL wins.
    if options.get_application_name().is_none() {
        options = options.application_name(application_name);
    }
    let options = options.options([
        ("statement_timeout", format!("{}ms", statement_timeout.as_millis())),
        // A transaction left open (a bug, or a client-side cancellation sqlx does not
        // clean up) is ended by the server instead of holding its locks for ever.
        ("idle_in_transaction_session_timeout", "60s".to_owned()),
    ]);
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(config.acquire_timeout)
        // No ping before every acquire (a round trip each); a dead connection fails its
        // query with an I/O error (503) and is replaced.
        .test_before_acquire(false);
    Ok((pool, options))
}

/// `pool.begin()`, shielded from the caller's cancellation. A request whose client hangs
/// up drops its handler at whatever `.await` it is on; sqlx 0.9.0 cancelled inside
/// `begin()` leaves the BEGIN open on the pooled connection, so the next borrower's
/// autocommit statements run inside a transaction nobody commits (launchbadge/sqlx#4385,
/// fixed upstream after 0.9.0). Here the BEGIN round trip runs in its own task: it always
/// finishes, and if nobody is left to take the transaction it is dropped, which rolls it
/// back properly.
pub async fn begin(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.begin().await })
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("the BEGIN task failed: {e}")))?
}

/// `tx.commit()`, shielded the same way: cancelled after COMMIT went out, sqlx queues a
/// ROLLBACK that the server answers with "there is no transaction in progress" (seen in
/// the logs under refresh load, as clients hung up at the end of a run).
pub async fn commit(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<(), sqlx::Error> {
    tokio::spawn(async move { tx.commit().await })
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("the COMMIT task failed: {e}")))?
}

/// Creates the database named in the URL when the server has none by that name; returns
/// the name it created.
pub async fn create_database_if_missing(url: &str) -> Result<Option<String>, sqlx::Error> {
    if sqlx::Postgres::database_exists(url).await? {
        return Ok(None);
    }
    sqlx::Postgres::create_database(url).await?;
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(Some(options.get_database().unwrap_or("postgres").to_owned()))
}

/// Runs `f` only if this process takes the advisory lock `key`; others skip (the jobs' "once
/// across instances").
/// The lock is session-level, so it is held on one dedicated connection for the run.
pub async fn with_advisory_lock<T, F, Fut>(pool: &PgPool, key: i64, f: F) -> AppResult<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = AppResult<T>>,
{
    let mut conn = pool.acquire().await?;
    // Closed, never pooled, after: a run cut short (shutdown) must not leave the lock held
    // by a pooled connection, which would make every later run skip.
    conn.close_on_drop();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *conn).await?;
    if !locked {
        return Ok(None);
    }
    let result = f().await;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *conn).await?;
    result.map(Some)
}

/// Applies pending migrations; a second run is a no-op.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Versions compiled into this binary that the database has not applied.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let table_exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text").fetch_one(pool).await?;
    let applied: HashSet<i64> = if table_exists.is_some() {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect())
}

/// A column of raw client addresses and the column that dates its rows, for the privacy
/// rule: addresses are kept `IP_RETENTION_DAYS`, then cut to their network. Each app lists
/// its own columns (`IP_COLUMNS` in its repo); names come from the code, never a client.
#[derive(Debug, Clone, Copy)]
pub struct IpColumn {
    pub table: &'static str,
    pub ip: &'static str,
    pub dated_by: &'static str,
}

/// Cuts the addresses of rows dated in `[from, to)` (no `from`: everything before `to`) to
/// /24 (IPv4) or /48 (IPv6); rows already cut are left alone. Returns the rows changed.
pub async fn truncate_ips(
    conn: &mut sqlx::PgConnection,
    col: IpColumn,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sqlx::Error> {
    let IpColumn { table, ip, dated_by } = col;
    let prefix = format!("CASE WHEN family({ip}) = 4 THEN 24 ELSE 48 END");
    let sql = format!(
        "UPDATE {table} SET {ip} = network(set_masklen({ip}, {prefix}))
          WHERE {dated_by} >= COALESCE($1::timestamptz, '-infinity') AND {dated_by} < $2 AND masklen({ip}) > {prefix}"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from).bind(to).execute(conn).await?;
    Ok(done.rows_affected())
}
