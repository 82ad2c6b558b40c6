//! Abuse resistance: the bounded hash queue, per-address limits, the per-account cap on
//! reset emails and a reset path that does the same work for every email, and security
//! messages nobody can mute.

use std::{sync::Arc, time::Duration};

use gatehouse::core::config::{Argon2Params, RateLimits};
use reqwest::Method;
use serde_json::json;
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::helpers::{PASSWORD, PASSWORD_2, TestApp, assert_error, test_config};

/// A server that trusts loopback as its proxy, so each request may name its own client
/// address in `X-Forwarded-For`.
fn behind_proxy(pool: &PgPool) -> gatehouse::core::config::Config {
    let mut config = test_config(pool);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config
}

fn from(app: &TestApp, ip: &str, path: &str) -> reqwest::RequestBuilder {
    app.client.post(app.url(path)).header("X-Forwarded-For", ip)
}

async fn statuses(calls: Vec<tokio::task::JoinHandle<(u16, bool)>>) -> Vec<(u16, bool)> {
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[sqlx::test]
async fn a_full_hash_queue_sheds_load_with_503_at_once(pool: PgPool) {
    // One thread, two waiting, a real hash cost: a flood of registrations from many
    // addresses cannot build a queue; the excess is refused with Retry-After, not kept.
    let mut config = behind_proxy(&pool);
    config.hash_concurrency = 1;
    config.hash_queue_depth = 2;
    config.argon2 = Argon2Params { memory_kib: 19_456, iterations: 2, parallelism: 1 };
    let app = Arc::new(TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await);
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body =
                    json!({"email": format!("u{i}@example.com"), "username": format!("user{i}"), "password": PASSWORD});
                let r = from(&app, &format!("10.1.{}.{}", i / 200, i % 200 + 1), "/api/v1/auth/register")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.headers().get("retry-after").is_some())
            })
        })
        .collect();
    let answers = statuses(calls).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let shed: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(created + shed.len(), 100, "{answers:?}");
    assert!(created >= 3 && !shed.is_empty(), "{created} created, {} shed", shed.len());
    assert!(shed.iter().all(|(_, retry)| *retry), "every 503 says when to come back");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_user").fetch_one(&pool).await.unwrap();
    assert_eq!(users as usize, created, "a shed registration leaves nothing behind");

    // Logins shed by a full queue were never checked: they leave no pending attempt to
    // count against anyone, and every answered one was really checked.
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = json!({"email": format!("nobody{i}@example.com"), "password": PASSWORD});
                let r =
                    from(&app, &format!("10.2.0.{}", i + 1), "/api/v1/auth/login").json(&body).send().await.unwrap();
                (r.status().as_u16(), r.headers().get("retry-after").is_some())
            })
        })
        .collect();
    let answers = statuses(calls).await;
    let checked = answers.iter().filter(|(s, _)| *s == 401).count();
    assert_eq!(checked + answers.iter().filter(|(s, retry)| *s == 503 && *retry).count(), 60, "{answers:?}");
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT outcome, count(*) FROM accounts_loginattempt WHERE identifier LIKE 'nobody%' GROUP BY outcome",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows, [("failure".to_owned(), checked as i64)]);
}

#[sqlx::test]
async fn unauthenticated_work_is_limited_per_address(pool: PgPool) {
    let mut config = behind_proxy(&pool);
    config.rate_limits =
        RateLimits { register: 2, password_reset: 2, email_resend: 2, mfa_send: 2, ..RateLimits::default() };
    let app = TestApp::spawn_with(pool, config, gatehouse::routes()).await;
    let register = |ip: &'static str, name: &'static str| {
        from(&app, ip, "/api/v1/auth/register")
            .json(&json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD}))
            .send()
    };
    assert_eq!(register("10.0.0.1", "ann").await.unwrap().status(), 201);
    assert_eq!(register("10.0.0.1", "bob").await.unwrap().status(), 201);
    let third = register("10.0.0.1", "cyd").await.unwrap();
    assert!(third.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_error(third, 429, "RATE_LIMITED").await;
    assert_eq!(register("10.0.0.2", "cyd").await.unwrap().status(), 201, "another address has its own budget");

    let reset =
        || from(&app, "10.0.0.1", "/api/v1/auth/password/reset").json(&json!({"email": "x@example.com"})).send();
    assert_eq!(reset().await.unwrap().status(), 202);
    assert_eq!(reset().await.unwrap().status(), 202);
    assert_error(reset().await.unwrap(), 429, "RATE_LIMITED").await;

    let t = app.login_ok("ann@example.com", PASSWORD).await;
    let resend = || {
        app.with_token(Method::POST, "/api/v1/auth/email/resend", &t.access)
            .header("X-Forwarded-For", "10.0.0.3")
            .send()
    };
    assert_eq!(resend().await.unwrap().status(), 202);
    assert_eq!(resend().await.unwrap().status(), 202);
    assert_error(resend().await.unwrap(), 429, "RATE_LIMITED").await;

    let send = || {
        from(&app, "10.0.0.4", "/api/v1/auth/mfa/send")
            .json(&json!({"challenge_id": uuid::Uuid::new_v4(), "method": "email"}))
            .send()
    };
    assert_error(send().await.unwrap(), 401, "CHALLENGE_EXPIRED").await;
    assert_error(send().await.unwrap(), 401, "CHALLENGE_EXPIRED").await;
    assert_error(send().await.unwrap(), 429, "RATE_LIMITED").await;
    // IPv6 clients share one budget per /64.
    let v6 = |ip: &'static str| {
        from(&app, ip, "/api/v1/auth/password/reset").json(&json!({"email": "x@example.com"})).send()
    };
    assert_eq!(v6("2001:db8:7:7::1").await.unwrap().status(), 202);
    assert_eq!(v6("2001:db8:7:7::2").await.unwrap().status(), 202);
    assert_error(v6("2001:db8:7:7:8::3").await.unwrap(), 429, "RATE_LIMITED").await;

    // The defaults leave the per-user MFA rule (10 per method and hour) the one a user meets.
    assert!(RateLimits::default().mfa_send >= 30);
}

#[sqlx::test]
async fn ten_reset_requests_in_a_minute_send_one_email_and_its_link_stays_valid(pool: PgPool) {
    let app = Arc::new(TestApp::spawn(pool.clone()).await);
    app.signed_in("ann").await;
    let before = app.deliver_mail().await.len();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let r = app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
                (r.status().as_u16(), false)
            })
        })
        .collect();
    assert!(statuses(calls).await.iter().all(|(s, _)| *s == 202));
    let mails = app.deliver_mail().await;
    assert_eq!(mails.len() - before, 1, "one reset email for ten requests");
    let throttled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_auditlog WHERE action = 'password_reset_throttled'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(throttled, 9, "the rest are recorded, and send nothing");
    let token = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    let body = json!({"token": token, "new_password": PASSWORD_2});
    assert_eq!(app.post_json("/api/v1/auth/password/reset/confirm", &body).await.status(), 204);

    // A few an hour: once the minute has passed the next is sent, up to three an hour.
    for _ in 0..4 {
        sqlx::query("UPDATE accounts_onetimetoken SET created_at = created_at - interval '61 seconds'")
            .execute(&pool)
            .await
            .unwrap();
        app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
        app.background_settled().await;
    }
    let issued: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_onetimetoken WHERE purpose = 'password_reset'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(issued, 3, "three links in the hour, the fourth request sent nothing");
}

#[sqlx::test]
async fn the_reset_request_answers_without_touching_the_database(pool: PgPool) {
    // With the only connection held elsewhere, a request that read or wrote anything
    // before answering would wait and then fail: the reset answers 202 for a known and an
    // unknown email alike, so neither its time nor its writes can tell them apart.
    let options = (*pool.connect_options()).clone();
    let one = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(options)
        .await
        .unwrap();
    let app = TestApp::spawn_with(one.clone(), test_config(&pool), gatehouse::routes()).await;
    app.signed_in("ann").await;
    let before = app.deliver_mail().await.len();
    let held = one.acquire().await.unwrap();
    let login = app.login("ann@example.com", PASSWORD).await;
    assert_error(login, 503, "UNAVAILABLE").await;
    for email in ["ann@example.com", "nobody@example.com"] {
        let r = app.post_json("/api/v1/auth/password/reset", &json!({"email": email})).await;
        assert_eq!(r.status(), 202, "{email}");
    }
    drop(held);
    let mails = app.deliver_mail().await;
    assert_eq!(mails.len() - before, 1, "the known address gets its link after the answer");
    assert!(mails.last().unwrap().to.iter().any(|t| t == "ann@example.com"));
}

#[sqlx::test]
async fn notices_that_the_account_changed_cannot_be_muted(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    // Everything a user can switch off, off.
    let r = app
        .with_token(Method::PUT, "/api/v1/notifications/preferences", &t.access)
        .json(&json!({"email_alerts": false, "sms_alerts": false, "email_marketing": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .with_token(Method::PUT, "/api/v1/notifications/preferences/types/password_changed", &t.access)
        .json(&json!({"email_enabled": false, "max_per_day": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let block = json!({"block_type": "notification_type", "blocked_value": "password_changed"});
    let r =
        app.with_token(Method::POST, "/api/v1/notifications/blocklist", &t.access).json(&block).send().await.unwrap();
    assert_error(r, 422, "VALIDATION_FAILED").await;

    let r = app
        .with_token(Method::POST, "/api/v1/auth/password/change", &t.access)
        .json(&json!({"current_password": PASSWORD, "new_password": PASSWORD_2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    let token = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    let body = json!({"token": token, "new_password": "Juniper-Meadow-Drift-63"});
    assert_eq!(app.post_json("/api/v1/auth/password/reset/confirm", &body).await.status(), 204);
    let notices: Vec<String> = app
        .deliver_mail()
        .await
        .iter()
        .filter(|m| m.parsed().subject() == Some("Your password was changed"))
        .filter_map(|m| m.parsed().body_text(0).map(|t| t.into_owned()))
        .collect();
    assert_eq!(notices.len(), 2, "a change and a reset, both told");
    assert!(notices[1].contains("reset with an emailed link"), "{}", notices[1]);
}

#[sqlx::test]
async fn password_changes_waiting_for_the_hash_hold_no_connection(pool: PgPool) {
    // Two connections, a short acquire timeout and a real hash cost: twenty password
    // changes queue for the hash. Were a change to hold its connection while it waits,
    // the two would be taken for the whole queue and everything else would get 503.
    let options = (*pool.connect_options()).clone();
    let two = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(500))
        .connect_with(options)
        .await
        .unwrap();
    let mut config = test_config(&pool);
    config.argon2 = Argon2Params { memory_kib: 19_456, iterations: 2, parallelism: 1 };
    config.hash_concurrency = 1;
    let app = Arc::new(TestApp::spawn_with(two, config, gatehouse::routes()).await);
    let t = app.signed_in("ann").await;
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (app, access) = (app.clone(), t.access.clone());
            tokio::spawn(async move {
                let body = json!({"current_password": PASSWORD, "new_password": format!("Parallel-Change-{i}x")});
                let r = app
                    .with_token(Method::POST, "/api/v1/auth/password/change", &access)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), false)
            })
        })
        .collect();
    // Meanwhile, requests that need the database keep getting a connection.
    let mut reads = Vec::new();
    for _ in 0..10 {
        let r = app.with_token(Method::GET, "/api/v1/users/me", &t.access).send().await.unwrap();
        reads.push(r.status().as_u16());
    }
    let changes = statuses(calls).await;
    assert!(reads.iter().all(|s| *s == 200), "{reads:?}");
    // The first change to commit makes the current password stale for those not yet
    // checked (403, and after five of those the account's lockout, 429); none is a 503.
    assert!(changes.iter().all(|(s, _)| [204, 403, 429].contains(s)), "{changes:?}");
    assert!(changes.iter().any(|(s, _)| *s == 204), "{changes:?}");
}
