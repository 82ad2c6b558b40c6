//! Request logs from the real binary: one line per request with its fields once, and a
//! log reader that stops reading never holds a request up (lines are dropped and counted).

use serde_json::{Value, json};
use sqlx::PgPool;
use std::{process::Stdio, time::Duration};

use crate::{
    helpers::{PASSWORD, test_config},
    process::{SigningKey, free_port, serve_logged, serve_with_output},
};

#[sqlx::test]
async fn an_access_log_line_names_the_request_and_its_user_once(pool: PgPool) {
    let database_url = test_config(&pool).database.url.expose().to_owned();
    let key = SigningKey::generate();
    let log = std::env::temp_dir().join(format!("gatehouse-access-{}.log", uuid::Uuid::now_v7()));
    let envs = [("RUN_JOBS", "false"), ("LOG_FORMAT", "json"), ("RUST_LOG", "info,sqlx=warn")];
    let server = serve_logged(&database_url, &key, free_port(), &envs, Some(&log)).await;
    let client = reqwest::Client::new();
    let body = json!({"email": "ann@example.com", "username": "ann", "password": PASSWORD});
    let r = client.post(format!("{}/api/v1/auth/register", server.base)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    let tokens: Value = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let me = client
        .get(format!("{}/api/v1/users/me", server.base))
        .bearer_auth(access)
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // The writer thread flushes soon after; wait for the line rather than a fixed time.
    let mut line = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        line = text.lines().find(|l| l.contains("trace-me-1") && l.contains("request finished")).map(str::to_owned);
        if line.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(&log).ok();
    let line: Value = serde_json::from_str(&line.expect("the request's access-log line")).unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].as_f64().is_some());
    let span = &line["span"];
    assert_eq!((span["method"].as_str(), span["route"].as_str()), (Some("GET"), Some("/api/v1/users/me")));
    assert_eq!(span["request_id"], "trace-me-1");
    assert_eq!(span["user_id"], user["user"]["id"]);
    assert!(line.get("spans").is_none(), "the span's fields appear once: {line}");
}

#[sqlx::test]
async fn a_log_reader_that_stops_reading_never_holds_a_request_up(pool: PgPool) {
    let database_url = test_config(&pool).database.url.expose().to_owned();
    let key = SigningKey::generate();
    // Standard output is a pipe nobody reads: it fills after a few hundred lines. A small
    // queue makes the access log drop within the test's requests.
    let envs = [("RUN_JOBS", "false"), ("LOG_FORMAT", "json"), ("RUST_LOG", "info"), ("LOG_QUEUE_LINES", "64")];
    let server = serve_with_output(&database_url, &key, free_port(), &envs, Stdio::piped(), Stdio::null()).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for batch in 0..20 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (client, url) = (client.clone(), format!("{}/healthz", server.base));
            requests.spawn(async move { client.get(url).send().await });
        }
        while let Some(r) = requests.join_next().await {
            let r = r.unwrap().unwrap_or_else(|e| panic!("batch {batch}: a request was held up: {e}"));
            assert_eq!(r.status(), 200);
        }
    }
    let metrics = client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let dropped: u64 = metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_log_lines_dropped_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .expect("the dropped-lines counter");
    assert!(dropped > 0, "2,000 lines into a full pipe: some were dropped, and counted");
}
