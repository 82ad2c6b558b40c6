//! The pages the emails link to: opening one changes nothing, its one button (a POST with
//! the CSRF token of its cookie) does the work, and the API's rules show as messages.

use reqwest::header;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{PASSWORD, PASSWORD_2, TestApp, json};

/// Opens a link page: its CSRF cookie and the form's CSRF value.
async fn open(app: &TestApp, path_and_query: &str) -> (u16, String, String, String) {
    let r = app.client.get(app.url(path_and_query)).send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gh_link_csrf="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(r.headers().get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()), Some("no-store"));
    let html = r.text().await.unwrap();
    let csrf =
        html.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default().to_owned();
    (status, cookie, csrf, html)
}

async fn submit(app: &TestApp, path: &str, cookie: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let r = app.client.post(app.url(path)).header(header::COOKIE, cookie).form(fields).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[sqlx::test]
async fn the_verify_email_page_confirms_on_its_button_only(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);
    let token = app.mailed_token("ann@example.com", "/verify-email").await;
    let verified = || sqlx::query_scalar::<_, bool>("SELECT email_verified FROM auth_user").fetch_one(&pool);

    let (status, cookie, csrf, html) = open(&app, &format!("/verify-email?token={token}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Confirm my email") && !csrf.is_empty(), "{html}");
    assert!(!verified().await.unwrap(), "opening the link changes nothing (mail scanners open links)");

    // Without the cookie the form is refused; with it, one use.
    let (status, html) = submit(&app, "/verify-email", "", &[("csrf", &csrf), ("token", &token)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("form expired"), "{html}");
    let (status, html) = submit(&app, "/verify-email", &cookie, &[("csrf", &csrf), ("token", &token)]).await;
    assert_eq!(status, 200);
    assert!(html.contains("is confirmed"), "{html}");
    assert!(verified().await.unwrap());
    let (status, html) = submit(&app, "/verify-email", &cookie, &[("csrf", &csrf), ("token", &token)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("not valid any more"), "{html}");
    let (status, _, _, _) = open(&app, "/verify-email").await;
    assert_eq!(status, 400, "no token, no form");
}

#[sqlx::test]
async fn the_reset_password_page_asks_twice_and_applies_the_policy(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.signed_in("ann").await;
    let r = app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    assert_eq!(r.status(), 202);
    let token = app.mailed_token("ann@example.com", "/reset-password").await;
    let (status, cookie, csrf, html) = open(&app, &format!("/reset-password?token={token}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("type=\"password\""), "{html}");
    let attempt = |a: &'static str, b: &'static str| {
        let (cookie, csrf, token) = (cookie.clone(), csrf.clone(), token.clone());
        let app = &app;
        async move {
            submit(
                app,
                "/reset-password",
                &cookie,
                &[("csrf", &csrf), ("token", &token), ("new_password", a), ("new_password_again", b)],
            )
            .await
        }
    };
    let (status, html) = attempt(PASSWORD_2, "something-else-entirely-7").await;
    assert_eq!(status, 422);
    assert!(html.contains("differ"), "{html}");
    let (status, html) = attempt("short", "short").await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("<li>"), "the policy's message is shown: {html}");
    let (status, html) = attempt(PASSWORD_2, PASSWORD_2).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 401);
    assert_eq!(json(app.login("ann@example.com", PASSWORD_2).await).await["status"], "authenticated");
}
