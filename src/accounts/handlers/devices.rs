//! The signed-in user's devices. Another user's device id is 404, as an unknown one is.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::{
    accounts::{
        forms::devices::{DeviceRename, TrustRequest},
        models::{DeviceView, NearDevice},
        service,
    },
    core::{
        AppResult, AppState,
        auth::{AuthUser, require_permission},
        client::ClientContext,
        error::{ErrorBody, Problems},
        extract::{AppJson, AppPath, AppQuery, OptionalJson},
    },
};

#[utoipa::path(get, path = "/api/v1/devices", extensions(("x-api-key-scope" = json!("me:read"))), tag = "devices", security(("bearer" = [])), responses(
    (status = 200, body = Vec<DeviceView>, description = "own devices, most recently used first; `current` marks the caller's"),
))]
pub async fn devices(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<DeviceView>>> {
    Ok(Json(service::devices(&state, &auth).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", extensions(("x-api-key-scope" = json!("me:read"))), tag = "devices", security(("bearer" = [])),
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
    (status = 200, body = DeviceView, description = "trusted: the device skips MFA until trust_expires_at (not when a login's risk is high, e.g. from a country none of its sessions came from); the owner gets a security notice"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: the asking session was not opened on this device; MFA_REQUIRED: MFA is on and the session has no second factor within STEP_UP_MAX_AGE_SECONDS"),
    (status = 409, body = ErrorBody, description = "DEVICE_COMPROMISED: a device marked compromised cannot be trusted; DEVICE_NOT_VERIFIED: a device known only by its User-Agent (it never sent X-Device-Fingerprint) is never trusted"),
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

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NearQuery {
    /// `lat,lon` in degrees, e.g. `48.8566,2.3522`.
    pub near: Option<String>,
    /// Radius in km, above 0 and at most 20000.
    pub km: Option<String>,
    /// 1..=100, default 100.
    pub limit: Option<String>,
}

impl NearQuery {
    fn parse(&self) -> AppResult<((f64, f64), f64, i64)> {
        let mut problems = Problems::new();
        let point = self.near.as_deref().and_then(|raw| {
            let (lat, lon) = raw.split_once(',')?;
            let (lat, lon) = (lat.trim().parse::<f64>().ok()?, lon.trim().parse::<f64>().ok()?);
            ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
        });
        if point.is_none() {
            problems.add("near", "must be lat,lon in degrees (-90..90, -180..180)");
        }
        let km = self.km.as_deref().and_then(|k| k.parse::<f64>().ok()).filter(|k| *k > 0.0 && *k <= 20_000.0);
        if km.is_none() {
            problems.add("km", "must be a number above 0 and at most 20000");
        }
        let limit = match self.limit.as_deref() {
            None => Some(100),
            Some(l) => l.parse::<i64>().ok().filter(|l| (1..=100).contains(l)),
        };
        if limit.is_none() {
            problems.add("limit", "must be 1 to 100");
        }
        problems.into_result()?;
        Ok((point.unwrap_or_default(), km.unwrap_or_default(), limit.unwrap_or(100)))
    }
}

#[utoipa::path(get, path = "/api/v1/admin/devices", tag = "admin", extensions(("x-permission" = json!("accounts.view_device"))), security(("bearer" = [])), params(NearQuery),
    responses(
    (status = 200, body = Vec<NearDevice>, description = "devices whose last place lies within km of near, nearest first (permission accounts.view_device)"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED"),
))]
pub async fn admin_devices_near(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<NearQuery>,
) -> AppResult<Json<Vec<NearDevice>>> {
    require_permission(&state, &auth, "accounts.view_device").await?;
    let (point, km, limit) = q.parse()?;
    Ok(Json(service::devices_near(&state, point, km, limit).await?))
}
