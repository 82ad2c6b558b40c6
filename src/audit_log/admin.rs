//! The administrators' review of the audit trail: filtered lists, reviews (themselves
//! audited), summaries, job runs and retention; and a user's own security events.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{
    models::{AuditEvent, AuditKind, DailyTotals, EventFilter, JobRun, Retention, RiskLevel, SessionEvent, Summary},
    repo, service, summary,
};
use crate::core::{
    AppError, AppResult,
    error::FieldErrors,
    extract::{Page, PageParams},
};

/// Query of the admin lists; every value is checked and a bad one is a 422 naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct EventQuery {
    pub user_id: Option<String>,
    /// RFC 3339 instant, or a date (`YYYY-MM-DD`, from its start, UTC).
    pub from: Option<String>,
    /// RFC 3339 instant (exclusive), or a date (`YYYY-MM-DD`, inclusive, UTC).
    pub to: Option<String>,
    pub action: Option<String>,
    /// `low`, `medium`, `high` or `critical`.
    pub risk_level: Option<String>,
    /// 0-100.
    pub min_risk_score: Option<String>,
    pub is_anomalous: Option<String>,
    pub requires_review: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

fn add(errors: &mut FieldErrors, field: &str, message: &str) {
    errors.entry(field.to_owned()).or_default().push(message.to_owned());
}

/// Parses `from` (start of a date) or `to` (end of a date, exclusive).
fn instant(raw: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    let day = if end { day.checked_add_days(Days::new(1))? } else { day };
    Some(day.and_time(NaiveTime::MIN).and_utc())
}

fn boolean(raw: &str) -> Option<bool> {
    match raw {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// The page of a query whose values arrive as text (so every bad parameter is reported at
/// once); the range rules are `PageParams`'s.
pub fn page(page: Option<&str>, limit: Option<&str>, errors: &mut FieldErrors) -> Page {
    let mut number = |raw: Option<&str>, field: &str| {
        raw.and_then(|r| r.parse::<i64>().map_err(|_| add(errors, field, "must be a whole number")).ok())
    };
    let params = PageParams { page: number(page, "page"), limit: number(limit, "limit") };
    params.validate(errors)
}

/// Checks the query against `kind` (its action names).
pub fn parse_query(kind: Option<AuditKind>, q: &EventQuery) -> AppResult<(EventFilter, Page)> {
    let mut errors = FieldErrors::new();
    let mut f = EventFilter::default();
    if let Some(u) = &q.user_id {
        f.user_id = Uuid::parse_str(u).map_err(|_| add(&mut errors, "user_id", "must be a UUID")).ok();
    }
    if let Some(v) = &q.from {
        f.from = instant(v, false).or_else(|| {
            add(&mut errors, "from", "must be an RFC 3339 time or YYYY-MM-DD");
            None
        });
    }
    if let Some(v) = &q.to {
        f.to = instant(v, true).or_else(|| {
            add(&mut errors, "to", "must be an RFC 3339 time or YYYY-MM-DD");
            None
        });
    }
    if let (Some(from), Some(to)) = (f.from, f.to)
        && from >= to
    {
        add(&mut errors, "to", "must be after from");
    }
    if let (Some(a), Some(kind)) = (&q.action, kind) {
        let known = match kind {
            AuditKind::Session => super::models::SessionAction::parse(a).is_some(),
            AuditKind::Device => super::models::DeviceAction::parse(a).is_some(),
            AuditKind::Mfa => super::models::MfaAction::parse(a).is_some(),
            AuditKind::Link => super::models::LinkAction::parse(a).is_some(),
        };
        if known {
            f.action = Some(a.clone());
        } else {
            add(&mut errors, "action", "is not an action of this audit table (docs/audit.md)");
        }
    }
    if let Some(r) = &q.risk_level {
        f.risk_level = RiskLevel::parse(r).or_else(|| {
            add(&mut errors, "risk_level", "must be low, medium, high or critical");
            None
        });
    }
    if let Some(s) = &q.min_risk_score {
        f.min_risk_score = s.parse::<i32>().ok().filter(|s| (0..=100).contains(s)).or_else(|| {
            add(&mut errors, "min_risk_score", "must be a whole number from 0 to 100");
            None
        });
    }
    for (raw, field, slot) in [
        (&q.is_anomalous, "is_anomalous", &mut f.is_anomalous),
        (&q.requires_review, "requires_review", &mut f.requires_review),
    ] {
        if let Some(v) = raw {
            *slot = boolean(v).or_else(|| {
                add(&mut errors, field, "must be true or false");
                None
            });
        }
    }
    let page = page(q.page.as_deref(), q.limit.as_deref(), &mut errors);
    if errors.is_empty() { Ok((f, page)) } else { Err(AppError::Validation(errors)) }
}

pub fn parse_kind(raw: &str) -> AppResult<AuditKind> {
    AuditKind::parse(raw).ok_or_else(|| AppError::MalformedRequest(format!("unknown audit kind {raw:?}")))
}

pub async fn list(db: &PgPool, kind: AuditKind, f: &EventFilter, page: Page) -> AppResult<(Vec<AuditEvent>, i64)> {
    let rows = repo::list_events(db, kind, f, page.limit, page.offset()).await?;
    let total = rows.first().map(|r| r.total).unwrap_or(0);
    Ok((rows, total))
}

pub async fn own_events(db: &PgPool, user: Uuid, f: &EventFilter, page: Page) -> AppResult<(Vec<AuditEvent>, i64)> {
    let rows = repo::events_of_user(db, user, f.from, f.to, page.limit, page.offset()).await?;
    let total = rows.first().map(|r| r.total).unwrap_or(0);
    Ok((rows, total))
}

/// Records a review and audits it (`audit_reviewed`) in one transaction.
pub async fn review(
    db: &PgPool,
    kind: AuditKind,
    id: Uuid,
    status: &str,
    notes: Option<&str>,
    reviewer: Uuid,
) -> AppResult<()> {
    if !["confirmed", "dismissed"].contains(&status) {
        return Err(AppError::validation("review_status", "must be confirmed or dismissed"));
    }
    if notes.is_some_and(|n| n.chars().count() > 5000) {
        return Err(AppError::validation("review_notes", "must be at most 5000 characters"));
    }
    let mut tx = db.begin().await?;
    let subject = repo::review_event(&mut *tx, kind, id, status, notes, reviewer).await?.ok_or(AppError::NotFound)?;
    let event = SessionEvent {
        metadata: Some(serde_json::json!({
            "kind": kind.as_str(), "event_id": id, "review_status": status, "subject_user_id": subject,
        })),
        ..SessionEvent::new(reviewer, super::models::SessionAction::AuditReviewed)
    };
    service::record_session(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// The date range of a summaries query: `date`, or `from`..=`to` (default: the last 30 days).
pub fn date_range(date: Option<&str>, from: Option<&str>, to: Option<&str>) -> AppResult<(NaiveDate, NaiveDate)> {
    let mut errors = FieldErrors::new();
    let mut day = |raw: Option<&str>, field: &str| {
        raw.and_then(|r| {
            NaiveDate::parse_from_str(r, "%Y-%m-%d").map_err(|_| add(&mut errors, field, "must be YYYY-MM-DD")).ok()
        })
    };
    let (d, f, t) = (day(date, "date"), day(from, "from"), day(to, "to"));
    let today = Utc::now().date_naive();
    let (from, to) = match (d, f, t) {
        (Some(d), _, _) => (d, d),
        (None, f, t) => {
            let to = t.unwrap_or(today);
            (f.unwrap_or(to - Days::new(29)), to)
        }
    };
    if from > to {
        add(&mut errors, "to", "must not be before from");
    }
    if (to - from).num_days() > 366 {
        add(&mut errors, "from", "a range may span at most 367 days");
    }
    if errors.is_empty() { Ok((from, to)) } else { Err(AppError::Validation(errors)) }
}

pub async fn summaries(
    db: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
    user: Option<Uuid>,
    page: Page,
) -> AppResult<(Vec<Summary>, i64)> {
    Ok(repo::summaries(db, from, to, user, page.limit, page.offset()).await?)
}

pub async fn daily(db: &PgPool, from: NaiveDate, to: NaiveDate) -> AppResult<Vec<DailyTotals>> {
    Ok(repo::daily_totals(db, from, to).await?)
}

pub async fn run_summary(db: &PgPool, day: NaiveDate) -> AppResult<JobRun> {
    if day > Utc::now().date_naive() {
        return Err(AppError::validation("date", "must not be in the future"));
    }
    Ok(summary::run_day(db, day, summary::Trigger::Admin).await?)
}

pub async fn jobs(db: &PgPool, kind: Option<&str>, page: Page) -> AppResult<(Vec<JobRun>, i64)> {
    Ok(repo::job_runs(db, kind, page.limit, page.offset()).await?)
}

pub async fn retention(db: &PgPool, default_months: i32) -> AppResult<Vec<Retention>> {
    let rows = repo::retention_rows(db).await?;
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

pub async fn set_retention(db: &PgPool, kind: AuditKind, months: i32, by: Uuid) -> AppResult<()> {
    if !(1..=120).contains(&months) {
        return Err(AppError::validation("months_kept", "must be between 1 and 120"));
    }
    Ok(repo::set_retention(db, kind.table(), months, by).await?)
}
