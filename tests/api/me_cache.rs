//! `GET /users/me` from each instance's cache: every change to what it shows (the user, the
//! profile, the MFA switch), by any path, reaches every instance within a second, through
//! the triggers' NOTIFY or, while an instance's listener is down, by its reading PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{
    helpers::{PASSWORD, TestApp, json, test_config, tokens},
    process::{self, SigningKey, free_port},
};

/// Polls `GET /users/me` at `base` every 20 ms until `field` (a JSON pointer) reads `want`;
/// how long it took.
async fn seen(client: &reqwest::Client, base: &str, token: &str, field: &str, want: &Value) -> Duration {
    let started = Instant::now();
    loop {
        let r = client.get(format!("{base}/api/v1/users/me")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let me: Value = r.json().await.unwrap();
        if me.pointer(field) == Some(want) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(3), "{field} still {:?} after 3 s", me.pointer(field));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test]
async fn users_me_is_cached_and_every_change_to_what_it_shows_evicts_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let _listener = app.start_auth_listener().await;
    let ann = app.signed_in("ann").await;
    let ann_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM auth_user WHERE username = 'ann'").fetch_one(&pool).await.unwrap();
    let base = app.url("");
    let base = base.trim_end_matches('/');
    seen(&app.client, base, &ann.access, "/username", &json!("ann")).await;
    assert!(app.state.auth_cache.me(ann_id).is_some(), "the body is cached after one call");

    // A login stamps last_login without a notification: the cached body stays (its 60 s
    // lifetime bounds the lag).
    app.client.get(format!("{base}/api/v1/users/me")).bearer_auth(&ann.access).send().await.unwrap();
    app.login_ok("ann@example.com", PASSWORD).await;
    assert!(app.state.auth_cache.me(ann_id).is_some(), "a login does not evict");

    // Changes behind the service's back (an operator's SQL) reach the cache by NOTIFY.
    let changes = [
        ("UPDATE auth_user SET first_name = 'Annie' WHERE id = $1", "/first_name", json!("Annie")),
        ("UPDATE accounts_profile SET city = 'Oslo' WHERE user_id = $1", "/profile/city", json!("Oslo")),
        (
            "INSERT INTO accounts_mfasettings (user_id, is_enabled) VALUES ($1, true)
             ON CONFLICT (user_id) DO UPDATE SET is_enabled = true",
            "/mfa_enabled",
            json!(true),
        ),
        ("UPDATE auth_user SET email_verified = true WHERE id = $1", "/email_verified", json!(true)),
    ];
    for (sql, field, want) in changes {
        // Cached again before each change.
        app.client.get(format!("{base}/api/v1/users/me")).bearer_auth(&ann.access).send().await.unwrap();
        assert!(app.state.auth_cache.me(ann_id).is_some());
        sqlx::query(sql).bind(ann_id).execute(&pool).await.unwrap();
        let took = seen(&app.client, base, &ann.access, field, &want).await;
        assert!(took < Duration::from_secs(1), "{field} seen after {took:?}");
    }

    // PATCH through this instance is read back at once.
    let r = app
        .client
        .patch(format!("{base}/api/v1/users/me"))
        .bearer_auth(&ann.access)
        .json(&json!({"last_name": "Lind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me =
        json(app.client.get(format!("{base}/api/v1/users/me")).bearer_auth(&ann.access).send().await.unwrap()).await;
    assert_eq!(me["last_name"], "Lind");
}

#[sqlx::test]
async fn a_patch_through_one_instance_is_seen_through_another_within_a_second(pool: PgPool) {
    let key = SigningKey::generate();
    let url = test_config(&pool).database.url.expose().to_owned();
    let envs = [("RUN_JOBS", "false"), ("RUST_LOG", "warn")];
    let (a, b) =
        (process::serve(&url, &key, free_port(), &envs).await, process::serve(&url, &key, free_port(), &envs).await);
    let client = reqwest::Client::new();
    let body = json!({"email": "ann@example.com", "username": "ann", "password": PASSWORD});
    assert_eq!(client.post(format!("{}/api/v1/auth/register", a.base)).json(&body).send().await.unwrap().status(), 201);
    let body = json!({"email": "ann@example.com", "password": PASSWORD});
    let r = client.post(format!("{}/api/v1/auth/login", a.base)).json(&body).send().await.unwrap();
    let ann = tokens(r.json().await.unwrap());
    let patch = |name: &'static str| {
        let (client, base, token) = (client.clone(), a.base.clone(), ann.access.clone());
        async move {
            let r = client
                .patch(format!("{base}/api/v1/users/me"))
                .bearer_auth(token)
                .json(&json!({"first_name": name}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };

    // B serves the body from its cache (two reads), then A changes it.
    seen(&client, &b.base, &ann.access, "/first_name", &json!("")).await;
    seen(&client, &b.base, &ann.access, "/first_name", &json!("")).await;
    patch("Anna").await;
    let took = seen(&client, &b.base, &ann.access, "/first_name", &json!("Anna")).await;
    assert!(took < Duration::from_secs(1), "B saw A's change after {took:?}");

    // With B's listener killed, B stops trusting its cache: the next change is still seen.
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
    patch("Anja").await;
    let took = seen(&client, &b.base, &ann.access, "/first_name", &json!("Anja")).await;
    assert!(took < Duration::from_secs(1), "with its listener killed, B saw the change after {took:?}");
}

/// The eviction triggers fire on the columns they watch only: a refresh (the session's
/// token ids and a later expiry), a login (`last_login`) and an API key's use
/// (`last_used_at`) publish nothing, while a shortened expiry, a name change, MFA switched
/// on, a key's and a session's revocation each publish their row.
#[sqlx::test]
async fn the_eviction_triggers_publish_what_they_watch_and_nothing_per_request(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let body = json!({"name": "CI", "scopes": ["me:read"], "password": PASSWORD});
    let created =
        app.with_token(reqwest::Method::POST, "/api/v1/api-keys", &ann.access).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let key = json(created).await["secret"].as_str().unwrap().to_owned();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen("gatehouse_auth").await.unwrap();
    let used = app.client.get(app.url("/api/v1/users/me")).header("Authorization", format!("ApiKey {key}")).send();
    assert_eq!(used.await.unwrap().status(), 200);
    let stamped = async {
        loop {
            let at: Option<chrono::DateTime<chrono::Utc>> =
                sqlx::query_scalar("SELECT last_used_at FROM accounts_apikey").fetch_one(&pool).await.unwrap();
            if at.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), stamped).await.expect("the key's use is stamped");
    let refreshed = app.refresh(&ann.refresh).await;
    assert_eq!(refreshed.status(), 200);
    let pair = tokens(json(refreshed).await);
    app.login_ok("ann@example.com", PASSWORD).await;
    let heard = quiet(&mut listener).await;
    assert!(heard.is_ok(), "a key's use, a refresh and a login publish nothing: {heard:?}");

    let (session, user): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT id, user_id FROM accounts_session WHERE refresh_jti IS NOT NULL ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    on_row(&pool, "UPDATE accounts_session SET expires_at = expires_at - interval '1 minute' WHERE id = $1", session)
        .await;
    assert_eq!(payload(&mut listener).await, format!("s:{session}"), "a shortened expiry");
    on_row(&pool, "UPDATE accounts_session SET expires_at = expires_at + interval '1 hour' WHERE id = $1", session)
        .await;
    assert!(quiet(&mut listener).await.is_ok(), "a longer expiry publishes nothing");
    on_row(&pool, "UPDATE auth_user SET first_name = 'Ann' WHERE id = $1", user).await;
    assert_eq!(payload(&mut listener).await, format!("u:{user}"), "a name change");
    on_row(&pool, "INSERT INTO accounts_mfasettings (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING", user)
        .await;
    let _ = quiet(&mut listener).await;
    on_row(&pool, "UPDATE accounts_mfasettings SET enforce_for_admin = false WHERE user_id = $1", user).await;
    assert!(quiet(&mut listener).await.is_ok(), "an MFA setting /users/me does not show");
    on_row(&pool, "UPDATE accounts_mfasettings SET is_enabled = true WHERE user_id = $1", user).await;
    assert_eq!(payload(&mut listener).await, format!("u:{user}"), "MFA switched on");
    sqlx::query("UPDATE accounts_apikey SET revoked_at = now()").execute(&pool).await.unwrap();
    assert!(payload(&mut listener).await.starts_with("k:"), "a key revoked");
    let out = app.with_token(reqwest::Method::POST, "/api/v1/auth/logout", &pair.access).send().await.unwrap();
    assert!(out.status().is_success(), "{}", out.status());
    assert!(payload(&mut listener).await.starts_with("s:"), "a revocation");
}

/// What the listener hears within 300 ms, if anything.
async fn quiet(listener: &mut sqlx::postgres::PgListener) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_millis(300), listener.recv()).await {
        Ok(heard) => Err(format!("{heard:?}")),
        Err(_) => Ok(()),
    }
}

/// The next payload on the channel (within 2 s).
async fn payload(listener: &mut sqlx::postgres::PgListener) -> String {
    tokio::time::timeout(Duration::from_secs(2), listener.recv()).await.unwrap().unwrap().payload().to_owned()
}

/// Runs `sql` with `id` as its one parameter.
async fn on_row(pool: &PgPool, sql: &str, id: uuid::Uuid) {
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).execute(pool).await.unwrap();
}
