//! The administrators' review of the audit trail: filtered lists, reviews (themselves
//! audited), summaries, job runs and retention; and a user's own security events. Takes
//! parsed filters (the handlers read the query strings) and owns its transactions. The
//! administrators' lists read the replica when one is in use (`reports!`); a user's own
//! events and everything written read the primary.

use chrono::NaiveDate;
use uuid::Uuid;

use super::{
    forms::Review,
    jobs::JobKind,
    models::{
        events::{AuditKind, SessionEvent},
        review::{AuditEvent, COUNT_CAP, Cursor, DailyTotals, EventFilter, EventPage, JobRun, Retention, Summary},
    },
    repo, service, summary,
};
use crate::core::{AppError, AppResult, AppState, error::Problems, extract::Page};

pub async fn list(state: &AppState, kind: AuditKind, f: &EventFilter, page: Page) -> AppResult<EventPage> {
    // One row more than the page tells whether another page follows. With a cursor the
    // page starts after it (`page` is then ignored); without one, `page` still pages by offset.
    let offset = if f.after.is_some() { 0 } else { page.offset() };
    let mut rows = crate::reports!(state, |db| repo::review::list_events(db, kind, f, page.limit + 1, offset))?;
    let counted = rows.first().map(|r| r.total).unwrap_or(0);
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > page.limit;
    rows.truncate(usize::try_from(page.limit).unwrap_or(0));
    let next = rows.last().filter(|_| more).map(|last| Cursor {
        risk_score: if f.by_risk { last.risk_score } else { None },
        created_at: last.created_at,
        id: last.id,
    });
    Ok(EventPage { items: rows, total: counted.min(COUNT_CAP), total_exact: counted <= COUNT_CAP, next })
}

/// A user's own events, without what staff wrote about them: review notes and reviewer ids
/// stay with the staff.
pub async fn own_events(
    state: &AppState,
    user: Uuid,
    f: &EventFilter,
    page: Page,
) -> AppResult<(Vec<AuditEvent>, i64)> {
    let mut rows = repo::review::events_of_user(&state.db, user, f.from, f.to, page.limit, page.offset()).await?;
    for row in &mut rows {
        row.review_notes = None;
        row.reviewed_by_id = None;
    }
    let total = rows.first().map(|r| r.total).unwrap_or(0);
    Ok((rows, total))
}

/// Records a review and audits it (`audit_reviewed`) in one transaction.
pub async fn review(state: &AppState, kind: AuditKind, id: Uuid, review: Review, reviewer: Uuid) -> AppResult<()> {
    let (status, notes) = (review.status.as_str(), review.notes.as_deref());
    let mut tx = crate::core::db::begin(&state.db).await?;
    let subject =
        repo::review::review_event(&mut *tx, kind, id, status, notes, reviewer).await?.ok_or(AppError::NotFound)?;
    // Nobody reviews events about themselves; dropping the transaction undoes the update.
    if subject == reviewer {
        return Err(AppError::Forbidden);
    }
    let event = SessionEvent {
        metadata: Some(serde_json::json!({
            "kind": kind.as_str(), "event_id": id, "review_status": status, "subject_user_id": subject,
        })),
        ..SessionEvent::new(reviewer, super::models::events::SessionAction::AuditReviewed)
    };
    service::record_session(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    Ok(())
}

pub async fn summaries(
    state: &AppState,
    from: NaiveDate,
    to: NaiveDate,
    user: Option<Uuid>,
    page: Page,
) -> AppResult<(Vec<Summary>, i64)> {
    Ok(crate::reports!(state, |db| repo::review::summaries(db, from, to, user, page.limit, page.offset()))?)
}

pub async fn daily(state: &AppState, from: NaiveDate, to: NaiveDate) -> AppResult<Vec<DailyTotals>> {
    Ok(crate::reports!(state, |db| repo::review::daily_totals(db, from, to))?)
}

/// Runs (or re-runs) a day's summary: the day is checked by `forms::RunRequest`.
pub async fn run_summary(state: &AppState, day: NaiveDate) -> AppResult<JobRun> {
    Ok(summary::run_day(&state.db, day, super::jobs::Trigger::Admin).await?)
}

pub async fn jobs(state: &AppState, kind: Option<JobKind>, latest: bool, page: Page) -> AppResult<(Vec<JobRun>, i64)> {
    let kind = kind.map(JobKind::as_str);
    Ok(crate::reports!(state, |db| repo::review::job_runs(db, kind, latest, page.limit, page.offset()))?)
}

/// Months kept per audit table: its policy row, else the configured default.
pub async fn retention(state: &AppState) -> AppResult<Vec<Retention>> {
    let default_months = state.config.audit_retention_months;
    let rows = crate::reports!(state, |db| repo::review::retention_rows(db))?;
    Ok(AuditKind::ALL
        .iter()
        .map(|k| {
            let set = rows.iter().find(|(t, _)| t == k.table()).map(|(_, m)| *m);
            Retention {
                kind: *k,
                table_name: k.table().to_owned(),
                months_kept: set.unwrap_or(default_months),
                is_default: set.is_none(),
            }
        })
        .collect())
}

/// Sets months kept per table, all or none, never below AUDIT_RETENTION_MIN_MONTHS; each
/// change is audited (who, old, new) in the same transaction.
pub async fn set_retention(state: &AppState, changes: &[(AuditKind, i32)], by: Uuid) -> AppResult<()> {
    let floor = state.config.audit_retention_min_months;
    let mut problems = Problems::new();
    for (kind, months) in changes {
        if !(floor..=120).contains(months) {
            problems.add(kind.as_str(), format!("must be between {floor} (AUDIT_RETENTION_MIN_MONTHS) and 120"));
        }
    }
    problems.into_result()?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    for (kind, months) in changes {
        let old = repo::partitions::retention_months(&mut *tx, kind.table())
            .await?
            .unwrap_or(state.config.audit_retention_months);
        repo::review::set_retention(&mut *tx, kind.table(), *months, by).await?;
        let event = SessionEvent {
            metadata: Some(serde_json::json!({ "table": kind.table(), "old_months": old, "new_months": months })),
            ..SessionEvent::new(by, super::models::events::SessionAction::RetentionChanged)
        };
        service::record_session(&mut *tx, &event).await?;
    }
    crate::core::db::commit(tx).await?;
    Ok(())
}
