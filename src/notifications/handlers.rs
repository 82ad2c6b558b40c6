//! HTTP in and out for the notification settings and delivery history (all signed in).

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use uuid::Uuid;

use super::{
    forms::{ConsentChange, NewBlock, NewQuietHours, PreferencesPatch, TypePreferencePatch},
    inbox,
    models::{Block, Consent, ConsentType, Delivery, Inbox, NotificationType, Preferences, QuietHours, TypePreference},
    settings,
};
use crate::core::{
    AppError, AppResult, AppState,
    auth::AuthUser,
    client::ClientContext,
    error::ErrorBody,
    extract::{AppJson, AppPath, AppQuery, PageParams, Paginated},
};

#[utoipa::path(get, path = "/api/v1/notifications/preferences", extensions(("x-api-key-scope" = json!("me:read"))), tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Preferences), (status = 401, body = ErrorBody)))]
pub async fn preferences(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Preferences>> {
    Ok(Json(settings::preferences(&state, auth.user_id).await?))
}

#[utoipa::path(put, path = "/api/v1/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    request_body(content = PreferencesPatch, description = "any subset of the fields; absent ones stay as they are"),
    responses((status = 200, body = Preferences), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "times not HH:MM, unknown digest_frequency, unknown fields")))]
pub async fn update_preferences(
    State(state): State<AppState>,
    auth: AuthUser,
    AppJson(patch): AppJson<PreferencesPatch>,
) -> AppResult<Json<Preferences>> {
    Ok(Json(settings::update_preferences(&state, auth.user_id, patch.parse()?).await?))
}

#[utoipa::path(get, path = "/api/v1/notifications/preferences/types", extensions(("x-api-key-scope" = json!("me:read"))), tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<TypePreference>, description = "every type, defaults where unset"),
        (status = 401, body = ErrorBody)))]
pub async fn type_preferences(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<TypePreference>>> {
    Ok(Json(settings::type_preferences(&state, auth.user_id).await?))
}

fn notification_type(raw: &str) -> AppResult<NotificationType> {
    NotificationType::parse(raw).ok_or_else(|| AppError::MalformedRequest(format!("unknown notification type {raw:?}")))
}

#[utoipa::path(put, path = "/api/v1/notifications/preferences/types/{type}", tag = "notifications",
    security(("bearer" = [])),
    params(("type" = String, Path, description = "a notification type; unknown -> 400 MALFORMED_REQUEST")),
    request_body(content = TypePreferencePatch, description = "any subset; delay_minutes 0..1440, max_per_day 0..10000"),
    responses((status = 200, body = TypePreference), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_type_preference(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(kind): AppPath<String>,
    AppJson(patch): AppJson<TypePreferencePatch>,
) -> AppResult<Json<TypePreference>> {
    let kind = notification_type(&kind)?;
    Ok(Json(settings::update_type_preference(&state, auth.user_id, kind, patch.parse()?).await?))
}

#[utoipa::path(get, path = "/api/v1/notifications/quiet-hours", extensions(("x-api-key-scope" = json!("me:read"))), tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<QuietHours>), (status = 401, body = ErrorBody)))]
pub async fn quiet_hours(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<QuietHours>>> {
    Ok(Json(settings::quiet_hours(&state, auth.user_id).await?))
}

#[utoipa::path(post, path = "/api/v1/notifications/quiet-hours", tag = "notifications", security(("bearer" = [])),
    request_body = NewQuietHours,
    responses((status = 201, body = QuietHours), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "QUIET_HOURS_EXIST: a window already starts then"),
        (status = 422, body = ErrorBody, description = "day_of_week 0-6, HH:MM times that differ")))]
pub async fn add_quiet_hours(
    State(state): State<AppState>,
    auth: AuthUser,
    AppJson(body): AppJson<NewQuietHours>,
) -> AppResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(settings::add_quiet_hours(&state, auth.user_id, body.parse()?).await?)))
}

#[utoipa::path(delete, path = "/api/v1/notifications/quiet-hours/{id}", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_quiet_hours(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    settings::delete_quiet_hours(&state, auth.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/notifications/blocklist", extensions(("x-api-key-scope" = json!("me:read"))), tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<Block>, description = "active entries"), (status = 401, body = ErrorBody)))]
pub async fn blocklist(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<Block>>> {
    Ok(Json(settings::blocks(&state, auth.user_id).await?))
}

#[utoipa::path(post, path = "/api/v1/notifications/blocklist", tag = "notifications", security(("bearer" = [])),
    request_body = NewBlock,
    responses((status = 201, body = Block), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "unknown value, or a security type or sender (never blockable)")))]
pub async fn add_block(
    State(state): State<AppState>,
    auth: AuthUser,
    AppJson(body): AppJson<NewBlock>,
) -> AppResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(settings::add_block(&state, auth.user_id, body.parse()?).await?)))
}

#[utoipa::path(delete, path = "/api/v1/notifications/blocklist/{id}", tag = "notifications",
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_block(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    settings::remove_block(&state, auth.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/notifications/consents", extensions(("x-api-key-scope" = json!("me:read"))), tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<Consent>, description = "marketing, analytics, third_party"),
        (status = 401, body = ErrorBody)))]
pub async fn consents(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<Consent>>> {
    Ok(Json(settings::consents(&state, auth.user_id).await?))
}

#[utoipa::path(put, path = "/api/v1/notifications/consents/{type}", tag = "notifications", security(("bearer" = [])),
    params(("type" = String, Path, description = "marketing, analytics or third_party; else 400")),
    request_body = ConsentChange,
    responses((status = 200, body = Consent, description = "recorded with source, IP and time; audited"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_consent(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(kind): AppPath<String>,
    AppJson(body): AppJson<ConsentChange>,
) -> AppResult<Json<Consent>> {
    let kind = ConsentType::parse(&kind)
        .ok_or_else(|| AppError::MalformedRequest(format!("unknown consent type {kind:?}")))?;
    let change = body.parse()?;
    let consent =
        settings::set_consent(&state, auth.user_id, kind, change, client.ip_network(), client.user_agent.as_deref())
            .await?;
    Ok(Json(consent))
}

#[utoipa::path(get, path = "/api/v1/notifications", extensions(("x-api-key-scope" = json!("me:read"))), tag = "notifications", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "own emails and texts, newest first: {items: [Delivery], pagination}",
            body = Object),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody, description = "limit outside 1..100")))]
pub async fn history(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(params): AppQuery<PageParams>,
) -> AppResult<Json<Paginated<Delivery>>> {
    let page = params.page()?;
    let (items, total) = settings::deliveries(&state, auth.user_id, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

/// `?unread=true&page=&limit=`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// `true` lists unread messages only.
    pub unread: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/notifications/inbox", extensions(("x-api-key-scope" = json!("me:read"))),
    tag = "notifications", security(("bearer" = [])), params(InboxQuery),
    responses((status = 200, body = Inbox, description = "own in-app messages, newest first, with unread_count (of all, whatever the filter)"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody, description = "unread not true/false, limit outside 1..100")))]
pub async fn inbox(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<InboxQuery>,
) -> AppResult<Json<Inbox>> {
    let mut problems = crate::core::error::Problems::new();
    let page = PageParams::from_text(q.page.as_deref(), q.limit.as_deref(), &mut problems);
    let unread = match q.unread.as_deref() {
        None => false,
        Some(raw) => {
            problems.check("unread", crate::core::extract::flag(raw).ok_or("must be true or false")).unwrap_or(false)
        }
    };
    let page = problems.finish(page)?;
    Ok(Json(inbox::inbox(&state, auth.user_id, unread, page).await?))
}

#[utoipa::path(post, path = "/api/v1/notifications/inbox/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "read (again: still 204)"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "not one of the caller's messages")))]
pub async fn read_one(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    inbox::mark_read(&state, auth.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/notifications/inbox/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 204, description = "every own message read"), (status = 401, body = ErrorBody)))]
pub async fn read_all(State(state): State<AppState>, auth: AuthUser) -> AppResult<StatusCode> {
    inbox::mark_all_read(&state, auth.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
