//! Service routes: liveness, readiness, metrics, JWKS, and the JSON 404/405 fallbacks.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use super::{db, error::AppError, state::AppState};

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Why the service is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok", reason: None })
}

/// Readiness: the database answers and no migration is pending.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, body = Status, description = "ready"),
    (status = 503, body = Status, description = "database unreachable or migrations pending"),
))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let unavailable = |reason: String| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Status { status: "unavailable", reason: Some(reason) }))
    };
    match db::pending_migrations(&state.db).await {
        Ok(pending) if pending.is_empty() => (StatusCode::OK, Json(Status { status: "ready", reason: None })),
        Ok(pending) => unavailable(format!("{} migration(s) pending", pending.len())),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            unavailable("database unreachable".to_owned())
        }
    }
}

/// Prometheus text exposition.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, AppError> {
    if let Some(expected) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::core::crypto::constant_time_eq(given.as_bytes(), expected.expose_secret().as_bytes()) {
            return Err(AppError::Unauthenticated);
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()))
}

/// Public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "service", responses(
    (status = 200, description = "RFC 7517 JWK Set", body = Object),
))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(state.keys.jwks()))
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}

pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
