//! Paths of the service routes: health, readiness and keys from their handlers'
//! `#[utoipa::path]`; `/metrics` (Prometheus text, not part of the API document).

use axum::routing::get;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{handlers, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
        .routes(routes!(handlers::jwks))
        .route("/metrics", get(handlers::metrics))
}
