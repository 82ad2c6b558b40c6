//! The signed-in user's API keys. Creating and revoking need a session; listing is also
//! open to a key with `me:read`.

use axum::{Json, extract::State, http::StatusCode};
use uuid::Uuid;

use crate::{
    accounts::{
        forms::api_keys::ApiKeyCreate,
        models::admin::{ApiKeyView, CreatedApiKey},
        service,
    },
    core::{
        AppError, AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        error::ErrorBody,
        extract::{AppJson, AppPath},
    },
};

#[utoipa::path(get, path = "/api/v1/api-keys", extensions(("x-api-key-scope" = json!("me:read"))), tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = Vec<ApiKeyView>, description = "own keys, newest first, revoked ones included; never a secret"),
))]
pub async fn api_keys(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<ApiKeyView>>> {
    Ok(Json(service::api_keys(&state, &auth).await?))
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "users", security(("bearer" = [])), request_body = ApiKeyCreate,
    responses(
    (status = 201, body = CreatedApiKey, description = "created; `secret` is shown this once; the owner gets a security email, and another 7 days before the key expires"),
    (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT; FORBIDDEN (an admin scope for a non-staff user, or a request made with an API key); MFA_REQUIRED (MFA is on, or an admin scope is asked, without a second factor within STEP_UP_MAX_AGE_SECONDS)"),
    (status = 422, body = ErrorBody, description = "VALIDATION_FAILED: name, scopes, `expires_at` (future, at most 365 days ahead; default 90 days), or the password missing"),
    (status = 409, body = ErrorBody, description = "API_KEY_LIMIT: 25 live keys already"),
))]
pub async fn create_api_key(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<ApiKeyCreate>,
) -> AppResult<(StatusCode, Json<CreatedApiKey>)> {
    // The extractor already refuses keys on this route; a key never makes keys.
    if auth.api_key.is_some() {
        return Err(AppError::Forbidden);
    }
    let (new, password) = body.parse()?;
    Ok((StatusCode::CREATED, Json(service::create_api_key(&state, &client, &auth, new, password).await?)))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 204, description = "revoked at once; audited"),
    (status = 404, body = ErrorBody, description = "no live key of the caller's by that id"),
))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    service::revoke_api_key(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
