//! What the user's notification settings hold back, and what they never do: the global
//! quiet window holds a reminder (not a security notice) until it ends, the outbox sends
//! the more urgent message first, a digest user gets one email for many reminders, the
//! in-app inbox, and push through a webhook only while push is on.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, extract::State, routing::post};
use chrono::{Duration, Timelike, Utc};
use gatehouse::notifications::{self, Message, delivery, push::Push};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{PASSWORD, PASSWORD_2, TestApp, Tokens, assert_error, email, json as body};

async fn ann_id(pool: &PgPool) -> Uuid {
    sqlx::query_scalar("SELECT id FROM auth_user WHERE username = 'ann'").fetch_one(pool).await.unwrap()
}

/// Queues `message` to ann as the service would.
async fn queue(pool: &PgPool, message: Message) -> Option<Uuid> {
    let ann = ann_id(pool).await;
    let mut tx = pool.begin().await.unwrap();
    let id = notifications::enqueue_email(&mut tx, &crate::helpers::keys(), ann, &email("ann@example.com"), message)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

fn subjects(mails: &[crate::smtp::CapturedMail]) -> Vec<String> {
    mails.iter().filter_map(|m| m.parsed().subject().map(str::to_owned)).collect()
}

#[sqlx::test]
async fn the_global_quiet_window_holds_a_reminder_but_not_a_security_notice(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    // Quiet from two hours ago until two minutes from now, every day (ann's zone is UTC).
    let now = Utc::now();
    let hhmm = |t: chrono::DateTime<Utc>| format!("{:02}:{:02}", t.hour(), t.minute());
    let (start, end) = (now - Duration::hours(2), now + Duration::minutes(2));
    let body = json!({"quiet_hours_enabled": true, "quiet_start": hhmm(start), "quiet_end": hhmm(end)});
    let r = app.with_token(Method::PUT, "/api/v1/notifications/preferences", &t.access).json(&body).send().await;
    assert_eq!(r.unwrap().status(), 200);

    let held = queue(&pool, Message::BackupCodesLow { username: "ann".into(), remaining: 2 }).await.expect("queued");
    let (due, priority): (chrono::DateTime<Utc>, String) =
        sqlx::query_as("SELECT next_attempt_at, priority FROM notifications_emailnotification WHERE id = $1")
            .bind(held)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(hhmm(due), hhmm(end), "held to the window's end");
    assert_eq!((due.second(), priority.as_str()), (0, "high"));
    let log: (String, Option<String>) = sqlx::query_as(
        "SELECT decision, reason FROM notifications_notificationlog WHERE notification_type = 'backup_codes_low'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(log, ("deferred".to_owned(), Some("quiet_hours".to_owned())));

    // A security notice in the same window goes at once; the reminder does not.
    crate::notifications::change_password(&app, &t, PASSWORD, PASSWORD_2).await;
    let sent = subjects(&app.deliver_mail().await);
    assert!(sent.contains(&"Your password was changed".to_owned()), "{sent:?}");
    assert!(!sent.contains(&"You are running out of backup codes".to_owned()), "{sent:?}");

    // The window's end comes (the clock moved to it: the row's due time, not a sleep).
    sqlx::query("UPDATE notifications_emailnotification SET next_attempt_at = now() WHERE id = $1")
        .bind(held)
        .execute(&pool)
        .await
        .unwrap();
    let sent = subjects(&app.deliver_mail().await);
    assert!(sent.contains(&"You are running out of backup codes".to_owned()), "{sent:?}");
}

#[sqlx::test]
async fn the_outbox_sends_the_more_urgent_message_first(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    // A reminder queued first, then a security notice: both due now.
    queue(&pool, Message::BackupCodesLow { username: "ann".into(), remaining: 1 }).await.expect("queued");
    crate::notifications::change_password(&app, &t, PASSWORD, PASSWORD_2).await;
    let sent = subjects(&app.deliver_mail().await);
    let at = |subject: &str| sent.iter().position(|s| s == subject).unwrap_or_else(|| panic!("{subject}: {sent:?}"));
    assert!(at("Your password was changed") < at("You are running out of backup codes"), "{sent:?}");
}

fn reminder(remaining: i64) -> Message {
    Message::BackupCodesLow { username: "ann".into(), remaining }
}

async fn put(app: &TestApp, t: &Tokens, path: &str, body: Value) {
    let r = app.with_token(Method::PUT, path, &t.access).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
}

/// `gatehouse digest`, the binary, on this test's database.
fn gatehouse_digest(pool: &PgPool) -> String {
    let o = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("digest")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_ENV", "development")
        .env("DATABASE_URL", url)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run gatehouse digest");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[sqlx::test]
async fn a_daily_digest_user_gets_one_email_for_three_reminders(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    put(&app, &t, "/api/v1/notifications/preferences", json!({"digest_frequency": "daily"})).await;
    for n in [3, 2, 1] {
        queue(&pool, reminder(n)).await.expect("held, not suppressed");
    }
    // A security notice does not wait for the digest.
    crate::notifications::change_password(&app, &t, PASSWORD, PASSWORD_2).await;
    let sent = subjects(&app.deliver_mail().await);
    assert!(sent.contains(&"Your password was changed".to_owned()), "{sent:?}");
    assert!(!sent.iter().any(|s| s.contains("backup codes")), "held: {sent:?}");

    let out = gatehouse_digest(&pool);
    assert!(out.ends_with("digest: 1 digest email(s) queued\n"), "{out}");
    let mails = app.deliver_mail().await;
    let digests: Vec<_> = mails.iter().filter(|m| m.parsed().subject() == Some("Your Gatehouse digest")).collect();
    assert_eq!(digests.len(), 1);
    let text = digests[0].parsed().body_text(0).unwrap().into_owned();
    assert!(text.contains("3 messages"), "{text}");
    assert_eq!(text.matches("You are running out of backup codes").count(), 3, "{text}");
    assert!(!subjects(&mails).iter().any(|s| s == "You are running out of backup codes"), "only in the digest");
    let (digested, held): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'digested' AND digest_id IS NOT NULL),
                count(*) FILTER (WHERE status = 'held')
           FROM notifications_emailnotification WHERE email_type = 'backup_codes_low'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((digested, held), (3, 0));
    // Within the day, a new reminder waits for tomorrow's digest: no second email now.
    queue(&pool, reminder(0)).await.expect("held");
    assert!(gatehouse_digest(&pool).ends_with("digest: 0 digest email(s) queued\n"));
}

#[sqlx::test]
async fn the_inbox_lists_counts_and_marks_read_only_the_owners_messages(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    queue(&pool, reminder(2)).await;
    queue(&pool, reminder(1)).await;
    let inbox = body(app.with_token(Method::GET, "/api/v1/notifications/inbox", &t.access).send().await.unwrap()).await;
    // The two reminders and the new-device notice of the sign-in; never the verification
    // link (codes and links stay in their one channel).
    let items = inbox["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["notification_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["backup_codes_low", "backup_codes_low", "new_device"], "{inbox}");
    assert_eq!(inbox["unread_count"], 3, "{inbox}");
    assert!(items[0]["body"].as_str().unwrap().contains("1"), "newest first: {inbox}");
    assert!(items[0]["read_at"].is_null());
    let id = items[0]["id"].as_str().unwrap();

    let read =
        |token: &str| app.with_token(Method::POST, &format!("/api/v1/notifications/inbox/{id}/read"), token).send();
    assert_error(read(&bob.access).await.unwrap(), 404, "NOT_FOUND").await;
    assert_eq!(read(&t.access).await.unwrap().status(), 204);
    let unread =
        body(app.with_token(Method::GET, "/api/v1/notifications/inbox?unread=true", &t.access).send().await.unwrap())
            .await;
    assert_eq!((unread["unread_count"].as_i64(), unread["items"].as_array().map(Vec::len)), (Some(2), Some(2)));
    let r = app.with_token(Method::POST, "/api/v1/notifications/inbox/read-all", &t.access).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let inbox = body(app.with_token(Method::GET, "/api/v1/notifications/inbox", &t.access).send().await.unwrap()).await;
    assert_eq!(inbox["unread_count"], 0);
    let bad = app.with_token(Method::GET, "/api/v1/notifications/inbox?unread=maybe", &t.access).send().await.unwrap();
    assert_error(bad, 422, "VALIDATION_FAILED").await;

    // The type's in-app switch off: the next reminder is not in the inbox.
    put(&app, &t, "/api/v1/notifications/preferences/types/backup_codes_low", json!({"in_app_enabled": false})).await;
    queue(&pool, reminder(0)).await;
    let inbox = body(app.with_token(Method::GET, "/api/v1/notifications/inbox", &t.access).send().await.unwrap()).await;
    assert_eq!(inbox["items"].as_array().map(Vec::len), Some(3));
}

async fn pushed(State(seen): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>) -> Json<Value> {
    seen.lock().unwrap().push(body);
    Json(json!({}))
}

#[sqlx::test]
async fn a_push_reaches_the_webhook_only_while_push_is_on(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let t = app.signed_in("ann").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let receiver = Router::new().route("/push", post(pushed)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.ok() });
    let push = Push::webhook(&url).unwrap();
    let config = delivery::DeliveryConfig { backoff_base: std::time::Duration::ZERO, ..Default::default() };

    // Off by default (the account's switch).
    queue(&pool, reminder(2)).await;
    delivery::deliver_push_once(&pool, &push, &config).await.unwrap();
    assert!(seen.lock().unwrap().is_empty());

    put(&app, &t, "/api/v1/notifications/preferences", json!({"push_enabled": true})).await;
    queue(&pool, reminder(1)).await;
    let pass = delivery::deliver_push_once(&pool, &push, &config).await.unwrap();
    assert_eq!(pass.sent, 1);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["user_id"].as_str(), Some(ann_id(&pool).await.to_string().as_str()));
    assert_eq!(got[0]["title"], "You are running out of backup codes");
    assert!(got[0]["body"].as_str().unwrap().contains("1"));

    put(&app, &t, "/api/v1/notifications/preferences", json!({"push_enabled": false})).await;
    queue(&pool, reminder(0)).await;
    delivery::deliver_push_once(&pool, &push, &config).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "no push while it is off");
}
