//! The signed-in user's devices. Another user's device id is 404, as an unknown one is.

use axum::{Json, extract::State, http::StatusCode};
use uuid::Uuid;

use crate::{
    accounts::{
        forms::{DeviceRename, TrustRequest},
        models::DeviceView,
        service,
    },
    core::{
        AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        error::ErrorBody,
        extract::{AppJson, AppPath, OptionalJson},
    },
};

#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), responses(
    (status = 200, body = Vec<DeviceView>, description = "own devices, most recently used first; `current` marks the caller's"),
))]
pub async fn devices(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<DeviceView>>> {
    Ok(Json(service::devices(&state, &auth).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "device id")), responses(
    (status = 200, body = DeviceView, description = "one own device"),
))]
pub async fn device(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<Json<DeviceView>> {
    Ok(Json(service::device(&state, &auth, id).await?))
}

#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = DeviceRename, responses(
    (status = 200, body = DeviceView, description = "renamed; audited"),
))]
pub async fn rename_device(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<DeviceRename>,
) -> AppResult<Json<DeviceView>> {
    let name = body.parse()?;
    Ok(Json(service::rename_device(&state, &client, &auth, id, name).await?))
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/trust", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content = TrustRequest, description = "optional; days 1..=90, default 30"), responses(
    (status = 200, body = DeviceView, description = "trusted: the device skips MFA until trust_expires_at (not when a login's risk is high)"),
    (status = 403, body = ErrorBody, description = "MFA_REQUIRED: MFA is on and the session is not aal 2"),
    (status = 409, body = ErrorBody, description = "DEVICE_COMPROMISED: a device marked compromised cannot be trusted"),
))]
pub async fn trust_device(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<TrustRequest>,
) -> AppResult<Json<DeviceView>> {
    Ok(Json(service::trust_device(&state, &client, &auth, id, body.days()).await?))
}

#[utoipa::path(delete, path = "/api/v1/devices/{id}/trust", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204, description = "trust revoked; audited")))]
pub async fn untrust_device(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    service::untrust_device(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/compromised", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 204, description = "marked compromised: trust and its sessions revoked (their tokens stop working at once), the owner emailed, audited at critical risk; it never skips MFA again"),
))]
pub async fn mark_compromised(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    service::mark_compromised(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 204, description = "forgotten; its sessions revoked; audited")))]
pub async fn delete_device(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    service::delete_device(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
