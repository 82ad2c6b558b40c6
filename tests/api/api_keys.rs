//! API keys: shown once, stored hashed, limited to the routes their scopes allow, dead
//! once revoked or expired, rate limited per key.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, Tokens, admin, assert_error, json, test_config, tokens};

/// `POST /api-keys` with the owner's password added when the body has none.
async fn create(app: &TestApp, t: &Tokens, mut body: Value) -> reqwest::Response {
    if body.get("password").is_none() {
        body["password"] = json!(PASSWORD);
    }
    app.with_token(Method::POST, "/api/v1/api-keys", &t.access).json(&body).send().await.unwrap()
}

fn keyed(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).header("Authorization", format!("ApiKey {key}"))
}

#[sqlx::test]
async fn a_read_key_reads_cannot_write_and_dies_when_revoked(pool: PgPool) {
    let mut config = test_config(&pool);
    config.rate_limits.api_key_per_minute = 8;
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    let ann = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;

    let created = create(&app, &ann, json!({"name": "CI reader", "scopes": ["me:read"]})).await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let key = created["secret"].as_str().unwrap().to_owned();
    let prefix = created["prefix"].as_str().unwrap();
    assert!(key.starts_with(&format!("gh_{prefix}_")), "{key}");
    let mails = app.deliver_mail().await;
    assert!(
        mails.iter().any(|m| m.to.iter().any(|t| t == "ann@example.com")
            && m.parsed().subject() == Some("A new API key was created for your account")),
        "the owner hears of a new key"
    );

    // Reads what me:read allows, as ann; nothing else.
    let me = keyed(&app, Method::GET, "/api/v1/users/me", &key).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(json(me).await["email"], "ann@example.com");
    assert_eq!(keyed(&app, Method::GET, "/api/v1/devices", &key).send().await.unwrap().status(), 200);
    let writes = [
        keyed(&app, Method::PATCH, "/api/v1/users/me", &key).json(&json!({"first_name": "Eve"})),
        keyed(&app, Method::POST, "/api/v1/auth/logout", &key),
        keyed(&app, Method::POST, "/api/v1/api-keys", &key).json(&json!({"name": "more", "scopes": ["me:read"]})),
        keyed(&app, Method::GET, "/api/v1/admin/audit/session", &key),
    ];
    for request in writes {
        assert_error(request.send().await.unwrap(), 403, "FORBIDDEN").await;
    }

    // The list shows it without its secret; last_used_at is set.
    let listed = app.with_token(Method::GET, "/api/v1/api-keys", &ann.access).send().await.unwrap();
    let listed = json(listed).await;
    assert!(!listed.to_string().contains(&key[prefix.len() + 4..]), "no secret in the list");
    assert_eq!(listed[0]["scopes"], json!(["me:read"]));
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_apikey WHERE key_hash = $1 OR prefix = $1")
        .bind(&key)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "the key itself is stored nowhere");

    // A forged secret behind a real prefix, and nonsense, are 401.
    let forged = format!("gh_{prefix}_{}", "A".repeat(43));
    for bad in [forged.as_str(), "gh_short_x", "not-a-key"] {
        assert_error(keyed(&app, Method::GET, "/api/v1/users/me", bad).send().await.unwrap(), 401, "UNAUTHENTICATED")
            .await;
    }

    // Per-key budget (8 a minute here): the two reads above used 2 (calls refused for
    // their scope or a bad secret are not counted), so six more pass, then 429.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(keyed(&app, Method::GET, "/api/v1/mfa", &key).send().await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&200) && statuses.last() == Some(&429), "{statuses:?}");

    // Bob cannot revoke it; ann can, and it is refused at once.
    let id = created["id"].as_str().unwrap();
    let revoke = |t: &Tokens| app.with_token(Method::DELETE, &format!("/api/v1/api-keys/{id}"), &t.access).send();
    assert_error(revoke(&bob).await.unwrap(), 404, "NOT_FOUND").await;
    assert_eq!(revoke(&ann).await.unwrap().status(), 204);
    assert_error(revoke(&ann).await.unwrap(), 404, "NOT_FOUND").await;
    assert_error(keyed(&app, Method::GET, "/api/v1/users/me", &key).send().await.unwrap(), 401, "UNAUTHENTICATED")
        .await;

    // An expired key is refused too.
    let other = json(create(&app, &ann, json!({"name": "short", "scopes": ["me:read"]})).await).await;
    let other_key = other["secret"].as_str().unwrap();
    assert_eq!(keyed(&app, Method::GET, "/api/v1/users/me", other_key).send().await.unwrap().status(), 200);
    sqlx::query("UPDATE accounts_apikey SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(other["id"].as_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    assert_error(keyed(&app, Method::GET, "/api/v1/users/me", other_key).send().await.unwrap(), 401, "UNAUTHENTICATED")
        .await;

    // Admin scopes are for staff; bad bodies are 422.
    assert_error(create(&app, &ann, json!({"name": "x", "scopes": ["audit:read"]})).await, 403, "FORBIDDEN").await;
    for body in [
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["write:all"]}),
        json!({"name": "", "scopes": ["me:read"]}),
        json!({"name": "x", "scopes": ["me:read"], "expires_at": "2000-01-01T00:00:00Z"}),
    ] {
        assert_error(create(&app, &ann, body).await, 422, "VALIDATION_FAILED").await;
    }
}

#[sqlx::test]
async fn an_audit_key_needs_an_aal2_session_to_make_and_its_owners_permissions_to_use(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let body = json!({"name": "SIEM", "scopes": ["audit:read"]});
    assert_error(create(&app, &root, body.clone()).await, 403, "MFA_REQUIRED").await;

    let mut e = crate::mfa::enrol_totp(&app, &root).await;
    let id = crate::mfa::challenge(&app, "root@example.com").await;
    let code = crate::mfa::fresh_code(&e.secret, &mut e.used_step);
    let aal2 = tokens(json(crate::mfa::verify(&app, &id, "totp", &code).await).await);
    let created = create(&app, &aal2, body).await;
    assert_eq!(created.status(), 201);
    let key = json(created).await["secret"].as_str().unwrap().to_owned();

    let audit = keyed(&app, Method::GET, "/api/v1/admin/audit/session", &key).send().await.unwrap();
    assert_eq!(audit.status(), 200);
    assert!(json(audit).await["items"].as_array().is_some_and(|i| !i.is_empty()));
    assert_eq!(keyed(&app, Method::GET, "/api/v1/admin/audit/summaries", &key).send().await.unwrap().status(), 200);
    let event: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM audit_log_sessionauditlog LIMIT 1").fetch_one(&pool).await.unwrap();
    let review = keyed(&app, Method::POST, &format!("/api/v1/admin/audit/session/{event}/review"), &key)
        .json(&json!({"review_status": "dismissed"}));
    assert_error(review.send().await.unwrap(), 403, "FORBIDDEN").await;
    assert_error(keyed(&app, Method::GET, "/api/v1/users/me", &key).send().await.unwrap(), 403, "FORBIDDEN").await;

    // A key never does more than its owner could: staff no more, the key reads nothing.
    sqlx::query("UPDATE auth_user SET is_staff = false WHERE username = 'root'").execute(&pool).await.unwrap();
    assert_error(keyed(&app, Method::GET, "/api/v1/admin/audit/session", &key).send().await.unwrap(), 403, "FORBIDDEN")
        .await;
}
