//! `kill -9` of a real `serve` process under load, then a restart. Every committed session,
//! rotation and registration has its audit row (written in the same transaction) and every
//! registration its email; the outbox sends each message, a claim the killed process left
//! is retried once stale, and a message is only ever re-sent under its own Message-ID
//! (the outbox id), so every sent row is received and nothing else is.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    helpers::test_config,
    process::{self, Serve, SigningKey, free_port},
    smtp::SmtpCapture,
};

/// `gatehouse serve` on `port`, with jobs and the outbox worker.
async fn serve(database_url: &str, key: &SigningKey, smtp: &str, port: u16) -> Serve {
    let envs = [
        ("SMTP_URL", smtp),
        ("RUN_JOBS", "true"),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("RATE_LIMIT_REGISTER_PER_HOUR", "0"),
        ("RUST_LOG", "error"),
    ];
    process::serve(database_url, key, port, &envs).await
}

/// One client until `stop`: registers a user, signs in as it and refreshes three times.
async fn client(base: String, n: usize, stop: Instant) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let mut i = 0;
    while Instant::now() < stop {
        i += 1;
        let (email, password) = (format!("c{n}x{i}@example.com"), "Correct-Horse-Battery-9");
        let _ = post(
            "/api/v1/auth/register",
            json!({"email": email, "username": format!("c{n}x{i}"), "password": password}),
        )
        .await;
        let Ok(login) = post("/api/v1/auth/login", json!({"email": email, "password": password})).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut refresh = login.json::<Value>().await.ok().and_then(|b| b["refresh_token"].as_str().map(String::from));
        for _ in 0..3 {
            let Some(token) = refresh.take() else { break };
            let Ok(answer) = post("/api/v1/auth/refresh", json!({"refresh_token": token})).await else { break };
            refresh = answer.json::<Value>().await.ok().and_then(|b| b["refresh_token"].as_str().map(String::from));
        }
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.expect(sql)
}

#[sqlx::test]
async fn after_kill_9_under_load_every_committed_change_has_its_audit_row_and_its_email(pool: PgPool) {
    let database_url = test_config(&pool).database.url.expose().to_owned();
    let key = SigningKey::generate();
    let smtp = SmtpCapture::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    let mut first = serve(&database_url, &key, &smtp.url(), port).await;
    let stop = Instant::now() + Duration::from_secs(4);
    let clients: Vec<_> = (0..4).map(|n| tokio::spawn(client(base.clone(), n, stop))).collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    first.kill(); // SIGKILL: no shutdown, no drain
    let users_at_kill = count(&pool, "SELECT count(*) FROM auth_user").await;
    assert!(users_at_kill > 4, "too little load before the kill: {users_at_kill} users");
    for c in clients {
        c.await.unwrap();
    }

    let mut second = serve(&database_url, &key, &smtp.url(), port).await;
    // The restarted worker sends what was pending. A claim the killed process held is
    // retried once it is stale (120 s after it was taken); the clock is moved on for those
    // claims alone instead of waiting: the process that took them is dead.
    let stale = sqlx::query(
        "UPDATE notifications_emailnotification SET claimed_until = now() - interval '1 second' WHERE status = 'sending'",
    )
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    let started = Instant::now();
    while count(&pool, "SELECT count(*) FROM notifications_emailnotification WHERE status IN ('pending', 'sending')")
        .await
        > 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.kill();

    let violations = [
        (
            "sessions without their login audit row",
            "SELECT count(*) FROM accounts_session s WHERE NOT EXISTS
               (SELECT 1 FROM audit_log_sessionauditlog a WHERE a.session_id = s.id AND a.action = 'login')",
        ),
        (
            "sessions whose rotations and refresh audit rows differ in number",
            "SELECT count(*) FROM accounts_session s WHERE
               (SELECT count(*) FROM accounts_refreshtokenrecord r WHERE r.session_id = s.id AND r.rotated_at IS NOT NULL)
               <> (SELECT count(*) FROM audit_log_sessionauditlog a WHERE a.session_id = s.id AND a.action = 'refresh')",
        ),
        (
            "users without their registration audit row",
            "SELECT count(*) FROM auth_user u WHERE NOT EXISTS
               (SELECT 1 FROM accounts_auditlog a WHERE a.user_id = u.id AND a.action = 'registered')",
        ),
        (
            "users without their verification email",
            "SELECT count(*) FROM auth_user u WHERE NOT EXISTS
               (SELECT 1 FROM notifications_emailnotification e WHERE e.user_id = u.id)",
        ),
        ("emails not sent", "SELECT count(*) FROM notifications_emailnotification WHERE status <> 'sent'"),
    ];
    for (what, sql) in violations {
        assert_eq!(count(&pool, sql).await, 0, "{what}");
    }
    let rotations = count(&pool, "SELECT count(*) FROM accounts_refreshtokenrecord WHERE rotated_at IS NOT NULL").await;
    assert!(rotations > 0, "no refresh committed before the kill");

    // Every sent row was received, under its own id; a copy only where an exchange was cut.
    let sent: HashSet<Uuid> = sqlx::query_scalar("SELECT id FROM notifications_emailnotification")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mails = smtp.mails();
    let received: HashSet<Uuid> = mails
        .iter()
        .map(|m| {
            let id = m.parsed().message_id().map(str::to_owned).expect("a Message-ID");
            id.split('@').next().and_then(|s| s.parse().ok()).expect("the outbox id in the Message-ID")
        })
        .collect();
    assert_eq!(received, sent);
    println!(
        "kill -9 after 2.5 s: {} users, {rotations} rotations, {} emails ({stale} claims left by the killed process), {} copies re-sent",
        count(&pool, "SELECT count(*) FROM auth_user").await,
        sent.len(),
        mails.len() - received.len()
    );
}
