//! Paths of the accounts app.

use axum::{
    Router,
    routing::{delete, get, post},
};

use super::handlers;
use crate::core::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(handlers::register))
        .route("/auth/email/verify", post(handlers::verify_email))
        .route("/auth/email/resend", post(handlers::resend_verification))
        .route("/auth/login", post(handlers::login))
        .route("/auth/refresh", post(handlers::refresh))
        .route("/auth/logout", post(handlers::logout))
        .route("/auth/logout-all", post(handlers::logout_all))
        .route("/auth/password/change", post(handlers::change_password))
        .route("/auth/password/reset", post(handlers::request_password_reset))
        .route("/auth/password/reset/confirm", post(handlers::confirm_password_reset))
        .route("/users/me", get(handlers::me).patch(handlers::update_me).delete(handlers::delete_me))
        .route("/sessions", get(handlers::sessions))
        .route("/sessions/{id}", delete(handlers::revoke_session))
        .route("/admin/users/{id}/unlock", post(handlers::admin_unlock))
        .route("/admin/users/{id}/logout-all", post(handlers::admin_logout_all))
}
