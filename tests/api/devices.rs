//! Devices: identity at login, the new-device alert, risk from trusted-proxy geo, and the
//! device API scoped to its owner.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, assert_error, json, test_config, tokens};

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

async fn login_from(app: &TestApp, email: &str, fingerprint: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("User-Agent", CHROME)
        .header("X-Device-Fingerprint", fingerprint)
        .json(&json!({"email": email, "password": PASSWORD}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    json(r).await
}

async fn register(app: &TestApp, name: &str) {
    assert_eq!(app.register(&format!("{name}@example.com"), name, PASSWORD).await.status(), 201);
}

async fn list(app: &TestApp, access: &str) -> Value {
    json(app.with_token(Method::GET, "/api/v1/devices", access).send().await.unwrap()).await
}

fn alerts(mails: &[crate::smtp::CapturedMail], to: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == to))
        .filter(|m| m.parsed().subject() == Some("A new device signed in to your account"))
        .count()
}

#[sqlx::test]
async fn devices_are_per_user_and_a_new_one_is_announced_once(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    register(&app, "ann").await;
    register(&app, "bob").await;
    let ann = tokens(login_from(&app, "ann@example.com", "shared-browser", &[]).await);
    let bob = tokens(login_from(&app, "bob@example.com", "shared-browser", &[]).await);
    login_from(&app, "ann@example.com", "shared-browser", &[]).await;

    let ann_devices = list(&app, &ann.access).await;
    let bob_devices = list(&app, &bob.access).await;
    assert_eq!(ann_devices.as_array().unwrap().len(), 1, "{ann_devices}");
    assert_eq!(bob_devices.as_array().unwrap().len(), 1, "{bob_devices}");
    let (a, b) = (&ann_devices[0], &bob_devices[0]);
    assert_ne!(a["id"], b["id"], "one fingerprint, two users: two devices");
    assert_eq!(
        (a["device_type"].as_str(), a["os"].as_str(), a["browser"].as_str()),
        (Some("desktop"), Some("Windows 10"), Some("Chrome"))
    );
    assert_eq!(a["is_verified"], true);

    // The first login from a device mails one alert; the next from it none.
    let mails = app.deliver_mail().await;
    assert_eq!(alerts(&mails, "ann@example.com"), 1);
    assert_eq!(alerts(&mails, "bob@example.com"), 1);
    login_from(&app, "ann@example.com", "ann-phone", &[]).await;
    assert_eq!(alerts(&app.deliver_mail().await, "ann@example.com"), 2, "a second device, a second alert");

    // Sessions name their device.
    let sessions = json(app.with_token(Method::GET, "/api/v1/sessions", &ann.access).send().await.unwrap()).await;
    assert!(sessions.as_array().unwrap().iter().all(|s| s["device_id"].is_string()), "{sessions}");
    let id = a["id"].as_str().unwrap();
    let renamed = app
        .with_token(Method::PATCH, &format!("/api/v1/devices/{id}"), &ann.access)
        .json(&json!({"device_name": "Work laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(renamed).await["device_name"], "Work laptop");
    let sessions = json(app.with_token(Method::GET, "/api/v1/sessions", &ann.access).send().await.unwrap()).await;
    assert!(sessions.as_array().unwrap().iter().any(|s| s["device_name"] == "Work laptop"), "{sessions}");

    // Bob cannot see, trust, rename, mark or delete Ann's device.
    let bob_call = |method: Method, path: String| app.with_token(method, &path, &bob.access).send();
    for (method, path) in [
        (Method::GET, format!("/api/v1/devices/{id}")),
        (Method::POST, format!("/api/v1/devices/{id}/trust")),
        (Method::DELETE, format!("/api/v1/devices/{id}/trust")),
        (Method::POST, format!("/api/v1/devices/{id}/compromised")),
        (Method::DELETE, format!("/api/v1/devices/{id}")),
    ] {
        assert_error(bob_call(method.clone(), path.clone()).await.unwrap(), 404, "NOT_FOUND").await;
    }
    assert_eq!(list(&app, &ann.access).await.as_array().unwrap().len(), 2, "still there");

    // Deleting her device revokes its sessions.
    let r = app.with_token(Method::DELETE, &format!("/api/v1/devices/{id}"), &ann.access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        app.with_token(Method::GET, "/api/v1/users/me", &ann.access).send().await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log_deviceauditlog WHERE action IN ('renamed', 'deleted') ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(audited, ["renamed", "deleted"]);
}

#[sqlx::test]
async fn impossible_travel_from_a_trusted_proxy_is_high_risk_and_untrusted_geo_is_ignored(pool: PgPool) {
    let paris = [("X-Geo-Country", "FR"), ("X-Geo-City", "Paris"), ("X-Geo-Lat", "48.8566"), ("X-Geo-Lon", "2.3522")];
    let sydney =
        [("X-Geo-Country", "AU"), ("X-Geo-City", "Sydney"), ("X-Geo-Lat", "-33.8688"), ("X-Geo-Lon", "151.2093")];

    // Not behind a trusted proxy: the geo headers are the client's word and count for nothing.
    let app = TestApp::spawn(pool.clone()).await;
    register(&app, "ann").await;
    login_from(&app, "ann@example.com", "laptop", &paris).await;
    login_from(&app, "ann@example.com", "laptop", &sydney).await;
    let (level, reasons): (String, Option<Vec<String>>) = sqlx::query_as(
        "SELECT risk_level, anomaly_reasons FROM audit_log_sessionauditlog WHERE action = 'login' ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((level.as_str(), reasons), ("low", None));

    // Behind one: Paris, then Sydney minutes later, is not travel.
    let mut config = test_config(&pool);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    register(&app, "bob").await;
    let with = |geo: [(&'static str, &'static str); 4], ip: &'static str| {
        let mut h = geo.to_vec();
        h.push(("X-Forwarded-For", ip));
        h
    };
    login_from(&app, "bob@example.com", "laptop", &with(paris, "81.0.0.1")).await;
    let body = login_from(&app, "bob@example.com", "laptop", &with(sydney, "1.120.0.1")).await;
    let (level, reasons, anomalous): (String, Vec<String>, bool) = sqlx::query_as(
        "SELECT risk_level, anomaly_reasons, is_anomalous FROM audit_log_sessionauditlog
          WHERE action = 'login' ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(level == "high" || level == "critical", "{level}");
    assert!(anomalous);
    assert!(reasons.contains(&"impossible_travel".to_owned()), "{reasons:?}");
    assert!(reasons.contains(&"new_country".to_owned()), "{reasons:?}");
    let session: uuid::Uuid = body["session_id"].as_str().unwrap().parse().unwrap();
    let (suspicious, recheck): (bool, bool) =
        sqlx::query_as("SELECT is_suspicious, requires_mfa_recheck FROM accounts_session WHERE id = $1")
            .bind(session)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(suspicious && recheck);
    let t = tokens(body);
    let devices = json(app.with_token(Method::GET, "/api/v1/devices", &t.access).send().await.unwrap()).await;
    assert!(devices[0]["risk_score"].as_i64().unwrap() >= 50, "{devices}");
    assert_eq!(devices[0]["current"], true);
}
