//! The daily audit summary: one row per (user, day), recomputed set-based and idempotently,
//! once per day across all instances, catching up days the scheduler missed.

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::PgPool;

use super::{
    jobs::{JobKind, RunStatus, Trigger},
    models::review::{JobRun, NewJobRun},
    repo,
};

pub const KIND: JobKind = JobKind::AuditSummary;

/// Summarises `day`. Runs for one day are serialised by an advisory lock held for the
/// transaction; a scheduled run that finds the day already done records `skipped`.
/// Every run leaves one audit_log_jobrun row, failures included.
pub async fn run_day(db: &PgPool, day: NaiveDate, trigger: Trigger) -> sqlx::Result<JobRun> {
    let started_at = Utc::now();
    let outcome = async {
        let mut tx = db.begin().await?;
        repo::jobs::summary_budget(&mut *tx).await?;
        repo::jobs::lock_summary_day(&mut *tx, day).await?;
        if trigger == Trigger::Scheduler && repo::jobs::job_succeeded(&mut *tx, KIND.as_str(), day).await? {
            let run =
                repo::jobs::insert_job_run(&mut *tx, &new_run(day, trigger, started_at, RunStatus::Skipped, 0, None))
                    .await?;
            crate::core::db::commit(tx).await?;
            return Ok(run);
        }
        let rows = repo::jobs::upsert_day_summaries(&mut *tx, day).await?;
        let run = repo::jobs::insert_job_run(
            &mut *tx,
            &new_run(day, trigger, started_at, RunStatus::Succeeded, rows as i64, None),
        )
        .await?;
        crate::core::db::commit(tx).await?;
        Ok::<_, sqlx::Error>(run)
    }
    .await;
    match outcome {
        Ok(run) => Ok(run),
        Err(e) => {
            tracing::error!(%day, error = %e, "audit summary failed");
            let failed = new_run(day, trigger, started_at, RunStatus::Failed, 0, Some(e.to_string()));
            repo::jobs::insert_job_run(db, &failed).await.ok();
            Err(e)
        }
    }
}

/// The summary's plan for `day`, executed and rolled back (benchmarks, diagnosis).
pub async fn explain_day(tx: &mut sqlx::PgConnection, day: NaiveDate) -> sqlx::Result<Vec<String>> {
    repo::jobs::summary_budget(&mut *tx).await?;
    repo::jobs::explain_day_summaries(tx, day).await
}

fn new_run(
    day: NaiveDate,
    trigger: Trigger,
    started_at: DateTime<Utc>,
    status: RunStatus,
    rows: i64,
    error: Option<String>,
) -> NewJobRun {
    NewJobRun {
        kind: KIND,
        target_date: Some(day),
        status,
        rows_affected: rows,
        started_at,
        error,
        triggered_by: trigger,
        details: None,
    }
}

/// The days a scheduler tick at `now` owes: from the day after the last success up to
/// yesterday (or the day before, until `run_at` has passed today). Never more than a year.
pub async fn due_days(db: &PgPool, now: DateTime<Utc>, run_at: chrono::NaiveTime) -> sqlx::Result<Vec<NaiveDate>> {
    let today = now.date_naive();
    let Some(last_due) = today.checked_sub_days(Days::new(if now.time() >= run_at { 1 } else { 2 })) else {
        return Ok(Vec::new());
    };
    let earliest = last_due.checked_sub_days(Days::new(365)).unwrap_or(last_due);
    let first = match repo::jobs::last_succeeded_day(db, KIND.as_str()).await? {
        Some(done) => done.succ_opt().unwrap_or(done).max(earliest),
        None => last_due,
    };
    Ok(first.iter_days().take_while(|d| *d <= last_due).collect())
}

/// One scheduler tick: runs every owed day, oldest first.
pub async fn run_due(db: &PgPool, now: DateTime<Utc>, run_at: chrono::NaiveTime) -> sqlx::Result<Vec<JobRun>> {
    let mut runs = Vec::new();
    for day in due_days(db, now, run_at).await? {
        runs.push(run_day(db, day, Trigger::Scheduler).await?);
    }
    Ok(runs)
}

/// Runs each day of `from..=to` by hand (`gatehouse summarize`).
pub async fn run_range(db: &PgPool, from: NaiveDate, to: NaiveDate, trigger: Trigger) -> sqlx::Result<Vec<JobRun>> {
    let mut runs = Vec::new();
    for day in from.iter_days().take_while(|d| *d <= to) {
        runs.push(run_day(db, day, trigger).await?);
    }
    Ok(runs)
}
