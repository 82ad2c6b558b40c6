//! Paths of the audit_log app (the admin review API grows here).

use axum::Router;

use crate::core::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
