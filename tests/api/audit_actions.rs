//! The seed's declared audit actions, each recorded where it happens: session_expired,
//! challenge_expired, suspicious_activity, device seen/new_location/verified, link
//! switched/unlinked/verified/trusted, recovery_used; and API keys counted on their
//! own `api` sessions and in the day's summary.

use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::{
    helpers::{PASSWORD, TestApp, admin, json, login_from, test_config},
    mfa::{challenge, enrol_totp, fresh_code, verify},
};

fn cli() -> gatehouse::audit_log::jobs::Trigger {
    gatehouse::audit_log::jobs::Trigger::Cli
}

async fn actions(pool: &PgPool, sql: &'static str) -> Vec<String> {
    sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
}

#[sqlx::test]
async fn an_expired_session_is_marked_expired_and_audited_by_the_cleanup(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    let live = app.login_ok("ann@example.com", PASSWORD).await;
    let expired: uuid::Uuid = sqlx::query_scalar(
        "UPDATE accounts_session SET expires_at = now() - interval '1 minute'
          WHERE id = (SELECT id FROM accounts_session ORDER BY created_at LIMIT 1) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    gatehouse::jobs::run_cleanup_once(&app.state, cli()).await.unwrap();
    let statuses: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM accounts_session ORDER BY created_at").fetch_all(&pool).await.unwrap();
    assert_eq!(statuses[0], (expired, "expired".to_owned()));
    assert_eq!(statuses[1].1, "active");
    let audited: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT session_id, action FROM audit_log_sessionauditlog WHERE action = 'session_expired'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(audited, [(expired, "session_expired".to_owned())]);
    let link =
        actions(&pool, "SELECT link_action FROM audit_log_sessiondevicelinkauditlog WHERE link_action = 'unlinked'")
            .await;
    assert_eq!(link, ["unlinked"]);
    // Once: a second run finds nothing more to mark.
    gatehouse::jobs::run_cleanup_once(&app.state, cli()).await.unwrap();
    let again: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log_sessionauditlog WHERE action = 'session_expired'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(again, 1);
    let me = app.with_token(Method::GET, "/api/v1/users/me", &live.access).send().await.unwrap();
    assert_eq!(me.status(), 200, "the live session is untouched");
}

#[sqlx::test]
async fn marking_many_sessions_expired_sends_no_notification_per_row(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    sqlx::query(
        "INSERT INTO accounts_session (user_id, access_jti, refresh_jti, expires_at)
         SELECT id, 'a' || i, 'r' || i, now() - interval '1 hour' FROM auth_user, generate_series(1, 12000) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
    listener.listen("gatehouse_auth").await.unwrap();
    gatehouse::jobs::run_cleanup_once(&app.state, cli()).await.unwrap();
    let expired: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts_session WHERE status = 'expired'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(expired, 12000, "more than two batches");
    let heard = tokio::time::timeout(std::time::Duration::from_millis(500), listener.recv()).await;
    assert!(heard.is_err(), "no eviction was sent: {heard:?}");
}

#[sqlx::test]
async fn a_challenge_that_dies_unanswered_is_audited(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    enrol_totp(&app, &ann).await;
    // Out of attempts: three wrong codes.
    let id = challenge(&app, "ann@example.com").await;
    for _ in 0..3 {
        assert_eq!(verify(&app, &id, "totp", "000000").await.status(), 401);
    }
    let reasons = actions(
        &pool,
        "SELECT metadata->>'reason' FROM audit_log_mfaauditlog WHERE action = 'challenge_expired' ORDER BY created_at",
    )
    .await;
    assert_eq!(reasons, ["attempts"]);
    // By time: the cleanup records it as it deletes the challenge.
    let id = challenge(&app, "ann@example.com").await;
    sqlx::query("UPDATE otp_mfachallenge SET expires_at = now() - interval '2 hours' WHERE challenge_id = $1::uuid")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    gatehouse::jobs::run_cleanup_once(&app.state, cli()).await.unwrap();
    let reasons = actions(
        &pool,
        "SELECT metadata->>'reason' FROM audit_log_mfaauditlog WHERE action = 'challenge_expired' ORDER BY created_at",
    )
    .await;
    assert_eq!(reasons, ["attempts", "time"]);
}

#[sqlx::test]
async fn device_actions_seen_new_location_and_a_suspicious_login(pool: PgPool) {
    let mut config = test_config(&pool);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);
    let paris = [
        ("X-Geo-Country", "FR"),
        ("X-Geo-City", "Paris"),
        ("X-Geo-Lat", "48.8566"),
        ("X-Geo-Lon", "2.3522"),
        ("X-Forwarded-For", "81.0.0.1"),
    ];
    let berlin = [("X-Geo-Country", "DE"), ("X-Geo-City", "Berlin"), ("X-Forwarded-For", "81.0.0.2")];
    let sydney = [
        ("X-Geo-Country", "AU"),
        ("X-Geo-City", "Sydney"),
        ("X-Geo-Lat", "-33.8688"),
        ("X-Geo-Lon", "151.2093"),
        ("X-Forwarded-For", "1.120.0.1"),
    ];
    login_from(&app, "ann@example.com", "laptop", &paris).await;
    // The same device a minute later, from the same place: seen.
    sqlx::query("UPDATE accounts_device SET last_used_at = now() - interval '2 minutes'").execute(&pool).await.unwrap();
    login_from(&app, "ann@example.com", "laptop", &paris).await;
    // A known device from a new country: new_location.
    login_from(&app, "ann@example.com", "laptop", &berlin).await;
    let device = actions(&pool, "SELECT action FROM audit_log_deviceauditlog ORDER BY created_at").await;
    assert_eq!(device, ["registered", "seen", "new_location"]);
    // Paris to Sydney in minutes is high risk: suspicious_activity beside the login.
    login_from(&app, "ann@example.com", "laptop", &sydney).await;
    let suspicious =
        actions(&pool, "SELECT action FROM audit_log_sessionauditlog WHERE action = 'suspicious_activity'").await;
    assert_eq!(suspicious.len(), 1);
}

#[sqlx::test]
async fn a_refresh_from_another_known_device_switches_the_session(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert_eq!(app.register("ann@example.com", "ann", PASSWORD).await.status(), 201);
    login_from(&app, "ann@example.com", "phone", &[]).await;
    let laptop = login_from(&app, "ann@example.com", "laptop", &[]).await;
    let session: uuid::Uuid = laptop["session_id"].as_str().unwrap().parse().unwrap();
    let device = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>(
                "SELECT id FROM accounts_device WHERE fingerprint_hash = encode(sha256($1::bytea), 'hex')",
            )
            .bind(name.as_bytes())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (phone, laptop_id) = (device("phone").await, device("laptop").await);
    let refreshed = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("X-Device-Fingerprint", "phone")
        .json(&json!({"refresh_token": laptop["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200, "allowed");
    let (still_on,): (uuid::Uuid,) = sqlx::query_as("SELECT device_id FROM accounts_session WHERE id = $1")
        .bind(session)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(still_on, laptop_id, "a fingerprint is the client's word: the session stays where it was opened");
    let row: (String, uuid::Uuid, uuid::Uuid, bool, bool) = sqlx::query_as(
        "SELECT link_action, device_id, previous_device_id, is_anomalous, requires_review
           FROM audit_log_sessiondevicelinkauditlog WHERE session_id = $1 AND link_action = 'switched'",
    )
    .bind(session)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row, ("switched".to_owned(), phone, laptop_id, true, true));
    // A device the user never used records nothing.
    let body = json(refreshed).await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("X-Device-Fingerprint", "stranger")
        .json(&json!({"refresh_token": body["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let switched: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log_sessiondevicelinkauditlog WHERE link_action = 'switched'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(switched, 1);
}

#[sqlx::test]
async fn link_verified_and_trusted_and_recovery_used(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let mut e = enrol_totp(&app, &ann).await;
    let id = challenge(&app, "ann@example.com").await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/mfa/verify"))
        .header("X-Device-Fingerprint", "laptop")
        .json(&json!({"challenge_id": id, "method": "totp", "code": fresh_code(&e.secret, &mut e.used_step), "trust_device": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let links =
        actions(&pool, "SELECT link_action FROM audit_log_sessiondevicelinkauditlog ORDER BY created_at, link_action")
            .await;
    assert!(links.contains(&"verified".to_owned()) && links.contains(&"trusted".to_owned()), "{links:?}");
    let device = actions(&pool, "SELECT action FROM audit_log_deviceauditlog WHERE action = 'verified'").await;
    assert_eq!(device.len(), 1, "the device's first second factor");

    // A backup code is a recovery: otp_mfarecovery and recovery_used.
    let id = challenge(&app, "ann@example.com").await;
    assert_eq!(verify(&app, &id, "backup_code", &e.backup_codes[0]).await.status(), 200);
    let used = actions(&pool, "SELECT recovery_method FROM audit_log_mfaauditlog WHERE action = 'recovery_used'").await;
    assert_eq!(used, ["backup_code"]);

    // An admin MFA reset writes otp_mfarecovery too.
    let root = admin(&app, &pool).await;
    let ann_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM auth_user WHERE username = 'ann'").fetch_one(&pool).await.unwrap();
    let r = app
        .with_token(Method::POST, &format!("/api/v1/admin/users/{ann_id}/mfa/reset"), &root.access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let request: uuid::Uuid = json(r).await["id"].as_str().unwrap().parse().unwrap();
    let client = gatehouse::core::client::ClientContext::default();
    gatehouse::accounts::service::approve_mfa_change(&app.state, &client, request, None).await.unwrap();
    let methods = actions(&pool, "SELECT recovery_method FROM otp_mfarecovery ORDER BY created_at").await;
    assert_eq!(methods, ["backup_code", "admin_reset"]);
    let used = actions(
        &pool,
        "SELECT recovery_method FROM audit_log_mfaauditlog WHERE action = 'recovery_used' ORDER BY created_at",
    )
    .await;
    assert_eq!(used, ["backup_code", "admin_reset"]);
}

#[sqlx::test]
async fn an_api_keys_requests_are_counted_on_its_api_session_and_in_the_summary(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    let created = app
        .with_token(Method::POST, "/api/v1/api-keys", &ann.access)
        .json(&json!({"name": "CI reader", "scopes": ["me:read"], "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    let key = created["secret"].as_str().unwrap().to_owned();
    let (session, kind, status): (uuid::Uuid, String, String) = sqlx::query_as(
        "SELECT s.id, s.session_type, s.status FROM accounts_apikey k JOIN accounts_session s ON s.id = k.session_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((kind.as_str(), status.as_str()), ("api", "active"));
    for _ in 0..7 {
        let me = app.client.get(app.url("/api/v1/users/me")).header("Authorization", format!("ApiKey {key}")).send();
        assert_eq!(me.await.unwrap().status(), 200);
    }
    // Nothing is written per request: the count waits for the flush.
    let before: i32 = sqlx::query_scalar("SELECT total_api_calls FROM accounts_session WHERE id = $1")
        .bind(session)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(before, 0);
    gatehouse::core::auth::flush_api_calls(&app.state).await.unwrap();
    let after: i32 = sqlx::query_scalar("SELECT total_api_calls FROM accounts_session WHERE id = $1")
        .bind(session)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, 7);
    // The day's summary counts them, and recomputing the day keeps the count.
    let today = chrono::Utc::now().date_naive();
    gatehouse::audit_log::summary::run_day(&pool, today, cli()).await.unwrap();
    let summary: i32 = sqlx::query_scalar("SELECT total_api_calls FROM audit_log_auditlogsummary WHERE date = $1")
        .bind(today)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(summary, 7);
    // The key's session is not one of the user's sign-ins, and it ends with the key.
    let listed = json(app.with_token(Method::GET, "/api/v1/sessions", &ann.access).send().await.unwrap()).await;
    assert!(!listed.to_string().contains(&session.to_string()), "{listed}");
    let id = created["id"].as_str().unwrap();
    let revoke = app.with_token(Method::DELETE, &format!("/api/v1/api-keys/{id}"), &ann.access).send().await.unwrap();
    assert_eq!(revoke.status(), 204);
    let status: String = sqlx::query_scalar("SELECT status FROM accounts_session WHERE id = $1")
        .bind(session)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "revoked");
}

#[sqlx::test]
async fn the_riskiest_device_events_come_first_through_the_seeds_risk_index(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    sqlx::query(
        "INSERT INTO audit_log_deviceauditlog (user_id, action, risk_score, risk_level, created_at)
         SELECT u.id, 'seen', (i * 37) % 101, 'low', now() - make_interval(secs => i)
           FROM generate_series(1, 30000) i, auth_user u WHERE u.username = 'root'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE audit_log_deviceauditlog").execute(&pool).await.unwrap();
    let plan = gatehouse::audit_log::repo::review::explain_device_risk_list(&pool, 95).await.unwrap().join("\n");
    assert!(plan.contains("risk_score_created_at_idx") || plan.contains("idx_deviceaudit_risk_created"), "{plan}");

    let page = json(
        app.with_token(Method::GET, "/api/v1/admin/audit/device?order=risk&min_risk_score=95&limit=50", &root.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let scores: Vec<i64> =
        page["items"].as_array().unwrap().iter().map(|e| e["risk_score"].as_i64().unwrap()).collect();
    assert_eq!(scores.len(), 50);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(scores[0], 100);
    let wrong =
        app.with_token(Method::GET, "/api/v1/admin/audit/session?order=risk", &root.access).send().await.unwrap();
    assert_eq!(wrong.status(), 422);
}
