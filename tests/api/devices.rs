//! Devices: identity at login, the new-device alert, risk from trusted-proxy geo, and the
//! device API scoped to its owner.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{PASSWORD, TestApp, admin, assert_error, json, login_from, test_config, tokens};

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

/// Logins racing from one new device: each opens its session on the same device row
/// (the upsert that finds a row another login just inserted reads it again), and only the
/// statement that created it sends the alert.
#[sqlx::test]
async fn simultaneous_first_logins_from_one_device_share_it_and_alert_once(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool.clone()).await);
    register(&app, "cat").await;
    let logins: Vec<_> = (0..6)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { login_from(&app, "cat@example.com", "cat-laptop", &[]).await })
        })
        .collect();
    for login in logins {
        assert_eq!(login.await.unwrap()["status"], "authenticated");
    }
    let devices: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts_device d JOIN auth_user u ON u.id = d.user_id WHERE u.username = 'cat'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(devices, 1);
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT s.device_id) FROM accounts_session s JOIN auth_user u ON u.id = s.user_id
          WHERE u.username = 'cat' AND s.device_id IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(linked, 1, "every session names the one device");
    assert_eq!(alerts(&app.deliver_mail().await, "cat@example.com"), 1);
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
    // An id that is nobody's is as unknown (found by schemathesis as a 500 on DELETE).
    let nobody = uuid::Uuid::now_v7();
    for (method, path) in [
        (Method::GET, format!("/api/v1/devices/{nobody}")),
        (Method::PATCH, format!("/api/v1/devices/{nobody}")),
        (Method::POST, format!("/api/v1/devices/{nobody}/trust")),
        (Method::DELETE, format!("/api/v1/devices/{nobody}/trust")),
        (Method::POST, format!("/api/v1/devices/{nobody}/compromised")),
        (Method::DELETE, format!("/api/v1/devices/{nobody}")),
    ] {
        let mut request = app.with_token(method.clone(), &path, &ann.access);
        if method == Method::PATCH {
            request = request.json(&json!({"device_name": "x"}));
        }
        assert_error(request.send().await.unwrap(), 404, "NOT_FOUND").await;
    }

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

#[sqlx::test]
async fn staff_find_devices_near_a_point_through_the_geo_index(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    let ann = app.signed_in("ann").await;
    // 20,000 devices spread over the globe, a handful of them in Paris.
    sqlx::query(
        "INSERT INTO accounts_device (user_id, fingerprint_hash, is_verified, latitude, longitude, last_used_at)
         SELECT u.id, 'fp' || i, true, CASE WHEN i <= 5 THEN 48.85 + i / 1000.0 ELSE -80 + (i * 7919 % 16000) / 100.0 END,
                CASE WHEN i <= 5 THEN 2.35 ELSE -170 + (i * 104729 % 34000) / 100.0 END, now()
           FROM generate_series(1, 20000) i, auth_user u WHERE u.username = 'ann'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE accounts_device").execute(&pool).await.unwrap();
    let plan = gatehouse::accounts::repo::devices::explain_devices_near(&pool, 48.8566, 2.3522, 10.0)
        .await
        .unwrap()
        .join("\n");
    assert!(plan.contains("idx_device_earth"), "{plan}");

    let near = |t: &crate::helpers::Tokens, query: &str| {
        app.with_token(Method::GET, &format!("/api/v1/admin/devices?{query}"), &t.access).send()
    };
    let found = json(near(&root, "near=48.8566,2.3522&km=10").await.unwrap()).await;
    let found = found.as_array().unwrap();
    assert!(found.len() >= 5, "{found:?}");
    assert!(found.iter().all(|d| d["distance_km"].as_f64().unwrap() <= 10.0));
    let distances: Vec<f64> = found.iter().map(|d| d["distance_km"].as_f64().unwrap()).collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "nearest first: {distances:?}");
    assert_error(near(&ann, "near=48.8566,2.3522&km=10").await.unwrap(), 403, "FORBIDDEN").await;
    for bad in ["near=91,0&km=10", "near=paris&km=10", "near=48.8,2.3&km=0", "km=10", "near=48.8,2.3&km=10&limit=0"] {
        assert_error(near(&root, bad).await.unwrap(), 422, "VALIDATION_FAILED").await;
    }
}

#[sqlx::test]
async fn admins_filter_audit_rows_by_anomaly_through_its_index(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let root = admin(&app, &pool).await;
    sqlx::query(
        "INSERT INTO audit_log_sessionauditlog (user_id, action, risk_level, is_anomalous, anomaly_reasons, created_at)
         SELECT u.id, 'login', 'low', i % 2000 = 0, CASE WHEN i % 2000 = 0 THEN ARRAY['new_country'] END,
                now() - make_interval(secs => i)
           FROM generate_series(1, 20000) i, auth_user u WHERE u.username = 'root'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE audit_log_sessionauditlog").execute(&pool).await.unwrap();
    let (from, to) = (chrono::Utc::now() - chrono::Duration::days(1), chrono::Utc::now() + chrono::Duration::hours(1));
    let kind = gatehouse::audit_log::models::events::AuditKind::Session;
    let plan = gatehouse::audit_log::repo::review::explain_list(&pool, kind, from, to, Some("new_country"), false)
        .await
        .unwrap()
        .join("\n");
    assert!(plan.contains("anomaly_reasons_idx") || plan.contains("idx_sessionaudit_anomaly"), "{plan}");

    let page = json(
        app.with_token(Method::GET, "/api/v1/admin/audit/session?anomaly=new_country&limit=100", &root.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["pagination"]["total"], 10, "{}", page["pagination"]);
    assert!(page["items"].as_array().unwrap().iter().all(|e| e["anomaly_reasons"] == json!(["new_country"])));
    let bad = app.with_token(Method::GET, "/api/v1/admin/audit/session?anomaly=NEW%20COUNTRY", &root.access);
    assert_error(bad.send().await.unwrap(), 422, "VALIDATION_FAILED").await;
}

#[sqlx::test]
async fn old_client_addresses_are_cut_to_their_network_and_expired_trust_ends(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    register(&app, "ann").await;
    login_from(&app, "ann@example.com", "laptop", &[]).await;
    // Make one login of 100 days ago, from IPv4 and IPv6 addresses.
    let ann: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM auth_user WHERE username = 'ann'").fetch_one(&pool).await.unwrap();
    // That month's partition, as a deployment running since then has it.
    let then = chrono::Utc::now().date_naive() - chrono::Days::new(100);
    gatehouse::audit_log::repo::partitions::create_partition(&pool, "audit_log_sessionauditlog", then).await.unwrap();
    for (ip, days) in [("203.0.113.77", 100), ("2001:db8:1:2:3:4:5:6", 100), ("198.51.100.9", 10)] {
        sqlx::query(
            "INSERT INTO audit_log_sessionauditlog (user_id, action, ip_address, created_at)
             VALUES ($1, 'login', $2::inet, now() - make_interval(days => $3))",
        )
        .bind(ann)
        .bind(ip)
        .bind(days)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE accounts_session SET created_at = now() - interval '100 days', ip_address = '203.0.113.77'")
        .execute(&pool)
        .await
        .unwrap();
    // And a device whose trust ran out.
    sqlx::query(
        "UPDATE accounts_device SET is_trusted = true, can_skip_mfa = true,
                trust_expires_at = now() - interval '1 minute', mfa_skip_until = now() - interval '1 minute'",
    )
    .execute(&pool)
    .await
    .unwrap();

    gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let ips: Vec<String> = sqlx::query_scalar(
        "SELECT ip_address::text FROM audit_log_sessionauditlog WHERE ip_address IS NOT NULL ORDER BY ip_address",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(ips.contains(&"203.0.113.0/24".to_owned()), "{ips:?}");
    assert!(ips.contains(&"2001:db8:1::/48".to_owned()), "{ips:?}");
    assert!(
        ips.contains(&"198.51.100.9/32".to_owned()) || ips.contains(&"198.51.100.9".to_owned()),
        "recent ones stay: {ips:?}"
    );
    let session_ip: String =
        sqlx::query_scalar("SELECT ip_address::text FROM accounts_session").fetch_one(&pool).await.unwrap();
    assert_eq!(session_ip, "203.0.113.0/24");
    let (trusted, skip): (bool, bool) =
        sqlx::query_as("SELECT is_trusted, can_skip_mfa FROM accounts_device").fetch_one(&pool).await.unwrap();
    assert!(!trusted && !skip);
    let expired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log_deviceauditlog WHERE action = 'trust_expired'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(expired, 1);

    // Once a day: a second run the same day changes nothing and records no second cut.
    gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log_jobrun WHERE kind = 'ip_retention'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 1);
}

#[sqlx::test]
async fn a_session_that_ends_closes_its_device_link_and_the_summary_counts_devices(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    register(&app, "ann").await;
    let laptop = tokens(login_from(&app, "ann@example.com", "laptop", &[]).await);
    login_from(&app, "ann@example.com", "phone", &[]).await;
    let r = app.with_token(Method::POST, "/api/v1/auth/logout", &laptop.access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let links: Vec<(String, Option<i32>)> = sqlx::query_as(
        "SELECT link_action, link_duration_seconds FROM audit_log_sessiondevicelinkauditlog ORDER BY created_at, link_action",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(links.len(), 3, "{links:?}");
    assert_eq!(links.iter().filter(|(a, _)| a == "linked").count(), 2);
    let ended = links.iter().find(|(a, _)| a == "revoked").unwrap();
    assert!(ended.1.is_some_and(|s| s >= 0), "{ended:?}");

    let today = chrono::Utc::now().date_naive();
    gatehouse::audit_log::summary::run_day(&pool, today, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let (total, unique): (i32, i32) = sqlx::query_as(
        "SELECT s.total_devices, s.unique_devices FROM audit_log_auditlogsummary s
           JOIN auth_user u ON u.id = s.user_id WHERE u.username = 'ann' AND s.date = $1",
    )
    .bind(today)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((total, unique), (2, 2));
}
