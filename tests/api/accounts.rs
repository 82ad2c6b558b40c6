//! Registration, login and lockout, tokens, sessions, refresh rotation, passwords, the
//! signed-in user: through the real router, against a real database and SMTP server.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{PASSWORD, PASSWORD_2, TestApp, Tokens, assert_error, json, jwt_parts, test_config, tokens};

async fn me_status(app: &TestApp, access: &str) -> u16 {
    app.with_token(Method::GET, "/api/v1/users/me", access).send().await.unwrap().status().as_u16()
}

async fn session_actions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log_sessionauditlog ORDER BY created_at, id")
        .fetch_all(pool)
        .await
        .unwrap()
}

// Registration and email verification.

#[sqlx::test]
async fn register_verify_and_resend(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let created = app.register("  Ann.Lee@Example.COM ", "Ann_Lee", PASSWORD).await;
    assert_eq!(created.status(), 201);
    let user = json(created).await["user"].clone();
    assert_eq!(user["email"], "ann.lee@example.com");
    assert_eq!(user["username"], "ann_lee");
    assert_eq!((user["email_verified"].as_bool(), user["mfa_enabled"].as_bool()), (Some(false), Some(false)));
    for field in ["id", "first_name", "last_name", "is_active", "is_staff", "is_superuser", "date_joined", "last_login"]
    {
        assert!(user.get(field).is_some(), "{field} missing: {user}");
    }

    let mails = app.deliver_mail().await;
    assert_eq!(mails.len(), 1);
    let mail = mails[0].parsed();
    assert_eq!(mail.subject(), Some("Confirm your email address"));
    assert!(mail.body_html(0).is_some());
    let token = app.mailed_token("ann.lee@example.com", "http://gatehouse.test/verify-email").await;

    let verified = app.post_json("/api/v1/auth/email/verify", &json!({"token": token})).await;
    assert_eq!(verified.status(), 200);
    assert_eq!(json(verified).await["user"]["email_verified"], true);
    let again = app.post_json("/api/v1/auth/email/verify", &json!({"token": token})).await;
    assert_error(again, 400, "TOKEN_INVALID").await;
    assert_error(app.post_json("/api/v1/auth/email/verify", &json!({"token": "nope"})).await, 400, "TOKEN_INVALID")
        .await;

    // Resend: a fresh link for an unverified account, nothing once verified.
    let bob = app.signed_in("bob").await;
    let resend = app.with_token(Method::POST, "/api/v1/auth/email/resend", &bob.access).send().await.unwrap();
    assert_eq!(resend.status(), 202);
    // Links only: bob's first login also brought a new-device notice.
    let links = |mails: Vec<crate::smtp::CapturedMail>| {
        mails
            .iter()
            .filter(|m| m.to == ["bob@example.com"] && m.parsed().subject() == Some("Confirm your email address"))
            .count()
    };
    let first_bob = links(app.smtp.mails());
    let newest = app.mailed_token("bob@example.com", "http://gatehouse.test/verify-email").await;
    assert_eq!(links(app.smtp.mails()), first_bob + 2);
    assert_eq!(app.post_json("/api/v1/auth/email/verify", &json!({"token": newest})).await.status(), 200);
    let resend = app.with_token(Method::POST, "/api/v1/auth/email/resend", &bob.access).send().await.unwrap();
    assert_eq!(resend.status(), 202);
    assert_eq!(links(app.deliver_mail().await), first_bob + 2);
    assert_error(app.client.post(app.url("/api/v1/auth/email/resend")).send().await.unwrap(), 401, "UNAUTHENTICATED")
        .await;
}

#[sqlx::test]
async fn an_older_verification_link_dies_when_a_new_one_is_sent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let tokens = app.signed_in("cat").await;
    let old = app.mailed_token("cat@example.com", "http://gatehouse.test/verify-email").await;
    app.with_token(Method::POST, "/api/v1/auth/email/resend", &tokens.access).send().await.unwrap();
    let new = app.mailed_token("cat@example.com", "http://gatehouse.test/verify-email").await;
    assert_ne!(old, new);
    assert_error(app.post_json("/api/v1/auth/email/verify", &json!({"token": old})).await, 400, "TOKEN_INVALID").await;
    assert_eq!(app.post_json("/api/v1/auth/email/verify", &json!({"token": new})).await.status(), 200);
}

#[sqlx::test]
async fn registration_conflicts_and_policy(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);
    let body = assert_error(app.register("ANN@example.com", "other", PASSWORD).await, 409, "EMAIL_TAKEN").await;
    assert!(body["error"]["details"]["email"].is_array());
    assert_error(app.register("other@example.com", "ANN", PASSWORD).await, 409, "USERNAME_TAKEN").await;

    let bad = app.register("not-an-email", "a!", "short").await;
    let body = assert_error(bad, 422, "VALIDATION_FAILED").await;
    let details = &body["error"]["details"];
    assert!(details["email"].is_array() && details["username"].is_array(), "{body}");
    let password: Vec<&str> = details["password"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(password.iter().any(|m| m.contains("at least 8")), "{password:?}");
    assert!(password.iter().any(|m| m.contains("uppercase")), "{password:?}");
    assert!(password.iter().any(|m| m.contains("digit")), "{password:?}");

    let weak = app.register("dan@example.com", "dan", "Password1").await;
    let body = assert_error(weak, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["error"]["details"]["password"][0], "is too easy to guess");
    let long = app.register("dan@example.com", "dan", &format!("Aa1-{}", "x".repeat(130))).await;
    assert_error(long, 422, "VALIDATION_FAILED").await;
    assert_error(app.post_json("/api/v1/auth/register", &json!({"email": "x@y.io"})).await, 422, "VALIDATION_FAILED")
        .await;
}

// Login.

#[sqlx::test]
async fn login_returns_an_eddsa_token_with_the_session_claims(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.register("ann@example.com", "ann", PASSWORD).await;
    let response = app.login("ANN@example.com", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_i64()), (Some("Bearer"), Some(900)));
    assert!(body["user"]["last_login"].is_string());
    let t = tokens(body.clone());
    let (header, claims) = jwt_parts(&t.access);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], app.state.keys.kid.as_str());
    assert_eq!(claims["sub"], body["user"]["id"]);
    assert_eq!(claims["sid"], t.session_id.as_str());
    assert_eq!(claims["aal"], 1);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert!(claims["jti"].is_string());
    assert_eq!(me_status(&app, &t.access).await, 200);
    // The session statement also wrote the login's audit row and settled the attempt.
    type LoginRow = (Option<uuid::Uuid>, Option<String>, Option<bool>, String, bool);
    let audited: Vec<LoginRow> = sqlx::query_as(
        "SELECT session_id, session_type, mfa_verified, risk_level, ip_address IS NOT NULL
           FROM audit_log_sessionauditlog WHERE action = 'login'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let sid = uuid::Uuid::parse_str(&t.session_id).unwrap();
    assert_eq!(audited, [(Some(sid), Some("web".to_owned()), Some(false), "low".to_owned(), true)]);
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM accounts_loginattempt").fetch_all(&pool).await.unwrap();
    assert_eq!(outcomes, ["success"]);
}

#[sqlx::test]
async fn unknown_email_and_wrong_password_look_the_same(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.register("ann@example.com", "ann", PASSWORD).await;
    let strip = |mut v: Value| {
        v["error"].as_object_mut().unwrap().remove("request_id");
        v["error"].as_object_mut().unwrap().remove("timestamp");
        v
    };
    let wrong = app.login("ann@example.com", PASSWORD_2).await;
    let unknown = app.login("nobody@example.com", PASSWORD_2).await;
    assert_eq!(
        (wrong.status(), unknown.status()),
        (reqwest::StatusCode::UNAUTHORIZED, reqwest::StatusCode::UNAUTHORIZED)
    );
    let (wrong, unknown) = (strip(json(wrong).await), strip(json(unknown).await));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "INVALID_CREDENTIALS");
}

#[sqlx::test]
async fn a_disabled_account_is_refused_only_after_a_correct_password(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.register("ann@example.com", "ann", PASSWORD).await;
    sqlx::query("UPDATE auth_user SET is_active = false").execute(&pool).await.unwrap();
    assert_error(app.login("ann@example.com", PASSWORD_2).await, 401, "INVALID_CREDENTIALS").await;
    assert_error(app.login("ann@example.com", PASSWORD).await, 403, "ACCOUNT_DISABLED").await;
}

#[sqlx::test]
async fn the_sixth_attempt_is_locked_and_the_lock_survives_a_new_instance(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.register("ann@example.com", "ann", PASSWORD).await;
    for _ in 0..5 {
        assert_error(app.login("ann@example.com", PASSWORD_2).await, 401, "INVALID_CREDENTIALS").await;
    }
    let locked = app.login("ann@example.com", PASSWORD).await;
    let retry: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1700..=1800).contains(&retry), "{retry}");
    assert_error(locked, 429, "RATE_LIMITED").await;

    // A second instance (or a restart) reads the same attempts.
    let other = app.another_instance().await;
    assert_error(other.login("ann@example.com", PASSWORD).await, 429, "RATE_LIMITED").await;
    assert!(session_actions(&pool).await.contains(&"login_locked".to_owned()));

    // The lock ends 30 minutes after the last failure.
    sqlx::query("UPDATE accounts_loginattempt SET created_at = created_at - interval '31 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 200);
}

#[sqlx::test]
async fn unknown_identifiers_lock_too_and_success_clears_the_count(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for _ in 0..5 {
        app.login("ghost@example.com", PASSWORD).await;
    }
    assert_error(app.login("ghost@example.com", PASSWORD).await, 429, "RATE_LIMITED").await;

    app.register("ann@example.com", "ann", PASSWORD).await;
    for _ in 0..4 {
        app.login("ann@example.com", PASSWORD_2).await;
    }
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 200);
    for _ in 0..4 {
        app.login("ann@example.com", PASSWORD_2).await;
    }
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 200, "the count restarted at the success");
}

#[sqlx::test]
async fn concurrent_guesses_cannot_exceed_the_limit(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool).await);
    app.register("ann@example.com", "ann", PASSWORD).await;
    let guesses: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.login("ann@example.com", PASSWORD_2).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "only 5 passwords may be tried: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 20 - checked);
}

#[sqlx::test]
async fn fifty_failures_from_one_ip_block_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for i in 0..50 {
        app.login(&format!("user{i}@example.com"), PASSWORD).await;
    }
    let blocked = app.login("fresh@example.com", PASSWORD).await;
    assert!(blocked.headers().contains_key("retry-after"));
    assert_error(blocked, 429, "RATE_LIMITED").await;
}

#[sqlx::test]
async fn admins_unlock_a_locked_account_and_sign_a_user_out(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    for _ in 0..5 {
        app.login("ann@example.com", PASSWORD_2).await;
    }
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 429);
    let ann_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM auth_user WHERE username = 'ann'").fetch_one(&pool).await.unwrap();

    // Only staff with accounts.change_user (and MFA, unless enforce_for_admin is off) may.
    let unlock =
        |token: String| app.with_token(Method::POST, &format!("/api/v1/admin/users/{ann_id}/unlock"), &token).send();
    assert_error(unlock(ann.access.clone()).await.unwrap(), 403, "FORBIDDEN").await;
    let root = crate::helpers::create_superuser(&app.state, "root@example.com", "root", PASSWORD.into()).await.unwrap();
    sqlx::query("INSERT INTO accounts_mfasettings (user_id, enforce_for_admin) VALUES ($1, false)")
        .bind(root.id)
        .execute(&pool)
        .await
        .unwrap();
    let admin = app.login_ok("root@example.com", PASSWORD).await;
    assert_eq!(unlock(admin.access.clone()).await.unwrap().status(), 204);
    assert!(session_actions(&pool).await.contains(&"account_unlocked".to_owned()));
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 200);
    let missing = app
        .with_token(Method::POST, &format!("/api/v1/admin/users/{}/unlock", uuid::Uuid::new_v4()), &admin.access)
        .send()
        .await
        .unwrap();
    assert_error(missing, 404, "NOT_FOUND").await;

    let out = app
        .with_token(Method::POST, &format!("/api/v1/admin/users/{ann_id}/logout-all"), &admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(me_status(&app, &ann.access).await, 401);
    assert_eq!(me_status(&app, &admin.access).await, 200);
}

// Tokens and sessions.

#[sqlx::test]
async fn forged_expired_and_tampered_tokens_are_refused(pool: PgPool) {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    use gatehouse::core::{auth, jwt::JwtKeys};

    let app = TestApp::spawn(pool).await;
    let t = app.signed_in("ann").await;
    let (_, claims) = jwt_parts(&t.access);
    let claims: auth::Claims = serde_json::from_value(claims).unwrap();

    // Signed by a key the service does not know (even with the same kid).
    let mut stranger = JwtKeys::ephemeral().unwrap();
    stranger.kid = app.state.keys.kid.clone();
    assert_eq!(me_status(&app, &auth::sign(&stranger, &claims).unwrap()).await, 401);

    let expired = auth::Claims { iat: claims.iat - 2000, exp: claims.iat - 1000, ..claims.clone() };
    assert_eq!(me_status(&app, &auth::sign(&app.state.keys, &expired).unwrap()).await, 401);

    // Our own key, but issued for another deployment, or for no one.
    assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("http://gatehouse.test", "http://gatehouse.test"));
    let elsewhere = auth::Claims { iss: "https://other.example".into(), ..claims.clone() };
    assert_eq!(me_status(&app, &auth::sign(&app.state.keys, &elsewhere).unwrap()).await, 401);
    let for_others = auth::Claims { aud: "https://other.example".into(), ..claims.clone() };
    assert_eq!(me_status(&app, &auth::sign(&app.state.keys, &for_others).unwrap()).await, 401);

    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = t.access.split('.').nth(1).unwrap();
    assert_eq!(me_status(&app, &format!("{none_header}.{payload}.")).await, 401);

    let mut forged: Value = jwt_parts(&t.access).1;
    forged["aal"] = json!(2);
    let parts: Vec<&str> = t.access.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(forged.to_string()), parts[2]);
    assert_eq!(me_status(&app, &tampered).await, 401);

    assert_eq!(me_status(&app, "not-a-jwt").await, 401);
    let response =
        app.client.get(app.url("/api/v1/users/me")).header("authorization", "Basic abc").send().await.unwrap();
    assert_error(response, 401, "UNAUTHENTICATED").await;
    assert_eq!(me_status(&app, &t.access).await, 200);
}

#[sqlx::test]
async fn logout_revokes_the_session_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let t = app.signed_in("ann").await;
    let second = app.another_instance().await;
    assert_eq!(me_status(&second, &t.access).await, 200);
    let out = app.with_token(Method::POST, "/api/v1/auth/logout", &t.access).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(me_status(&app, &t.access).await, 401);
    assert_eq!(me_status(&second, &t.access).await, 401, "refused on every instance");
    assert_error(app.refresh(&t.refresh).await, 401, "TOKEN_INVALID").await;
}

#[sqlx::test]
async fn sessions_are_listed_and_revoked_by_their_owner_only(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a1 = app.signed_in("ann").await;
    let a2 = app.login_ok("ann@example.com", PASSWORD).await;
    let bob = app.signed_in("bob").await;

    let list = json(app.with_token(Method::GET, "/api/v1/sessions", &a1.access).send().await.unwrap()).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let current: Vec<bool> = list.iter().map(|s| s["current"].as_bool().unwrap()).collect();
    assert_eq!(current.iter().filter(|c| **c).count(), 1);
    for field in
        ["id", "device_id", "ip_address", "user_agent", "country", "city", "created_at", "expires_at", "mfa_verified"]
    {
        assert!(list[0].get(field).is_some(), "{field}");
    }

    let other = app
        .with_token(Method::DELETE, &format!("/api/v1/sessions/{}", bob.session_id), &a1.access)
        .send()
        .await
        .unwrap();
    assert_error(other, 404, "NOT_FOUND").await;
    assert_eq!(me_status(&app, &bob.access).await, 200);
    let bad = app.with_token(Method::DELETE, "/api/v1/sessions/not-a-uuid", &a1.access).send().await.unwrap();
    assert_error(bad, 400, "MALFORMED_REQUEST").await;

    let gone = app
        .with_token(Method::DELETE, &format!("/api/v1/sessions/{}", a2.session_id), &a1.access)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(me_status(&app, &a2.access).await, 401);
    assert_eq!(me_status(&app, &a1.access).await, 200);

    let a3 = app.login_ok("ann@example.com", PASSWORD).await;
    let all = app.with_token(Method::POST, "/api/v1/auth/logout-all", &a3.access).send().await.unwrap();
    assert_eq!(all.status(), 204);
    assert_eq!((me_status(&app, &a1.access).await, me_status(&app, &a3.access).await), (401, 401));
    assert_eq!(me_status(&app, &bob.access).await, 200);
}

// Refresh rotation.

#[sqlx::test]
async fn refresh_rotates_and_reuse_revokes_family_and_session(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let first = app.signed_in("ann").await;
    let second = tokens(json(app.refresh(&first.refresh).await).await);
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(me_status(&app, &second.access).await, 200);
    let third = tokens(json(app.refresh(&second.refresh).await).await);

    // The first token was rotated long ago: a reuse.
    assert_error(app.refresh(&first.refresh).await, 401, "TOKEN_REUSED").await;
    assert_eq!(me_status(&app, &third.access).await, 401, "the session is revoked");
    assert_error(app.refresh(&third.refresh).await, 401, "TOKEN_INVALID").await;

    let (risk, review): (String, bool) = sqlx::query_as(
        "SELECT risk_level, requires_review FROM audit_log_sessionauditlog WHERE action = 'token_reused'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((risk.as_str(), review), ("high", true));
    let alert = app
        .deliver_mail()
        .await
        .into_iter()
        .find(|m| m.parsed().subject() == Some("Security alert: a session was signed out"));
    assert!(alert.is_some(), "the user is told");
    assert_error(app.refresh("unknown-token").await, 401, "TOKEN_INVALID").await;
}

#[sqlx::test]
async fn twenty_concurrent_refreshes_make_exactly_one_pair(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool.clone()).await);
    let t = app.signed_in("ann").await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (app, token) = (app.clone(), t.refresh.clone());
            tokio::spawn(async move { app.refresh(&token).await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 19, "{statuses:?}");
    let children: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_refreshtokenrecord WHERE parent_jti IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(children, 1);
}

#[sqlx::test]
async fn within_the_leeway_a_double_submit_gets_the_same_pair(pool: PgPool) {
    let mut config = test_config(&pool);
    config.refresh_reuse_leeway = std::time::Duration::from_secs(30);
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    let t = app.signed_in("ann").await;
    let a = json(app.refresh(&t.refresh).await).await;
    let b = json(app.refresh(&t.refresh).await).await;
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert_eq!(a["access_token"], b["access_token"]);
    let pair: Tokens = tokens(b);
    assert_eq!(me_status(&app, &pair.access).await, 200);
    assert_eq!(app.refresh(&pair.refresh).await.status(), 200);
}

// Passwords.

#[sqlx::test]
async fn password_change_revokes_other_sessions_and_refuses_reuse(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let here = app.signed_in("ann").await;
    let elsewhere = app.login_ok("ann@example.com", PASSWORD).await;
    let change = |current: &str, new: &str| {
        app.with_token(Method::POST, "/api/v1/auth/password/change", &here.access)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    assert_error(change(PASSWORD_2, "Whatever-Else-77").await.unwrap(), 403, "PASSWORD_INCORRECT").await;
    assert_error(change(PASSWORD, PASSWORD).await.unwrap(), 422, "PASSWORD_REUSED").await;
    assert_error(change(PASSWORD, "weak").await.unwrap(), 422, "VALIDATION_FAILED").await;
    assert_eq!(change(PASSWORD, PASSWORD_2).await.unwrap().status(), 204);
    assert_eq!(me_status(&app, &here.access).await, 200);
    assert_eq!(me_status(&app, &elsewhere.access).await, 401);
    assert_error(app.login("ann@example.com", PASSWORD).await, 401, "INVALID_CREDENTIALS").await;
    assert_eq!(app.login("ann@example.com", PASSWORD_2).await.status(), 200);

    // The last five passwords are refused; the sixth back is allowed again.
    let history = ["Amber-Falcon-Rises-31", "Blue-Glacier-Melts-32", "Cedar-Harbor-Sleeps-33", "Dune-Island-Waits-34"];
    let mut current = PASSWORD_2.to_owned();
    for next in history {
        assert_eq!(change(&current, next).await.unwrap().status(), 204);
        current = next.to_owned();
    }
    assert_error(change(&current, PASSWORD_2).await.unwrap(), 422, "PASSWORD_REUSED").await;
    assert_eq!(change(&current, PASSWORD).await.unwrap().status(), 204, "six changes ago is allowed");
}

#[sqlx::test]
async fn password_reset_flow(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    app.deliver_mail().await;
    let before = app.smtp.mails().len();
    let unknown = app.post_json("/api/v1/auth/password/reset", &json!({"email": "nobody@example.com"})).await;
    assert_eq!(unknown.status(), 202);
    assert_eq!(app.deliver_mail().await.len(), before, "no mail for an unknown account");

    assert_eq!(app.post_json("/api/v1/auth/password/reset", &json!({"email": "ANN@example.com"})).await.status(), 202);
    let token = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    let confirm = |token: &str, password: &str| {
        let body = json!({"token": token, "new_password": password});
        let request = app.client.post(app.url("/api/v1/auth/password/reset/confirm")).json(&body);
        async move { request.send().await.unwrap() }
    };
    // A reused password is refused without spending the token.
    assert_error(confirm(&token, PASSWORD).await, 422, "PASSWORD_REUSED").await;
    assert_error(confirm(&token, "weak").await, 422, "VALIDATION_FAILED").await;
    assert_eq!(confirm(&token, PASSWORD_2).await.status(), 204);
    assert_eq!(me_status(&app, &t.access).await, 401, "every session is revoked");
    assert_error(confirm(&token, "Another-Fine-Pass-8").await, 400, "TOKEN_INVALID").await;
    assert_eq!(app.login("ann@example.com", PASSWORD_2).await.status(), 200);

    // An expired token is refused (the next link may be mailed a minute after the last).
    sqlx::query("UPDATE accounts_onetimetoken SET created_at = created_at - interval '2 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    let token = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    sqlx::query("UPDATE accounts_onetimetoken SET expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert_error(confirm(&token, "Another-Fine-Pass-8").await, 400, "TOKEN_INVALID").await;
}

#[sqlx::test]
async fn a_reset_token_is_consumed_once_under_concurrency(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool).await);
    app.signed_in("ann").await;
    app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    let token = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                app.post_json(
                    "/api/v1/auth/password/reset/confirm",
                    &json!({"token": token, "new_password": format!("Parallel-Pass-{i}x")}),
                )
                .await
                .status()
                .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 9, "{statuses:?}");
}

// The signed-in user.

#[sqlx::test]
async fn me_reads_updates_and_deletes(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let me = json(app.with_token(Method::GET, "/api/v1/users/me", &t.access).send().await.unwrap()).await;
    assert_eq!(me["username"], "ann");
    assert_eq!(me["profile"]["timezone"], "UTC");
    assert_eq!(me["profile"]["language"], "en");

    let patch = |body: Value| app.with_token(Method::PATCH, "/api/v1/users/me", &t.access).json(&body).send();
    let bad = patch(json!({"profile": {"phone_number": "555-1234", "timezone": "Mars/Base", "language": "english!", "date_of_birth": "2999-01-01"}}))
        .await
        .unwrap();
    let body = assert_error(bad, 422, "VALIDATION_FAILED").await;
    for field in ["phone_number", "timezone", "language", "date_of_birth"] {
        assert!(body["error"]["details"][field].is_array(), "{field}: {body}");
    }
    assert_error(patch(json!({"is_staff": true})).await.unwrap(), 422, "VALIDATION_FAILED").await;

    let ok = patch(json!({"first_name": "Ann", "last_name": "Lee", "profile": {"phone_number": "+15551234567", "timezone": "Europe/Paris", "language": "pt-BR", "city": "Lyon", "date_of_birth": "1990-05-17"}}))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let me = json(ok).await;
    assert_eq!((me["first_name"].as_str(), me["profile"]["city"].as_str()), (Some("Ann"), Some("Lyon")));
    assert_eq!(me["profile"]["timezone"], "Europe/Paris");
    let cleared = json(patch(json!({"profile": {"city": null}})).await.unwrap()).await;
    assert!(cleared["profile"]["city"].is_null());
    assert_eq!(cleared["profile"]["phone_number"], "+15551234567");

    let delete = |password: &str| {
        app.with_token(Method::DELETE, "/api/v1/users/me", &t.access).json(&json!({"password": password})).send()
    };
    assert_error(delete(PASSWORD_2).await.unwrap(), 403, "PASSWORD_INCORRECT").await;
    assert_eq!(delete(PASSWORD).await.unwrap().status(), 204);
    assert_eq!(me_status(&app, &t.access).await, 401);
    assert_error(app.login("ann@example.com", PASSWORD).await, 401, "INVALID_CREDENTIALS").await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM auth_user").fetch_one(&pool).await.unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_session").fetch_one(&pool).await.unwrap();
    assert_eq!((users, sessions), (0, 0));
    let record: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT user_id FROM accounts_auditlog WHERE action = 'deleted'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(record, None, "the deletion is recorded without the account");
}

#[sqlx::test]
async fn createsuperuser_makes_a_verified_staff_account(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user =
        crate::helpers::create_superuser(&app.state, "Root@Example.com", "root", PASSWORD.to_owned()).await.unwrap();
    assert!(user.is_staff && user.is_superuser && user.email_verified);
    assert_eq!(app.login("root@example.com", PASSWORD).await.status(), 200);
    assert!(crate::helpers::create_superuser(&app.state, "x@example.com", "root2", "weak".into()).await.is_err());
}

/// After a full flow, no password, token or link secret is stored anywhere in clear.
#[sqlx::test]
async fn no_plaintext_secret_is_stored_anywhere(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let verify = app.mailed_token("ann@example.com", "http://gatehouse.test/verify-email").await;
    app.post_json("/api/v1/auth/email/verify", &json!({"token": verify})).await;
    let r = tokens(json(app.refresh(&t.refresh).await).await);
    app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await;
    let reset = app.mailed_token("ann@example.com", "http://gatehouse.test/reset-password").await;
    app.post_json("/api/v1/auth/password/reset/confirm", &json!({"token": reset, "new_password": PASSWORD_2})).await;
    let last = app.login_ok("ann@example.com", PASSWORD_2).await;
    app.deliver_mail().await;

    let secrets = [
        PASSWORD,
        PASSWORD_2,
        &verify,
        &reset,
        &t.access,
        &t.refresh,
        &r.access,
        &r.refresh,
        &last.access,
        &last.refresh,
    ];
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema
          WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            AND c.data_type IN ('text', 'character varying', 'jsonb', 'ARRAY', 'json')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(columns.len() > 50);
    for (table, column) in columns {
        let sql = format!("SELECT \"{column}\"::text FROM \"{table}\" WHERE \"{column}\" IS NOT NULL");
        let values: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&pool).await.unwrap();
        for value in values {
            for secret in secrets {
                assert!(!value.contains(secret), "{table}.{column} holds a secret in clear");
            }
        }
    }
}

#[sqlx::test]
async fn an_abandoned_attempt_stops_counting_after_30_seconds(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.register("ann@example.com", "ann", PASSWORD).await;
    for _ in 0..5 {
        app.login("ann@example.com", PASSWORD_2).await;
    }
    // Five attempts whose checks were cut off (a crash): pending for over 30 s, they no longer count.
    sqlx::query("UPDATE accounts_loginattempt SET outcome = 'pending', created_at = now() - interval '31 seconds'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 200);
}

#[sqlx::test]
async fn refreshing_never_extends_a_session_past_its_absolute_lifetime(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    // 29 days in: a refresh works, but the new token ends with the session's 30th day.
    sqlx::query("UPDATE accounts_session SET created_at = now() - interval '29 days'").execute(&pool).await.unwrap();
    let r = tokens(json(app.refresh(&t.refresh).await).await);
    let left: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - now())::float8 FROM accounts_refreshtokenrecord WHERE parent_jti IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(left <= 24.0 * 3600.0 + 5.0, "the child outlives the session: {left} s left");
    // Past 30 days the refresh token is dead, however recently it was issued.
    sqlx::query("UPDATE accounts_session SET created_at = now() - interval '30 days 1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert_error(app.refresh(&r.refresh).await, 401, "TOKEN_INVALID").await;
}

#[sqlx::test]
async fn refresh_tokens_are_random_and_a_kept_child_is_sealed_then_wiped(pool: PgPool) {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    use hmac::{Hmac, KeyInit, Mac};
    let mut config = test_config(&pool);
    config.refresh_reuse_leeway = std::time::Duration::from_secs(30);
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    let t = app.signed_in("ann").await;
    let child = tokens(json(app.refresh(&t.refresh).await).await);
    // Whoever holds DATA_ENCRYPTION_KEY and an old token cannot compute the live one: the
    // child is not the HMAC of its parent that it once was.
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[7u8; 32]).unwrap();
    mac.update(format!("refresh-child:{}", t.refresh).as_bytes());
    assert_ne!(child.refresh, B64.encode(mac.finalize().into_bytes()));
    // The child waits on its parent, sealed, for the leeway only.
    let kept: Vec<u8> =
        sqlx::query_scalar("SELECT child_sealed FROM accounts_refreshtokenrecord WHERE rotated_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!kept.windows(child.refresh.len()).any(|w| w == child.refresh.as_bytes()));
    sqlx::query("UPDATE accounts_refreshtokenrecord SET rotated_at = now() - interval '31 seconds' WHERE rotated_at IS NOT NULL")
        .execute(&pool)
        .await
        .unwrap();
    gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_refreshtokenrecord WHERE child_sealed IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    // Past the leeway, presenting the parent again is a reuse.
    assert_error(app.refresh(&t.refresh).await, 401, "TOKEN_REUSED").await;
}

#[sqlx::test]
async fn wrong_current_passwords_count_against_the_login_lockout(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let change = |current: &str| {
        app.with_token(Method::POST, "/api/v1/auth/password/change", &t.access)
            .json(&json!({"current_password": current, "new_password": PASSWORD_2}))
            .send()
    };
    for _ in 0..5 {
        assert_error(change("Not-The-Password-1").await.unwrap(), 403, "PASSWORD_INCORRECT").await;
    }
    // A token thief guessing the password through signed-in actions meets the same lock
    // as one guessing at the login: both are now refused, even with the right password.
    assert_error(change(PASSWORD).await.unwrap(), 429, "RATE_LIMITED").await;
    assert_error(app.login("ann@example.com", PASSWORD).await, 429, "RATE_LIMITED").await;
    let delete = app
        .with_token(Method::DELETE, "/api/v1/users/me", &t.access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_error(delete, 429, "RATE_LIMITED").await;
}

#[sqlx::test]
async fn a_flood_of_parallel_logins_from_one_address_is_held_at_the_ip_limit(pool: PgPool) {
    // A real hash cost, so the flood arrives while the first guesses are still hashing:
    // counting only finished failures would let far more than the limit through.
    let mut config = test_config(&pool);
    config.argon2 = gatehouse::core::config::Argon2Params { memory_kib: 19_456, iterations: 2, parallelism: 1 };
    let app = std::sync::Arc::new(TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await);
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(
                async move { app.login(&format!("stranger{i}@example.com"), PASSWORD).await.status().as_u16() },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    // Every attempt is written before its check, per IP as per identifier: at most the
    // limit of them reach the hash; the rest are refused at once.
    let hashed = statuses.iter().filter(|s| **s == 401).count();
    assert!(hashed <= 50, "{hashed} attempts reached the hash");
    assert_eq!(hashed + statuses.iter().filter(|s| **s == 429).count(), 300, "{statuses:?}");
}

#[sqlx::test]
async fn ipv6_clients_are_limited_per_64(pool: PgPool) {
    let mut config = test_config(&pool);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn_with(pool, config, gatehouse::routes()).await;
    let login_from = |ip: String, email: String| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Forwarded-For", ip)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
    };
    // One /64 is one client, whatever the address inside it (each guess at another account,
    // so only the address limit applies).
    for i in 0..50 {
        let r = login_from(format!("2001:db8:1:2::{:x}", i + 1), format!("u{i}@example.com")).await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let blocked = login_from("2001:db8:1:2:ffff::9".into(), "u50@example.com".into()).await.unwrap();
    assert_error(blocked, 429, "RATE_LIMITED").await;
    // Another /64 is another client.
    let other = login_from("2001:db8:1:3::1".into(), "u51@example.com".into()).await.unwrap();
    assert_eq!(other.status(), 401);
}

#[sqlx::test]
async fn an_email_change_waits_for_the_link_to_the_new_address(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    app.signed_in("bob").await;
    let change = |password: &str, new_email: &str| {
        app.with_token(Method::POST, "/api/v1/users/me/email", &ann.access)
            .json(&json!({"password": password, "new_email": new_email}))
            .send()
    };
    assert_error(change(PASSWORD_2, "ann@new.example").await.unwrap(), 403, "PASSWORD_INCORRECT").await;
    assert_error(change(PASSWORD, "bob@example.com").await.unwrap(), 409, "EMAIL_TAKEN").await;
    assert_error(change(PASSWORD, "not an address").await.unwrap(), 422, "VALIDATION_FAILED").await;
    assert_eq!(change(PASSWORD, "Ann@New.Example").await.unwrap().status(), 202);

    // The old address hears of it and still signs in; the link goes to the new one.
    let mails = app.deliver_mail().await;
    assert!(mails.iter().any(|m| m.to.iter().any(|t| t == "ann@example.com")
        && m.parsed().subject() == Some("A change of your email address was requested")));
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 200);
    let token = app.mailed_token("ann@new.example", "/confirm-email-change").await;

    // Used once, under concurrency: one wins.
    let app = std::sync::Arc::new(app);
    let confirms: Vec<_> = (0..5)
        .map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                app.post_json("/api/v1/auth/email/change/confirm", &json!({"token": token})).await.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in confirms {
        statuses.push(c.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 400, 400, 400, 400]);
    assert_error(app.login("ann@example.com", PASSWORD).await, 401, "INVALID_CREDENTIALS").await;
    let me = json(app.login("ann@new.example", PASSWORD).await).await;
    assert_eq!(
        (me["user"]["email"].as_str(), me["user"]["email_verified"].as_bool()),
        (Some("ann@new.example"), Some(true))
    );
    let trail: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM accounts_auditlog WHERE action LIKE 'email_change%' ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(trail, ["email_change_requested", "email_changed"]);
}
