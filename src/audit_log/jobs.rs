//! The record of background job runs (audit_log_jobrun): a scheduled run claims its period
//! before it starts, so each period runs once across instances; a run asked for by hand
//! always runs; every run ends as one row an administrator can list (`GET /admin/jobs`).

use std::time::Duration;

use chrono::Utc;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{models::review::NewJobRun, repo};
use crate::core::{AppResult, text_enum};

text_enum!(
    /// How a run ended (or that it is still running).
    RunStatus { Running => "running", Succeeded => "succeeded", Failed => "failed", Skipped => "skipped" }
);

text_enum!(
    /// Every kind of background job (audit_log_jobrun.kind).
    JobKind {
        AuditSummary => "audit_summary",
        Partitions => "partitions",
        Cleanup => "cleanup",
        IpRetention => "ip_retention",
        DataExport => "data_export",
        Outbox => "outbox",
    }
);

text_enum!(
    /// Who asked for a run: the scheduler skips a period or a day already done; people
    /// (the CLI, an administrator) run it again.
    Trigger { Scheduler => "scheduler", Cli => "cli", Admin => "admin" }
);

/// How a run is recorded: a scheduled one has claimed its period's row; one asked for by
/// hand is recorded when it ends.
#[derive(Debug, Clone, Copy)]
pub enum Claim {
    Period(Uuid),
    ByHand,
}

/// The claim of a run of `kind`; None when another instance has this period. Scheduled
/// runs still `running` after `stale_after` are marked failed first: their instance died,
/// and their period is retried rather than waited on for ever.
pub async fn claim(
    db: &PgPool,
    kind: JobKind,
    period: Duration,
    trigger: Trigger,
    stale_after: Duration,
) -> AppResult<Option<Claim>> {
    if trigger != Trigger::Scheduler {
        return Ok(Some(Claim::ByHand));
    }
    let abandoned = repo::jobs::fail_stale_runs(db, kind.as_str(), stale_after.as_secs_f64()).await?;
    if abandoned > 0 {
        tracing::warn!(
            kind = kind.as_str(),
            abandoned,
            "runs left running by a stopped instance marked failed; retrying"
        );
    }
    Ok(repo::jobs::claim_period(db, kind.as_str(), period.as_secs_f64()).await?.map(Claim::Period))
}

/// Records a finished run: ends the claimed row, or inserts one for a run by hand.
pub async fn record(db: impl PgExecutor<'_>, claim: Claim, run: &NewJobRun) -> AppResult<()> {
    match claim {
        Claim::Period(id) => repo::jobs::finish_run(db, id, run).await?,
        Claim::ByHand => {
            repo::jobs::insert_job_run(db, run).await?;
        }
    }
    Ok(())
}

/// Ends a claim its run did not record: `skipped` when the work did not run (another run
/// held the job's lock), `failed` with the error otherwise. Either frees the period for a
/// later tick. Hands the outcome back.
pub async fn settle<T>(
    db: &PgPool,
    claim: Claim,
    kind: JobKind,
    outcome: AppResult<Option<T>>,
) -> AppResult<Option<T>> {
    let Claim::Period(id) = claim else { return outcome };
    let (status, error) = match &outcome {
        Ok(Some(_)) => return outcome,
        Ok(None) => (RunStatus::Skipped, None),
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
    };
    let run = NewJobRun {
        kind,
        target_date: None,
        status,
        rows_affected: 0,
        started_at: Utc::now(),
        error,
        triggered_by: Trigger::Scheduler,
        details: None,
    };
    repo::jobs::finish_run(db, id, &run).await?;
    outcome
}

/// The latest day a run of `kind` succeeded for (a daily job's watermark).
pub async fn last_succeeded_day(db: impl PgExecutor<'_>, kind: JobKind) -> AppResult<Option<chrono::NaiveDate>> {
    Ok(repo::jobs::last_succeeded_day(db, kind.as_str()).await?)
}
