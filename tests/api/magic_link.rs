//! Magic links: emailed, single use, five minutes, a login under the login rules; MFA still
//! applies; off unless MAGIC_LINK_ENABLED.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::{
    helpers::{PASSWORD, TestApp, assert_error, json, jwt_parts, test_config, tokens},
    mfa::{challenge, enrol_totp, fresh_code},
};

async fn enabled_app(pool: &PgPool, url: Option<&str>) -> TestApp {
    let mut config = test_config(pool);
    config.magic_link_enabled = true;
    config.magic_link_url = url.map(str::to_owned);
    TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await
}

async fn ask(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/magic-link", &json!({"email": email})).await
}

async fn confirm(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/magic-link/confirm", &json!({"token": token})).await
}

#[sqlx::test]
async fn magic_links_are_off_unless_enabled(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    assert_error(ask(&app, "ann@example.com").await, 404, "NOT_FOUND").await;
    assert_error(confirm(&app, "anything").await, 404, "NOT_FOUND").await;
}

#[sqlx::test]
async fn a_magic_link_signs_in_once_and_not_twice(pool: PgPool) {
    let app = Arc::new(enabled_app(&pool, None).await);
    app.signed_in("ann").await;
    assert_eq!(ask(&app, "ann@example.com").await.status(), 202);
    assert_eq!(ask(&app, "nobody@example.com").await.status(), 202, "the same answer for an unknown address");
    assert_eq!(ask(&app, "not an address").await.status(), 202);
    let token = app.mailed_token("ann@example.com", "/magic-link").await;
    assert!(app.smtp.mails().iter().all(|m| !m.to.iter().any(|t| t == "nobody@example.com")));

    let first = confirm(&app, &token).await;
    assert_eq!(first.status(), 200);
    let body = json(first).await;
    assert_eq!(body["status"], "authenticated");
    let claims = jwt_parts(&tokens(body).access).1;
    assert_eq!((claims["aal"].clone(), claims["amr"].clone()), (json!(1), json!(["email"])));
    assert_error(confirm(&app, &token).await, 400, "TOKEN_INVALID").await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_onetimetoken WHERE token_hash = $1")
        .bind(&token)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "only the token's hash is stored");

    // Four concurrent uses of a new link: exactly one session.
    sqlx::query("UPDATE accounts_onetimetoken SET created_at = now() - interval '2 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(ask(&app, "ann@example.com").await.status(), 202);
    let token = app.mailed_token("ann@example.com", "/magic-link").await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move { confirm(&app, &token).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400, 400, 400]);

    // Expired after five minutes.
    sqlx::query("UPDATE accounts_onetimetoken SET created_at = now() - interval '2 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(ask(&app, "ann@example.com").await.status(), 202);
    let token = app.mailed_token("ann@example.com", "/magic-link").await;
    let life: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM accounts_onetimetoken
          WHERE purpose = 'magic_link' AND used_at IS NULL AND revoked_at IS NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!((299.0..=301.0).contains(&life), "{life}");
    sqlx::query(
        "UPDATE accounts_onetimetoken SET expires_at = now() - interval '1 second' WHERE purpose = 'magic_link'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_error(confirm(&app, &token).await, 400, "TOKEN_INVALID").await;
}

#[sqlx::test]
async fn a_magic_link_still_asks_an_mfa_account_for_its_factor(pool: PgPool) {
    let app = enabled_app(&pool, None).await;
    let ann = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &ann).await;
    assert_eq!(ask(&app, "ann@example.com").await.status(), 202);
    let token = app.mailed_token("ann@example.com", "/magic-link").await;
    let r = confirm(&app, &token).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["status"], "mfa_required", "{body}");
    assert!(body.get("access_token").is_none());
    let id = body["challenge_id"].as_str().unwrap();
    let code = fresh_code(&e.secret, &mut e.used_step);
    let done = app
        .client
        .post(app.url("/api/v1/auth/mfa/verify"))
        .header("X-Device-Fingerprint", "laptop")
        .json(&json!({"challenge_id": id, "method": "totp", "code": code, "trust_device": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let claims = jwt_parts(&tokens(json(done).await).access).1;
    assert_eq!((claims["aal"].clone(), claims["amr"].clone()), (json!(2), json!(["email", "otp", "mfa"])));
    // The password login is unchanged.
    challenge(&app, "ann@example.com").await;

    // A trusted device skips MFA after the password, never after a magic link: a mailbox is
    // not the person.
    sqlx::query("UPDATE accounts_onetimetoken SET created_at = now() - interval '2 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(ask(&app, "ann@example.com").await.status(), 202);
    let token = app.mailed_token("ann@example.com", "/magic-link").await;
    let from_laptop = |path: &'static str, body: serde_json::Value| {
        app.client.post(app.url(path)).header("X-Device-Fingerprint", "laptop").json(&body).send()
    };
    let password = json(
        from_laptop("/api/v1/auth/login", json!({"email": "ann@example.com", "password": crate::helpers::PASSWORD}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(password["status"], "authenticated", "{password}");
    let magic = json(from_laptop("/api/v1/auth/magic-link/confirm", json!({"token": token})).await.unwrap()).await;
    assert_eq!(magic["status"], "mfa_required", "{magic}");
}

#[sqlx::test]
async fn an_app_gets_its_own_link_and_a_remediation_ends_a_pending_one(pool: PgPool) {
    let app = enabled_app(&pool, Some("myapp://signin?token={token}")).await;
    let ann = app.signed_in("ann").await;
    assert_eq!(ask(&app, "ann@example.com").await.status(), 202);
    let token = app.mailed_token("ann@example.com", "myapp://signin").await;
    assert!(token.len() >= 32);
    let out = app.with_token(Method::POST, "/api/v1/auth/logout-all", &ann.access).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert_error(confirm(&app, &token).await, 400, "TOKEN_INVALID").await;
}

#[sqlx::test]
async fn a_link_to_the_old_address_dies_when_the_email_changes(pool: PgPool) {
    let app = enabled_app(&pool, None).await;
    let ann = app.signed_in("ann").await;
    assert_eq!(ask(&app, "ann@example.com").await.status(), 202);
    let magic = app.mailed_token("ann@example.com", "/magic-link").await;
    let r = app
        .with_token(Method::POST, "/api/v1/users/me/email", &ann.access)
        .json(&json!({"password": PASSWORD, "new_email": "ann@example.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let change = app.mailed_token("ann@example.net", "/confirm-email-change").await;
    let r = app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": change})).await;
    assert_eq!(r.status(), 200);
    assert_error(confirm(&app, &magic).await, 400, "TOKEN_INVALID").await;
}
