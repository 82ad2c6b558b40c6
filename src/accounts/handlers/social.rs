//! Social login (API.md "Social login"): the providers, a flow's start and callback, the
//! login code's exchange, and the signed-in user's linked identities.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use crate::{
    accounts::{
        forms::social::{OidcCallbackQuery, OidcExchangeRequest, OidcStartRequest},
        models::{
            LoginResponse,
            social::{AuthorizationStarted, Connection, Providers},
        },
        service,
    },
    core::{
        AppError, AppResult, AppState,
        auth::{self, AuthUser},
        client::ClientContext,
        error::ErrorBody,
        extract::{AppJson, AppPath, AppQuery, PageParams, Paginated},
    },
};

#[utoipa::path(get, path = "/api/v1/auth/oidc/providers", tag = "auth", responses(
    (status = 200, body = Providers, description = "the configured providers that answered discovery (one that did not is retried a minute later)"),
))]
pub async fn oidc_providers(State(state): State<AppState>) -> Json<Providers> {
    Json(service::oidc_providers(&state).await)
}

#[utoipa::path(post, path = "/api/v1/auth/oidc/{provider}/start", tag = "auth", params(("provider" = String, Path)),
    request_body = OidcStartRequest, responses(
    (status = 200, body = AuthorizationStarted, description = "send the browser to authorization_url; state, nonce and our PKCE verifier stay here (10 minutes)"),
    (status = 401, body = ErrorBody, description = "UNAUTHENTICATED: intent link without a bearer token; INVALID_CREDENTIALS: a wrong password"),
    (status = 403, body = ErrorBody, description = "MFA_REQUIRED: intent link with MFA on and no second factor within STEP_UP_MAX_AGE_SECONDS"),
    (status = 404, body = ErrorBody, description = "no such provider, or it has not answered discovery"),
    (status = 422, body = ErrorBody, description = "redirect_uri not on OIDC_REDIRECT_ALLOWLIST (exact match), code_challenge not S256, intent not login or link, link without password"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: RATE_LIMIT_OIDC_START_PER_HOUR (300) from this address"),
))]
pub async fn oidc_start(
    State(state): State<AppState>,
    client: ClientContext,
    AppPath(provider): AppPath<String>,
    headers: HeaderMap,
    AppJson(body): AppJson<OidcStartRequest>,
) -> AppResult<Json<AuthorizationStarted>> {
    let start = body.parse()?;
    let auth = match auth::bearer_token(&headers) {
        Some(token) if start.intent == service::OidcIntent::Link => Some(auth::authenticate(&state, token).await?),
        _ => None,
    };
    Ok(Json(service::oidc_start(&state, &client, auth.as_ref(), &provider, start).await?))
}

#[utoipa::path(get, path = "/api/v1/auth/oidc/{provider}/callback", tag = "auth",
    params(("provider" = String, Path), OidcCallbackQuery), responses(
    (status = 302, description = "to the flow's redirect_uri with login_code (intent login; 60 s, single use, redeemed with the client's code_verifier), linked=true (intent link), or error: account_exists (the verified address is an account's: sign in and link), identity_taken (another account holds this identity), email_unverified, access_denied (refused at the provider, a revoked connection, or the linking session ended), invalid_state (a used or expired state, or a provider answer that failed verification: signature, iss, aud, exp, nonce, azp), temporarily_unavailable (the provider's token endpoint did not answer)"),
    (status = 400, body = ErrorBody, description = "TOKEN_INVALID: a state this service never issued (there is no return URL to send the browser to)"),
))]
pub async fn oidc_callback(
    State(state): State<AppState>,
    client: ClientContext,
    AppPath(provider): AppPath<String>,
    AppQuery(query): AppQuery<OidcCallbackQuery>,
) -> AppResult<Response> {
    // Its own task: the code is spent at the provider once this starts.
    let task = tokio::spawn(async move { service::oidc_callback(&state, &client, &provider, query.into()).await });
    let location = task.await.map_err(AppError::internal)??;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

#[utoipa::path(post, path = "/api/v1/auth/oidc/exchange", tag = "auth", request_body = OidcExchangeRequest, responses(
    (status = 200, body = LoginResponse, description = "as POST /auth/login: authenticated (aal 1, amr [fed]) or mfa_required; the lockout, risk, device and audit rules of logins apply"),
    (status = 400, body = ErrorBody, description = "TOKEN_INVALID: unknown, used or expired login_code, or a code_verifier that does not match the start's code_challenge (the code is spent either way)"),
    (status = 403, body = ErrorBody, description = "ACCOUNT_DISABLED"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED: the account or the address is locked"),
))]
pub async fn oidc_exchange(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<OidcExchangeRequest>,
) -> AppResult<Json<LoginResponse>> {
    let task =
        tokio::spawn(
            async move { service::oidc_exchange(&state, &client, &body.login_code, &body.code_verifier).await },
        );
    Ok(Json(task.await.map_err(AppError::internal)??))
}

#[utoipa::path(get, path = "/api/v1/users/me/connections", tag = "users", security(("bearer" = [])),
    params(PageParams), extensions(("x-api-key-scope" = json!("me:read"))), responses(
    (status = 200, body = Paginated<Connection>, description = "the caller's linked identities, oldest first, without tokens"),
))]
pub async fn connections(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<PageParams>,
) -> AppResult<Json<Paginated<Connection>>> {
    Ok(Json(service::connections(&state, &auth, q.page()?).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/me/connections/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 204, description = "unlinked; the owner gets identity_unlinked"),
    (status = 404, body = ErrorBody, description = "not one of the caller's connections"),
    (status = 409, body = ErrorBody, description = "LAST_SIGN_IN_METHOD: no usable password, no passkey and no other identity would remain"),
))]
pub async fn unlink_connection(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    service::unlink_connection(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
