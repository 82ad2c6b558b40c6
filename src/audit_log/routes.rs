//! Paths of the audit_log app.

use axum::{
    Router,
    routing::{get, post},
};

use super::handlers;
use crate::core::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/events", get(handlers::own_events))
        .route("/admin/audit/summaries", get(handlers::summaries))
        .route("/admin/audit/summaries/daily", get(handlers::daily))
        .route("/admin/audit/summaries/run", post(handlers::run_summary))
        .route("/admin/audit/retention", get(handlers::retention).put(handlers::set_retention))
        .route("/admin/audit/{kind}", get(handlers::list))
        .route("/admin/audit/{kind}/{id}/review", post(handlers::review))
        .route("/admin/jobs", get(handlers::jobs))
}
