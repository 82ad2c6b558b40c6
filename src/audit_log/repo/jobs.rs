//! The daily summary statement and the SQL of the record of background job runs (the
//! claim, record and settle around them are `audit_log::jobs`).

use chrono::NaiveDate;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::audit_log::models::review::JobRun;

/// Recomputes every user's summary row for `day` (UTC) in one set-based statement over that
/// day's partitions; returns the rows written. Counter definitions: docs/audit.md.
pub async fn upsert_day_summaries(db: impl PgExecutor<'_>, day: NaiveDate) -> sqlx::Result<u64> {
    let done = sqlx::query_file!("queries/audit_summary_upsert.sql", day,).execute(db).await?;
    Ok(done.rows_affected())
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the summary statement for `day`, run inside `tx`
/// (the caller rolls it back): the plan the benchmark checks for spills and pruning.
pub async fn explain_day_summaries(tx: &mut sqlx::PgConnection, day: NaiveDate) -> sqlx::Result<Vec<String>> {
    let sql = concat!("EXPLAIN (ANALYZE, BUFFERS) ", include_str!("../../../queries/audit_summary_upsert.sql"));
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(day).fetch_all(tx).await
}

/// The summary's own budget, for this transaction only: memory for its sorts and hashes,
/// and time beyond a request's `statement_timeout` (an administrator's run goes through the
/// request pool). A 10 M-event day of 100,000 users has ~800,000 first-level groups, which
/// hash to ~330 MB: at 64 MB the planner sorted all 10 M rows on disk instead (600 MB of
/// temporary files); at 256 MB nothing spills. A limit, not an allocation: a 1 M-event day
/// uses ~30 MB of it.
pub async fn summary_budget(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT set_config('work_mem', '256MB', true) AS work_mem,
                set_config('statement_timeout', '30min', true) AS statement_timeout"
    )
    .fetch_one(db)
    .await?;
    Ok(())
}

/// Takes the per-day summary lock for the rest of the transaction, waiting for a holder.
pub async fn lock_summary_day(db: impl PgExecutor<'_>, day: NaiveDate) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('audit_summary'), ($1::date - DATE '2000-01-01'))", day)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether a run for `day` of `kind` has already succeeded.
pub async fn job_succeeded(db: impl PgExecutor<'_>, kind: &str, day: NaiveDate) -> sqlx::Result<bool> {
    let found = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM audit_log_jobrun WHERE kind = $1 AND target_date = $2
                          AND status = 'succeeded') AS "found!""#,
        kind,
        day,
    )
    .fetch_one(db)
    .await?;
    Ok(found)
}

/// The latest day `kind` succeeded for.
pub async fn last_succeeded_day(db: impl PgExecutor<'_>, kind: &str) -> sqlx::Result<Option<NaiveDate>> {
    sqlx::query_scalar!("SELECT max(target_date) FROM audit_log_jobrun WHERE kind = $1 AND status = 'succeeded'", kind)
        .fetch_one(db)
        .await
}

/// Records a finished job run.
/// Claims the scheduled run of `kind` for the period of `period_secs` that holds now, by
/// the database's clock (one clock for every instance): inserts a `running` row unless a
/// running or succeeded run of that period exists (`uq_jobrun_period`). None: another
/// instance has it.
pub async fn claim_period(db: impl PgExecutor<'_>, kind: &str, period_secs: f64) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        r#"INSERT INTO audit_log_jobrun (kind, period_start, target_date, status, triggered_by)
           SELECT $1, p, p::date, 'running', 'scheduler'
             FROM (SELECT to_timestamp(floor(extract(epoch FROM now())::float8 / $2::float8) * $2::float8) AS p) period
           ON CONFLICT (kind, period_start) WHERE status IN ('running', 'succeeded') DO NOTHING
           RETURNING id"#,
        kind,
        period_secs
    )
    .fetch_optional(db)
    .await
}

/// Ends a claimed run with its outcome; a no-op when the run has ended already.
pub async fn finish_run(
    db: impl PgExecutor<'_>,
    id: Uuid,
    run: &crate::audit_log::models::review::NewJobRun,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE audit_log_jobrun
            SET status = $2, rows_affected = $3, error = $4, details = $5, finished_at = clock_timestamp(),
                duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint
          WHERE id = $1 AND status = 'running'",
        id,
        run.status.as_str(),
        run.rows_affected,
        run.error,
        run.details,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks failed the runs of `kind` still `running` after `stale_secs`: their instance died
/// (a run's statements cannot outlast the jobs' statement budget). Their period is free
/// again, so the next tick retries it.
pub async fn fail_stale_runs(db: impl PgExecutor<'_>, kind: &str, stale_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE audit_log_jobrun
            SET status = 'failed', finished_at = clock_timestamp(),
                error = 'abandoned: still running after ' || $2::float8 || ' s (its instance stopped)'
          WHERE kind = $1 AND status = 'running' AND started_at < now() - make_interval(secs => $2)",
        kind,
        stale_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn insert_job_run(
    db: impl PgExecutor<'_>,
    run: &crate::audit_log::models::review::NewJobRun,
) -> sqlx::Result<JobRun> {
    sqlx::query_as!(
        JobRun,
        r#"INSERT INTO audit_log_jobrun
             (kind, target_date, status, rows_affected, started_at, finished_at, duration_ms, error, triggered_by,
              details)
           VALUES ($1, $2, $3, $4, $5, clock_timestamp(),
                   (extract(epoch FROM clock_timestamp() - $5) * 1000)::bigint, $6, $7, $8)
           RETURNING id, kind, target_date, status, rows_affected, started_at, finished_at, duration_ms, error,
                     triggered_by, details"#,
        run.kind.as_str(),
        run.target_date,
        run.status.as_str(),
        run.rows_affected,
        run.started_at,
        run.error,
        run.triggered_by.as_str(),
        run.details,
    )
    .fetch_one(db)
    .await
}
