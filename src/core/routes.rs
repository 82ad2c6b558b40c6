//! Paths of the service routes.

use axum::{Router, routing::get};

use super::{handlers, state::AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/.well-known/jwks.json", get(handlers::jwks))
}
