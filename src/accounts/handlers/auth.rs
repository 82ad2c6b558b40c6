//! Registration, login, tokens, passwords, the signed-in user, sessions.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::{
    forms::auth::{
        DeleteMeRequest, EmailChangeRequest, LoginRequest, MagicLinkConfirm, MagicLinkRequest, PasswordChangeRequest,
        PasswordResetConfirm, PasswordResetRequest, RefreshRequest, RegisterRequest, TokenRequest, UpdateMeRequest,
    },
    models::{Authenticated, Email, LoginIdentifier, LoginResponse, Me, SessionView, UserEnvelope},
    service,
};
use crate::core::{
    AppError, AppResult, AppState,
    auth::AuthUser,
    client::ClientContext,
    error::ErrorBody,
    extract::{AppJson, AppPath},
};

/// Body of a 202: the request was taken; its effect (an email) follows asynchronously.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
}

pub(super) fn accepted() -> (StatusCode, Json<Accepted>) {
    (StatusCode::ACCEPTED, Json(Accepted { status: "accepted" }))
}

/// Longest token accepted; anything longer cannot be ours.
const MAX_TOKEN_LEN: usize = 512;

/// A token that could be ours: not empty, not longer than any we issue.
fn plausible(token: &SecretString) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.expose_secret().len())
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, body = UserEnvelope, description = "created; a verification email is queued"),
    (status = 409, body = ErrorBody, description = "EMAIL_TAKEN or USERNAME_TAKEN"),
    (status = 422, body = ErrorBody, description = "VALIDATION_FAILED: field -> messages (email, username, password policy); PASSWORD_BREACHED when the breached-password check is on and knows the password"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED with Retry-After: RATE_LIMIT_REGISTER_PER_HOUR (30) from this address (IPv6: its /64)"),
))]
pub async fn register(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<RegisterRequest>,
) -> AppResult<impl IntoResponse> {
    let user = service::register(&state, &client, body.parse()?).await?;
    Ok((StatusCode::CREATED, Json(UserEnvelope { user })))
}

#[utoipa::path(post, path = "/api/v1/auth/email/verify", tag = "auth", request_body = TokenRequest, responses(
    (status = 200, body = UserEnvelope),
    (status = 400, body = ErrorBody, description = "TOKEN_INVALID: unknown, used or expired"),
))]
pub async fn verify_email(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<TokenRequest>,
) -> AppResult<Json<UserEnvelope>> {
    if !plausible(&body.token) {
        return Err(AppError::TokenInvalid);
    }
    let user = service::verify_email(&state, &client, body.token).await?;
    Ok(Json(UserEnvelope { user }))
}

#[utoipa::path(post, path = "/api/v1/auth/email/resend", tag = "auth", security(("bearer" = [])), responses(
    (status = 202, body = Accepted, description = "a new link is queued (nothing is sent once verified)"),
    (status = 401, body = ErrorBody),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED with Retry-After: RATE_LIMIT_EMAIL_RESEND_PER_HOUR (30) from this address"),
))]
pub async fn resend_verification(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
) -> AppResult<impl IntoResponse> {
    service::resend_verification(&state, &client, &auth).await?;
    Ok(accepted())
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse, description = "Authenticated, or MFA required (status mfa_required, challenge_id, methods, expires_in) when the account has MFA on and the device is not trusted to skip it"),
    (status = 401, body = ErrorBody, description = "INVALID_CREDENTIALS, the same for an unknown email"),
    (status = 403, body = ErrorBody, description = "ACCOUNT_DISABLED (only after a correct password)"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED with Retry-After: 5 failures for the identifier within 30 minutes (locked 30 minutes after the last), or 50 from the IP within 15 minutes"),
))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<LoginRequest>,
) -> AppResult<Json<LoginResponse>> {
    // Its own task: a client that hangs up mid-login must not leave the attempt unsettled
    // (hyper drops the handler's future on disconnect; a spawned task runs to the end).
    let identifier = LoginIdentifier::from_submitted(&body.email);
    let task = tokio::spawn(async move { service::login(&state, &client, identifier, body.password).await });
    Ok(Json(task.await.map_err(AppError::internal)??))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = Authenticated, description = "a new pair; the presented refresh token is dead"),
    (status = 401, body = ErrorBody, description = "TOKEN_INVALID, or TOKEN_REUSED (the family and its session are revoked)"),
))]
pub async fn refresh(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<RefreshRequest>,
) -> AppResult<Json<Authenticated>> {
    if !plausible(&body.refresh_token) {
        return Err(AppError::RefreshTokenInvalid);
    }
    Ok(Json(service::refresh(&state, &client, body.refresh_token).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "the session and its refresh tokens are revoked"),
    (status = 401, body = ErrorBody),
))]
pub async fn logout(State(state): State<AppState>, client: ClientContext, auth: AuthUser) -> AppResult<StatusCode> {
    service::logout(&state, &client, &auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "every session and refresh token of the user is revoked, pending email links (address change, password reset) and exports are cancelled, device trust ends; API keys stay (a key needs the password to make) and the notice lists them with the factors"),
    (status = 401, body = ErrorBody),
))]
pub async fn logout_all(State(state): State<AppState>, client: ClientContext, auth: AuthUser) -> AppResult<StatusCode> {
    service::logout_all(&state, &client, &auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/password/change", tag = "auth", security(("bearer" = [])),
    request_body = PasswordChangeRequest, responses(
    (status = 204, description = "changed; other sessions revoked (this one too with `sign_out_everywhere`), pending email links cancelled, other devices' trust ended; API keys kept (revoked with `revoke_api_keys`) and listed in the notice"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: the account is locked after wrong current passwords"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT"),
    (status = 422, body = ErrorBody, description = "VALIDATION_FAILED (policy), PASSWORD_REUSED (one of the last 5), or PASSWORD_BREACHED (the breached-password check is on and the range API counts it more than BREACHED_PASSWORD_MAX_COUNT)"),
))]
pub async fn change_password(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<PasswordChangeRequest>,
) -> AppResult<StatusCode> {
    let options =
        service::ChangeOptions { sign_out_everywhere: body.sign_out_everywhere, revoke_api_keys: body.revoke_api_keys };
    service::change_password(&state, &client, &auth, body.current_password, body.new_password, options).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/auth/password/reset", tag = "auth", request_body = PasswordResetRequest, responses(
    (status = 202, body = Accepted, description = "The same answer for every email, given before the email is looked up. A reset link is then mailed when an active account has this email and it had none in the last minute and fewer than 3 in the last hour; otherwise nothing is sent and earlier links stay valid."),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED with Retry-After: RATE_LIMIT_PASSWORD_RESET_PER_HOUR (30) from this address (IPv6: its /64)"),
))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<PasswordResetRequest>,
) -> AppResult<impl IntoResponse> {
    // A malformed address cannot have an account: the same 202, nothing sent.
    if let Ok(email) = Email::parse(&body.email) {
        service::request_password_reset(&state, &client, email).await?;
    }
    Ok(accepted())
}

#[utoipa::path(post, path = "/api/v1/auth/magic-link", tag = "auth", request_body = MagicLinkRequest, responses(
    (status = 202, body = Accepted, description = "The same answer for every email, given before the email is looked up. A sign-in link (`{PUBLIC_BASE_URL}/magic-link?token=T`, or `MAGIC_LINK_URL` with the token in place of `{token}`; 5 minutes, single use) is then mailed when an active account has this email and it had none in the last minute and fewer than 3 in the last hour; a new link revokes the older one."),
    (status = 404, body = ErrorBody, description = "NOT_FOUND: magic links are off (`MAGIC_LINK_ENABLED` is not true)"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED with Retry-After: shares the reset budget of this address (RATE_LIMIT_PASSWORD_RESET_PER_HOUR)"),
))]
pub async fn request_magic_link(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<MagicLinkRequest>,
) -> AppResult<impl IntoResponse> {
    if !state.config.magic_link_enabled {
        return Err(AppError::NotFound);
    }
    // A malformed address cannot have an account: the same 202, nothing sent.
    if let Ok(email) = Email::parse(&body.email) {
        service::request_magic_link(&state, &client, email).await?;
    }
    Ok(accepted())
}

#[utoipa::path(post, path = "/api/v1/auth/magic-link/confirm", tag = "auth", request_body = MagicLinkConfirm, responses(
    (status = 200, body = LoginResponse, description = "as POST /auth/login: authenticated (aal 1, amr [email]) or, with MFA on, mfa_required (then amr [email, METHOD, mfa]); the lockout, risk, device and audit rules of logins apply. The token is spent by the first use, whatever follows."),
    (status = 400, body = ErrorBody, description = "TOKEN_INVALID: unknown, used, revoked (a newer link, or a remediation) or expired"),
    (status = 403, body = ErrorBody, description = "ACCOUNT_DISABLED"),
    (status = 404, body = ErrorBody, description = "NOT_FOUND: magic links are off"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: the account or the address is locked"),
))]
pub async fn confirm_magic_link(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<MagicLinkConfirm>,
) -> AppResult<Json<LoginResponse>> {
    if body.token.expose_secret().len() > MAX_TOKEN_LEN {
        return Err(AppError::TokenInvalid);
    }
    // Runs to its end even if the client goes away: a spent token always yields its result.
    let task = tokio::spawn(async move { service::confirm_magic_link(&state, &client, body.token).await });
    Ok(Json(task.await.map_err(AppError::internal)??))
}

#[utoipa::path(post, path = "/api/v1/auth/password/reset/confirm", tag = "auth", request_body = PasswordResetConfirm, responses(
    (status = 204, description = "password set; every session and refresh token revoked, every API key revoked but those whose only scope is `introspect` (named in the notice), pending email links (address change, reset) cancelled, device trust ended, pending exports cancelled and their files deleted; an undo link of an email change survives"),
    (status = 400, body = ErrorBody, description = "TOKEN_INVALID"),
    (status = 422, body = ErrorBody, description = "VALIDATION_FAILED (policy), PASSWORD_REUSED, or PASSWORD_BREACHED"),
))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<PasswordResetConfirm>,
) -> AppResult<StatusCode> {
    if body.token.expose_secret().len() > MAX_TOKEN_LEN {
        return Err(AppError::TokenInvalid);
    }
    service::confirm_password_reset(&state, &client, body.token, body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/me", extensions(("x-api-key-scope" = json!("me:read"))), tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = Me), (status = 401, body = ErrorBody),
))]
pub async fn me(State(state): State<AppState>, auth: AuthUser) -> AppResult<Response> {
    let body = service::me_json(&state, &auth).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

#[utoipa::path(patch, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateMeRequest,
    responses(
    (status = 200, body = Me),
    (status = 401, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "phone E.164, timezone IANA, language BCP 47, date_of_birth YYYY-MM-DD in the past; unknown fields refused"),
))]
pub async fn update_me(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<UpdateMeRequest>,
) -> AppResult<Json<Me>> {
    Ok(Json(service::update_me(&state, &client, &auth, body.parse()?).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])), request_body = DeleteMeRequest,
    responses(
    (status = 204, description = "the account and everything of it are deleted"),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT"),
))]
pub async fn delete_me(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<DeleteMeRequest>,
) -> AppResult<StatusCode> {
    service::delete_me(&state, &client, &auth, body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/sessions", extensions(("x-api-key-scope" = json!("me:read"))), tag = "sessions", security(("bearer" = [])), responses(
    (status = 200, body = Vec<SessionView>, description = "own active sessions, newest first"),
    (status = 401, body = ErrorBody),
))]
pub async fn sessions(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<SessionView>>> {
    Ok(Json(service::sessions(&state, &auth).await?))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "session id")), responses(
    (status = 204, description = "revoked"),
    (status = 400, body = ErrorBody, description = "MALFORMED_REQUEST: not a UUID"),
    (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody, description = "not an active session of the caller"),
))]
pub async fn revoke_session(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    service::revoke_session(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/users/me/email", tag = "users", security(("bearer" = [])),
    request_body = EmailChangeRequest, responses(
    (status = 202, body = Accepted, description = "a link (valid 1 h) went to new_email and a notice to the current address; nothing changes until the link is used"),
    (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT (counts against the login lockout)"),
    (status = 409, body = ErrorBody, description = "EMAIL_TAKEN"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: the address's email budget, or the account is locked"),
))]
pub async fn request_email_change(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<EmailChangeRequest>,
) -> AppResult<(StatusCode, Json<Accepted>)> {
    let (password, new_email) = body.parse()?;
    service::request_email_change(&state, &client, &auth, password, new_email).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

#[utoipa::path(post, path = "/api/v1/auth/email/change/confirm", tag = "auth", request_body = TokenRequest, responses(
    (status = 200, body = UserEnvelope, description = "the account now uses the new address (verified); links sent to the old one die; the old address gets a notice with an undo link valid 7 days"),
    (status = 400, body = ErrorBody, description = "TOKEN_INVALID: unknown, used or expired, or the account is inactive or its password was changed or reset since the request"),
    (status = 409, body = ErrorBody, description = "EMAIL_TAKEN: the address was taken meanwhile; the link stays unused"),
))]
pub async fn confirm_email_change(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<TokenRequest>,
) -> AppResult<Json<UserEnvelope>> {
    let user = service::confirm_email_change(&state, &client, body.token).await?;
    Ok(Json(UserEnvelope { user }))
}

#[utoipa::path(post, path = "/api/v1/auth/email/change/undo", tag = "auth", request_body = TokenRequest, responses(
    (status = 200, body = UserEnvelope, description = "the old address is back (verified); the password no longer works and every session, refresh token, API key (but `introspect`-only ones), pending link, device trust and pending export ended, as a password reset ends them; a reset link goes to the restored address with the factors added since the change"),
    (status = 400, body = ErrorBody, description = "TOKEN_INVALID: unknown, used or expired (only use or expiry ends an undo link: no remediation does)"),
    (status = 409, body = ErrorBody, description = "EMAIL_TAKEN: another account took the old address meanwhile; the link stays unused"),
))]
pub async fn undo_email_change(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<TokenRequest>,
) -> AppResult<Json<UserEnvelope>> {
    let user = service::undo_email_change(&state, &client, body.token).await?;
    Ok(Json(UserEnvelope { user }))
}
