//! Passkeys on `/admin`: sign-in with one (instead of email, password and code) and a
//! staff member adding one of their own. The browser side is `/admin/passkey.js`, the
//! only script the console runs; the ceremonies are the API's (`accounts::service`), so
//! the same rules, limits and audit rows apply.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::{admin_form, admit, form, login_csrf, login_page};
use crate::{
    accounts::{
        forms::mfa::{assertion, attestation},
        service,
    },
    core::{AppError, AppState, client::ClientContext},
    otp::passkeys::parse_name,
};

/// GET /admin/passkey.js: allowed by the console's CSP (`script-src 'self'`).
pub async fn script() -> Response {
    let headers =
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")];
    (headers, include_str!("../../templates/admin/passkey.js")).into_response()
}

#[derive(Deserialize)]
struct SignInForm {
    csrf: String,
    ceremony_id: Uuid,
    /// The `PublicKeyCredential` JSON of `navigator.credentials.get()`.
    credential: String,
}

/// POST /admin/login/passkey: the answer to a ceremony of `POST /api/v1/auth/passkey/options`.
/// A passkey with user verification is both factors, so no password is asked; the session
/// still needs the console's permission.
pub async fn passkey_sign_in(
    State(state): State<AppState>,
    client: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<SignInForm>(&body) else {
        return login_page(&state, StatusCode::BAD_REQUEST, Some("The form could not be read."));
    };
    if !login_csrf(&headers, &f.csrf) {
        return login_page(&state, StatusCode::FORBIDDEN, Some("The form expired; please try again."));
    }
    let refused = |status, message| login_page(&state, status, Some(message));
    let Some(credential) = serde_json::from_str(&f.credential).ok().and_then(|v| assertion(v).ok()) else {
        return refused(StatusCode::BAD_REQUEST, "The passkey's answer could not be read.");
    };
    match service::passkey_sign_in(&state, &client, f.ceremony_id, &credential).await {
        Ok(authenticated) => admit(&state, &client, authenticated).await,
        Err(AppError::RateLimited { .. }) => {
            refused(StatusCode::TOO_MANY_REQUESTS, "Too many attempts; try again later.")
        }
        Err(AppError::InvalidCredentials) | Err(AppError::AccountDisabled) => {
            refused(StatusCode::UNAUTHORIZED, "This passkey does not open an account here.")
        }
        Err(AppError::ChallengeExpired) => refused(StatusCode::UNAUTHORIZED, "The passkey prompt expired; try again."),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct StartForm {
    csrf: String,
    password: SecretString,
}

/// POST /admin/passkeys/start (from the script): the creation options, as
/// `POST /api/v1/mfa/passkeys/register/start` answers them, for the signed-in staff member.
pub async fn passkey_start(
    State(state): State<AppState>,
    client: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<StartForm>(&body) else {
        return AppError::MalformedRequest("bad form".into()).into_response();
    };
    let user = match admin_form(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match service::passkey_register_start(&state, &client, &user, Some(f.password)).await {
        Ok(options) => Json(options).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct FinishForm {
    csrf: String,
    ceremony_id: Uuid,
    name: String,
    /// The `PublicKeyCredential` JSON of `navigator.credentials.create()`.
    credential: String,
}

/// POST /admin/passkeys/finish (from the script): stores the passkey; 201 with it.
pub async fn passkey_finish(
    State(state): State<AppState>,
    client: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<FinishForm>(&body) else {
        return AppError::MalformedRequest("bad form".into()).into_response();
    };
    let user = match admin_form(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let outcome = async {
        let name = parse_name(&f.name).map_err(|m| AppError::validation("name", m))?;
        let credential = serde_json::from_str(&f.credential)
            .map_err(|_| "is not JSON")
            .and_then(attestation)
            .map_err(|m| AppError::validation("credential", m))?;
        service::passkey_register_finish(&state, &client, &user, f.ceremony_id, &name, &credential).await
    }
    .await;
    match outcome {
        Ok(registered) => (StatusCode::CREATED, Json(registered)).into_response(),
        Err(e) => e.into_response(),
    }
}
