//! No secret leaves through an error (API.md "Recovery"): secrets planted in the userinfo,
//! path and query of `SMS_WEBHOOK_URL` and `SMTP_URL` of a real `serve` process whose
//! deliveries fail reach no line of its log, no row of any table, and no data export.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    helpers::{PASSWORD, test_config},
    process::{SigningKey, free_port, serve_logged},
};

const SECRETS: [&str; 8] = [
    "hookuser7c1",
    "HOOKPASS7c1",
    "HOOKPATH7c1",
    "HOOKQUERY7c1",
    "mailuser7c1",
    "SMTPPASS7c1",
    "SMTPPATH7c1",
    "SMTPQUERY7c1",
];

/// Polls `sql` (one boolean) until it holds, up to `secs`.
async fn until(pool: &PgPool, sql: &'static str, secs: u64) {
    let started = Instant::now();
    while !sqlx::query_scalar::<_, bool>(sql).fetch_one(pool).await.unwrap() {
        assert!(started.elapsed() < Duration::from_secs(secs), "still not: {sql}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test]
async fn webhook_and_smtp_secrets_reach_no_log_row_or_export(pool: PgPool) {
    let database_url = test_config(&pool).database.url.expose().to_owned();
    // Nothing listens on these ports: every delivery fails with a transport error.
    let (hook_port, smtp_port, port) = (free_port(), free_port(), free_port());
    let hook = format!("http://hookuser7c1:HOOKPASS7c1@127.0.0.1:{hook_port}/services/HOOKPATH7c1?token=HOOKQUERY7c1");
    let smtp = format!("smtp://mailuser7c1:SMTPPASS7c1@127.0.0.1:{smtp_port}/SMTPPATH7c1?auth=SMTPQUERY7c1");
    let dir = std::env::temp_dir().join(format!("gatehouse-secrets-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("serve.log");
    let exports = dir.join("exports");
    let key = SigningKey::generate();
    let envs = [
        ("SMS_PROVIDER", "webhook"),
        ("SMS_WEBHOOK_URL", hook.as_str()),
        ("SMTP_URL", smtp.as_str()),
        ("RUN_JOBS", "true"),
        ("EXPORT_DIR", exports.to_str().unwrap()),
        ("RUST_LOG", "info"),
        ("LOG_FORMAT", "json"),
    ];
    let mut server = serve_logged(&database_url, &key, port, &envs, Some(&log)).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.base);

    let registered = client
        .post(url("/api/v1/auth/register"))
        .json(&json!({"email": "ann@example.com", "username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let login: Value = client
        .post(url("/api/v1/auth/login"))
        .json(&json!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let sms = client
        .post(url("/api/v1/mfa/sms/setup"))
        .bearer_auth(&access)
        .json(&json!({"phone_number": "+15551234567", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(sms.status(), 202);
    until(&pool, "SELECT EXISTS (SELECT 1 FROM notifications_smsnotification WHERE error_message IS NOT NULL)", 30)
        .await;
    until(&pool, "SELECT EXISTS (SELECT 1 FROM notifications_emailnotification WHERE error_message IS NOT NULL)", 30)
        .await;

    let export: Value = client
        .post(url("/api/v1/users/me/export"))
        .bearer_auth(&access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = export["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let document = loop {
        let status: Value = client
            .get(url(&format!("/api/v1/users/me/export/{id}")))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] == "complete" {
            let file = client.get(url(&format!("/api/v1/users/me/export/{id}/download"))).bearer_auth(&access);
            break file.send().await.unwrap().text().await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the export did not complete: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    server.kill();

    // The failures are recorded, by origin: the scan below looks at real errors.
    let sms_error: String = sqlx::query_scalar(
        "SELECT error_message FROM notifications_smsnotification WHERE error_message IS NOT NULL LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(sms_error.contains(&format!("http://127.0.0.1:{hook_port}")), "{sms_error}");
    let email_error: String = sqlx::query_scalar(
        "SELECT error_message FROM notifications_emailnotification WHERE error_message IS NOT NULL LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(email_error.contains(&format!("smtp://127.0.0.1:{smtp_port}")), "{email_error}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("sms delivery failed") && log.contains("email delivery failed"), "{log}");
    assert!(document.contains("error_message"), "the export carries the delivery history");

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for secret in SECRETS {
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!document.contains(secret), "{secret} in the export");
        for table in &tables {
            let sql = format!("SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(secret).fetch_one(&pool).await.unwrap();
            assert_eq!(n, 0, "{secret} in {table}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
