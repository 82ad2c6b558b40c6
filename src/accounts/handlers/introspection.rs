//! The calls resource servers and gateways make on every request: `whoami` with the
//! user's bearer token, and RFC 7662 introspection with an API key. Both answer from the
//! instance's session cache when it holds the token (docs/architecture.md "The hot path").

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::{
    AppError, AppResult, AppState,
    auth::{self, AuthUser},
    auth_cache::CachedSession,
    error::ErrorBody,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoamiSession {
    pub id: uuid::Uuid,
    /// 1 (password) or 2 (second factor).
    pub aal: u8,
    /// RFC 8176 methods: `pwd`, `otp`, `sms`, `mfa`.
    pub amr: Vec<String>,
    /// When the session was opened (the login).
    pub authenticated_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub device_id: Option<uuid::Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoamiIdentity {
    pub id: uuid::Uuid,
    pub email: String,
    pub username: String,
    pub is_staff: bool,
    pub email_verified: bool,
}

/// `GET /auth/whoami`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Whoami {
    pub session: WhoamiSession,
    pub identity: WhoamiIdentity,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[utoipa::path(get, path = "/api/v1/auth/whoami", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = Whoami, description = "the session and identity of the bearer token; from the instance's cache when it holds the token (no database round trip), so a gateway may call it on every request (nginx auth_request, Envoy ext_authz)"),
    (status = 401, body = ErrorBody, description = "UNAUTHENTICATED: no bearer token, or a bad, expired or revoked one (an API key is not a session)"),
))]
pub async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let token = bearer(&headers).ok_or(AppError::Unauthenticated)?;
    let s = auth::session_of(&state, token).await?;
    // The body depends on the cache entry alone: serialized once per entry, not per call.
    let body = match s.whoami.get() {
        Some(body) => body.clone(),
        None => {
            let body = Bytes::from(serde_json::to_vec(&Whoami::of(&s)).map_err(AppError::internal)?);
            s.whoami.get_or_init(|| body).clone()
        }
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

impl Whoami {
    fn of(s: &CachedSession) -> Self {
        Whoami {
            session: WhoamiSession {
                id: s.session_id,
                aal: s.aal,
                amr: s.amr.clone(),
                authenticated_at: s.authenticated_at,
                expires_at: s.session_expires_at,
                device_id: s.device_id,
            },
            identity: WhoamiIdentity {
                id: s.user_id,
                email: s.email.clone(),
                username: s.username.clone(),
                is_staff: s.is_staff,
                email_verified: s.email_verified,
            },
        }
    }
}

/// `POST /auth/introspect`, as a form (`token=...`, RFC 7662) or JSON.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    /// An access token.
    pub token: String,
    /// Accepted and ignored (only access tokens are introspected).
    pub token_type_hint: Option<String>,
}

/// RFC 7662: exactly `{"active": false}` for anything not valid now; `client_id` is never
/// present (tokens belong to users, not clients).
#[derive(Debug, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<uuid::Uuid>,
    /// The session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aal: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// What the token may do: `user` (every route its user may call), and `staff` as well
    /// when that user is staff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Introspection {
    fn inactive() -> Self {
        Introspection { active: false, sub: None, sid: None, exp: None, iat: None, aal: None, amr: None, scope: None }
    }

    fn of(s: &CachedSession) -> Self {
        Introspection {
            active: true,
            sub: Some(s.user_id),
            sid: Some(s.session_id),
            exp: Some(s.token_expires_at),
            iat: Some(s.issued_at),
            aal: Some(s.aal),
            amr: Some(s.amr.clone()),
            scope: Some(if s.is_staff { "user staff" } else { "user" }.to_owned()),
        }
    }
}

/// The body as a form or as JSON, by its Content-Type.
fn introspect_body(headers: &HeaderMap, body: &Bytes) -> AppResult<IntrospectRequest> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let parsed: Option<IntrospectRequest> = match essence.as_str() {
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(body).ok(),
        "application/json" => serde_json::from_slice(body).ok(),
        _ => return Err(AppError::UnsupportedMediaType),
    };
    let request = parsed.ok_or_else(|| AppError::validation("token", "is required (a form field or JSON member)"))?;
    if request.token.contains('\0') || request.token.len() > 8192 {
        return Err(AppError::validation("token", "is not a token"));
    }
    Ok(request)
}

#[utoipa::path(post, path = "/api/v1/auth/introspect", extensions(("x-api-key-scope" = json!("introspect"))), tag = "auth",
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded",
        description = "token=<access token>; JSON {\"token\": ...} is accepted as well"),
    responses(
    (status = 200, body = Introspection, description = "RFC 7662: the token's claims, or exactly {\"active\": false} for an expired, revoked, forged or foreign token"),
    (status = 401, body = ErrorBody, description = "UNAUTHENTICATED: no valid API key (a bearer token is not enough)"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: the key lacks the introspect scope, or its owner is no longer staff"),
))]
pub async fn introspect(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Json<Introspection>> {
    if auth.api_key.is_none() {
        return Err(AppError::Unauthenticated);
    }
    if !auth.is_staff {
        return Err(AppError::Forbidden);
    }
    let request = introspect_body(&headers, &body)?;
    match auth::session_of(&state, &request.token).await {
        Ok(s) => Ok(Json(Introspection::of(&s))),
        Err(AppError::Unauthenticated) => Ok(Json(Introspection::inactive())),
        Err(e) => Err(e),
    }
}
