//! Social login end to end against a real OpenID provider (panva's oidc-provider, started
//! per test by `tests/oidc/provider.mjs`): the browser's trip through the provider is
//! driven over HTTP (its login form posted, its cookies carried), the callback and the
//! exchange go through the real router. No mock stands in for the provider.

use std::process::Stdio;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use gatehouse::core::config::{OidcConfig, OidcProviderConfig};
use reqwest::{Method, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{PASSWORD, TestApp, Tokens, assert_error, json, jwt_parts, test_config, tokens};

const CLIENT_ID: &str = "gatehouse-tests";
const CLIENT_SECRET: &str = "client-secret-3f9a7c1e5b";
const RETURN: &str = "https://app.example/done";
const CALLBACK: &str = "http://gatehouse.test/api/v1/auth/oidc/idp/callback";

/// The provider process; killed when dropped.
pub(crate) struct Idp {
    issuer: String,
    _child: tokio::process::Child,
}

impl Idp {
    async fn start(foreign_jwks: bool) -> Idp {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc");
        let mut child = tokio::process::Command::new("node")
            .arg("provider.mjs")
            .current_dir(dir)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", CALLBACK)
            .env("FOREIGN_JWKS", if foreign_jwks { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs tests/oidc/provider.mjs (scripts/test-deps.sh installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let issuer = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("provider output") {
                if let Some(url) = line.strip_prefix("listening ") {
                    return url.to_owned();
                }
            }
            panic!("the provider exited before listening");
        })
        .await
        .expect("the provider starts within 20 s");
        // Keep reading: a closed pipe would kill the provider at its next notice.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Idp { issuer, _child: child }
    }

    /// The access tokens the provider issued to us.
    async fn issued(&self) -> Vec<String> {
        let body: Value = reqwest::get(format!("{}/test/issued", self.issuer)).await.unwrap().json().await.unwrap();
        body["access_tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
    }
}

pub(crate) async fn spawn(pool: PgPool, foreign_jwks: bool) -> (TestApp, Idp) {
    let idp = Idp::start(foreign_jwks).await;
    let mut config = test_config(&pool);
    config.oidc = OidcConfig {
        providers: vec![OidcProviderConfig {
            name: "idp".into(),
            issuer: idp.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.to_owned().into(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            display_name: "Test ID".into(),
        }],
        redirect_allowlist: vec![RETURN.into()],
    };
    (TestApp::spawn_with(pool, config, gatehouse::routes()).await, idp)
}

/// Who signs in at the provider.
pub(crate) struct Person<'a> {
    pub(crate) sub: &'a str,
    pub(crate) email: &'a str,
    pub(crate) verified: bool,
}

/// A client's PKCE pair: (verifier, S256 challenge).
fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("verifier-{seed}-0123456789abcdefghijklmnopqrstuvwxyz");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

async fn start(app: &TestApp, body: Value, bearer: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/api/v1/auth/oidc/idp/start")).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn start_login(app: &TestApp, challenge: &str) -> String {
    let r = start(app, json!({"redirect_uri": RETURN, "code_challenge": challenge}), None).await;
    assert_eq!(r.status(), 200);
    json(r).await["authorization_url"].as_str().unwrap().to_owned()
}

/// The browser at the provider: the authorization request, the login form, the way back;
/// returns the provider's redirect to our callback.
pub(crate) async fn at_provider(idp: &Idp, authorization_url: &str, person: &Person<'_>) -> String {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut cookies: Vec<String> = Vec::new();
    let keep = |cookies: &mut Vec<String>, r: &reqwest::Response| {
        for c in r.headers().get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let pair = c.split(';').next().unwrap_or_default().to_owned();
            let name = pair.split('=').next().unwrap_or_default().to_owned();
            cookies.retain(|k| !k.starts_with(&format!("{name}=")));
            cookies.push(pair);
        }
    };
    let absolute = |location: &str| {
        if location.starts_with("http") { location.to_owned() } else { format!("{}{location}", idp.issuer) }
    };
    let r = browser.get(authorization_url).send().await.unwrap();
    assert!(r.status().is_redirection(), "authorization request: {} {:?}", r.status(), r.text().await);
    keep(&mut cookies, &r);
    let interaction = absolute(r.headers()[header::LOCATION].to_str().unwrap());
    let form = [("sub", person.sub), ("email", person.email), ("email_verified", &person.verified.to_string())];
    let r = browser
        .post(format!("{interaction}/login"))
        .header(header::COOKIE, cookies.join("; "))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "login form: {}", r.status());
    keep(&mut cookies, &r);
    let resume = absolute(r.headers()[header::LOCATION].to_str().unwrap());
    let r = browser.get(resume).header(header::COOKIE, cookies.join("; ")).send().await.unwrap();
    assert!(r.status().is_redirection(), "resume: {}", r.status());
    let back = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(back.starts_with(CALLBACK), "{back}");
    back
}

/// Our callback, as the browser would follow the provider's redirect.
async fn callback(app: &TestApp, location: &str) -> reqwest::Response {
    let path = location.strip_prefix("http://gatehouse.test").unwrap();
    app.client.get(app.url(path)).send().await.unwrap()
}

/// A parameter of the URL the callback sent the browser to (which must be the return URL).
fn returned(r: &reqwest::Response, key: &str) -> Option<String> {
    assert_eq!(r.status(), 302, "the callback redirects");
    let location = url::Url::parse(r.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(format!("{}://{}{}", location.scheme(), location.host_str().unwrap(), location.path()), RETURN);
    location.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

async fn exchange(app: &TestApp, code: &str, verifier: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/oidc/exchange", &json!({"login_code": code, "code_verifier": verifier})).await
}

/// A whole social sign-in: the login code the callback hands back, or its error.
async fn social(app: &TestApp, idp: &Idp, person: &Person<'_>, seed: &str) -> (Result<String, String>, String) {
    let (verifier, challenge) = pkce(seed);
    let url = start_login(app, &challenge).await;
    let r = callback(app, &at_provider(idp, &url, person).await).await;
    let outcome = match returned(&r, "login_code") {
        Some(code) => Ok(code),
        None => Err(returned(&r, "error").expect("a login_code or an error")),
    };
    (outcome, verifier)
}

async fn connections(app: &TestApp, t: &Tokens) -> Value {
    json(app.with_token(Method::GET, "/api/v1/users/me/connections", &t.access).send().await.unwrap()).await
}

/// Links the identity to `t`'s account; the return URL's parameters.
async fn link(app: &TestApp, idp: &Idp, t: &Tokens, person: &Person<'_>) -> reqwest::Response {
    let (_, challenge) = pkce("link");
    let body = json!({"redirect_uri": RETURN, "code_challenge": challenge, "intent": "link", "password": PASSWORD});
    let r = start(app, body, Some(&t.access)).await;
    assert_eq!(r.status(), 200);
    let url = json(r).await["authorization_url"].as_str().unwrap().to_owned();
    callback(app, &at_provider(idp, &url, person).await).await
}

pub(crate) const NEW: Person = Person { sub: "sub-nia", email: "nia@example.com", verified: true };

#[sqlx::test]
async fn a_new_identity_signs_up_then_signs_in_again(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    let providers = json(app.get("/api/v1/auth/oidc/providers").await).await;
    assert_eq!(providers["items"], json!([{"name": "idp", "display_name": "Test ID"}]));

    let (code, verifier) = social(&app, &idp, &NEW, "one").await;
    let code = code.expect("a login code");
    // The code is bound to the client's verifier: another verifier spends it for nothing.
    let r = exchange(&app, &code, &verifier).await;
    assert_eq!(r.status(), 200);
    let t = tokens(json(r).await);
    let (_, claims) = jwt_parts(&t.access);
    assert_eq!((claims["aal"].as_i64(), claims["amr"].clone()), (Some(1), json!(["fed"])));
    assert_error(exchange(&app, &code, &verifier).await, 400, "TOKEN_INVALID").await;
    let me = json(app.with_token(Method::GET, "/api/v1/users/me", &t.access).send().await.unwrap()).await;
    assert_eq!((me["email"].as_str(), me["email_verified"].as_bool()), (Some("nia@example.com"), Some(true)));
    let row: (String, String) =
        sqlx::query_as("SELECT username, password_hash FROM auth_user WHERE email = 'nia@example.com'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(row, ("nia".to_owned(), "!unusable".to_owned()), "no usable password");
    let listed = connections(&app, &t).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        (listed["items"][0]["provider"].as_str(), listed["items"][0]["status"].as_str()),
        (Some("idp"), Some("active"))
    );
    assert!(listed["items"][0].get("access_token").is_none());

    // Again: the same account, no second one; a wrong verifier spends the code.
    let (code, _) = social(&app, &idp, &NEW, "two").await;
    assert_error(exchange(&app, &code.clone().unwrap(), &pkce("other").0).await, 400, "TOKEN_INVALID").await;
    assert_error(exchange(&app, &code.unwrap(), &pkce("two").0).await, 400, "TOKEN_INVALID").await;
    let (code, verifier) = social(&app, &idp, &NEW, "three").await;
    let again = tokens(json(exchange(&app, &code.unwrap(), &verifier).await).await);
    let (_, claims) = jwt_parts(&again.access);
    assert_eq!(claims["sub"], jwt_parts(&t.access).1["sub"]);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_user").fetch_one(&pool).await.unwrap();
    assert_eq!(users, 1);
    // Logged as logins, with the provider.
    let logins: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log_sessionauditlog WHERE action = 'login' AND metadata->>'provider' = 'idp'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(logins, 2);

    // The unusable password and no passkey: this identity is the only way in.
    let id = listed["items"][0]["id"].as_str().unwrap();
    let r = app.with_token(Method::DELETE, &format!("/api/v1/users/me/connections/{id}"), &t.access).send().await;
    assert_error(r.unwrap(), 409, "LAST_SIGN_IN_METHOD").await;
}

#[sqlx::test]
async fn an_address_that_is_an_account_is_not_linked_by_a_provider(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    app.signed_in("ann").await;
    let claims_ann = Person { sub: "sub-mallory", email: "ann@example.com", verified: true };
    let (outcome, _) = social(&app, &idp, &claims_ann, "a").await;
    assert_eq!(outcome, Err("account_exists".to_owned()));
    let unverified = Person { sub: "sub-otto", email: "otto@example.com", verified: false };
    let (outcome, _) = social(&app, &idp, &unverified, "b").await;
    assert_eq!(outcome, Err("email_unverified".to_owned()));
    let (connections, users): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM accounts_socialconnection), (SELECT count(*) FROM auth_user)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((connections, users), (0, 1));
}

#[sqlx::test]
async fn a_signed_in_user_links_signs_in_with_it_and_unlinks(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    let ann = app.signed_in("ann").await;
    let work = Person { sub: "sub-ann-work", email: "ann@work.example", verified: true };
    // Linking needs the session and the password.
    let (_, challenge) = pkce("x");
    let body = json!({"redirect_uri": RETURN, "code_challenge": challenge, "intent": "link"});
    assert_error(start(&app, body.clone(), None).await, 401, "UNAUTHENTICATED").await;
    assert_eq!(start(&app, body, Some(&ann.access)).await.status(), 422, "the password is required");

    let r = link(&app, &idp, &ann, &work).await;
    assert_eq!(returned(&r, "linked").as_deref(), Some("true"));
    let mails = app.deliver_mail().await;
    assert!(mails.iter().any(|m| m.parsed().subject() == Some("A sign-in provider was linked to your account")));
    let listed = connections(&app, &ann).await;
    assert_eq!(listed["items"][0]["email"], "ann@work.example");

    // The identity now signs ann in; another account cannot take it.
    let (code, verifier) = social(&app, &idp, &work, "s").await;
    let t = tokens(json(exchange(&app, &code.unwrap(), &verifier).await).await);
    assert_eq!(jwt_parts(&t.access).1["sub"], jwt_parts(&ann.access).1["sub"]);
    let bob = app.signed_in("bob").await;
    assert_eq!(returned(&link(&app, &idp, &bob, &work).await, "error").as_deref(), Some("identity_taken"));

    // Another user's connection is 404; ann, with a password, may unlink hers.
    let id = listed["items"][0]["id"].as_str().unwrap();
    let path = format!("/api/v1/users/me/connections/{id}");
    assert_error(app.with_token(Method::DELETE, &path, &bob.access).send().await.unwrap(), 404, "NOT_FOUND").await;
    assert_eq!(app.with_token(Method::DELETE, &path, &ann.access).send().await.unwrap().status(), 204);
    assert_eq!(connections(&app, &ann).await["items"], json!([]));
    let mails = app.deliver_mail().await;
    assert!(mails.iter().any(|m| m.parsed().subject() == Some("A sign-in provider was unlinked from your account")));
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM accounts_auditlog WHERE action LIKE 'identity_%' ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(actions, ["identity_linked", "identity_unlinked"]);
    // Unlinked, the identity no longer opens ann's account (it is a stranger again).
    let (code, verifier) = social(&app, &idp, &work, "t").await;
    let stranger = tokens(json(exchange(&app, &code.unwrap(), &verifier).await).await);
    assert_ne!(jwt_parts(&stranger.access).1["sub"], jwt_parts(&ann.access).1["sub"]);
}

#[sqlx::test]
async fn mfa_is_still_asked_after_a_provider(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    let ann = app.signed_in("ann").await;
    let work = Person { sub: "sub-ann", email: "ann@example.com", verified: true };
    assert_eq!(returned(&link(&app, &idp, &ann, &work).await, "linked").as_deref(), Some("true"));
    let mut enrolled = crate::mfa::enrol_totp(&app, &ann).await;

    let (code, verifier) = social(&app, &idp, &work, "m").await;
    let body = json(exchange(&app, &code.unwrap(), &verifier).await).await;
    assert_eq!(body["status"], "mfa_required");
    let code = crate::mfa::fresh_code(&enrolled.secret, &mut enrolled.used_step);
    let r = app
        .post_json(
            "/api/v1/auth/mfa/verify",
            &json!({"challenge_id": body["challenge_id"], "method": "totp", "code": code}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let (_, claims) = jwt_parts(&tokens(json(r).await).access);
    assert_eq!((claims["aal"].as_i64(), claims["amr"].clone()), (Some(2), json!(["fed", "otp", "mfa"])));
}

#[sqlx::test]
async fn forged_replayed_and_tampered_answers_are_refused(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    // A state this service never issued: no return URL to send anyone to.
    let forged = app.get("/api/v1/auth/oidc/idp/callback?code=abc&state=never-issued").await;
    assert_error(forged, 400, "TOKEN_INVALID").await;
    assert_error(app.get("/api/v1/auth/oidc/idp/callback?code=abc").await, 400, "TOKEN_INVALID").await;

    // A state answered twice: the second is refused (and the provider's code is spent).
    let (_, challenge) = pkce("r");
    let url = start_login(&app, &challenge).await;
    let back = at_provider(&idp, &url, &NEW).await;
    assert!(returned(&callback(&app, &back).await, "login_code").is_some());
    assert_eq!(returned(&callback(&app, &back).await, "error").as_deref(), Some("invalid_state"));

    // The nonce changed on the way to the provider: its ID token carries the wrong one.
    let url = start_login(&app, &challenge).await;
    let mut tampered = url::Url::parse(&url).unwrap();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "nonce" { "attacker-nonce".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let r = callback(&app, &at_provider(&idp, tampered.as_str(), &NEW).await).await;
    assert_eq!(returned(&r, "error").as_deref(), Some("invalid_state"));
    assert!(returned(&r, "login_code").is_none());

    // Return URLs: exactly the allowlist, nothing near it.
    for wrong in [
        "https://app.example/done/",
        "https://app.example/done?x=1",
        "https://evil.example/done",
        "javascript:alert(1)",
    ] {
        let r = start(&app, json!({"redirect_uri": wrong, "code_challenge": challenge}), None).await;
        assert_error(r, 422, "VALIDATION_FAILED").await;
    }
    // A plain challenge (not S256's 43 characters) and an unknown provider.
    let r = start(&app, json!({"redirect_uri": RETURN, "code_challenge": "plain"}), None).await;
    assert_error(r, 422, "VALIDATION_FAILED").await;
    let r = app
        .post_json("/api/v1/auth/oidc/nope/start", &json!({"redirect_uri": RETURN, "code_challenge": challenge}))
        .await;
    assert_error(r, 404, "NOT_FOUND").await;
    // A login code nobody issued.
    assert_error(exchange(&app, "made-up", &pkce("r").0).await, 400, "TOKEN_INVALID").await;
}

#[sqlx::test]
async fn an_id_token_signed_by_a_key_not_in_the_providers_jwks_is_refused(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), true).await;
    // Discovered (the provider answers), so what fails below is the signature alone.
    let providers = json(app.get("/api/v1/auth/oidc/providers").await).await;
    assert_eq!(providers["items"].as_array().map(Vec::len), Some(1));
    let (outcome, _) = social(&app, &idp, &NEW, "k").await;
    assert_eq!(outcome, Err("invalid_state".to_owned()));
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_user").fetch_one(&pool).await.unwrap();
    assert_eq!(users, 0);
}

#[sqlx::test]
async fn remediations_end_what_a_provider_left_behind(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    let ann = app.signed_in("ann").await;
    let theirs = Person { sub: "sub-attacker", email: "attacker@example.net", verified: true };
    assert_eq!(returned(&link(&app, &idp, &ann, &theirs).await, "linked").as_deref(), Some("true"));
    // A login code in flight when ann resets her password.
    let (code, verifier) = social(&app, &idp, &theirs, "p").await;
    let r = app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    assert_eq!(r.status(), 202);
    let token = app.mailed_token("ann@example.com", "/reset-password").await;
    let confirm = json!({"token": token, "new_password": "Another-Good-Passphrase-7"});
    assert_eq!(app.post_json("/api/v1/auth/password/reset/confirm", &confirm).await.status(), 204);
    assert_error(exchange(&app, &code.unwrap(), &verifier).await, 400, "TOKEN_INVALID").await;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_socialconnection").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0, "the identity linked since the last password sign-in is gone");

    // A deactivated account does not sign in through its provider.
    let nia = {
        let (code, verifier) = social(&app, &idp, &NEW, "n").await;
        tokens(json(exchange(&app, &code.unwrap(), &verifier).await).await)
    };
    let admin = crate::helpers::admin(&app, &pool).await;
    let id = jwt_parts(&nia.access).1["sub"].as_str().unwrap().to_owned();
    let r = app
        .with_token(Method::PATCH, &format!("/api/v1/admin/users/{id}"), &admin.access)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(social(&app, &idp, &NEW, "d").await.0, Err("access_denied".to_owned()));
}

#[sqlx::test]
async fn no_provider_token_or_client_secret_is_stored_in_clear(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    let ann = app.signed_in("ann").await;
    let work = Person { sub: "sub-ann-2", email: "ann2@example.com", verified: true };
    assert_eq!(returned(&link(&app, &idp, &ann, &work).await, "linked").as_deref(), Some("true"));
    let (code, verifier) = social(&app, &idp, &NEW, "z").await;
    assert_eq!(exchange(&app, &code.unwrap(), &verifier).await.status(), 200);
    let _pending = start_login(&app, &pkce("pending").1).await;

    let issued = idp.issued().await;
    assert!(issued.len() >= 2, "the provider issued access tokens: {issued:?}");
    let sealed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_socialconnection WHERE access_token IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sealed, 2, "each connection keeps its token, sealed");
    // Every row of every table, as text.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
          WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut dump = String::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM {table} t")))
            .fetch_all(&pool)
            .await
            .unwrap();
        dump.extend(rows);
    }
    assert!(dump.len() > 1000);
    // In text columns as they are, in bytea columns as PostgreSQL prints them (hex).
    for secret in issued.iter().map(String::as_str).chain([CLIENT_SECRET]) {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!dump.contains(secret) && !dump.contains(&hex), "{secret} is stored in clear");
    }
}

#[sqlx::test]
async fn a_state_and_a_login_code_are_each_taken_once_under_concurrency(pool: PgPool) {
    let (app, idp) = spawn(pool.clone(), false).await;
    let (verifier, challenge) = pkce("c");
    let url = start_login(&app, &challenge).await;
    let back = at_provider(&idp, &url, &NEW).await;
    let (a, b, c, d) =
        tokio::join!(callback(&app, &back), callback(&app, &back), callback(&app, &back), callback(&app, &back));
    let callbacks = [a, b, c, d];
    let codes: Vec<String> = callbacks.iter().filter_map(|r| returned(r, "login_code")).collect();
    assert_eq!(codes.len(), 1, "one callback of four gets the login code");
    let code = codes[0].as_str();
    let (a, b, c, d) = tokio::join!(
        exchange(&app, code, &verifier),
        exchange(&app, code, &verifier),
        exchange(&app, code, &verifier),
        exchange(&app, code, &verifier)
    );
    let exchanges = [a, b, c, d];
    let statuses: Vec<u16> = exchanges.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 3, "{statuses:?}");
}

#[sqlx::test]
async fn a_provider_that_does_not_answer_is_left_out_not_fatal(pool: PgPool) {
    let mut config = test_config(&pool);
    config.oidc = OidcConfig {
        providers: vec![OidcProviderConfig {
            name: "down".into(),
            // Nothing listens on port 9 here (discard); discovery fails at once.
            issuer: "http://127.0.0.1:9".into(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.to_owned().into(),
            scopes: vec!["openid".into()],
            display_name: "Down".into(),
        }],
        redirect_allowlist: vec![RETURN.into()],
    };
    let app = TestApp::spawn_with(pool, config, gatehouse::routes()).await;
    let failures = app.state.oidc.discover_all().await;
    assert_eq!(failures.len(), 1);
    assert_eq!(json(app.get("/api/v1/auth/oidc/providers").await).await["items"], json!([]));
    let r = app
        .post_json("/api/v1/auth/oidc/down/start", &json!({"redirect_uri": RETURN, "code_challenge": pkce("d").1}))
        .await;
    assert_error(r, 404, "NOT_FOUND").await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}
