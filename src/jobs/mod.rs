//! The scheduler: loops that run each background job at its time, once across all
//! instances (a PostgreSQL advisory lock), until shutdown.

use std::time::Duration;

use tokio::sync::watch;

use crate::{
    audit_log,
    core::AppState,
    notifications::{self, mailer::Mailer, sms::AnySms},
};

/// Advisory-lock keys, one per job kind.
pub mod locks {
    pub const PARTITIONS: i64 = 0x6761_7465_0001;
    pub const CLEANUP: i64 = 0x6761_7465_0002;
}

/// Months of audit partitions kept ready ahead of time.
pub const PARTITION_MONTHS_AHEAD: u32 = 2;

/// How often a scheduled job runs, across all instances: each period of the database's
/// clock is claimed by one run (`audit_log::repo::claim_period`). The loops tick more often
/// than that, so a period an instance missed is taken by the next tick of any instance.
pub mod periods {
    use std::time::Duration;
    pub const PARTITIONS: Duration = Duration::from_secs(6 * 3600);
    pub const CLEANUP: Duration = Duration::from_secs(600);
}

/// How a run is recorded: a scheduled one claims its period before it starts; one asked
/// for by hand (CLI, admin, tests) always runs and is recorded when it ends.
enum Claim {
    Period(uuid::Uuid),
    ByHand,
}

/// The claim of a run of `kind`; None when another instance has this period. Runs still
/// `running` after twice the jobs' statement budget are marked failed first: their
/// instance died, and their period is retried rather than waited on for ever.
async fn claim(
    state: &AppState,
    kind: &str,
    period: Duration,
    triggered_by: &str,
) -> Result<Option<Claim>, sqlx::Error> {
    if triggered_by != "scheduler" {
        return Ok(Some(Claim::ByHand));
    }
    let stale_after = state.config.database_job_statement_timeout.as_secs_f64() * 2.0;
    let abandoned = audit_log::repo::fail_stale_runs(&state.db, kind, stale_after).await?;
    if abandoned > 0 {
        tracing::warn!(kind, abandoned, "runs left running by a stopped instance marked failed; retrying");
    }
    Ok(audit_log::repo::claim_period(&state.db, kind, period.as_secs_f64()).await?.map(Claim::Period))
}

/// Records a finished run: ends the claimed row, or inserts one for a run by hand.
async fn record(
    db: impl sqlx::PgExecutor<'_>,
    claim: &Claim,
    run: &audit_log::models::NewJobRun<'_>,
) -> Result<(), sqlx::Error> {
    match claim {
        Claim::Period(id) => audit_log::repo::finish_run(db, *id, run).await,
        Claim::ByHand => audit_log::repo::insert_job_run(db, run).await.map(|_| ()),
    }
}

/// Ends a claim its run did not record: `skipped` when another run held the job's lock,
/// `failed` with the error otherwise. Either frees the period for a later tick.
async fn settle<T>(
    state: &AppState,
    claim: &Claim,
    kind: &str,
    result: Result<Option<T>, sqlx::Error>,
) -> Result<Option<T>, sqlx::Error> {
    let Claim::Period(id) = claim else { return result };
    let (status, error) = match &result {
        Ok(Some(_)) => return result,
        Ok(None) => ("skipped", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    let run = audit_log::models::NewJobRun {
        kind,
        target_date: None,
        status,
        rows_affected: 0,
        started_at: chrono::Utc::now(),
        error,
        triggered_by: "scheduler",
        details: None,
    };
    audit_log::repo::finish_run(&state.db, *id, &run).await?;
    result
}

/// Runs `f` only if this instance takes the advisory lock `key`; others skip.
/// The lock is session-level, so it is held on one dedicated connection for the run.
pub async fn with_advisory_lock<T, F, Fut>(state: &AppState, key: i64, f: F) -> Result<Option<T>, sqlx::Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut conn = state.db.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *conn).await?;
    if !locked {
        return Ok(None);
    }
    let result = f().await;
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *conn).await?;
    result.map(Some)
}

/// Partition upkeep: premake the coming months, drop those past retention.
pub async fn run_partitions_once(state: &AppState, triggered_by: &str) -> Result<(), sqlx::Error> {
    let started_at = chrono::Utc::now();
    let today = audit_log::service::today();
    let Some(claim) = claim(state, "partitions", periods::PARTITIONS, triggered_by).await? else {
        state.metrics.job("partitions", "skipped");
        return Ok(());
    };
    // DDL runs as the schema owner when DATABASE_ADMIN_URL is set.
    let ddl = state.admin_db.as_ref().unwrap_or(&state.db);
    let outcome = with_advisory_lock(state, locks::PARTITIONS, || async {
        let created = audit_log::service::ensure_partitions(ddl, today, PARTITION_MONTHS_AHEAD).await?;
        let dropped = audit_log::service::prune_partitions(ddl, today, state.config.audit_retention_months).await?;
        Ok((created, dropped))
    })
    .await;
    if let Err(e) = &outcome
        && state.admin_db.is_none()
        && e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501")
    {
        tracing::warn!(
            "the service's database role may not create partitions: set DATABASE_ADMIN_URL to the schema \
             owner's URL, or run `gatehouse partitions ensure` from the operator's scheduler"
        );
    }
    let outcome = settle(state, &claim, "partitions", outcome).await?;
    match outcome {
        Some((created, dropped)) => {
            // Recorded like every job, so GET /admin/jobs shows the run and how many partitions
            // it created or dropped (their names are in the log line below).
            let run = audit_log::models::NewJobRun {
                kind: "partitions",
                target_date: Some(today),
                status: "succeeded",
                rows_affected: i64::try_from(created.len() + dropped.len()).unwrap_or(i64::MAX),
                started_at,
                error: None,
                triggered_by,
                details: None,
            };
            record(&state.db, &claim, &run).await?;
            tracing::info!(created = ?created, dropped = ?dropped, "audit partitions maintained");
            state.metrics.job("partitions", "succeeded");
        }
        None => state.metrics.job("partitions", "skipped"),
    }
    Ok(())
}

/// How long dead rows stay before the cleanup deletes them: one-time tokens and refresh
/// records a day past their expiry; sessions 30 days after they were revoked or expired
/// (long enough for a user's or an admin's question about them); login attempts once they
/// are older than any lockout looks back (twice the 30-minute window).
pub mod grace {
    pub const TOKENS_SECS: f64 = 24.0 * 3600.0;
    pub const SESSIONS_SECS: f64 = 30.0 * 24.0 * 3600.0;
    pub const ATTEMPTS_SECS: f64 = 2.0 * 30.0 * 60.0;
}

/// Deletes what has expired (MFA challenges and codes, refresh children past the reuse
/// leeway, one-time tokens, refresh records, dead sessions, old login attempts), ends
/// expired device trust and expires finished exports (deleting their files), and records
/// the run in audit_log_jobrun with the rows of each kind in `details`; then, once a day,
/// cuts old client addresses (`run_ip_retention`).
pub async fn run_cleanup_once(state: &AppState, triggered_by: &str) -> Result<Option<i64>, sqlx::Error> {
    let started_at = chrono::Utc::now();
    let Some(claim) = claim(state, "cleanup", periods::CLEANUP, triggered_by).await? else {
        state.metrics.job("cleanup", "skipped");
        return Ok(None);
    };
    let outcome = with_advisory_lock(state, locks::CLEANUP, || async {
        // Rows first (committed on their own), then files: a file never goes while its row
        // still offers it.
        let exports = crate::accounts::service::expire_exports(&state.db).await.map_err(job_error)?;
        let mut tx = crate::core::db::begin(&state.db).await?;
        let (challenges, codes) = crate::otp::repo::delete_expired(&mut tx).await?;
        // A rotated refresh token's sealed child lives for the reuse leeway only.
        let leeway = state.config.refresh_reuse_leeway.as_secs_f64();
        let children = crate::accounts::repo::wipe_refresh_children(&mut *tx, leeway).await?;
        let trust = crate::accounts::repo::expire_device_trust(&mut *tx).await?;
        let tokens = crate::accounts::repo::delete_expired_tokens(&mut *tx, grace::TOKENS_SECS).await?;
        let refresh = crate::accounts::repo::delete_expired_refresh_records(&mut *tx, grace::TOKENS_SECS).await?;
        let sessions = crate::accounts::repo::delete_dead_sessions(&mut *tx, grace::SESSIONS_SECS).await?;
        let attempts = crate::accounts::repo::delete_old_attempts(&mut *tx, grace::ATTEMPTS_SECS).await?;
        // Not a deletion: owners of keys that expire within 7 days are told, once.
        let keys_warned = crate::accounts::service::warn_expiring_keys(state, &mut tx).await.map_err(job_error)?;
        let counts = [challenges, codes, children, trust, tokens, refresh, sessions, attempts, exports];
        let rows = i64::try_from(counts.iter().sum::<u64>()).unwrap_or(i64::MAX);
        let details = serde_json::json!({
            "mfa_challenges": challenges, "mfa_codes": codes, "refresh_children": children,
            "device_trust_ended": trust, "one_time_tokens": tokens, "refresh_records": refresh,
            "sessions": sessions, "login_attempts": attempts, "exports_expired": exports,
            "api_key_expiry_notices": keys_warned,
        });
        let run = audit_log::models::NewJobRun {
            kind: "cleanup",
            target_date: Some(started_at.date_naive()),
            status: "succeeded",
            rows_affected: rows,
            started_at,
            error: None,
            triggered_by,
            details: Some(details.clone()),
        };
        record(&mut *tx, &claim, &run).await?;
        crate::core::db::commit(tx).await?;
        if keys_warned > 0 {
            state.outbox_wakeup.notify_one();
        }
        tracing::info!(%details, "cleanup: expired rows deleted");
        run_ip_retention(state, triggered_by).await?;
        Ok(rows)
    })
    .await;
    let outcome = settle(state, &claim, "cleanup", outcome).await?;
    state.metrics.job("cleanup", if outcome.is_some() { "succeeded" } else { "skipped" });
    Ok(outcome)
}

/// Builds the waiting data exports (any instance may; each request is claimed once) and
/// records a `data_export` run when it finished any.
pub async fn run_exports_once(state: &AppState, triggered_by: &str) -> Result<u64, sqlx::Error> {
    let started_at = chrono::Utc::now();
    let done = crate::accounts::service::run_exports_once(state).await.map_err(job_error)?;
    if done > 0 {
        let run = audit_log::models::NewJobRun {
            kind: "data_export",
            target_date: Some(started_at.date_naive()),
            status: "succeeded",
            rows_affected: i64::try_from(done).unwrap_or(i64::MAX),
            started_at,
            error: None,
            triggered_by,
            details: None,
        };
        audit_log::repo::insert_job_run(&state.db, &run).await?;
        state.metrics.job("data_export", "succeeded");
    }
    Ok(done)
}

/// A job's service error as the loops' error type (its message, never a secret).
fn job_error(e: crate::core::AppError) -> sqlx::Error {
    match e {
        crate::core::AppError::Internal(message) => sqlx::Error::Protocol(message),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Privacy (DESIGN.md): raw client addresses are kept `IP_RETENTION_DAYS`, then cut to
/// /24 or /48 in every app's `IP_COLUMNS`. Runs once per UTC day; each run covers the rows
/// dated between the previous run's cutoff and today's, so it touches one day's rows, not
/// the whole history. Recorded in audit_log_jobrun as `ip_retention` (target_date: cutoff).
async fn run_ip_retention(state: &AppState, triggered_by: &str) -> Result<(), sqlx::Error> {
    let started_at = chrono::Utc::now();
    let days = chrono::Days::new(u64::from(state.config.ip_retention_days));
    let Some(cutoff_day) = started_at.date_naive().checked_sub_days(days) else { return Ok(()) };
    let mut tx = crate::core::db::begin(&state.db).await?;
    let previous = audit_log::repo::last_succeeded_day(&mut *tx, "ip_retention").await?;
    if previous.is_some_and(|d| d >= cutoff_day) {
        return Ok(());
    }
    let at_midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    let from = previous.map(at_midnight);
    let to = at_midnight(cutoff_day);
    let columns =
        crate::accounts::repo::IP_COLUMNS.iter().chain(audit_log::repo::IP_COLUMNS).chain(crate::otp::repo::IP_COLUMNS);
    let mut rows = 0;
    for column in columns {
        rows += crate::core::db::truncate_ips(&mut tx, *column, from, to).await?;
    }
    let run = audit_log::models::NewJobRun {
        kind: "ip_retention",
        target_date: Some(cutoff_day),
        status: "succeeded",
        rows_affected: i64::try_from(rows).unwrap_or(i64::MAX),
        started_at,
        error: None,
        triggered_by,
        details: None,
    };
    audit_log::repo::insert_job_run(&mut *tx, &run).await?;
    crate::core::db::commit(tx).await?;
    tracing::info!(rows, %cutoff_day, "client addresses older than the retention cut to their network");
    Ok(())
}

/// One summary tick: summarises every day owed at this moment (see `summary::due_days`).
/// Concurrent instances serialise per day on an advisory lock; the later one skips.
pub async fn run_summaries_once(state: &AppState) -> Result<(), sqlx::Error> {
    let runs = audit_log::summary::run_due(&state.db, chrono::Utc::now(), state.config.summary_run_at).await?;
    for run in runs {
        state.metrics.job(audit_log::summary::KIND, &run.status);
        let date = run.target_date.map(|d| d.to_string()).unwrap_or_default();
        tracing::info!(%date, status = %run.status, rows = run.rows_affected, "audit summary");
    }
    Ok(())
}

/// Starts every background loop; they stop when `shutdown` flips to true.
pub fn spawn(
    state: AppState,
    mailer: Mailer,
    sms: AnySms,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        // Woken as soon as a message is queued; polls each second for retries that fall due.
        tokio::spawn(notifications::delivery::run(
            state.db.clone(),
            state.data_keys.clone(),
            mailer,
            sms,
            notifications::delivery::DeliveryConfig::default(),
            state.outbox_wakeup.clone(),
            shutdown.clone(),
            Duration::from_secs(1),
        )),
        // Ticks at a quarter of their period (or each minute): the period claim decides.
        tokio::spawn(every(state.clone(), shutdown.clone(), periods::PARTITIONS / 4, "partitions", |s| {
            Box::pin(async move { run_partitions_once(&s, "scheduler").await })
        })),
        tokio::spawn(every(state.clone(), shutdown.clone(), Duration::from_secs(60), "cleanup", |s| {
            Box::pin(async move { run_cleanup_once(&s, "scheduler").await.map(|_| ()) })
        })),
        // API.md: a job picks a request up within 10 seconds.
        tokio::spawn(every(state.clone(), shutdown.clone(), Duration::from_secs(5), "data_export", |s| {
            Box::pin(async move { run_exports_once(&s, "scheduler").await.map(|_| ()) })
        })),
        // A cheap check each minute; work happens only once a day is owed.
        tokio::spawn(every(state, shutdown, Duration::from_secs(60), "audit_summary", |s| {
            Box::pin(async move { run_summaries_once(&s).await })
        })),
    ]
}

type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send>>;

/// Runs `job` now and then every `period` until shutdown; a failure is logged, not fatal,
/// and the next try waits longer while failures last.
async fn every(
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
    period: Duration,
    name: &'static str,
    job: fn(AppState) -> JobFuture,
) {
    // Failures back off (up to 10 minutes) and log once per run of failures.
    let mut backoff = crate::core::backoff::Backoff::new(name, Duration::from_secs(600));
    loop {
        let pause = match job(state.clone()).await {
            Ok(()) => {
                backoff.succeeded();
                period
            }
            Err(e) => {
                state.metrics.job(name, "failed");
                backoff.failed(period, &e)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
