//! Request ids: echoed when the client sent a valid one, made up otherwise, available to
//! error bodies and logs for the whole request.

use axum::{
    extract::{MatchedPath, Request, State},
    http::HeaderValue,
    middleware::Next,
    response::Response,
};

use super::AppState;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
    /// The request's user, once authentication names one (for the access line).
    static REQUEST_USER: std::sync::Arc<std::sync::OnceLock<uuid::Uuid>>;
}

/// The current request's id, when called inside a request.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `f` as if inside the request `id` (tests of what reads the id).
#[cfg(test)]
pub(crate) fn within<R>(id: &str, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id.to_owned(), f)
}

/// Names the request's user in its log line (called once a request is authenticated).
/// (A task-local, not a tracing field: recording a span field re-formatted the span's
/// fields, which cost `/users/me` a tenth of its throughput.)
pub fn record_user(user: uuid::Uuid) {
    let _ = REQUEST_USER.try_with(|cell| cell.set(user));
}

/// A client-sent id is kept only when short and made of safe characters.
fn valid(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Assigns the request id, scopes it, logs the request, counts it in the metrics.
pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    // Only the methods HTTP defines get a series of their own: a client inventing methods
    // must not grow the metrics without bound (unmatched paths already share one label).
    let method_label = match method.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "CONNECT" | "TRACE" => method.as_str(),
        _ => "OTHER",
    }
    .to_owned();
    // No span: a span per request (made, its fields formatted, entered at every poll) cost
    // /users/me 5% of its throughput. Events inside the request take the id from
    // REQUEST_ID (`telemetry` adds it to their lines); the access line is written apart
    // (`telemetry::access_line`), with the user `record_user` names.
    let started = std::time::Instant::now();

    let user = std::sync::Arc::new(std::sync::OnceLock::new());
    let run = REQUEST_USER.scope(user.clone(), next.run(request));
    let mut response = REQUEST_ID.scope(id.clone(), run).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.observe_request(&method_label, &route, status, elapsed);
    if super::telemetry::access_enabled() {
        super::telemetry::access_line(&super::telemetry::AccessLine {
            request_id: &id,
            method: method.as_str(),
            route: &route,
            user_id: user.get().copied(),
            status,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
        });
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_safe_ids_are_echoed() {
        assert!(super::valid("abc-123_x.y:z"));
        assert!(!super::valid(""));
        assert!(!super::valid("has space"));
        assert!(!super::valid(&"a".repeat(129)));
    }
}
