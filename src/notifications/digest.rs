//! Digests: a user whose `digest_frequency` is hourly, daily or weekly has non-security
//! emails held (`policy`); this job sends each such user one email listing them once the
//! period has passed, in one transaction per user: the digest is queued in the outbox
//! (and delivered under its Message-ID rule) and the held rows point at it, so a process
//! that dies between the two leaves both undone, and a second runner skips locked rows.
//! `serve` runs it each few minutes under an advisory lock; `gatehouse digest` runs it once.

use sqlx::PgPool;

use super::{
    Message,
    message::DigestItem,
    repo::{self, outbox::NewEmail},
    templates,
};

/// One digest per user that is due; returns how many were queued.
pub async fn run_once(db: &PgPool) -> Result<usize, super::service::EnqueueError> {
    let mut queued = 0;
    for user in repo::digest::due_users(db).await? {
        let mut tx = db.begin().await?;
        let held = repo::digest::take_held(&mut *tx, user).await?;
        let Some(last) = held.last() else { continue };
        let items = held.iter().map(|h| DigestItem { subject: h.subject.clone(), text: h.body.clone() }).collect();
        let message = Message::Digest { items };
        let kind = message.kind();
        let rendered = templates::render(kind, message.context())?;
        let email = NewEmail {
            user_id: user,
            due: chrono::Utc::now(),
            to_email: &last.to_email,
            subject: &rendered.subject,
            email_type: kind.as_str(),
            body: &rendered.text,
            html_body: &rendered.html,
            priority: kind.priority().as_str(),
            held: false,
        };
        let id = repo::outbox::insert_email(&mut *tx, &email).await?;
        let ids: Vec<_> = held.iter().map(|h| h.id).collect();
        repo::digest::mark_digested(&mut tx, user, &ids, id).await?;
        repo::outbox::insert_log(&mut *tx, user, kind.as_str(), "email", &last.to_email, "queued", Some("digest"))
            .await?;
        tx.commit().await?;
        queued += 1;
    }
    Ok(queued)
}
