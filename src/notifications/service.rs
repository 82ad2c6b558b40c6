//! Queueing messages inside the caller's transaction: a message exists if and only if the
//! change that caused it commits. Every message first passes the policy, and its decision
//! (queued, deferred, suppressed, and why) is logged. Wake the worker after commit
//! (`AppState::outbox_wakeup`).

use chrono::Utc;
use secrecy::ExposeSecret;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::{
    data_keys::{DataKeys, Purpose},
    types::{Email, Phone},
};

use super::{
    message::Message,
    models::{Channel, Decision, MfaCode, NotificationType, Priority, Recipient},
    policy,
    repo::{self, outbox::NewEmail},
    templates,
};

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<EnqueueError> for crate::core::AppError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Db(db) => db.into(),
            EnqueueError::Template(t) => crate::core::AppError::internal(t),
        }
    }
}

/// A message the policy lets go: when, how urgent, and whether it waits for a digest.
struct Queued {
    due: chrono::DateTime<Utc>,
    priority: Priority,
    held: bool,
}

/// Logs the decision; returns how the message is queued, or None when it is suppressed.
async fn decide(
    tx: &mut PgConnection,
    user_id: Uuid,
    kind: NotificationType,
    channel: Channel,
    to: &str,
) -> sqlx::Result<Option<Queued>> {
    let now = Utc::now();
    let decision = policy::decide(&mut *tx, user_id, kind, channel, now).await?;
    let (log, reason, queued) = match decision {
        Decision::Now { reason, priority } => ("queued", reason, Some(Queued { due: now, priority, held: false })),
        Decision::At { due, reason, priority } => {
            ("deferred", Some(reason), Some(Queued { due, priority, held: false }))
        }
        Decision::Held { priority } => ("held", Some("digest"), Some(Queued { due: now, priority, held: true })),
        Decision::Suppress { reason } => ("suppressed", Some(reason), None),
    };
    repo::outbox::insert_log(&mut *tx, user_id, kind.as_str(), channel.as_str(), to, log, reason).await?;
    Ok(queued)
}

/// The in-app inbox and push, each under its own switches. Never for a message that
/// carries a code or a live link: those stay in the one channel they were sent to.
async fn fan_out(
    tx: &mut PgConnection,
    user_id: Uuid,
    kind: NotificationType,
    rendered: &templates::Rendered,
) -> sqlx::Result<()> {
    if kind.carries_secret() {
        return Ok(());
    }
    if let Some(q) = decide(&mut *tx, user_id, kind, Channel::InApp, "inbox").await? {
        let (title, body) = (&rendered.subject, &rendered.text);
        repo::inbox::insert(&mut *tx, user_id, kind.as_str(), title, body, q.priority.as_str()).await?;
    }
    if let Some(q) = decide(&mut *tx, user_id, kind, Channel::Push, "push").await? {
        let push = repo::push::NewPush {
            user_id,
            kind: kind.as_str(),
            title: &rendered.subject,
            body: &rendered.text,
            priority: q.priority.as_str(),
            due: q.due,
        };
        repo::push::insert(&mut *tx, &push).await?;
    }
    Ok(())
}

/// Renders `message` and queues it for `to` if the policy lets it go; returns the outbox
/// row, or None when suppressed.
pub async fn enqueue_email(
    tx: &mut PgConnection,
    keys: &DataKeys,
    user_id: Uuid,
    to: &Email,
    message: Message,
) -> Result<Option<Uuid>, EnqueueError> {
    let kind = message.kind();
    let email = decide(&mut *tx, user_id, kind, Channel::Email, to.as_str()).await?;
    let mut rendered = templates::render(kind, message.context())?;
    fan_out(&mut *tx, user_id, kind, &rendered).await?;
    let Some(Queued { due, priority, held }) = email else {
        return Ok(None);
    };
    if kind.carries_secret() {
        // No code or link is readable in the database while the message waits.
        rendered.text = keys.seal_text(Purpose::OutboxBody, &rendered.text);
        rendered.html = keys.seal_text(Purpose::OutboxBody, &rendered.html);
    }
    let id = repo::outbox::insert_email(
        &mut *tx,
        &NewEmail {
            user_id,
            due,
            to_email: to.as_str(),
            subject: &rendered.subject,
            email_type: kind.as_str(),
            body: &rendered.text,
            html_body: &rendered.html,
            priority: priority.as_str(),
            held,
        },
    )
    .await?;
    Ok(Some(id))
}

/// The SMS counterpart of `enqueue_email`, to an E.164 number.
pub async fn enqueue_sms(
    tx: &mut PgConnection,
    keys: &DataKeys,
    user_id: Uuid,
    phone: &Phone,
    message: Message,
) -> Result<Option<Uuid>, EnqueueError> {
    let kind = message.kind();
    if !templates::has_sms(kind) {
        return Err(EnqueueError::Template(minijinja::Error::new(
            minijinja::ErrorKind::TemplateNotFound,
            format!("{kind} has no SMS template"),
        )));
    }
    let Some(Queued { due, priority, .. }) = decide(&mut *tx, user_id, kind, Channel::Sms, phone.as_str()).await?
    else {
        return Ok(None);
    };
    let mut text = templates::render_sms(kind, message.context())?;
    if kind.carries_secret() {
        text = keys.seal_text(Purpose::OutboxBody, &text);
    }
    let id = repo::outbox::insert_sms(&mut *tx, user_id, phone.as_str(), &text, kind.as_str(), priority.as_str(), due)
        .await?;
    Ok(Some(id))
}

/// Queues an MFA code (always sent: a security message) and its notifications_mfanotification
/// row, linked to the outbox row that carries it.
pub async fn enqueue_mfa_code(tx: &mut PgConnection, keys: &DataKeys, m: &MfaCode<'_>) -> Result<Uuid, EnqueueError> {
    // Rounded to the nearest minute: a 300 s code read a moment later still says 5.
    let minutes = ((m.expires_at - Utc::now()).num_seconds() + 30).div_euclid(60).max(1);
    let message = Message::MfaCode { code: m.code.expose_secret().to_owned(), minutes };
    let (email_id, sms_id) = match m.to {
        Recipient::Email(to) => (enqueue_email(&mut *tx, keys, m.user_id, to, message).await?, None),
        Recipient::Sms(to) => (None, enqueue_sms(&mut *tx, keys, m.user_id, to, message).await?),
    };
    Ok(repo::outbox::insert_mfa_notification(&mut *tx, m, email_id, sms_id).await?)
}
