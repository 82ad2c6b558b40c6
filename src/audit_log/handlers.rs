//! HTTP in and out for the audit trail: the admin review API (staff, a Django-style
//! permission per route, aal 2 unless the staff user's enforce_for_admin is off) and a
//! user's own security events.

use std::collections::HashMap;

use axum::{Json, extract::State};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    models::{
        AuditEvent, AuditKind, DailyTotals, DeviceAction, EventFilter, JobRun, LinkAction, MfaAction, Retention,
        RiskLevel, SessionAction, Summary,
    },
    review,
};
use crate::core::{
    AppResult, AppState,
    auth::{AuthUser, require_admin_write, require_permission},
    error::{ErrorBody, Problems},
    extract::{AppJson, AppPath, AppQuery, Page, PageParams, Paginated, flag},
};

#[utoipa::path(get, path = "/api/v1/admin/audit/{kind}", tag = "admin", extensions(("x-permission" = json!("audit_log.view_auditlog"))), security(("bearer" = [])),
    params(("kind" = String, Path, description = "session, device, mfa or link; else 400"), EventQuery),
    responses(
        (status = 200, description = "newest first: {items: [AuditEvent], pagination}", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED"),
        (status = 422, body = ErrorBody, description = "a bad filter value, or limit outside 1..100")))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(kind): AppPath<String>,
    AppQuery(q): AppQuery<EventQuery>,
) -> AppResult<Json<Paginated<AuditEvent>>> {
    require_permission(&state, &auth, "audit_log.view_auditlog").await?;
    let kind = AuditKind::from_path(&kind)?;
    let (filter, page) = parse_query(Some(kind), &q)?;
    let (items, total) = review::list(&state, kind, &filter, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// `confirmed` or `dismissed`.
    pub review_status: String,
    pub review_notes: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reviewed {
    pub id: Uuid,
    pub review_status: String,
}

#[utoipa::path(post, path = "/api/v1/admin/audit/{kind}/{id}/review", tag = "admin", extensions(("x-permission" = json!("audit_log.review_auditlog"))), security(("bearer" = [])),
    params(("kind" = String, Path), ("id" = Uuid, Path)), request_body = ReviewRequest,
    responses((status = 200, body = Reviewed, description = "recorded, and itself audited (audit_reviewed)"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "FORBIDDEN without the permission; MFA_REQUIRED: an admin write needs a second factor within STEP_UP_MAX_AGE_SECONDS"), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn review(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath((kind, id)): AppPath<(String, Uuid)>,
    AppJson(body): AppJson<ReviewRequest>,
) -> AppResult<Json<Reviewed>> {
    require_admin_write(&state, &auth, "audit_log.review_auditlog").await?;
    let kind = AuditKind::from_path(&kind)?;
    review::review(&state, kind, id, &body.review_status, body.review_notes.as_deref(), auth.user_id).await?;
    Ok(Json(Reviewed { id, review_status: body.review_status }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// One day, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// First day (default: 29 days before `to`).
    pub from: Option<String>,
    /// Last day, inclusive (default: today).
    pub to: Option<String>,
    pub user_id: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/audit/summaries", tag = "admin", extensions(("x-permission" = json!("audit_log.view_auditlogsummary"))), security(("bearer" = [])),
    params(SummaryQuery),
    responses((status = 200, description = "{items: [Summary], pagination}, newest day first", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn summaries(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<SummaryQuery>,
) -> AppResult<Json<Paginated<Summary>>> {
    require_permission(&state, &auth, "audit_log.view_auditlogsummary").await?;
    let mut problems = Problems::new();
    let (from, to) = date_range(q.date.as_deref(), q.from.as_deref(), q.to.as_deref(), &mut problems);
    problems.into_result()?;
    let mut problems = Problems::new();
    let page = PageParams::from_text(q.page.as_deref(), q.limit.as_deref(), &mut problems);
    let user =
        q.user_id.as_deref().and_then(|u| problems.check("user_id", Uuid::parse_str(u).map_err(|_| "must be a UUID")));
    problems.into_result()?;
    let (items, total) = review::summaries(&state, from, to, user, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/audit/summaries/daily", tag = "admin", extensions(("x-permission" = json!("audit_log.view_auditlogsummary"))), security(("bearer" = [])),
    params(RangeQuery),
    responses((status = 200, body = Vec<DailyTotals>, description = "one row per day from..=to (default: 30 days), zeros included"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn daily(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<RangeQuery>,
) -> AppResult<Json<Vec<DailyTotals>>> {
    require_permission(&state, &auth, "audit_log.view_auditlogsummary").await?;
    let mut problems = Problems::new();
    let (from, to) = date_range(None, q.from.as_deref(), q.to.as_deref(), &mut problems);
    problems.into_result()?;
    Ok(Json(review::daily(&state, from, to).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The day to (re)compute, `YYYY-MM-DD`, not in the future.
    #[schema(value_type = String, format = Date)]
    pub date: chrono::NaiveDate,
}

#[utoipa::path(post, path = "/api/v1/admin/audit/summaries/run", tag = "admin", extensions(("x-permission" = json!("audit_log.run_auditlogsummary"))), security(("bearer" = [])),
    request_body = RunRequest,
    responses((status = 200, body = JobRun, description = "the run; re-running a day is idempotent"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "FORBIDDEN without the permission; MFA_REQUIRED: an admin write needs a second factor within STEP_UP_MAX_AGE_SECONDS"), (status = 422, body = ErrorBody)))]
pub async fn run_summary(
    State(state): State<AppState>,
    auth: AuthUser,
    AppJson(body): AppJson<RunRequest>,
) -> AppResult<Json<JobRun>> {
    require_admin_write(&state, &auth, "audit_log.run_auditlogsummary").await?;
    Ok(Json(review::run_summary(&state, body.date).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// `audit_summary`, `partitions`, `cleanup`, `ip_retention` or `data_export`.
    pub kind: Option<String>,
    /// `true`: only the newest run of each kind (what ran last, kind by kind).
    pub latest: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

/// Every kind of background job (audit_log_jobrun.kind).
const JOB_KINDS: [&str; 6] = ["audit_summary", "partitions", "cleanup", "ip_retention", "data_export", "outbox"];

#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin", extensions(("x-permission" = json!("audit_log.view_jobrun"))), security(("bearer" = [])), params(JobsQuery),
    responses((status = 200, description = "{items: [JobRun], pagination}, newest first; with latest=true one run per kind: the last", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn jobs(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<JobsQuery>,
) -> AppResult<Json<Paginated<JobRun>>> {
    require_permission(&state, &auth, "audit_log.view_jobrun").await?;
    let mut problems = Problems::new();
    let page = PageParams::from_text(q.page.as_deref(), q.limit.as_deref(), &mut problems);
    if let Some(k) = &q.kind
        && !JOB_KINDS.contains(&k.as_str())
    {
        problems.add("kind", "is not a job kind");
    }
    let latest = match q.latest.as_deref() {
        None => false,
        Some(raw) => problems.check("latest", flag(raw).ok_or("must be true or false")).unwrap_or(false),
    };
    problems.into_result()?;
    let (items, total) = review::jobs(&state, q.kind.as_deref(), latest, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[utoipa::path(get, path = "/api/v1/admin/audit/retention", tag = "admin", extensions(("x-permission" = json!("audit_log.view_retentionpolicy"))), security(("bearer" = [])),
    responses((status = 200, body = Vec<Retention>, description = "Months kept per audit table"),
        (status = 401, body = ErrorBody, description = "UNAUTHENTICATED"),
        (status = 403, body = ErrorBody, description = "FORBIDDEN without audit_log.view_retentionpolicy; MFA_REQUIRED")))]
pub async fn retention(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<Retention>>> {
    require_permission(&state, &auth, "audit_log.view_retentionpolicy").await?;
    Ok(Json(review::retention(&state).await?))
}

#[utoipa::path(put, path = "/api/v1/admin/audit/retention", tag = "admin", extensions(("x-permission" = json!("audit_log.change_retentionpolicy"))), security(("bearer" = [])),
    request_body(content = Object, description = "kind -> months kept (AUDIT_RETENTION_MIN_MONTHS, default 12, ..120), any subset: {\"session\": 18, \"mfa\": 24}; all or none; each change audited (retention_changed)"),
    responses((status = 200, body = Vec<Retention>, description = "Months kept per audit table, after the change"),
        (status = 401, body = ErrorBody, description = "UNAUTHENTICATED"),
        (status = 403, body = ErrorBody, description = "FORBIDDEN without audit_log.change_retentionpolicy; MFA_REQUIRED: an admin write needs a second factor within STEP_UP_MAX_AGE_SECONDS"),
        (status = 422, body = ErrorBody, description = "VALIDATION_FAILED: an unknown table, or months outside AUDIT_RETENTION_MIN_MONTHS..120")))]
pub async fn set_retention(
    State(state): State<AppState>,
    auth: AuthUser,
    AppJson(body): AppJson<HashMap<AuditKind, i32>>,
) -> AppResult<Json<Vec<Retention>>> {
    require_admin_write(&state, &auth, "audit_log.change_retentionpolicy").await?;
    let changes: Vec<(AuditKind, i32)> = body.into_iter().collect();
    review::set_retention(&state, &changes, auth.user_id).await?;
    Ok(Json(review::retention(&state).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OwnEventsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit", security(("bearer" = [])), params(OwnEventsQuery),
    responses((status = 200, description = "own events from all four audit tables, newest first: {items: [AuditEvent], pagination}", body = Object),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn own_events(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<OwnEventsQuery>,
) -> AppResult<Json<Paginated<AuditEvent>>> {
    let query = EventQuery { from: q.from, to: q.to, page: q.page, limit: q.limit, ..EventQuery::default() };
    let (filter, page) = parse_query(None, &query)?;
    let (items, total) = review::own_events(&state, auth.user_id, &filter, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

// Query strings into filters: every value is text, so every bad parameter is reported at
// once, each under its own name.

/// Query of the admin lists; every value is checked and a bad one is a 422 naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    /// One anomaly reason the rows must carry, e.g. `new_country` (docs/risk.md).
    pub anomaly: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
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

/// Checks the query against `kind` (its action names).
fn parse_query(kind: Option<AuditKind>, q: &EventQuery) -> AppResult<(EventFilter, Page)> {
    let mut problems = Problems::new();
    let mut f = EventFilter::default();
    if let Some(u) = &q.user_id {
        f.user_id = problems.check("user_id", Uuid::parse_str(u).map_err(|_| "must be a UUID"));
    }
    if let Some(v) = &q.from {
        f.from = instant(v, false).or_else(|| {
            problems.add("from", "must be an RFC 3339 time or YYYY-MM-DD");
            None
        });
    }
    if let Some(v) = &q.to {
        f.to = instant(v, true).or_else(|| {
            problems.add("to", "must be an RFC 3339 time or YYYY-MM-DD");
            None
        });
    }
    if let (Some(from), Some(to)) = (f.from, f.to)
        && from >= to
    {
        problems.add("to", "must be after from");
    }
    if let (Some(a), Some(kind)) = (&q.action, kind) {
        let known = match kind {
            AuditKind::Session => SessionAction::parse(a).is_some(),
            AuditKind::Device => DeviceAction::parse(a).is_some(),
            AuditKind::Mfa => MfaAction::parse(a).is_some(),
            AuditKind::Link => LinkAction::parse(a).is_some(),
        };
        if known {
            f.action = Some(a.clone());
        } else {
            problems.add("action", "is not an action of this audit table (docs/audit.md)");
        }
    }
    if let Some(r) = &q.risk_level {
        f.risk_level = RiskLevel::parse(r).or_else(|| {
            problems.add("risk_level", "must be low, medium, high or critical");
            None
        });
    }
    if let Some(s) = &q.min_risk_score {
        f.min_risk_score = s.parse::<i32>().ok().filter(|s| (0..=100).contains(s)).or_else(|| {
            problems.add("min_risk_score", "must be a whole number from 0 to 100");
            None
        });
    }
    for (raw, field, slot) in [
        (&q.is_anomalous, "is_anomalous", &mut f.is_anomalous),
        (&q.requires_review, "requires_review", &mut f.requires_review),
    ] {
        if let Some(v) = raw {
            *slot = flag(v).or_else(|| {
                problems.add(field, "must be true or false");
                None
            });
        }
    }
    if let Some(a) = &q.anomaly {
        // Reasons are named by the app that scores them; any well-formed name may be asked for.
        if (1..=50).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            f.anomaly = Some(a.clone());
        } else {
            problems.add("anomaly", "must be an anomaly reason such as new_country (docs/risk.md)");
        }
    }
    let page = PageParams::from_text(q.page.as_deref(), q.limit.as_deref(), &mut problems);
    problems.finish((f, page))
}

/// The date range of a summaries query: `date`, or `from`..=`to` (default: the last 30 days).
fn date_range(
    date: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    problems: &mut Problems,
) -> (NaiveDate, NaiveDate) {
    let mut day = |raw: Option<&str>, field: &str| {
        raw.and_then(|r| {
            problems.check(field, NaiveDate::parse_from_str(r, "%Y-%m-%d").map_err(|_| "must be YYYY-MM-DD"))
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
        problems.add("to", "must not be before from");
    }
    if (to - from).num_days() > 366 {
        problems.add("from", "a range may span at most 367 days");
    }
    (from, to)
}
