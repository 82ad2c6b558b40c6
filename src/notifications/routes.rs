//! Paths of the notifications app.

use axum::{
    Router,
    routing::{delete, get, put},
};

use super::handlers;
use crate::core::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/notifications", get(handlers::history))
        .route("/notifications/preferences", get(handlers::preferences).put(handlers::update_preferences))
        .route("/notifications/preferences/types", get(handlers::type_preferences))
        .route("/notifications/preferences/types/{type}", put(handlers::update_type_preference))
        .route("/notifications/quiet-hours", get(handlers::quiet_hours).post(handlers::add_quiet_hours))
        .route("/notifications/quiet-hours/{id}", delete(handlers::delete_quiet_hours))
        .route("/notifications/blocklist", get(handlers::blocklist).post(handlers::add_block))
        .route("/notifications/blocklist/{id}", delete(handlers::remove_block))
        .route("/notifications/consents", get(handlers::consents))
        .route("/notifications/consents/{type}", put(handlers::set_consent))
}
