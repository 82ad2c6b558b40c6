//! The scheduler: loops that run each background job at its time, once across all
//! instances (a PostgreSQL advisory lock), until shutdown.

use std::time::Duration;

use tokio::sync::watch;

use crate::{
    accounts, audit_log,
    audit_log::{
        jobs::{Claim, JobKind, RunStatus, Trigger, record, settle},
        models::review::NewJobRun,
    },
    core::{AppResult, AppState, db},
    notifications::{self, mailer::Mailer, push::Push, sms::AnySms},
    otp,
};

/// Advisory-lock keys, one per job kind.
pub mod locks {
    pub const PARTITIONS: i64 = 0x6761_7465_0001;
    pub const CLEANUP: i64 = 0x6761_7465_0002;
    pub const DIGEST: i64 = 0x6761_7465_0003;
}

/// Months of audit partitions kept ready ahead of time: the audit tables have no DEFAULT
/// partition (a row dated outside every month is refused), so three months of margin.
pub const PARTITION_MONTHS_AHEAD: u32 = 3;

/// How often a scheduled job runs, across all instances: each period of the database's
/// clock is claimed by one run (`audit_log::jobs::claim`). The loops tick more often
/// than that, so a period an instance missed is taken by the next tick of any instance.
pub mod periods {
    use std::time::Duration;
    pub const PARTITIONS: Duration = Duration::from_secs(6 * 3600);
    pub const CLEANUP: Duration = Duration::from_secs(600);
}

/// The claim of a run of `kind` (`audit_log::jobs::claim`): runs left `running` for twice
/// the jobs' statement budget belonged to an instance that died.
async fn claim(state: &AppState, kind: JobKind, period: Duration, trigger: Trigger) -> AppResult<Option<Claim>> {
    let stale_after = state.config.database.job_statement_timeout * 2;
    audit_log::jobs::claim(&state.db, kind, period, trigger, stale_after).await
}

/// Audit rows land only in a month's partition (there is no DEFAULT one): `serve` makes
/// this month's and the coming ones before the first request writes, even with RUN_JOBS
/// off. As the schema owner when DATABASE_ADMIN_URL is set (the service's role may not
/// create tables), on a pool closed once done; a failure is logged, not fatal.
pub async fn ensure_partitions_at_start(state: &AppState) -> Result<(), sqlx::Error> {
    let admin = db::admin_pool(&state.config.database)?;
    let ddl = admin.as_ref().unwrap_or(&state.db);
    let today = audit_log::service::today();
    if let Err(error) = audit_log::service::ensure_partitions(ddl, today, PARTITION_MONTHS_AHEAD).await {
        tracing::warn!(%error, "audit partitions not checked at start; `gatehouse partitions ensure` makes them");
    }
    if let Some(admin) = admin {
        admin.close().await;
    }
    Ok(())
}

/// Partition upkeep: premake the coming months, drop those past retention.
pub async fn run_partitions_once(state: &AppState, trigger: Trigger) -> AppResult<()> {
    let started_at = chrono::Utc::now();
    let today = audit_log::service::today();
    let Some(claim) = claim(state, JobKind::Partitions, periods::PARTITIONS, trigger).await? else {
        state.metrics.job("partitions", "skipped");
        return Ok(());
    };
    // DDL runs as the schema owner when DATABASE_ADMIN_URL is set.
    let ddl = state.admin_db.as_ref().unwrap_or(&state.db);
    let outcome = db::with_advisory_lock(&state.db, locks::PARTITIONS, || async {
        let made = audit_log::service::ensure_partitions(ddl, today, PARTITION_MONTHS_AHEAD).await;
        let created = made.inspect_err(|e| warn_if_not_owner(state, e))?;
        let pruned = audit_log::service::prune_partitions(ddl, today, state.config.audit_retention_months).await;
        let dropped = pruned.inspect_err(|e| warn_if_not_owner(state, e))?;
        Ok((created, dropped))
    })
    .await;
    let outcome = settle(&state.db, claim, JobKind::Partitions, outcome).await?;
    match outcome {
        Some((created, dropped)) => {
            // Recorded like every job, so GET /admin/jobs shows the run and how many partitions
            // it created or dropped (their names are in the log line below).
            let run = NewJobRun {
                kind: JobKind::Partitions,
                target_date: Some(today),
                status: RunStatus::Succeeded,
                rows_affected: i64::try_from(created.len() + dropped.len()).unwrap_or(i64::MAX),
                started_at,
                error: None,
                triggered_by: trigger,
                details: None,
            };
            record(&state.db, claim, &run).await?;
            tracing::info!(created = ?created, dropped = ?dropped, "audit partitions maintained");
            state.metrics.job("partitions", "succeeded");
        }
        None => state.metrics.job("partitions", "skipped"),
    }
    Ok(())
}

/// The partition DDL needs the schema owner: say how to give it, once per failure.
fn warn_if_not_owner(state: &AppState, e: &sqlx::Error) {
    if state.admin_db.is_none() && e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501") {
        tracing::warn!(
            "the service's database role may not create partitions: set DATABASE_ADMIN_URL to the schema \
             owner's URL, or run `gatehouse partitions ensure` from the operator's scheduler"
        );
    }
}

/// One cleanup: each app's `cleanup` in one transaction (otp's expired challenges and
/// codes; accounts' tokens, refresh records, dead sessions, old login attempts, ended trust,
/// key-expiry notices), after the finished exports past their 24 h (rows committed on their
/// own, then files); recorded in audit_log_jobrun with the rows of each kind in `details`;
/// then, once a day, old client addresses cut (`run_ip_retention`).
pub async fn run_cleanup_once(state: &AppState, trigger: Trigger) -> AppResult<Option<i64>> {
    let started_at = chrono::Utc::now();
    let Some(claim) = claim(state, JobKind::Cleanup, periods::CLEANUP, trigger).await? else {
        state.metrics.job("cleanup", "skipped");
        return Ok(None);
    };
    let outcome = db::with_advisory_lock(&state.db, locks::CLEANUP, || async {
        let exports = accounts::service::expire_exports(&state.db).await?;
        let mut tx = crate::core::db::begin(&state.db).await?;
        let otp = otp::service::cleanup(&mut tx).await?;
        let accounts = accounts::service::upkeep::cleanup(state, &mut tx).await?;
        let rows = otp.rows() + accounts.rows() + exports;
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        let mut details = serde_json::json!({ "exports_expired": exports });
        for part in [serde_json::to_value(otp), serde_json::to_value(accounts)] {
            if let (Some(all), Ok(serde_json::Value::Object(part))) = (details.as_object_mut(), part) {
                all.extend(part);
            }
        }
        let run = NewJobRun {
            kind: JobKind::Cleanup,
            target_date: Some(started_at.date_naive()),
            status: RunStatus::Succeeded,
            rows_affected: rows,
            started_at,
            error: None,
            triggered_by: trigger,
            details: Some(details.clone()),
        };
        record(&mut *tx, claim, &run).await?;
        crate::core::db::commit(tx).await?;
        if accounts.api_key_expiry_notices > 0 {
            state.outbox_wakeup.notify_one();
        }
        tracing::info!(%details, "cleanup: expired rows deleted");
        run_ip_retention(state, trigger).await?;
        Ok(rows)
    })
    .await;
    let outcome = settle(&state.db, claim, JobKind::Cleanup, outcome).await?;
    state.metrics.job("cleanup", if outcome.is_some() { "succeeded" } else { "skipped" });
    Ok(outcome)
}

/// Builds the waiting data exports (any instance may; each request is claimed once) and
/// records a `data_export` run when it finished any.
pub async fn run_exports_once(state: &AppState, trigger: Trigger) -> AppResult<u64> {
    let started_at = chrono::Utc::now();
    let done = accounts::service::run_exports_once(state).await?;
    if done > 0 {
        let run = NewJobRun {
            kind: JobKind::DataExport,
            target_date: Some(started_at.date_naive()),
            status: RunStatus::Succeeded,
            rows_affected: i64::try_from(done).unwrap_or(i64::MAX),
            started_at,
            error: None,
            triggered_by: trigger,
            details: None,
        };
        record(&state.db, Claim::ByHand, &run).await?;
        state.metrics.job("data_export", "succeeded");
    }
    Ok(done)
}

/// Privacy (DESIGN.md): raw client addresses are kept `IP_RETENTION_DAYS`, then cut to
/// /24 or /48 in every app's `IP_COLUMNS`. Runs once per UTC day; each run covers the rows
/// dated between the previous run's cutoff and today's, so it touches one day's rows, not
/// the whole history. Recorded in audit_log_jobrun as `ip_retention` (target_date: cutoff).
async fn run_ip_retention(state: &AppState, trigger: Trigger) -> AppResult<()> {
    let started_at = chrono::Utc::now();
    let days = chrono::Days::new(u64::from(state.config.ip_retention_days));
    let Some(cutoff_day) = started_at.date_naive().checked_sub_days(days) else { return Ok(()) };
    let mut tx = crate::core::db::begin(&state.db).await?;
    let previous = audit_log::jobs::last_succeeded_day(&mut *tx, JobKind::IpRetention).await?;
    if previous.is_some_and(|d| d >= cutoff_day) {
        return Ok(());
    }
    let at_midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    let from = previous.map(at_midnight);
    let to = at_midnight(cutoff_day);
    let rows = accounts::service::upkeep::truncate_ips(&mut tx, from, to).await?
        + otp::service::truncate_ips(&mut tx, from, to).await?
        + audit_log::service::truncate_ips(&mut tx, from, to).await?;
    let run = NewJobRun {
        kind: JobKind::IpRetention,
        target_date: Some(cutoff_day),
        status: RunStatus::Succeeded,
        rows_affected: i64::try_from(rows).unwrap_or(i64::MAX),
        started_at,
        error: None,
        triggered_by: trigger,
        details: None,
    };
    record(&mut *tx, Claim::ByHand, &run).await?;
    crate::core::db::commit(tx).await?;
    tracing::info!(rows, %cutoff_day, "client addresses older than the retention cut to their network");
    Ok(())
}

/// One summary tick: summarises every day owed at this moment (see `summary::due_days`).
/// Concurrent instances serialise per day on an advisory lock; the later one skips.
pub async fn run_summaries_once(state: &AppState) -> AppResult<()> {
    let runs = audit_log::summary::run_due(&state.db, chrono::Utc::now(), state.config.summary_run_at).await?;
    for run in runs {
        state.metrics.job(audit_log::summary::KIND.as_str(), &run.status);
        let date = run.target_date.map(|d| d.to_string()).unwrap_or_default();
        tracing::info!(%date, status = %run.status, rows = run.rows_affected, "audit summary");
    }
    Ok(())
}

/// Queues the digests that are due (`notifications::digest`), once across instances;
/// None when another instance holds the lock.
pub async fn run_digests_once(state: &AppState) -> AppResult<Option<usize>> {
    let outcome = db::with_advisory_lock(&state.db, locks::DIGEST, || async {
        let queued = notifications::digest::run_once(&state.db).await?;
        if queued > 0 {
            state.outbox_wakeup.notify_one();
            tracing::info!(queued, "digests queued");
        }
        Ok(queued)
    })
    .await;
    state.metrics.job("digest", if matches!(outcome, Ok(Some(_))) { "succeeded" } else { "skipped" });
    outcome
}

/// Starts every background loop; they stop when `shutdown` flips to true.
pub fn spawn(
    state: AppState,
    mailer: Mailer,
    sms: AnySms,
    push: Push,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        // Woken as soon as a message is queued; polls each second for retries that fall due.
        tokio::spawn(notifications::delivery::run(
            state.db.clone(),
            state.data_keys.clone(),
            mailer,
            sms,
            push,
            notifications::delivery::DeliveryConfig::default(),
            state.outbox_wakeup.clone(),
            shutdown.clone(),
            Duration::from_secs(1),
        )),
        // Ticks at a quarter of their period (or each minute): the period claim decides.
        tokio::spawn(every(state.clone(), shutdown.clone(), periods::PARTITIONS / 4, "partitions", |s| {
            Box::pin(async move { run_partitions_once(&s, Trigger::Scheduler).await })
        })),
        tokio::spawn(every(state.clone(), shutdown.clone(), Duration::from_secs(60), "cleanup", |s| {
            Box::pin(async move { run_cleanup_once(&s, Trigger::Scheduler).await.map(|_| ()) })
        })),
        // API.md: a job picks a request up within 10 seconds.
        tokio::spawn(every(state.clone(), shutdown.clone(), Duration::from_secs(5), "data_export", |s| {
            Box::pin(async move { run_exports_once(&s, Trigger::Scheduler).await.map(|_| ()) })
        })),
        // Digests: a user's falls due hourly, daily or weekly; one runner at a time.
        tokio::spawn(every(state.clone(), shutdown.clone(), Duration::from_secs(300), "digest", |s| {
            Box::pin(async move { run_digests_once(&s).await.map(|_| ()) })
        })),
        // A cheap check each minute; work happens only once a day is owed.
        tokio::spawn(every(state.clone(), shutdown.clone(), Duration::from_secs(60), "audit_summary", |s| {
            Box::pin(async move { run_summaries_once(&s).await })
        })),
        tokio::spawn(flush_api_calls_every_minute(state, shutdown)),
    ]
}

/// This instance's API-key request counts, written each minute and once more at shutdown.
async fn flush_api_calls_every_minute(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => false,
            _ = shutdown.changed() => true,
        };
        if let Err(e) = crate::core::auth::flush_api_calls(&state).await {
            state.metrics.job("api_calls", "failed");
            tracing::warn!(error = %e, "API call counts not written; kept for the next flush");
        }
        if stop {
            return;
        }
    }
}

type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = AppResult<()>> + Send>>;

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
