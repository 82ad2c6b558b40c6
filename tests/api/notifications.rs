//! Delivery policy (quiet hours, blocklist, caps, delay, consent) with its log, the
//! settings API, SMS through a loopback webhook, and the delivery history.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use chrono::Utc;
use gatehouse::core::types::Phone;
use gatehouse::notifications::{
    self, Message, NotificationType,
    delivery::{self, DeliveryConfig},
    message::PasswordChange,
    sms::{LogSms, WebhookSms},
};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{PASSWORD, PASSWORD_2, TestApp, Tokens, assert_error, email, json, phone};

const FAST: DeliveryConfig = DeliveryConfig { batch: 50, claim: Duration::from_secs(60), backoff_base: Duration::ZERO };

async fn user_id(pool: &PgPool, username: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM auth_user WHERE username = $1").bind(username).fetch_one(pool).await.unwrap()
}

/// (decision, reason) of the email and SMS log rows for `kind`, oldest first.
async fn decisions(pool: &PgPool, kind: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT decision, reason FROM notifications_notificationlog WHERE notification_type = $1 AND channel IN ('email', 'sms') ORDER BY created_at, id")
        .bind(kind)
        .fetch_all(pool)
        .await
        .unwrap()
}

pub(crate) async fn change_password(app: &TestApp, t: &Tokens, from: &str, to: &str) {
    let r = app
        .with_token(Method::POST, "/api/v1/auth/password/change", &t.access)
        .json(&json!({"current_password": from, "new_password": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

async fn request_reset(app: &TestApp) {
    assert_eq!(app.post_json("/api/v1/auth/password/reset", &json!({"email": "ann@example.com"})).await.status(), 202);
    app.background_settled().await;
}

/// Marketing, the one kind of message a user may hold back, after ann asked for it.
async fn opt_into_news(app: &TestApp, t: &Tokens) {
    for (path, body) in [
        ("/api/v1/notifications/consents/marketing", json!({"is_consented": true})),
        ("/api/v1/notifications/preferences", json!({"email_marketing": true})),
    ] {
        let r = app.with_token(Method::PUT, path, &t.access).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Queues a marketing email to ann; its outbox id, or None when the policy held it back.
async fn send_news(pool: &PgPool) -> Option<Uuid> {
    let ann = user_id(pool, "ann").await;
    let mut tx = pool.begin().await.unwrap();
    let id = notifications::enqueue_email(
        &mut tx,
        &crate::helpers::keys(),
        ann,
        &email("ann@example.com"),
        Message::Marketing { username: "ann".into(), body: "news".into() },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

#[sqlx::test]
async fn quiet_hours_defer_optional_messages_but_not_security_messages(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    opt_into_news(&app, &t).await;
    let patch = json!({"profile": {"timezone": "Europe/Paris"}});
    app.with_token(Method::PATCH, "/api/v1/users/me", &t.access).json(&patch).send().await.unwrap();
    // Two windows a day cover every minute of the week: noon to midnight, midnight to noon.
    for day in 0..7 {
        for (start, end) in [("00:00", "12:00"), ("12:00", "00:00")] {
            let body = json!({"day_of_week": day, "start_time": start, "end_time": end, "allow_critical_only": true});
            let r = app
                .with_token(Method::POST, "/api/v1/notifications/quiet-hours", &t.access)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    }
    send_news(&pool).await;
    assert_eq!(decisions(&pool, "marketing").await, [("deferred".to_owned(), Some("quiet_hours".to_owned()))]);
    let due: chrono::DateTime<Utc> = sqlx::query_scalar(
        "SELECT next_attempt_at FROM notifications_emailnotification WHERE email_type = 'marketing'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(due > Utc::now(), "deferred to the end of the window");
    let paris = due.with_timezone(&"Europe/Paris".parse::<chrono_tz::Tz>().unwrap());
    assert!(paris.format("%H:%M").to_string() == "00:00" || paris.format("%H:%M").to_string() == "12:00", "{paris}");

    // Security messages go now, quiet hours or not: a reset link, and the notice that the
    // password changed, which a takeover must not be able to hold back.
    request_reset(&app).await;
    assert_eq!(decisions(&pool, "password_reset").await, [("queued".to_owned(), Some("security".to_owned()))]);
    change_password(&app, &t, PASSWORD, PASSWORD_2).await;
    assert_eq!(decisions(&pool, "password_changed").await, [("queued".to_owned(), Some("security".to_owned()))]);
    let mails = app.deliver_mail().await;
    assert!(mails.iter().any(|m| m.parsed().subject() == Some("Reset your password")));
    assert!(mails.iter().any(|m| m.parsed().subject() == Some("Your password was changed")));
    assert!(!mails.iter().any(|m| m.parsed().subject() == Some("News from Gatehouse")), "still deferred");
}

#[sqlx::test]
async fn blocklist_suppresses_optional_messages_and_refuses_to_block_security(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    opt_into_news(&app, &t).await;
    let block =
        |body: Value| app.with_token(Method::POST, "/api/v1/notifications/blocklist", &t.access).json(&body).send();
    let created = block(json!({"block_type": "notification_type", "blocked_value": "marketing", "reason": "noise"}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let entry = json(created).await;
    for security in ["password_reset", "password_changed", "mfa_disabled"] {
        assert_error(
            block(json!({"block_type": "notification_type", "blocked_value": security})).await.unwrap(),
            422,
            "VALIDATION_FAILED",
        )
        .await;
    }
    assert_error(
        block(json!({"block_type": "sender", "blocked_value": "security"})).await.unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_error(
        block(json!({"block_type": "channel", "blocked_value": "pigeon"})).await.unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_error(
        block(json!({"block_type": "colour", "blocked_value": "red"})).await.unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;

    send_news(&pool).await;
    assert_eq!(decisions(&pool, "marketing").await, [("suppressed".to_owned(), Some("blocked".to_owned()))]);
    let queued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications_emailnotification WHERE email_type = 'marketing'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(queued, 0);
    request_reset(&app).await;
    assert_eq!(decisions(&pool, "password_reset").await[0].0, "queued");

    // Unblocking lets the next one through.
    let id = entry["id"].as_str().unwrap();
    let gone = app
        .with_token(Method::DELETE, &format!("/api/v1/notifications/blocklist/{id}"), &t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let list =
        json(app.with_token(Method::GET, "/api/v1/notifications/blocklist", &t.access).send().await.unwrap()).await;
    assert_eq!(list, json!([]));
    send_news(&pool).await;
    assert_eq!(decisions(&pool, "marketing").await.last().unwrap().0, "queued");
}

#[sqlx::test]
async fn the_daily_cap_and_the_delay_apply_per_type(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    opt_into_news(&app, &t).await;
    let set = |body: Value| {
        app.with_token(Method::PUT, "/api/v1/notifications/preferences/types/marketing", &t.access).json(&body).send()
    };
    let r = set(json!({"max_per_day": 1, "delay_minutes": 10})).await.unwrap();
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!((body["max_per_day"].as_i64(), body["delay_minutes"].as_i64()), (Some(1), Some(10)));
    assert_error(set(json!({"max_per_day": 20000})).await.unwrap(), 422, "VALIDATION_FAILED").await;
    assert_error(set(json!({"delay_minutes": -1})).await.unwrap(), 422, "VALIDATION_FAILED").await;
    let unknown = app
        .with_token(Method::PUT, "/api/v1/notifications/preferences/types/nope", &t.access)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(unknown, 400, "MALFORMED_REQUEST").await;

    send_news(&pool).await;
    send_news(&pool).await;
    assert_eq!(
        decisions(&pool, "marketing").await,
        [("deferred".to_owned(), Some("delayed".to_owned())), ("suppressed".to_owned(), Some("daily_cap".to_owned()))]
    );
    let due: chrono::DateTime<Utc> = sqlx::query_scalar(
        "SELECT next_attempt_at FROM notifications_emailnotification WHERE email_type = 'marketing'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let minutes = (due - Utc::now()).num_seconds();
    assert!((500..=600).contains(&minutes), "{minutes}");

    // A security message of the same user goes anyway.
    request_reset(&app).await;
    assert_eq!(decisions(&pool, "password_reset").await, [("queued".to_owned(), Some("security".to_owned()))]);

    let types =
        json(app.with_token(Method::GET, "/api/v1/notifications/preferences/types", &t.access).send().await.unwrap())
            .await;
    let all = types.as_array().unwrap();
    assert_eq!(all.len(), NotificationType::ALL.len());
    assert!(all.iter().any(|p| p["notification_type"] == "mfa_code" && p["security"] == true));
    assert!(all.iter().any(|p| p["notification_type"] == "password_changed" && p["security"] == true));
    assert!(all.iter().any(|p| p["notification_type"] == "marketing" && p["security"] == false));
}

#[sqlx::test]
async fn marketing_needs_consent_and_consent_changes_are_audited(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    assert!(send_news(&pool).await.is_none());
    assert_eq!(decisions(&pool, "marketing").await, [("suppressed".to_owned(), Some("no_consent".to_owned()))]);

    let consent = app
        .with_token(Method::PUT, "/api/v1/notifications/consents/marketing", &t.access)
        .json(&json!({"is_consented": true, "source": "settings_page"}))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200);
    let consent = json(consent).await;
    assert_eq!((consent["is_consented"].as_bool(), consent["source"].as_str()), (Some(true), Some("settings_page")));
    assert_eq!(consent["ip_address"], "127.0.0.1/32");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log_sessionauditlog WHERE action = 'consent_changed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);

    // Consent alone is not enough while the global marketing switch is off.
    assert!(send_news(&pool).await.is_none());
    assert_eq!(decisions(&pool, "marketing").await.last().unwrap().1.as_deref(), Some("preference_off"));
    let prefs = app
        .with_token(Method::PUT, "/api/v1/notifications/preferences", &t.access)
        .json(&json!({"email_marketing": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(prefs).await["email_marketing"], true);
    assert!(send_news(&pool).await.is_some());

    let withdrawn = app
        .with_token(Method::PUT, "/api/v1/notifications/consents/marketing", &t.access)
        .json(&json!({"is_consented": false}))
        .send()
        .await
        .unwrap();
    assert!(json(withdrawn).await["withdrawn_at"].is_string());
    assert!(send_news(&pool).await.is_none());
    // Consent never holds back a security message.
    request_reset(&app).await;
    assert_eq!(decisions(&pool, "password_reset").await[0].0, "queued");
    let bad = app
        .with_token(Method::PUT, "/api/v1/notifications/consents/spam", &t.access)
        .json(&json!({"is_consented": true}))
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "MALFORMED_REQUEST").await;
    let list =
        json(app.with_token(Method::GET, "/api/v1/notifications/consents", &t.access).send().await.unwrap()).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[sqlx::test]
async fn settings_validation(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let t = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    let prefs =
        |body: Value| app.with_token(Method::PUT, "/api/v1/notifications/preferences", &t.access).json(&body).send();
    assert_error(prefs(json!({"quiet_start": "25:00"})).await.unwrap(), 422, "VALIDATION_FAILED").await;
    assert_error(prefs(json!({"digest_frequency": "sometimes"})).await.unwrap(), 422, "VALIDATION_FAILED").await;
    assert_error(prefs(json!({"unknown": true})).await.unwrap(), 422, "VALIDATION_FAILED").await;
    let ok = json(prefs(json!({"quiet_start": "22:30", "quiet_hours_enabled": true})).await.unwrap()).await;
    assert_eq!((ok["quiet_start"].as_str(), ok["quiet_hours_enabled"].as_bool()), (Some("22:30"), Some(true)));
    let got =
        json(app.with_token(Method::GET, "/api/v1/notifications/preferences", &t.access).send().await.unwrap()).await;
    assert_eq!(got, ok);

    let quiet =
        |body: Value| app.with_token(Method::POST, "/api/v1/notifications/quiet-hours", &t.access).json(&body).send();
    for bad in [
        json!({"day_of_week": 7, "start_time": "22:00", "end_time": "07:00"}),
        json!({"day_of_week": 1, "start_time": "22", "end_time": "07:00"}),
        json!({"day_of_week": 1, "start_time": "07:00", "end_time": "07:00"}),
    ] {
        assert_error(quiet(bad).await.unwrap(), 422, "VALIDATION_FAILED").await;
    }
    let window =
        json(quiet(json!({"day_of_week": 1, "start_time": "22:00", "end_time": "07:00"})).await.unwrap()).await;
    assert_eq!((window["start_time"].as_str(), window["end_time"].as_str()), (Some("22:00"), Some("07:00")));
    assert_error(
        quiet(json!({"day_of_week": 1, "start_time": "22:00", "end_time": "06:00"})).await.unwrap(),
        409,
        "QUIET_HOURS_EXIST",
    )
    .await;
    let id = window["id"].as_str().unwrap();
    let others = app
        .with_token(Method::DELETE, &format!("/api/v1/notifications/quiet-hours/{id}"), &bob.access)
        .send()
        .await
        .unwrap();
    assert_error(others, 404, "NOT_FOUND").await;
    let mine = app
        .with_token(Method::DELETE, &format!("/api/v1/notifications/quiet-hours/{id}"), &t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 204);
    assert_error(app.get("/api/v1/notifications/preferences").await, 401, "UNAUTHENTICATED").await;
}

#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    fail_first: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if r.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return (StatusCode::BAD_GATEWAY, Json(json!({"error": "upstream"})));
    }
    r.bodies.lock().unwrap().push(body);
    (StatusCode::OK, Json(json!({"id": "msg-1", "cost": "0.0075"})))
}

async fn webhook(fail_first: usize) -> (String, Receiver) {
    let receiver = Receiver::default();
    receiver.fail_first.store(fail_first, Ordering::SeqCst);
    let app = Router::new().route("/sms", post(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (url, receiver)
}

#[sqlx::test]
async fn an_sms_reaches_the_webhook_after_a_retry(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    let ann = user_id(&pool, "ann").await;
    let mut tx = pool.begin().await.unwrap();
    let id = notifications::enqueue_sms(
        &mut tx,
        &crate::helpers::keys(),
        ann,
        &phone("+15551234567"),
        Message::MfaCode { code: "482913".into(), minutes: 5 },
    )
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();

    let (url, receiver) = webhook(1).await;
    let provider = WebhookSms::new(&url).unwrap();
    assert_eq!(delivery::deliver_sms_once(&pool, &crate::helpers::keys(), &provider, &FAST).await.unwrap().retried, 1);
    assert_eq!(delivery::deliver_sms_once(&pool, &crate::helpers::keys(), &provider, &FAST).await.unwrap().sent, 1);
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["to"], "+15551234567");
    assert!(bodies[0]["message"].as_str().unwrap().contains("482913"));
    let (status, retries, provider_name, cost) =
        notifications::repo::outbox::sms_status(&pool, id).await.unwrap().unwrap();
    assert_eq!((status.as_str(), retries, provider_name.as_deref()), ("sent", 1, Some("webhook")));
    assert_eq!(cost.map(|c| c.to_string()).as_deref(), Some("0.0075"));
    let stored: String =
        sqlx::query_scalar("SELECT message FROM notifications_smsnotification").fetch_one(&pool).await.unwrap();
    assert!(!stored.contains("482913"), "the code is gone once delivered");

    // The log provider records the message as sent, at no cost.
    let mut tx = pool.begin().await.unwrap();
    notifications::enqueue_sms(
        &mut tx,
        &crate::helpers::keys(),
        ann,
        &phone("+15551234567"),
        Message::PasswordChanged { username: "ann".into(), how: PasswordChange::Changed, grants: Default::default() },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(delivery::deliver_sms_once(&pool, &crate::helpers::keys(), &LogSms, &FAST).await.unwrap().sent, 1);
}

#[sqlx::test]
async fn a_message_given_up_is_audited_and_history_lists_deliveries(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let ann = user_id(&pool, "ann").await;
    let mut tx = pool.begin().await.unwrap();
    notifications::enqueue_sms(
        &mut tx,
        &crate::helpers::keys(),
        ann,
        &phone("+15551234567"),
        Message::MfaCode { code: "111222".into(), minutes: 5 },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let provider = WebhookSms::new("http://127.0.0.1:1/sms").unwrap();
    for _ in 0..4 {
        delivery::deliver_sms_once(&pool, &crate::helpers::keys(), &provider, &FAST).await.unwrap();
    }
    let (action, error): (String, Option<String>) = sqlx::query_as(
        "SELECT action, error_message FROM audit_log_sessionauditlog WHERE action = 'notification_failed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(action, "notification_failed");
    let error = error.unwrap();
    assert!(error.contains("webhook http://127.0.0.1:1 unreachable"), "{error}");
    assert!(!error.contains("/sms"), "only the origin of the URL: {error}");
    assert_eq!(decisions(&pool, "mfa_code").await.last().unwrap().0, "failed");

    let page =
        json(app.with_token(Method::GET, "/api/v1/notifications?limit=1", &t.access).send().await.unwrap()).await;
    // The verification link, the new-device notice of the sign-in, and the SMS.
    assert_eq!(page["pagination"]["total"], 3, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["channel"], "sms", "newest first");
    assert_eq!(page["items"][0]["status"], "failed");
    let bad = app.with_token(Method::GET, "/api/v1/notifications?limit=0", &t.access).send().await.unwrap();
    assert_error(bad, 422, "VALIDATION_FAILED").await;
    let bad = app.with_token(Method::GET, "/api/v1/notifications?limit=abc", &t.access).send().await.unwrap();
    assert_error(bad, 422, "VALIDATION_FAILED").await;
}

#[sqlx::test]
async fn an_mfa_code_is_delivered_and_recorded_by_hash_only(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    let ann = user_id(&pool, "ann").await;
    app.deliver_mail().await;
    let mut tx = pool.begin().await.unwrap();
    let record = notifications::enqueue_mfa_code(
        &mut tx,
        &crate::helpers::keys(),
        &notifications::MfaCode {
            user_id: ann,
            to: notifications::Recipient::Email(&email("ann@example.com")),
            code: &"904117".into(),
            code_hash: "hmac-of-the-code",
            mfa_type: "login",
            expires_at: Utc::now() + chrono::Duration::minutes(5),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mails = app.deliver_mail().await;
    let mail = mails.iter().find(|m| m.parsed().subject() == Some("Your sign-in code")).expect("code mail");
    let text = mail.parsed().body_text(0).unwrap().into_owned();
    let six_digit: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|w| w.len() == 6).collect();
    assert_eq!(six_digit, ["904117"], "the code is the only 6-digit number: {text}");
    let (sent, hash, method): (bool, String, String) = sqlx::query_as(
        "SELECT is_sent, otp_code_hash, delivery_method FROM notifications_mfanotification WHERE id = $1",
    )
    .bind(record)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((sent, hash.as_str(), method.as_str()), (true, "hmac-of-the-code", "email"));

    // A number that is not E.164 cannot be addressed at all: `Phone` refuses it.
    assert!(Phone::parse("555-1234").is_err());
}

#[sqlx::test]
async fn queueing_wakes_the_worker_without_waiting_for_a_poll(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.signed_in("ann").await;
    let ann = user_id(&pool, "ann").await;
    app.deliver_mail().await;
    let before = app.smtp.mails().len();
    let wakeup = Arc::new(tokio::sync::Notify::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mailer =
        gatehouse::notifications::mailer::Mailer::new(Some(&app.smtp.url()), "Gatehouse <no-reply@gatehouse.test>")
            .unwrap();
    // A poll period far longer than the test: only the wake-up can deliver in time.
    let worker = tokio::spawn(delivery::run(
        pool.clone(),
        crate::helpers::keys(),
        mailer,
        gatehouse::notifications::sms::AnySms::Log(LogSms),
        gatehouse::notifications::push::Push::Log,
        FAST,
        wakeup.clone(),
        stopped,
        Duration::from_secs(3600),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tx = pool.begin().await.unwrap();
    notifications::enqueue_email(
        &mut tx,
        &crate::helpers::keys(),
        ann,
        &email("ann@example.com"),
        Message::TokenReused { username: "ann".into() },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    wakeup.notify_one();
    assert_eq!(app.smtp.wait_for(before + 1, 10).await.len(), before + 1);
    stop.send(true).unwrap();
    worker.await.unwrap();
}
