//! Gatehouse: authentication, MFA and device trust over PostgreSQL.
//!
//! Four apps, dependencies pointing one way:
//! `accounts -> otp -> notifications -> audit_log -> core`. Above them, `admin_ui` (the
//! staff console, as Django keeps `django.contrib.admin` apart from the apps it
//! administers), `console` (the account console at `/account`) and `jobs` (the loops) call
//! the apps' services.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod accounts;
pub mod admin_ui;
pub mod audit_log;
pub mod console;
pub mod core;
pub mod jobs;
pub mod notifications;
pub mod openapi;
pub mod otp;

use std::sync::Arc;

use axum::{
    Extension, Router,
    extract::DefaultBodyLimit,
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;

pub use crate::core::{AppError, AppState};

/// Largest request body accepted (API.md: 413 past it).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The whole HTTP surface, ready to serve or to drive from tests.
pub fn build_router(state: AppState) -> Router {
    with_layers(routes(), state)
}

/// Every route of every app, before the shared layers. The API's routes come with their
/// OpenAPI declarations: the served document and the table of API-key scopes are built from
/// the same declarations the router is, and handed to the API's requests.
pub fn routes() -> Router<AppState> {
    let (api, paths) = OpenApiRouter::new()
        .merge(core::routes::router())
        .merge(accounts::routes::router())
        .merge(notifications::routes::router())
        .merge(audit_log::routes::router())
        .split_for_parts();
    let document = Arc::new(openapi::document(paths));
    let scopes = Arc::new(core::auth::RouteScopes::from_document(&document));
    api.route("/api/v1/openapi.json", get(openapi::openapi_json))
        .layer(Extension(document))
        .layer(Extension(scopes))
        .merge(openapi::docs_router())
        .merge(accounts::routes::pages())
        .merge(admin_ui::router())
        .merge(console::router())
}

/// The layers every route gets: JSON 404/405, the body limit, panic catching, security
/// headers, request ids and metrics.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(core::handlers::not_found)
        .method_not_allowed_fallback(core::handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), console::guard))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(core::headers::middleware))
        .layer(middleware::from_fn_with_state(state.clone(), core::request_id::middleware))
        .with_state(state)
}

/// A panic is a bug: log it, answer the house 500 without internals.
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    AppError::Internal("handler panicked".into()).into_response()
}
