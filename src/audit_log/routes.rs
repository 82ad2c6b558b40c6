//! Paths of the audit_log app, each route from its handler's `#[utoipa::path]`.

use utoipa_axum::{router::OpenApiRouter, routes};

use super::handlers;
use crate::core::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::own_events))
        .routes(routes!(handlers::summaries))
        .routes(routes!(handlers::daily))
        .routes(routes!(handlers::run_summary))
        .routes(routes!(handlers::retention, handlers::set_retention))
        .routes(routes!(handlers::list))
        .routes(routes!(handlers::review))
        .routes(routes!(handlers::jobs))
}
