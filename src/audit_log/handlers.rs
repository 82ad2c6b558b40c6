//! HTTP in and out for the audit trail: the admin review API (staff, a Django-style
//! permission per route, aal 2 unless the staff user's enforce_for_admin is off) and a
//! user's own security events.

use std::collections::HashMap;

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    admin::{self, EventQuery},
    models::{AuditEvent, AuditKind, DailyTotals, JobRun, Retention, Summary},
};
use crate::core::{
    AppResult, AppState,
    auth::{AuthUser, require_permission},
    error::{ErrorBody, FieldErrors},
    extract::{AppJson, AppPath, AppQuery, Paginated},
};

#[utoipa::path(get, path = "/api/v1/admin/audit/{kind}", tag = "admin", security(("bearer" = [])),
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
    let kind = admin::parse_kind(&kind)?;
    let (filter, page) = admin::parse_query(Some(kind), &q)?;
    let (items, total) = admin::list(&state.db, kind, &filter, page).await?;
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

#[utoipa::path(post, path = "/api/v1/admin/audit/{kind}/{id}/review", tag = "admin", security(("bearer" = [])),
    params(("kind" = String, Path), ("id" = Uuid, Path)), request_body = ReviewRequest,
    responses((status = 200, body = Reviewed, description = "recorded, and itself audited (audit_reviewed)"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn review(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath((kind, id)): AppPath<(String, Uuid)>,
    AppJson(body): AppJson<ReviewRequest>,
) -> AppResult<Json<Reviewed>> {
    require_permission(&state, &auth, "audit_log.review_auditlog").await?;
    let kind = admin::parse_kind(&kind)?;
    admin::review(&state.db, kind, id, &body.review_status, body.review_notes.as_deref(), auth.user_id).await?;
    Ok(Json(Reviewed { id, review_status: body.review_status }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
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

#[utoipa::path(get, path = "/api/v1/admin/audit/summaries", tag = "admin", security(("bearer" = [])),
    params(SummaryQuery),
    responses((status = 200, description = "{items: [Summary], pagination}, newest day first", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn summaries(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<SummaryQuery>,
) -> AppResult<Json<Paginated<Summary>>> {
    require_permission(&state, &auth, "audit_log.view_auditlogsummary").await?;
    let (from, to) = admin::date_range(q.date.as_deref(), q.from.as_deref(), q.to.as_deref())?;
    let mut errors = FieldErrors::new();
    let page = admin::page(q.page.as_deref(), q.limit.as_deref(), &mut errors);
    let user = q.user_id.as_deref().map(|u| Uuid::parse_str(u).map_err(|_| ())).transpose();
    let user = match user {
        Ok(u) => u,
        Err(()) => {
            errors.entry("user_id".into()).or_default().push("must be a UUID".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(crate::core::AppError::Validation(errors));
    }
    let (items, total) = admin::summaries(&state.db, from, to, user, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct RangeQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/audit/summaries/daily", tag = "admin", security(("bearer" = [])),
    params(RangeQuery),
    responses((status = 200, body = Vec<DailyTotals>, description = "one row per day from..=to (default: 30 days), zeros included"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn daily(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<RangeQuery>,
) -> AppResult<Json<Vec<DailyTotals>>> {
    require_permission(&state, &auth, "audit_log.view_auditlogsummary").await?;
    let (from, to) = admin::date_range(None, q.from.as_deref(), q.to.as_deref())?;
    Ok(Json(admin::daily(&state.db, from, to).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The day to (re)compute, `YYYY-MM-DD`, not in the future.
    #[schema(value_type = String, format = Date)]
    pub date: chrono::NaiveDate,
}

#[utoipa::path(post, path = "/api/v1/admin/audit/summaries/run", tag = "admin", security(("bearer" = [])),
    request_body = RunRequest,
    responses((status = 200, body = JobRun, description = "the run; re-running a day is idempotent"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn run_summary(
    State(state): State<AppState>,
    auth: AuthUser,
    AppJson(body): AppJson<RunRequest>,
) -> AppResult<Json<JobRun>> {
    require_permission(&state, &auth, "audit_log.run_auditlogsummary").await?;
    Ok(Json(admin::run_summary(&state.db, body.date).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct JobsQuery {
    /// `audit_summary`, `partitions`, `cleanup`, `outbox` or `data_export`.
    pub kind: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin", security(("bearer" = [])), params(JobsQuery),
    responses((status = 200, description = "{items: [JobRun], pagination}, newest first", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn jobs(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<JobsQuery>,
) -> AppResult<Json<Paginated<JobRun>>> {
    require_permission(&state, &auth, "audit_log.view_jobrun").await?;
    let mut errors = FieldErrors::new();
    let page = admin::page(q.page.as_deref(), q.limit.as_deref(), &mut errors);
    if let Some(k) = &q.kind
        && !["audit_summary", "partitions", "cleanup", "outbox", "data_export"].contains(&k.as_str())
    {
        errors.entry("kind".into()).or_default().push("is not a job kind".into());
    }
    if !errors.is_empty() {
        return Err(crate::core::AppError::Validation(errors));
    }
    let (items, total) = admin::jobs(&state.db, q.kind.as_deref(), page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[utoipa::path(get, path = "/api/v1/admin/audit/retention", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<Retention>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn retention(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<Retention>>> {
    require_permission(&state, &auth, "audit_log.view_retentionpolicy").await?;
    Ok(Json(admin::retention(&state.db, state.config.audit_retention_months).await?))
}

#[utoipa::path(put, path = "/api/v1/admin/audit/retention", tag = "admin", security(("bearer" = [])),
    request_body(content = Object, description = "kind -> months kept (1..120), any subset: {\"session\": 6, \"mfa\": 24}"),
    responses((status = 200, body = Vec<Retention>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn set_retention(
    State(state): State<AppState>,
    auth: AuthUser,
    AppJson(body): AppJson<HashMap<AuditKind, i32>>,
) -> AppResult<Json<Vec<Retention>>> {
    require_permission(&state, &auth, "audit_log.change_retentionpolicy").await?;
    for (kind, months) in body {
        admin::set_retention(&state.db, kind, months, auth.user_id).await?;
    }
    Ok(Json(admin::retention(&state.db, state.config.audit_retention_months).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
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
    let (filter, page) = admin::parse_query(None, &query)?;
    let (items, total) = admin::own_events(&state.db, auth.user_id, &filter, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}
