//! What the user's notification settings hold back, and what they never do: the global
//! quiet window holds a reminder (not a security notice) until it ends, and the outbox
//! sends the more urgent message first.

use chrono::{Duration, Timelike, Utc};
use gatehouse::notifications::{self, Message};
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{PASSWORD, PASSWORD_2, TestApp, email};

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
    let r = app
        .with_token(Method::POST, "/api/v1/auth/password/change", &t.access)
        .json(&json!({"current_password": PASSWORD, "new_password": PASSWORD_2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
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
    let r = app
        .with_token(Method::POST, "/api/v1/auth/password/change", &t.access)
        .json(&json!({"current_password": PASSWORD, "new_password": PASSWORD_2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let sent = subjects(&app.deliver_mail().await);
    let at = |subject: &str| sent.iter().position(|s| s == subject).unwrap_or_else(|| panic!("{subject}: {sent:?}"));
    assert!(at("Your password was changed") < at("You are running out of backup codes"), "{sent:?}");
}
