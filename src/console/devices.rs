//! The devices page: the browser's own device (the console's device cookie) and every other
//! device the account was used from; rename, trust this one, untrust, mark compromised.

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use minijinja::context;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{Browser, Page, Signed, base, checked, csrf_form, refused, see_other, t};
use crate::{
    accounts::{forms::devices::DeviceRename, service},
    core::{AppError, AppState, auth::AuthUser},
};

async fn devices_page(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
) -> Response {
    match service::devices(state, user).await {
        Ok(devices) => {
            let ctx = base(state, user, "devices", context! { title => t("devices"), devices, errors });
            Page::new(status, "devices.html", ctx).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// GET /account/devices.
pub async fn devices(State(state): State<AppState>, Signed(user): Signed) -> Response {
    devices_page(&state, &user, StatusCode::OK, BTreeMap::new()).await
}

csrf_form!(
    struct DeviceForm {
        id: Option<Uuid>,
        action: String,
        device_name: String,
        days: Option<i64>,
    }
);

/// POST /account/devices: one action on one device (`rename`, `trust`, `untrust`,
/// `compromised`, `remove`).
pub async fn device_action(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<DeviceForm>(&state, &user, &body) else {
        return super::forged();
    };
    let Some(id) = f.id else { return AppError::NotFound.into_response() };
    let outcome = match f.action.as_str() {
        "rename" => match (DeviceRename { device_name: f.device_name }).parse() {
            Ok(name) => service::rename_device(&state, &client, &user, id, name).await.map(drop),
            Err(e) => Err(e),
        },
        "trust" => service::trust_device(&state, &client, &user, id, f.days.unwrap_or(30)).await.map(drop),
        "untrust" => service::untrust_device(&state, &client, &user, id).await,
        "compromised" => service::mark_compromised(&state, &client, &user, id).await,
        "remove" => service::delete_device(&state, &client, &user, id).await,
        _ => Err(AppError::validation("action", t("method_unknown"))),
    };
    match outcome {
        Ok(()) => see_other("/account/devices"),
        Err(e) => refused(e, "/account/devices", |r| devices_page(&state, &user, r.status, r.errors)).await,
    }
}
