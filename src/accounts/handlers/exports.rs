//! The signed-in user's data exports: ask, watch, download (owner's bearer token only).

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use uuid::Uuid;

use crate::{
    accounts::{
        forms::mfa::PasswordConfirmation,
        models::admin::{ExportStatus, ExportView},
        service,
    },
    core::{
        AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        error::ErrorBody,
        extract::{AppPath, OptionalJson},
    },
};

#[utoipa::path(post, path = "/api/v1/users/me/export", tag = "users", security(("bearer" = [])),
    request_body(content = PasswordConfirmation, description = "the password; while MFA is on, also a session with a second factor within STEP_UP_MAX_AGE_SECONDS"),
    responses(
    (status = 202, body = ExportView, description = "queued (`pending`); a job picks it up within 10 s. While one is pending or processing, that one is returned. The owner gets a security notice"),
    (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT or MFA_REQUIRED"),
    (status = 422, body = ErrorBody, description = "VALIDATION_FAILED: the password is missing"),
))]
pub async fn request_export(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    OptionalJson(body): OptionalJson<PasswordConfirmation>,
) -> AppResult<(StatusCode, Json<ExportView>)> {
    Ok((StatusCode::ACCEPTED, Json(service::request_export(&state, &client, &auth, body.password).await?)))
}

#[utoipa::path(get, path = "/api/v1/users/me/export/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 200, body = ExportStatus, description = "status; `download_url` while complete and unexpired (24 h)"),
))]
pub async fn export_status(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<Json<ExportStatus>> {
    Ok(Json(service::export_status(&state, &auth, id).await?))
}

#[utoipa::path(get, path = "/api/v1/users/me/export/{id}/download", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 200, content_type = "application/json", body = serde_json::Value,
     description = "the export file: every row of the user's, no secret and no hash"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: an API key (only the owner's session may download)"),
    (status = 404, body = ErrorBody, description = "not the caller's, not complete, or expired"),
))]
pub async fn export_download(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<impl IntoResponse> {
    let bytes = service::export_file(&state, &auth, id).await?;
    let disposition = format!("attachment; filename=\"gatehouse-export-{id}.json\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    ))
}
