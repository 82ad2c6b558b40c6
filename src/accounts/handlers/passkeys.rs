//! Passkeys (API.md "Passkeys"): registering and managing one's own (signed in), answering
//! a challenge with one, and signing in with one alone.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use uuid::Uuid;

use crate::{
    accounts::{
        forms::mfa::{
            PasskeyLoginRequest, PasskeyOptionsRequest, PasskeyRegisterFinish, PasskeyRegisterStart, PasskeyRename,
            assertion,
        },
        models::{ApprovalRequired, Authenticated, PasskeyRegistered},
        service::{self, Removal},
    },
    core::{
        AppError, AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        error::ErrorBody,
        extract::{AppJson, AppPath, OptionalJson},
    },
    otp::{
        PasskeyInfo, passkeys,
        passkeys::{AssertionOptions, CeremonyOptions},
    },
};

#[utoipa::path(post, path = "/api/v1/mfa/passkeys/register/start", tag = "mfa", security(("bearer" = [])),
    request_body = PasskeyRegisterStart, responses(
    (status = 200, body = CeremonyOptions, description = "options for navigator.credentials.create() ({publicKey: options}, binary fields base64url); the ceremony lasts 5 minutes and only this session finishes it"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT, or MFA_REQUIRED: MFA is on and no factor within STEP_UP_MAX_AGE_SECONDS"),
    (status = 422, body = ErrorBody, description = "password missing"),
    (status = 503, body = ErrorBody, description = "UNAVAILABLE: passkeys are off (the service is reached by IP address)"),
))]
pub async fn passkey_register_start(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    OptionalJson(body): OptionalJson<PasskeyRegisterStart>,
) -> AppResult<Json<CeremonyOptions>> {
    Ok(Json(service::passkey_register_start(&state, &client, &auth, body.password).await?))
}

#[utoipa::path(post, path = "/api/v1/mfa/passkeys/register/finish", tag = "mfa", security(("bearer" = [])),
    request_body = PasskeyRegisterFinish, responses(
    (status = 201, body = PasskeyRegistered, description = "stored; the owner is notified; the first factor turns MFA on and returns backup_codes (shown once)"),
    (status = 401, body = ErrorBody, description = "CHALLENGE_EXPIRED: the ceremony is unknown, used, expired, or another user's or session's"),
    (status = 409, body = ErrorBody, description = "PASSKEY_EXISTS"),
    (status = 422, body = ErrorBody, description = "name, or a credential the relying party refuses (origin, RP id, challenge, no user verification)"),
    (status = 503, body = ErrorBody, description = "UNAVAILABLE: passkeys are off"),
))]
pub async fn passkey_register_finish(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<PasskeyRegisterFinish>,
) -> AppResult<impl IntoResponse> {
    let (ceremony, name, credential) = body.parse()?;
    let registered = service::passkey_register_finish(&state, &client, &auth, ceremony, &name, &credential).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

#[utoipa::path(get, path = "/api/v1/mfa/passkeys", extensions(("x-api-key-scope" = json!("me:read"))), tag = "mfa",
    security(("bearer" = [])), responses(
    (status = 200, body = Vec<PasskeyInfo>, description = "the caller's passkeys, oldest first"),
    (status = 401, body = ErrorBody),
))]
pub async fn list_passkeys(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<PasskeyInfo>>> {
    Ok(Json(service::passkeys(&state, &auth).await?))
}

#[utoipa::path(patch, path = "/api/v1/mfa/passkeys/{id}", tag = "mfa", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = PasskeyRename, responses(
    (status = 200, body = PasskeyInfo, description = "renamed"),
    (status = 404, body = ErrorBody, description = "not one of the caller's passkeys"),
    (status = 422, body = ErrorBody, description = "name: 1 to 64 printable characters"),
))]
pub async fn rename_passkey(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<PasskeyRename>,
) -> AppResult<Json<PasskeyInfo>> {
    let name = passkeys::parse_name(&body.name).map_err(|m| AppError::validation("name", m))?;
    Ok(Json(service::rename_passkey(&state, &client, &auth, id, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/mfa/passkeys/{id}", tag = "mfa", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 204, description = "removed; the owner is notified; MFA goes off with the last factor"),
    (status = 202, body = ApprovalRequired, description = "a staff member's passkey: another staff member approves the request, which names this passkey"),
    (status = 403, body = ErrorBody, description = "MFA_REQUIRED: no factor within STEP_UP_MAX_AGE_SECONDS (POST /auth/mfa/step-up)"),
    (status = 404, body = ErrorBody, description = "not one of the caller's passkeys"),
))]
pub async fn delete_passkey(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<axum::response::Response> {
    Ok(match service::delete_passkey(&state, &client, &auth, id).await? {
        Removal::Done => StatusCode::NO_CONTENT.into_response(),
        Removal::ApprovalRequired(id) => {
            (StatusCode::ACCEPTED, Json(ApprovalRequired { status: "approval_required", change_request_id: id }))
                .into_response()
        }
    })
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/passkey/options", tag = "auth", request_body = PasskeyOptionsRequest,
    responses(
    (status = 200, body = AssertionOptions, description = "options for navigator.credentials.get() listing the account's passkeys; asking again replaces them"),
    (status = 401, body = ErrorBody, description = "CHALLENGE_EXPIRED"),
    (status = 422, body = ErrorBody, description = "the account has no passkey"),
    (status = 503, body = ErrorBody, description = "UNAVAILABLE: passkeys are off"),
))]
pub async fn mfa_passkey_options(
    State(state): State<AppState>,
    AppJson(body): AppJson<PasskeyOptionsRequest>,
) -> AppResult<Json<AssertionOptions>> {
    Ok(Json(service::mfa_passkey_options(&state, body.challenge_id).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/passkey/options", tag = "auth", responses(
    (status = 200, body = CeremonyOptions, description = "options for navigator.credentials.get() with any discoverable passkey (user verification required); the ceremony lasts 5 minutes and is single use"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: RATE_LIMIT_PASSKEY_OPTIONS_PER_HOUR (300) from this address"),
    (status = 503, body = ErrorBody, description = "UNAVAILABLE: passkeys are off"),
))]
pub async fn passkey_sign_in_options(
    State(state): State<AppState>,
    client: ClientContext,
) -> AppResult<Json<CeremonyOptions>> {
    Ok(Json(service::passkey_sign_in_options(&state, &client).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/passkey/login", tag = "auth", request_body = PasskeyLoginRequest, responses(
    (status = 200, body = Authenticated, description = "aal 2, amr [hwk, mfa]; the lockout, risk, device and audit rules of a password login apply"),
    (status = 401, body = ErrorBody, description = "INVALID_CREDENTIALS (an unknown key, a bad signature or origin, a counter gone backwards), or CHALLENGE_EXPIRED (the ceremony is unknown, used or expired)"),
    (status = 403, body = ErrorBody, description = "ACCOUNT_DISABLED (only after a good assertion)"),
    (status = 422, body = ErrorBody, description = "credential is not a PublicKeyCredential"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: the account or the address is locked"),
    (status = 503, body = ErrorBody, description = "UNAVAILABLE: passkeys are off"),
))]
pub async fn passkey_login(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<PasskeyLoginRequest>,
) -> AppResult<Json<Authenticated>> {
    let credential = assertion(body.credential).map_err(|m| AppError::validation("credential", m))?;
    // Its own task, as a password login: a client hanging up must not cut it midway.
    let task =
        tokio::spawn(async move { service::passkey_sign_in(&state, &client, body.ceremony_id, &credential).await });
    Ok(Json(task.await.map_err(AppError::internal)??))
}
