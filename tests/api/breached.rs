//! The breached-password check against a range server started on loopback, serving a small
//! range file as the Pwned Passwords API does (`SUFFIX:COUNT` lines for a 5-hex prefix).

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    extract::{Path, State},
    routing::get,
};
use reqwest::Method;
use serde_json::json;
use sha1::{Digest, Sha1};
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, assert_error, test_config};

/// A password that passes the policy but appears in "breaches" (the range file below).
const BREACHED: &str = "Velvet-Harbour-Lantern-8";

fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes()).iter().map(|b| format!("{b:02X}")).collect()
}

/// The range server: the breached password's suffix (count 37) among padding lines; every
/// prefix asked is recorded.
async fn range_server(asked: Arc<Mutex<Vec<String>>>) -> String {
    async fn range(State(asked): State<Arc<Mutex<Vec<String>>>>, Path(prefix): Path<String>) -> String {
        asked.lock().unwrap().push(prefix.clone());
        let hash = sha1_hex(BREACHED);
        let mut lines = vec![
            "0018A45C4D1DEF81644B54AB7F969B88D65:1".to_owned(),
            "00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0".to_owned(),
        ];
        if hash.starts_with(&prefix) {
            lines.push(format!("{}:37", &hash[5..]));
        }
        lines.join("\r\n")
    }
    let app = Router::new().route("/range/{prefix}", get(range)).with_state(asked);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

async fn spawn(pool: PgPool, url: &str, max_count: u64) -> TestApp {
    let mut config = test_config(&pool);
    config.breached_password_api_url = Some(url.to_owned());
    config.breached_password_max_count = max_count;
    TestApp::spawn_with(pool, config, gatehouse::routes()).await
}

#[sqlx::test]
async fn a_breached_password_is_refused_and_only_a_prefix_leaves(pool: PgPool) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let url = range_server(asked.clone()).await;
    let app = spawn(pool, &url, 0).await;

    let r = app.register("ann@example.com", "ann", BREACHED).await;
    assert_error(r, 422, "PASSWORD_BREACHED").await;
    assert_eq!(asked.lock().unwrap().as_slice(), [sha1_hex(BREACHED)[..5].to_owned()], "five hex digits, no more");
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);

    // A change to it, and a reset to it, are refused the same way.
    let t = app.login_ok("ann@example.com", PASSWORD).await;
    let r = app
        .with_token(Method::POST, "/api/v1/auth/password/change", &t.access)
        .json(&json!({"current_password": PASSWORD, "new_password": BREACHED}))
        .send()
        .await
        .unwrap();
    assert_error(r, 422, "PASSWORD_BREACHED").await;
    assert_eq!(app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await.status(), 202);
    let token = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    let r =
        app.post_json("/api/v1/auth/password/reset/confirm", &json!({"token": token, "new_password": BREACHED})).await;
    assert_error(r, 422, "PASSWORD_BREACHED").await;
}

#[sqlx::test]
async fn a_count_at_the_threshold_passes(pool: PgPool) {
    let url = range_server(Arc::default()).await;
    let app = spawn(pool, &url, 37).await;
    assert_eq!(app.register("ann@example.com", "ann", BREACHED).await.status(), 201);
}

#[sqlx::test]
async fn an_unreachable_range_api_does_not_block_registration(pool: PgPool) {
    // Nothing listens on port 9 here: the check fails open.
    let app = spawn(pool, "http://127.0.0.1:9", 0).await;
    assert_eq!(app.register("ann@example.com", "ann", BREACHED).await.status(), 201);
    let metrics = app.state.metrics.render();
    assert!(metrics.contains("breached_password_checks_total{result=\"unavailable\"} 1"), "{metrics}");
}
