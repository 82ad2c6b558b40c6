//! The email outbox over real SMTP: arrival, retries, outages, rollbacks, concurrent workers.

use std::{collections::HashSet, time::Duration};

use gatehouse::notifications::{
    self, Message,
    delivery::{self, DeliveryConfig},
    mailer::Mailer,
    repo,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::smtp::SmtpCapture;

const FAST: DeliveryConfig = DeliveryConfig { batch: 50, claim: Duration::from_secs(60), backoff_base: Duration::ZERO };

async fn user(pool: &PgPool) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO auth_user (email, username, password_hash) VALUES ('ann@example.com', 'ann', 'x') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn queue_reset(pool: &PgPool, user: Uuid, to: &str) -> Uuid {
    let mut tx = pool.begin().await.unwrap();
    let link = "http://gatehouse.test/reset-password?token=abc123";
    let id = notifications::enqueue_email(
        &mut tx,
        &crate::helpers::keys(),
        user,
        &crate::helpers::email(to),
        Message::PasswordReset { username: "ann".into(), link: link.into() },
    )
    .await
    .unwrap()
    .expect("security messages are always queued");
    tx.commit().await.unwrap();
    id
}

fn mailer(capture: &SmtpCapture) -> Mailer {
    Mailer::new(Some(&capture.url()), "Gatehouse <no-reply@gatehouse.test>").unwrap()
}

#[sqlx::test]
async fn a_queued_email_arrives_with_subject_both_parts_and_link(pool: PgPool) {
    let capture = SmtpCapture::start().await;
    let user = user(&pool).await;
    let id = queue_reset(&pool, user, "ann@example.com").await;

    let pass = delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap();
    assert_eq!(pass.sent, 1);
    let mails = capture.wait_for(1, 5).await;
    assert_eq!(mails.len(), 1);
    let parsed = mails[0].parsed();
    assert_eq!(parsed.subject(), Some("Reset your password"));
    let text = parsed.body_text(0).unwrap();
    let html = parsed.body_html(0).unwrap();
    assert!(text.contains("http://gatehouse.test/reset-password?token=abc123"), "{text}");
    assert!(html.contains("href=\"http://gatehouse.test/reset-password?token=abc123\""), "{html}");

    let status = repo::outbox::email_status(&pool, id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.provider.as_deref()), ("sent", Some("smtp")));
    let decisions: Vec<String> =
        sqlx::query_scalar("SELECT decision FROM notifications_notificationlog ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(decisions, ["queued", "sent"]);
}

#[sqlx::test]
async fn a_refused_message_goes_out_on_retry(pool: PgPool) {
    let capture = SmtpCapture::start().await;
    let user = user(&pool).await;
    let id = queue_reset(&pool, user, "ann@example.com").await;
    capture.refuse_next(1);

    let first = delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap();
    assert_eq!(first.retried, 1);
    let second = delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap();
    assert_eq!(second.sent, 1);
    assert_eq!(capture.mails().len(), 1);
    let status = repo::outbox::email_status(&pool, id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.retry_count), ("sent", 1));
}

#[sqlx::test]
async fn a_send_cut_after_data_is_resent_with_the_same_message_id(pool: PgPool) {
    let capture = SmtpCapture::start().await;
    let user = user(&pool).await;
    let id = queue_reset(&pool, user, "ann@example.com").await;
    // The receiver takes the message, then the connection drops before its "250 OK": the
    // sender cannot know it arrived, so it sends again (at least once), under the same id.
    capture.cut_after_data(1);

    let first = delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap();
    assert_eq!(first.retried, 1);
    let second = delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap();
    assert_eq!(second.sent, 1);
    let mails = capture.mails();
    assert_eq!(mails.len(), 2, "the cut exchange and the retry");
    let ids: Vec<String> = mails.iter().map(|m| m.parsed().message_id().expect("a Message-ID").to_owned()).collect();
    assert_eq!(ids, [format!("{id}@gatehouse.test"), format!("{id}@gatehouse.test")]);
    let status = repo::outbox::email_status(&pool, id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.retry_count), ("sent", 1));
    // Nothing more to send: exactly once per Message-ID at the receiver's side.
    assert_eq!(
        delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap(),
        delivery::Pass::default()
    );
}

#[sqlx::test]
async fn with_smtp_down_the_message_waits_and_goes_out_when_it_returns(pool: PgPool) {
    let user = user(&pool).await;
    let id = queue_reset(&pool, user, "ann@example.com").await;
    // A port nobody listens on: connections are refused.
    let down = Mailer::new(Some("smtp://127.0.0.1:1"), "Gatehouse <no-reply@gatehouse.test>").unwrap();
    for _ in 0..2 {
        assert_eq!(delivery::deliver_once(&pool, &crate::helpers::keys(), &down, &FAST).await.unwrap().retried, 1);
    }
    let status = repo::outbox::email_status(&pool, id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.retry_count), ("pending", 2));
    assert!(status.error_message.is_some());

    let capture = SmtpCapture::start().await;
    assert_eq!(delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap().sent, 1);
    assert_eq!(capture.mails().len(), 1);
}

#[sqlx::test]
async fn retries_stop_at_max_retries(pool: PgPool) {
    let user = user(&pool).await;
    let id = queue_reset(&pool, user, "ann@example.com").await;
    let down = Mailer::new(Some("smtp://127.0.0.1:1"), "Gatehouse <no-reply@gatehouse.test>").unwrap();
    for _ in 0..4 {
        delivery::deliver_once(&pool, &crate::helpers::keys(), &down, &FAST).await.unwrap();
    }
    let status = repo::outbox::email_status(&pool, id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.retry_count), ("failed", 4));
    assert_eq!(
        delivery::deliver_once(&pool, &crate::helpers::keys(), &down, &FAST).await.unwrap(),
        delivery::Pass::default()
    );
}

#[sqlx::test]
async fn a_message_queued_in_a_rolled_back_transaction_is_never_sent(pool: PgPool) {
    let capture = SmtpCapture::start().await;
    let user = user(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    notifications::enqueue_email(
        &mut tx,
        &crate::helpers::keys(),
        user,
        &crate::helpers::email("ann@example.com"),
        Message::TokenReused { username: "ann".into() },
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap(),
        delivery::Pass::default()
    );
    assert!(capture.mails().is_empty());
}

#[sqlx::test]
async fn a_stale_claim_is_retried(pool: PgPool) {
    let capture = SmtpCapture::start().await;
    let user = user(&pool).await;
    let id = queue_reset(&pool, user, "ann@example.com").await;
    // A worker claimed the row and died before sending.
    sqlx::query("UPDATE notifications_emailnotification SET status = 'sending', claimed_until = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer(&capture), &FAST).await.unwrap().sent, 1);
    assert_eq!(capture.mails().len(), 1);
}

#[sqlx::test]
async fn two_workers_never_send_the_same_row_twice(pool: PgPool) {
    let capture = SmtpCapture::start().await;
    let user = user(&pool).await;
    for i in 0..200 {
        queue_reset(&pool, user, &format!("user{i}@example.com")).await;
    }
    let config = DeliveryConfig { batch: 10, ..FAST };
    let worker = |pool: PgPool, mailer: Mailer| async move {
        let mut sent = 0;
        loop {
            let pass = delivery::deliver_once(&pool, &crate::helpers::keys(), &mailer, &config).await.unwrap();
            if pass == delivery::Pass::default() {
                return sent;
            }
            sent += pass.sent;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(worker(pool.clone(), mailer(&capture))),
        tokio::spawn(worker(pool.clone(), mailer(&capture)))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a + b, 200);
    assert!(a > 0 && b > 0, "both workers took part: {a} + {b}");
    let mails = capture.wait_for(200, 10).await;
    assert_eq!(mails.len(), 200);
    let recipients: HashSet<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    assert_eq!(recipients.len(), 200, "no duplicates");
}
