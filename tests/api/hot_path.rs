//! The hot path: whoami and introspection answered from the instance's session cache,
//! and revocation reaching every instance within a second (through NOTIFY, or through the
//! cache being bypassed while its listener is down), tested with two real `serve`
//! processes on one database.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    helpers::{PASSWORD, PASSWORD_2, TestApp, Tokens, admin, assert_error, json, test_config, tokens},
    process::{self, Serve, SigningKey, free_port},
};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[sqlx::test]
async fn whoami_is_served_from_the_cache_and_a_revocation_evicts_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let _listener = app.start_auth_listener().await;
    let ann = app.signed_in("ann").await;
    let whoami =
        |token: String| app.client.get(app.url("/api/v1/auth/whoami")).header("Authorization", bearer(&token)).send();

    let me = whoami(ann.access.clone()).await.unwrap();
    assert_eq!(me.status(), 200);
    let me = json(me).await;
    assert_eq!(me["identity"]["email"], "ann@example.com");
    assert_eq!(me["identity"]["is_staff"], false);
    assert_eq!(me["session"]["id"], ann.session_id.as_str());
    assert_eq!((me["session"]["aal"].as_u64(), me["session"]["amr"].clone()), (Some(1), json!(["pwd"])));
    assert!(me["session"]["device_id"].is_string() && me["session"]["authenticated_at"].is_string());
    assert!(app.state.auth_cache.session(&ann.access).is_some(), "the token is cached after one call");

    // A change made behind the service's back (an operator's SQL) reaches the cache through
    // the trigger's NOTIFY.
    sqlx::query("UPDATE accounts_session SET status = 'revoked', revoked_at = now() WHERE id = $1::uuid")
        .bind(&ann.session_id)
        .execute(&pool)
        .await
        .unwrap();
    let started = Instant::now();
    while whoami(ann.access.clone()).await.unwrap().status() == 200 {
        assert!(started.elapsed() < Duration::from_secs(1), "revocation not seen within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Without a listener the cache answers nothing: every request reads PostgreSQL.
    let bob = app.signed_in("bob").await;
    assert_eq!(whoami(bob.access.clone()).await.unwrap().status(), 200);
    drop(_listener);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!app.state.auth_cache.is_healthy());
    assert!(app.state.auth_cache.session(&bob.access).is_none());
    assert_eq!(whoami(bob.access.clone()).await.unwrap().status(), 200);

    for bad in ["", "Bearer nonsense", "Basic Ym9iOnB3"] {
        let r = app.client.get(app.url("/api/v1/auth/whoami")).header("Authorization", bad).send().await.unwrap();
        assert_error(r, 401, "UNAUTHENTICATED").await;
    }
}

/// A staff user with MFA, signed in at aal 2, and an API key with `introspect`.
async fn introspection_key(app: &TestApp, pool: &PgPool) -> String {
    let root = admin(app, pool).await;
    let mut e = crate::mfa::enrol_totp(app, &root).await;
    let id = crate::mfa::challenge(app, "root@example.com").await;
    let code = crate::mfa::fresh_code(&e.secret, &mut e.used_step);
    let aal2 = tokens(json(crate::mfa::verify(app, &id, "totp", &code).await).await);
    let created = app
        .with_token(Method::POST, "/api/v1/api-keys", &aal2.access)
        .json(&json!({"name": "gateway", "scopes": ["introspect"], "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    json(created).await["secret"].as_str().unwrap().to_owned()
}

#[sqlx::test]
async fn introspection_answers_active_only_for_a_live_token_of_ours(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let _listener = app.start_auth_listener().await;
    let key = introspection_key(&app, &pool).await;
    let ann = app.signed_in("ann").await;
    let introspect = |token: &str, auth: Option<String>| {
        let mut r = app.client.post(app.url("/api/v1/auth/introspect")).form(&[("token", token)]);
        if let Some(auth) = auth {
            r = r.header("Authorization", auth);
        }
        r.send()
    };
    let with_key = || Some(format!("ApiKey {key}"));

    let live = json(introspect(&ann.access, with_key()).await.unwrap()).await;
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["sid"], ann.session_id.as_str());
    assert_eq!((live["aal"].as_u64(), live["scope"].as_str()), (Some(1), Some("user")));
    assert!(live["sub"].is_string() && live["exp"].is_i64() && live["iat"].is_i64());
    assert!(live.get("client_id").is_none());
    // JSON works as well as a form.
    let as_json = app
        .client
        .post(app.url("/api/v1/auth/introspect"))
        .header("Authorization", format!("ApiKey {key}"))
        .json(&json!({"token": ann.access}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(as_json).await["active"], true);

    // Expired, forged, foreign-key-signed, revoked: exactly {"active": false}.
    let claims = gatehouse::core::auth::Claims::new(
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        "jti".into(),
        chrono::Utc::now() - chrono::Duration::hours(2),
        900,
        1,
        vec!["pwd".into()],
    )
    .issued_by(&app.state.config.public_base_url);
    let expired = gatehouse::core::auth::sign(&app.state.keys, &claims).unwrap();
    let fresh = gatehouse::core::auth::Claims { exp: chrono::Utc::now().timestamp() + 600, ..claims.clone() };
    let foreign_keys = gatehouse::core::jwt::JwtKeys::ephemeral().unwrap();
    let foreign = gatehouse::core::auth::sign(&foreign_keys, &fresh).unwrap();
    let mut forged = ann.access.clone();
    forged.pop();
    forged.push(if ann.access.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(app.with_token(Method::POST, "/api/v1/auth/logout", &ann.access).send().await.unwrap().status(), 204);
    for token in [expired.as_str(), foreign.as_str(), forged.as_str(), ann.access.as_str(), "not-a-token"] {
        let answer = json(introspect(token, with_key()).await.unwrap()).await;
        assert_eq!(answer, json!({"active": false}), "{token:.20}");
    }

    // The resource server itself must be authenticated: no key, a user's bearer token, a
    // bad key are 401.
    let bob = app.signed_in("bob").await;
    assert_error(introspect(&bob.access, None).await.unwrap(), 401, "UNAUTHENTICATED").await;
    assert_error(introspect(&bob.access, Some(bearer(&bob.access))).await.unwrap(), 401, "UNAUTHENTICATED").await;
    assert_error(
        introspect(&bob.access, Some("ApiKey gh_aaaaaaaaaaaa_nope".into())).await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    let missing = app
        .client
        .post(app.url("/api/v1/auth/introspect"))
        .header("Authorization", format!("ApiKey {key}"))
        .form(&[("nothing", "here")])
        .send()
        .await
        .unwrap();
    assert_error(missing, 422, "VALIDATION_FAILED").await;
}

/// `gatehouse serve` as its own process, on a free port, over the test's database.
async fn serve(database_url: &str, key: &SigningKey) -> Serve {
    process::serve(database_url, key, free_port(), &[("RUN_JOBS", "false"), ("RUST_LOG", "warn")]).await
}

async fn login(client: &reqwest::Client, base: &str, email: &str, password: &str) -> Tokens {
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokens(r.json::<Value>().await.unwrap())
}

/// Polls `base`'s whoami with `token` every 50 ms until it is refused; how long it took.
async fn refused_after(client: &reqwest::Client, base: &str, token: &str) -> Duration {
    let started = Instant::now();
    loop {
        let r = client.get(format!("{base}/api/v1/auth/whoami")).header("Authorization", bearer(token)).send().await;
        if r.is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(3), "still accepted after 3 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn a_revocation_through_one_instance_is_refused_by_another_within_a_second(pool: PgPool) {
    let key = SigningKey::generate();
    let url = test_config(&pool).database.url.expose().to_owned();
    let (a, b) = (serve(&url, &key).await, serve(&url, &key).await);
    let client = reqwest::Client::new();
    let register = client
        .post(format!("{}/api/v1/auth/register", a.base))
        .json(&json!({"email": "ann@example.com", "username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201);
    // A staff member with the right to sign users out, for the admin path.
    let app = TestApp::spawn(pool.clone()).await;
    admin(&app, &pool).await;
    let root = login(&client, &a.base, "root@example.com", PASSWORD).await;
    let ann_id: String =
        sqlx::query_scalar("SELECT id::text FROM auth_user WHERE username = 'ann'").fetch_one(&pool).await.unwrap();

    // B has the token cached (two calls), then A revokes it three ways.
    let warm = |token: String| {
        let (client, base) = (client.clone(), b.base.clone());
        async move {
            for _ in 0..2 {
                let r = client.get(format!("{base}/api/v1/auth/whoami")).header("Authorization", bearer(&token)).send();
                assert_eq!(r.await.unwrap().status(), 200);
            }
        }
    };
    let mut password = PASSWORD;
    for how in ["logout", "admin sign-out-everywhere", "password change"] {
        let ann = login(&client, &a.base, "ann@example.com", password).await;
        warm(ann.access.clone()).await;
        let r = match how {
            "logout" => client
                .post(format!("{}/api/v1/auth/logout", a.base))
                .header("Authorization", bearer(&ann.access))
                .send(),
            "admin sign-out-everywhere" => client
                .post(format!("{}/api/v1/admin/users/{ann_id}/logout-all", a.base))
                .header("Authorization", bearer(&root.access))
                .send(),
            _ => {
                // A password change signs out the other sessions: use a second one for it.
                let other = login(&client, &a.base, "ann@example.com", password).await;
                let next = if password == PASSWORD { PASSWORD_2 } else { PASSWORD };
                let r = client
                    .post(format!("{}/api/v1/auth/password/change", a.base))
                    .header("Authorization", bearer(&other.access))
                    .json(&json!({"current_password": password, "new_password": next}));
                password = next;
                r.send()
            }
        };
        assert_eq!(r.await.unwrap().status(), 204, "{how}");
        let took = refused_after(&client, &b.base, &ann.access).await;
        assert!(took < Duration::from_secs(1), "{how}: B refused the token after {took:?}");
    }

    // B's listener connection is killed just before the revocation: B must not answer from
    // its cache meanwhile.
    let ann = login(&client, &a.base, "ann@example.com", password).await;
    warm(ann.access.clone()).await;
    let b_port = b.base.rsplit(':').next().unwrap().to_owned();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'gatehouse-listener 127.0.0.1:' || $1) t",
    )
    .bind(&b_port)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "B's listener connection is found by its application_name");
    let r = client.post(format!("{}/api/v1/auth/logout", a.base)).header("Authorization", bearer(&ann.access)).send();
    assert_eq!(r.await.unwrap().status(), 204);
    let took = refused_after(&client, &b.base, &ann.access).await;
    assert!(took < Duration::from_secs(1), "with its listener killed, B refused the token after {took:?}");
    // And B comes back to serving from its cache.
    let again = login(&client, &a.base, "ann@example.com", password).await;
    warm(again.access.clone()).await;
}
