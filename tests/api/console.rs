//! The account console over the real router, as a browser without JavaScript uses it: its
//! cookies kept between requests, each form's `csrf_token` read from the page. (The walk in
//! headless Chromium, with screenshots and axe-core, is tests/browser/console.mjs.)

use reqwest::{Method, header};
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;

use crate::{
    helpers::{PASSWORD, PASSWORD_2, TestApp, json, test_config},
    mfa::{enrol_totp, fresh_code},
};

/// A browser: a cookie jar and the last page's CSRF token.
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    cookies: BTreeMap<String, String>,
    csrf: String,
}

struct Answer {
    status: u16,
    location: String,
    set_cookies: Vec<String>,
    html: String,
}

/// The provider link of the page a social start answers with (a page, not a redirect).
fn continue_link(page: &Answer) -> String {
    assert_eq!(page.status, 200, "{}", page.html);
    let start = page.html.find("href=\"http").expect("a link to the provider") + 6;
    // minijinja escapes `/` and `&` in attributes; a browser reads them back.
    page.html[start..].split('"').next().unwrap().replace("&#x2f;", "/").replace("&amp;", "&")
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Browser { app, cookies: BTreeMap::new(), csrf: String::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        let html = response.text().await.unwrap();
        if let Some(token) = html.split("name=\"csrf_token\" value=\"").nth(1).and_then(|s| s.split('"').next()) {
            self.csrf = token.to_owned();
        }
        Answer { status, location, set_cookies, html }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let r = self.app.client.get(self.app.url(path)).header(header::COOKIE, self.cookie_header()).send().await;
        self.read(r.unwrap()).await
    }

    /// Posts a form with the page's CSRF token (unless the fields carry their own).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone();
        if !fields.iter().any(|(k, _)| *k == "csrf_token") {
            form.push(("csrf_token", &csrf));
        }
        let r =
            self.app.client.post(self.app.url(path)).header(header::COOKIE, self.cookie_header()).form(&form).send();
        self.read(r.await.unwrap()).await
    }

    /// Signs in with email and password (an account without MFA).
    async fn sign_in(&mut self, email: &str, password: &str) -> Answer {
        self.get("/account/login").await;
        self.post("/account/login", &[("email", email), ("password", password), ("next", "/account")]).await
    }
}

#[sqlx::test]
async fn a_console_session_is_a_gatehouse_session_that_logout_all_ends(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let api = app.signed_in("ann").await;
    let mut browser = Browser::new(&app);

    // Before sign-in every console page leads to the sign-in page, and back after it.
    let page = browser.get("/account/sessions").await;
    assert_eq!((page.status, page.location.as_str()), (303, "/account/login?next=%2Faccount%2Fsessions"));
    let login = browser.get("/account/login?next=/account/sessions").await;
    assert_eq!(login.status, 200);
    assert!(login.html.contains("autocomplete=\"current-password\""));
    let signed = browser
        .post("/account/login", &[("email", "ann@example.com"), ("password", PASSWORD), ("next", "/account/sessions")])
        .await;
    assert_eq!((signed.status, signed.location.as_str()), (303, "/account/sessions"));

    // The cookie: a random secret, HttpOnly, SameSite=Lax; the session keeps only its hash.
    let cookie = signed.set_cookies.iter().find(|c| c.starts_with("gh_account=")).expect("session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
    let secret = browser.cookies["gh_account"].clone();
    let (session, stored): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, console_secret_hash FROM accounts_session WHERE console_secret_hash IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_ne!(secret, session.to_string());
    assert!(!stored.contains(&secret) && stored.len() == 64);

    // The device cookie became the session's device fingerprint.
    assert!(browser.cookies.contains_key("gh_device"));
    let fingerprinted: bool = sqlx::query_scalar(
        "SELECT d.fingerprint_hash IS NOT NULL FROM accounts_session s JOIN accounts_device d ON d.id = s.device_id
          WHERE s.id = $1",
    )
    .bind(session)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(fingerprinted);

    // It is listed by the API like any other session, and the page lists the API's.
    let listed = json(app.with_token(Method::GET, "/api/v1/sessions", &api.access).send().await.unwrap()).await;
    let ids: Vec<&str> = listed.as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    assert!(ids.contains(&session.to_string().as_str()), "{listed}");
    let page = browser.get("/account/sessions").await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains(&api.session_id), "the API's session is on the page");

    // Signing out everywhere from the API ends the console at once.
    let out = app.with_token(Method::POST, "/api/v1/auth/logout-all", &api.access).send().await.unwrap();
    assert_eq!(out.status(), 204);
    let page = browser.get("/account").await;
    assert_eq!((page.status, page.location.as_str()), (303, "/account/login?next=%2Faccount"));
}

#[sqlx::test]
async fn a_password_reset_and_the_session_expiry_end_the_console(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.sign_in("ann@example.com", PASSWORD).await.status, 303);
    assert_eq!(browser.get("/account").await.status, 200);

    let r = app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    assert_eq!(r.status(), 202);
    let token = app.mailed_token("ann@example.com", "/reset-password").await;
    let r = app
        .post_json("/api/v1/auth/password/reset/confirm", &json!({"token": token, "new_password": PASSWORD_2}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(browser.get("/account").await.status, 303, "the reset ended the console session");

    // A new console session ends when its session does (SESSION_MAX_AGE_SECONDS caps it).
    assert_eq!(browser.sign_in("ann@example.com", PASSWORD_2).await.status, 303);
    assert_eq!(browser.get("/account").await.status, 200);
    sqlx::query(
        "UPDATE accounts_session SET expires_at = now() - interval '1 second' WHERE console_secret_hash IS NOT NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(browser.get("/account").await.status, 303);
}

#[sqlx::test]
async fn forms_without_their_token_or_from_another_origin_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    let mut browser = Browser::new(&app);

    // Sign-in needs the double-submit token of its page.
    browser.get("/account/login").await;
    let no_token = browser
        .post("/account/login", &[("csrf_token", ""), ("email", "ann@example.com"), ("password", PASSWORD)])
        .await;
    assert_eq!(no_token.status, 403);
    assert!(no_token.html.contains("This form expired"));
    assert_eq!(browser.sign_in("ann@example.com", PASSWORD).await.status, 303);
    let page = browser.get("/account/sessions").await;
    assert_eq!(page.status, 200);

    // A signed-in form without its token, or with another session's, changes nothing.
    let forged = browser.post("/account/sessions/revoke-all", &[("csrf_token", "forged")]).await;
    assert_eq!(forged.status, 403);
    let missing = app
        .client
        .post(app.url("/account/sessions/revoke-all"))
        .header(header::COOKIE, browser.cookie_header())
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 403);

    // From another origin: refused before any handler, even with the right token.
    let csrf = browser.csrf.clone();
    let forged_origins: [&[(&str, &str)]; 4] = [
        &[("origin", "https://evil.example")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        // What a page served with no-referrer sends from anywhere; only the browser's own
        // Sec-Fetch-Site can vouch for it.
        &[("origin", "null")],
    ];
    for headers in forged_origins {
        let mut request =
            app.client.post(app.url("/account/sessions/revoke-all")).header(header::COOKIE, browser.cookie_header());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let cross = request.form(&[("csrf_token", csrf.as_str())]).send().await.unwrap();
        assert_eq!(cross.status(), 403, "{headers:?}");
    }
    assert_eq!(browser.get("/account").await.status, 200, "still signed in");

    // The same form from this origin works: a 303 to the sign-in page, the session gone.
    let origin = app.state.config.public_base_url.clone();
    let done = app
        .client
        .post(app.url("/account/sessions/revoke-all"))
        .header(header::COOKIE, browser.cookie_header())
        .header("origin", origin.trim_end_matches('/'))
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(browser.get("/account").await.status, 303);
}

#[sqlx::test]
async fn the_second_step_the_step_up_page_and_the_headers(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let api = app.signed_in("ann").await;
    let enrolled = enrol_totp(&app, &api).await;
    let mut step = enrolled.used_step;
    let mut browser = Browser::new(&app);

    let first = browser.sign_in("ann@example.com", PASSWORD).await;
    assert_eq!((first.status, first.location.as_str()), (303, "/account/login/mfa?next=%2Faccount"));
    let page = browser.get("/account/login/mfa?next=/account").await;
    assert!(page.html.contains("Authenticator app") && page.html.contains("Backup code"));
    let wrong = browser.post("/account/login/mfa", &[("method", "totp"), ("code", "000000")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.html.contains("aria-invalid=\"true\""), "the error sits at the code field");
    let code = fresh_code(&enrolled.secret, &mut step);
    let ok = browser.post("/account/login/mfa", &[("method", "totp"), ("code", &code), ("next", "/account")]).await;
    assert_eq!((ok.status, ok.location.as_str()), (303, "/account"));
    let overview = browser.get("/account").await;
    assert_eq!(overview.status, 200);
    assert!(overview.html.contains(">ann<"));

    // The pages' headers: no inline script or style allowed, no framing, no caching.
    let r = app.client.get(app.url("/account")).header(header::COOKIE, browser.cookie_header()).send().await.unwrap();
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline")
    );
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");

    // A second factor older than STEP_UP_MAX_AGE_SECONDS: trusting this device goes through
    // the step-up page (password and a fresh code) and back.
    sqlx::query(
        "UPDATE accounts_session SET mfa_verified_at = now() - interval '1 hour' WHERE console_secret_hash IS NOT NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    let devices = browser.get("/account/devices").await;
    let device = devices.html.split("data-device=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(devices.html.contains("data-current=\"true\""));
    let trust = browser.post("/account/devices", &[("id", &device), ("action", "trust")]).await;
    assert_eq!((trust.status, trust.location.as_str()), (303, "/account/step-up?next=%2Faccount%2Fdevices"));
    browser.get("/account/step-up?next=/account/devices").await;
    let code = fresh_code(&enrolled.secret, &mut step);
    let bad = browser
        .post(
            "/account/step-up",
            &[("password", "wrong"), ("method", "totp"), ("code", &code), ("next", "/account/devices")],
        )
        .await;
    assert_eq!(bad.status, 403);
    let up = browser
        .post(
            "/account/step-up",
            &[("password", PASSWORD), ("method", "totp"), ("code", &code), ("next", "/account/devices")],
        )
        .await;
    assert_eq!((up.status, up.location.as_str()), (303, "/account/devices"));
    browser.get("/account/devices").await;
    let trusted = browser.post("/account/devices", &[("id", &device), ("action", "trust")]).await;
    assert_eq!(trusted.status, 303);
    let is_trusted: bool = sqlx::query_scalar("SELECT is_trusted FROM accounts_device WHERE id = $1::uuid")
        .bind(&device)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(is_trusted);
}

#[sqlx::test]
async fn a_provider_signs_the_console_in_and_a_signed_in_user_links_one(pool: PgPool) {
    let (app, idp) = crate::oidc::spawn(pool.clone(), false).await;
    let mut browser = Browser::new(&app);
    let login = browser.get("/account/login").await;
    assert!(login.html.contains("Sign in with Test ID"), "the provider is offered");

    // Sign-up by the provider: the console is the OIDC client, its return page allowed.
    let started = browser.post("/account/social/start", &[("provider", "idp")]).await;
    assert!(browser.cookies.contains_key("gh_account_oidc"), "the PKCE verifier waits in its cookie");
    let back = crate::oidc::at_provider(&idp, &continue_link(&started), &crate::oidc::NEW).await;
    let path = back.strip_prefix("http://gatehouse.test").unwrap();
    let callback = app.client.get(app.url(path)).send().await.unwrap();
    let done = callback.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(done.starts_with("http://gatehouse.test/account/social/done?login_code="), "{done}");
    let signed = browser.get(done.strip_prefix("http://gatehouse.test").unwrap()).await;
    assert_eq!((signed.status, signed.location.as_str()), (303, "/account"));
    assert!(!browser.cookies.contains_key("gh_account_oidc"), "the verifier is spent");
    let overview = browser.get("/account").await;
    assert!(overview.html.contains("nia@example.com"), "signed in as the provider's person");
    let page = browser.get("/account/connections").await;
    assert!(page.html.contains("data-provider=\"idp\""));

    // A stolen login code without the browser's verifier cookie signs nobody in.
    let mut other = Browser::new(&app);
    other.get("/account/login").await;
    let started = other.post("/account/social/start", &[("provider", "idp")]).await;
    let back = crate::oidc::at_provider(&idp, &continue_link(&started), &crate::oidc::NEW).await;
    let callback = app.client.get(app.url(back.strip_prefix("http://gatehouse.test").unwrap())).send().await.unwrap();
    let done = callback.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let mut thief = Browser::new(&app);
    let refused = thief.get(done.strip_prefix("http://gatehouse.test").unwrap()).await;
    assert_eq!(refused.status, 400);
    assert!(!thief.cookies.contains_key("gh_account"));
    // Nor does an empty verifier at the API (S256 of nothing is a well-formed challenge).
    let r =
        app.post_json("/api/v1/auth/oidc/exchange", &serde_json::json!({"login_code": "x", "code_verifier": ""})).await;
    assert!(r.status().is_client_error(), "{}", r.status());

    // Linking from the connections page needs the password.
    app.signed_in("ann").await;
    let mut ann = Browser::new(&app);
    assert_eq!(ann.sign_in("ann@example.com", PASSWORD).await.status, 303);
    ann.get("/account/connections").await;
    let wrong = ann.post("/account/connections/link", &[("provider", "idp"), ("password", "wrong")]).await;
    assert_eq!(wrong.status, 403);
    let started = ann.post("/account/connections/link", &[("provider", "idp"), ("password", PASSWORD)]).await;
    let person = crate::oidc::Person { sub: "sub-ann", email: "ann@example.com", verified: true };
    let back = crate::oidc::at_provider(&idp, &continue_link(&started), &person).await;
    let callback = app.client.get(app.url(back.strip_prefix("http://gatehouse.test").unwrap())).send().await.unwrap();
    let done = callback.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let linked = ann.get(done.strip_prefix("http://gatehouse.test").unwrap()).await;
    assert_eq!((linked.status, linked.location.as_str()), (303, "/account/connections?linked=1"));
    let page = ann.get("/account/connections?linked=1").await;
    assert!(page.html.contains("data-provider=\"idp\"") && page.html.contains("The account is connected."));
}

#[sqlx::test]
async fn a_cookie_cannot_point_a_step_up_at_another_challenge_and_odd_input_is_no_500(pool: PgPool) {
    let mut config = test_config(&pool);
    config.magic_link_enabled = true;
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    let api = app.signed_in("ann").await;
    let enrolled = enrol_totp(&app, &api).await;
    let mut step = enrolled.used_step;

    // A login challenge of the same account, as a planted or left-over cookie would name it.
    let login = json(app.login("ann@example.com", PASSWORD).await).await;
    let other = login["challenge_id"].as_str().unwrap().to_owned();
    let mut browser = Browser::new(&app);
    browser.sign_in("ann@example.com", PASSWORD).await;
    let code = fresh_code(&enrolled.secret, &mut step);
    let signed = browser.post("/account/login/mfa", &[("method", "totp"), ("code", &code), ("next", "/account")]).await;
    assert_eq!(signed.status, 303);
    browser.get("/account/step-up?next=/account/devices").await;
    browser.cookies.insert("gh_account_mfa".into(), format!("{other}:email"));
    let up = browser
        .post(
            "/account/step-up",
            &[("password", PASSWORD), ("method", "email"), ("code", "123456"), ("next", "/account")],
        )
        .await;
    assert_eq!(up.status, 401, "not this session's step-up");
    let open: bool =
        sqlx::query_scalar("SELECT verified_at IS NULL FROM otp_mfachallenge WHERE challenge_id = $1::uuid")
            .bind(&other)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(open, "the other challenge was not answered");

    // The magic-link request page renders; a `next` with control characters is ignored.
    assert_eq!(browser.get("/account/magic-link").await.status, 200);
    let mut fresh = Browser::new(&app);
    let page = fresh.get("/account/login?next=/account%0d%0aX:1").await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("name=\"next\" value=\"&#x2f;account\""), "the next page is /account");
}

#[sqlx::test]
async fn the_console_is_gone_when_account_console_is_off(pool: PgPool) {
    let mut config = test_config(&pool);
    config.account_console = false;
    let app = TestApp::spawn_with(pool, config, gatehouse::routes()).await;
    for path in ["/account", "/account/login", "/magic-link?token=x", "/account/console.css"] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
}
