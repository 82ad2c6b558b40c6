//! The /admin page over HTTP: sign-in with CSRF, the cookie, the dashboard, reviews.

use reqwest::{StatusCode, header};
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, json};

/// `name=value` of a Set-Cookie header, with the header's attributes.
pub(crate) fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers().get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
        let (k, value) = pair.split_once('=')?;
        (k == name).then(|| (value.to_owned(), attrs.to_owned()))
    })
}

/// The value of the first `name="csrf"` hidden input.
pub(crate) fn csrf(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().unwrap().to_owned()
}

async fn sign_in(app: &TestApp, email: &str) -> reqwest::Response {
    let form = app.get("/admin").await;
    let (cookie, _) = set_cookie(&form, "gh_admin_csrf").expect("csrf cookie");
    let token = csrf(&form.text().await.unwrap());
    app.client
        .post(app.url("/admin/login"))
        .header(header::COOKIE, format!("gh_admin_csrf={cookie}"))
        .form(&[("csrf", token.as_str()), ("email", email), ("password", PASSWORD), ("code", "")])
        .send()
        .await
        .unwrap()
}

#[sqlx::test]
async fn staff_sign_in_see_the_dashboard_and_review(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = crate::helpers::create_superuser(&app.state, "root@example.com", "root", PASSWORD.into()).await.unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(root.id)
        .execute(&pool)
        .await
        .unwrap();
    // Something to review: a reused refresh token.
    let ann = app.signed_in("ann").await;
    let next = crate::helpers::tokens(json(app.refresh(&ann.refresh).await).await);
    assert_eq!(app.refresh(&ann.refresh).await.status(), 401);
    let _ = next;

    let login = app.get("/admin").await;
    assert_eq!(login.status(), 200);
    let (_, attrs) = set_cookie(&login, "gh_admin_csrf").unwrap();
    assert!(attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"), "{attrs}");

    // A forged form is refused.
    let forged = app
        .client
        .post(app.url("/admin/login"))
        .form(&[("csrf", "x"), ("email", "root@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let signed = sign_in(&app, "root@example.com").await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let (session, attrs) = set_cookie(&signed, "gh_admin").expect("session cookie");
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict") && attrs.contains("Path=/admin"),
        "{attrs}"
    );
    let cookie = format!("gh_admin={session}");

    let page = app.client.get(app.url("/admin")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for part in
        [r#"<svg id="chart""#, r#"<table id="daily">"#, r#"id="top-users""#, r#"id="review-queue""#, "token_reused"]
    {
        assert!(html.contains(part), "{part} missing");
    }
    // One script, the console's own (passkeys); the page works without it.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script src="/admin/passkey.js" defer></script>"#));
    let token = csrf(&html);
    let event: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM audit_log_sessionauditlog WHERE action = 'token_reused'")
            .fetch_one(&pool)
            .await
            .unwrap();

    let review = |csrf: String| {
        app.client
            .post(app.url("/admin/review"))
            .header(header::COOKIE, &cookie)
            .form(&[
                ("csrf", csrf),
                ("kind", "session".into()),
                ("id", event.to_string()),
                ("status", "confirmed".into()),
            ])
            .send()
    };
    assert_eq!(review("wrong".into()).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(review(token.clone()).await.unwrap().status(), StatusCode::SEE_OTHER);
    let status: Option<String> =
        sqlx::query_scalar("SELECT review_status FROM audit_log_sessionauditlog WHERE id = $1")
            .bind(event)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status.as_deref(), Some("confirmed"));
    let html =
        app.client.get(app.url("/admin")).header(header::COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Nothing awaits review."));

    let out = app
        .client
        .post(app.url("/admin/logout"))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after =
        app.client.get(app.url("/admin")).header(header::COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("Staff sign-in"), "the session is gone");
}

#[sqlx::test]
async fn non_staff_and_staff_without_mfa_are_turned_away(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.signed_in("ann").await;
    let r = sign_in(&app, "ann@example.com").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("You may not administer."));

    crate::helpers::create_superuser(&app.state, "boss@example.com", "boss", PASSWORD.into()).await.unwrap();
    let r = sign_in(&app, "boss@example.com").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "gh_admin").is_none());
    assert!(r.text().await.unwrap().contains("second factor"));
}
