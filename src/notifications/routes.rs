//! Paths of the notifications app, each route from its handler's `#[utoipa::path]`.

use utoipa_axum::{router::OpenApiRouter, routes};

use super::handlers;
use crate::core::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::history))
        .routes(routes!(handlers::inbox))
        .routes(routes!(handlers::read_one))
        .routes(routes!(handlers::read_all))
        .routes(routes!(handlers::preferences, handlers::update_preferences))
        .routes(routes!(handlers::type_preferences))
        .routes(routes!(handlers::update_type_preference))
        .routes(routes!(handlers::quiet_hours, handlers::add_quiet_hours))
        .routes(routes!(handlers::delete_quiet_hours))
        .routes(routes!(handlers::blocklist, handlers::add_block))
        .routes(routes!(handlers::remove_block))
        .routes(routes!(handlers::consents))
        .routes(routes!(handlers::set_consent))
}
