//! HTTP in and out for the audit trail: the admin review API (staff, a Django-style
//! permission per route, aal 2 unless the staff user's enforce_for_admin is off) and a
//! user's own security events.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{RawQuery, State},
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    forms::{EventQuery, JobsQuery, OwnEventsQuery, RangeQuery, ReviewRequest, RunRequest, SummaryQuery},
    models::{
        events::AuditKind,
        review::{AuditEvent, DailyTotals, JobRun, Retention, Summary},
    },
    review,
};
use crate::core::{
    AppResult, AppState,
    auth::{AuthUser, require_admin_write, require_permission},
    error::ErrorBody,
    extract::{AppJson, AppPath, AppQuery, Paginated},
};

#[utoipa::path(get, path = "/api/v1/admin/audit/{kind}", tag = "admin", extensions(("x-permission" = json!("audit_log.view_auditlog")), ("x-api-key-scope" = json!("audit:read"))), security(("bearer" = [])),
    params(("kind" = String, Path, description = "session, device, mfa or link; else 400"), EventQuery),
    responses(
        (status = 200, description = "newest first (or by risk), a keyset page: pass pagination.cursor as `cursor` \
            (or follow pagination.next) for the next one; a page never repeats a row and misses none committed \
            before the first page was read. `total` counts matching rows up to 1,000 (total_exact false beyond: \
            an estimate, a lower bound). Without a cursor, `page` still pages by offset", body = EventList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED"),
        (status = 422, body = ErrorBody, description = "a bad filter value or cursor, or limit outside 1..100")))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(kind): AppPath<String>,
    AppQuery(q): AppQuery<EventQuery>,
    RawQuery(raw): RawQuery,
) -> AppResult<Json<EventList>> {
    require_permission(&state, &auth, "audit_log.view_auditlog").await?;
    let path = format!("/api/v1/admin/audit/{kind}");
    let kind = AuditKind::from_path(&kind)?;
    let (filter, page) = q.parse(Some(kind))?;
    let listed = review::list(&state, kind, &filter, page).await?;
    let cursor = listed.next.map(|c| c.encode());
    // The same filters with the next cursor (and no offset).
    let next = cursor.as_ref().map(|c| {
        let kept = form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
            .filter(|(k, _)| k != "cursor" && k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect::<Vec<_>>();
        let query =
            form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).append_pair("cursor", c).finish();
        format!("{path}?{query}")
    });
    let pages = if listed.total == 0 { 0 } else { (listed.total + page.limit - 1) / page.limit };
    let pagination = KeysetPagination {
        page: if filter.after.is_some() { 1 } else { page.page },
        limit: page.limit,
        total: listed.total,
        total_exact: listed.total_exact,
        pages,
        has_more: cursor.is_some(),
        cursor,
        next,
    };
    Ok(Json(EventList { items: listed.items, pagination }))
}

/// A keyset page of an admin audit list.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub items: Vec<AuditEvent>,
    pub pagination: KeysetPagination,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeysetPagination {
    /// The `page` asked for when paging by offset; 1 when paging by cursor.
    pub page: i64,
    /// Rows per page (1..100).
    pub limit: i64,
    /// Matching rows, counted up to 1,000: an estimate (a lower bound) when `total_exact`
    /// is false.
    pub total: i64,
    pub total_exact: bool,
    /// Pages of `limit` rows in `total`.
    pub pages: i64,
    /// Whether another page follows.
    pub has_more: bool,
    /// The next page's cursor (opaque): pass it as `cursor`. Null on the last page.
    pub cursor: Option<String>,
    /// The next page's path with this page's filters and that cursor. Null on the last page.
    pub next: Option<String>,
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
    let verdict = body.parse()?;
    let status = verdict.status;
    review::review(&state, kind, id, verdict, auth.user_id).await?;
    Ok(Json(Reviewed { id, review_status: status.as_str().to_owned() }))
}

#[utoipa::path(get, path = "/api/v1/admin/audit/summaries", tag = "admin", extensions(("x-permission" = json!("audit_log.view_auditlogsummary")), ("x-api-key-scope" = json!("audit:read"))), security(("bearer" = [])),
    params(SummaryQuery),
    responses((status = 200, description = "{items: [Summary], pagination}, newest day first", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn summaries(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<SummaryQuery>,
) -> AppResult<Json<Paginated<Summary>>> {
    require_permission(&state, &auth, "audit_log.view_auditlogsummary").await?;
    let (from, to, user, page) = q.parse()?;
    let (items, total) = review::summaries(&state, from, to, user, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[utoipa::path(get, path = "/api/v1/admin/audit/summaries/daily", tag = "admin", extensions(("x-permission" = json!("audit_log.view_auditlogsummary")), ("x-api-key-scope" = json!("audit:read"))), security(("bearer" = [])),
    params(RangeQuery),
    responses((status = 200, body = Vec<DailyTotals>, description = "one row per day from..=to (default: 30 days), zeros included"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn daily(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<RangeQuery>,
) -> AppResult<Json<Vec<DailyTotals>>> {
    require_permission(&state, &auth, "audit_log.view_auditlogsummary").await?;
    let (from, to) = q.parse()?;
    Ok(Json(review::daily(&state, from, to).await?))
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
    Ok(Json(review::run_summary(&state, body.parse()?).await?))
}

#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin", extensions(("x-permission" = json!("audit_log.view_jobrun"))), security(("bearer" = [])), params(JobsQuery),
    responses((status = 200, description = "{items: [JobRun], pagination}, newest first; with latest=true one run per kind: the last", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn jobs(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<JobsQuery>,
) -> AppResult<Json<Paginated<JobRun>>> {
    require_permission(&state, &auth, "audit_log.view_jobrun").await?;
    let (kind, latest, page) = q.parse()?;
    let (items, total) = review::jobs(&state, kind, latest, page).await?;
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

#[utoipa::path(get, path = "/api/v1/audit/events", extensions(("x-api-key-scope" = json!("me:read"))), tag = "audit", security(("bearer" = [])), params(OwnEventsQuery),
    responses((status = 200, description = "own events from all four audit tables, newest first: {items: [AuditEvent], pagination}", body = Object),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn own_events(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<OwnEventsQuery>,
) -> AppResult<Json<Paginated<AuditEvent>>> {
    let (filter, page) = q.parse()?;
    let (items, total) = review::own_events(&state, auth.user_id, &filter, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}
