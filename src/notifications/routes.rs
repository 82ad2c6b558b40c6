//! Paths of the notifications app.

use axum::Router;

use crate::core::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
