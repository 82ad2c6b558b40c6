//! Paths of the staff console, served at the root (not under `/api/v1`).

use axum::{
    Router,
    routing::{get, post},
};

use crate::core::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(super::page))
        .route("/admin/login", post(super::login))
        .route("/admin/login/passkey", post(super::passkey_sign_in))
        .route("/admin/passkey.js", get(super::script))
        .route("/admin/passkeys/start", post(super::passkey_start))
        .route("/admin/passkeys/finish", post(super::passkey_finish))
        .route("/admin/review", post(super::review))
        .route("/admin/logout", post(super::logout))
        .route("/admin/users", post(super::user_action))
        .route("/admin/mfa", post(super::mfa_decision))
}
