//! The ground floor: schema, error bodies, readiness, metrics, docs, SMTP (partitions:
//! `partitions.rs`).

use axum::{Router, routing::post};
use chrono::{Datelike, Months, Utc};
use gatehouse::{
    AppState,
    core::{db, extract::AppJson},
};
use serde_json::json;
use sqlx::PgPool;

use crate::{
    helpers::{TestApp, assert_error, json, test_config},
    smtp::SmtpCapture,
};

async fn count_tables(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn migrations_create_every_table_and_rerun_is_a_noop(pool: PgPool) {
    assert_eq!(count_tables(&pool).await, 0);
    db::migrate(&pool).await.unwrap();
    // The first design's 43 with `_sqlx_migrations`, and the six tables since (docs/schema.md).
    assert_eq!(count_tables(&pool).await, 50);
    let passkeys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname IN ('otp_webauthncredential', 'otp_webauthnceremony')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(passkeys, 2);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();

    db::migrate(&pool).await.unwrap();
    assert_eq!(count_tables(&pool).await, 50);
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
    assert_eq!(applied, again);
    assert!(db::pending_migrations(&pool).await.unwrap().is_empty());

    // The four audit tables are range-partitioned on created_at: the month before,
    // this one and the three after it; no DEFAULT partition (retention detaches concurrently).
    for table in [
        "audit_log_sessionauditlog",
        "audit_log_deviceauditlog",
        "audit_log_sessiondevicelinkauditlog",
        "audit_log_mfaauditlog",
    ] {
        let key: String = sqlx::query_scalar("SELECT pg_get_partkeydef($1::text::regclass)")
            .bind(table)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(key, "RANGE (created_at)");
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = $1::text::regclass ORDER BY 1",
        )
        .bind(table)
        .fetch_all(&pool)
        .await
        .unwrap();
        let month = Utc::now().date_naive().with_day(1).unwrap();
        let mut expected: Vec<String> =
            (0..5).map(|m| format!("{table}_p{}", (month - Months::new(1) + Months::new(m)).format("%Y_%m"))).collect();
        expected.sort();
        assert_eq!(parts, expected);
    }
}

/// Every foreign key's referencing column leads an index: a deleted session, device or user
/// finds the rows that name it by that column (ON DELETE SET NULL / CASCADE), and without
/// one each deletion scanned the whole table (every audit partition: hours for a day's
/// cleanup at a million users, docs/performance.md).
#[sqlx::test]
async fn every_foreign_key_is_served_by_an_index(pool: PgPool) {
    let unindexed: Vec<String> = sqlx::query_scalar(
        "SELECT c.conrelid::regclass || '.' || a.attname
           FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
          WHERE c.contype = 'f' AND c.conparentid = 0
            AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
          ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(unindexed.is_empty(), "foreign keys without an index: {unindexed:?}");
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Probe {
    email: String,
    count: u32,
}

async fn probe(AppJson(body): AppJson<Probe>) -> AppJson<Probe> {
    AppJson(body)
}

/// The real layers over the real routes plus one JSON route, to drive the body errors.
async fn app_with_probe(pool: PgPool) -> TestApp {
    let config = test_config(&pool);
    let routes: Router<AppState> = gatehouse::routes().route("/probe", post(probe));
    TestApp::spawn_with(pool, config, routes).await
}

#[sqlx::test]
async fn every_error_path_returns_the_json_error_body(pool: PgPool) {
    let app = app_with_probe(pool).await;

    let ok = app.post_json("/probe", &json!({"email": "a@b.c", "count": 1})).await;
    assert_eq!(ok.status(), 200);

    let bad_json = app
        .client
        .post(app.url("/probe"))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_error(bad_json, 400, "MALFORMED_REQUEST").await;

    let wrong_type =
        app.client.post(app.url("/probe")).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_error(wrong_type, 415, "UNSUPPORTED_MEDIA_TYPE").await;

    let missing = app.post_json("/probe", &json!({"email": "a@b.c"})).await;
    let body = assert_error(missing, 422, "VALIDATION_FAILED").await;
    assert!(body["error"]["details"]["count"][0].is_string(), "{body}");

    let mistyped = app.post_json("/probe", &json!({"email": "a@b.c", "count": "many"})).await;
    let body = assert_error(mistyped, 422, "VALIDATION_FAILED").await;
    assert!(body["error"]["details"]["count"].is_array(), "{body}");

    let unknown = app.get("/api/v1/no-such-route").await;
    assert_error(unknown, 404, "NOT_FOUND").await;

    let wrong_method = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_error(wrong_method, 405, "METHOD_NOT_ALLOWED").await;

    let big = format!("{{\"email\":\"{}\",\"count\":1}}", "a".repeat(gatehouse::BODY_LIMIT + 1));
    let too_large =
        app.client.post(app.url("/probe")).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_error(too_large, 413, "PAYLOAD_TOO_LARGE").await;
}

#[sqlx::test]
async fn request_ids_are_echoed_or_made(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let echoed = app.client.get(app.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let unsafe_id = app.client.get(app.url("/healthz")).header("x-request-id", "bad id<script>").send().await.unwrap();
    let made = unsafe_id.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let missing = app.get("/nope").await;
    let id = missing.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(json(missing).await["error"]["request_id"], id.as_str());
}

#[sqlx::test]
async fn health_and_readiness(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(json(health).await, json!({"status": "ok"}));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(json(ready).await["status"], "ready");
}

#[sqlx::test]
async fn readyz_is_503_when_the_database_is_unreachable(pool: PgPool) {
    let mut config = test_config(&pool);
    // Nothing listens on port 1 of loopback: every connection attempt is refused.
    config.database.url = "postgres://postgres@127.0.0.1:1/none".into();
    config.database.acquire_timeout = std::time::Duration::from_secs(1);
    let unreachable = db::lazy_pool(&config.database).unwrap();
    let app = TestApp::spawn_with(unreachable, config, gatehouse::routes()).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(json(ready).await["status"], "unavailable");
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[sqlx::test(migrations = false)]
async fn readyz_is_503_while_migrations_are_pending(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert!(json(ready).await["reason"].as_str().unwrap().contains("pending"));
    db::migrate(&pool).await.unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[sqlx::test]
async fn metrics_count_requests_by_route_and_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.get("/healthz").await;
    app.get("/nope").await;
    let metrics = app.get("/metrics").await;
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(text.contains(r#"gatehouse_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(text.contains("gatehouse_http_request_duration_seconds_bucket"), "{text}");
}

#[sqlx::test]
async fn openapi_docs_and_jwks_are_served_locally(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let doc = json(app.get("/api/v1/openapi.json").await).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/healthz", "/readyz", "/.well-known/jwks.json"] {
        assert!(doc["paths"][path].is_object(), "{path} missing from OpenAPI");
    }

    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("://cdn"), "docs must not load from a CDN");
    let css = app.get("/docs/swagger-ui.css").await;
    assert_eq!(css.status(), 200);
    let init = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(init.contains("/api/v1/openapi.json"), "{init}");

    let jwks = json(app.get("/.well-known/jwks.json").await).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert_eq!(key["kid"], app.state.keys.kid.as_str());
}

#[tokio::test]
async fn smtp_capture_receives_real_lettre_mail() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::MultiPart};
    let capture = SmtpCapture::start().await;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&capture.url()).unwrap().build();
    let message = Message::builder()
        .from("Gatehouse <no-reply@gatehouse.test>".parse().unwrap())
        .to("alice@example.com".parse().unwrap())
        .subject("Hello")
        .multipart(MultiPart::alternative_plain_html("plain body".to_owned(), "<p>html body</p>".to_owned()))
        .unwrap();

    capture.refuse_next(1);
    assert!(transport.send(message.clone()).await.is_err(), "first attempt is refused");
    transport.send(message).await.unwrap();

    let mails = capture.wait_for(1, 5).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["alice@example.com"]);
    assert_eq!(mails[0].from, "no-reply@gatehouse.test");
    let parsed = mails[0].parsed();
    assert_eq!(parsed.subject(), Some("Hello"));
    assert_eq!(parsed.body_text(0).as_deref().map(str::trim), Some("plain body"));
    assert!(parsed.body_html(0).unwrap().contains("html body"));
}

/// The `gatehouse` binary with none of the configuration of this machine's environment.
fn bare_gatehouse(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run gatehouse")
}

#[test]
fn without_app_env_and_keys_the_service_refuses_to_start() {
    let out = bare_gatehouse(&["serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("APP_ENV"), "{stderr}");
    // Asking for development by name is enough to get past configuration (it then fails
    // on the database, which is not there: a different message).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["migrate"])
        .env_clear()
        .env("APP_ENV", "development")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run gatehouse");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("APP_ENV"));
}

/// A deployment's migration job is handed the database and nothing else (Kratos' `migrate
/// sql` needs only the DSN): no APP_ENV, no signing or encryption key.
#[sqlx::test]
async fn migrate_and_partitions_need_only_the_database(pool: PgPool) {
    let options = pool.connect_options();
    let name = format!("gatehouse_migrate_{}", uuid::Uuid::new_v4().simple());
    let url = format!("postgres://{}@{}:{}/{name}", options.get_username(), options.get_host(), options.get_port());
    let only_database = |args: &[&str], url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", url)
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run gatehouse")
    };
    let out = only_database(&["migrate"], &url);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let fresh = PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&fresh)
        .await
        .unwrap();
    assert!(tables >= 44, "{tables} tables");
    fresh.close().await;
    let out = only_database(&["partitions", "list"], &url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit_log_sessionauditlog_"));
    // The name is ours: a uuid's hex digits.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&pool).await.unwrap();

    // Not told it is development, a migration job is held to production's TLS rule.
    let out = only_database(&["migrate"], "postgres://app@db.example.internal:5432/gatehouse?sslmode=require");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("DATABASE_URL") && stderr.contains("verify-full"), "{stderr}");
    assert!(!stderr.contains("APP_ENV") && !stderr.contains("KEY"), "{stderr}");
}

#[sqlx::test]
async fn responses_carry_security_headers_and_token_answers_are_not_cached(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.register("ann@example.com", "ann", crate::helpers::PASSWORD).await;
    let login = app.login("ann@example.com", crate::helpers::PASSWORD).await;
    assert_eq!(login.status(), 200);
    let h = login.headers();
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let admin = app.get("/admin").await;
    let csp = admin.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(admin.headers()["cache-control"], "no-store");
    let docs = app.get("/docs/").await;
    assert!(docs.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
}

#[sqlx::test]
async fn invented_methods_share_one_metrics_series_and_metrics_can_need_a_token(pool: PgPool) {
    let mut config = crate::helpers::test_config(&pool);
    config.metrics_token = Some("scrape-secret-1".into());
    let app = TestApp::spawn_with(pool, config, gatehouse::routes()).await;
    for verb in ["FROB", "ZAP", "QUUX"] {
        let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        app.client.request(method, app.url("/healthz")).send().await.unwrap();
    }
    assert_error(app.get("/metrics").await, 401, "UNAUTHENTICATED").await;
    let wrong = app.client.get(app.url("/metrics")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let text =
        app.client.get(app.url("/metrics")).bearer_auth("scrape-secret-1").send().await.unwrap().text().await.unwrap();
    for verb in ["FROB", "ZAP", "QUUX"] {
        assert!(!text.contains(&format!("method=\"{verb}\"")), "{verb} got its own series");
    }
    assert!(text.contains("method=\"OTHER\""), "{text}");
}
