//! Queueing messages inside the caller's transaction: a message exists if and only if the
//! change that caused it commits. Every message first passes the policy, and its decision
//! (queued, deferred, suppressed, and why) is logged. Wake the worker after commit
//! (`AppState::outbox_wakeup`).

use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    models::{Channel, Decision, NotificationType},
    policy,
    repo::{self, NewEmail},
    templates,
};

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: &'static str },
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<EnqueueError> for crate::core::AppError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Invalid { field, message } => crate::core::AppError::validation(field, message),
            EnqueueError::Db(db) => db.into(),
            EnqueueError::Template(t) => crate::core::AppError::internal(t),
        }
    }
}

/// Logs the decision; returns when the message is due, or None when it is suppressed.
async fn decide(
    tx: &mut PgConnection,
    user_id: Uuid,
    kind: NotificationType,
    channel: Channel,
    to: &str,
) -> sqlx::Result<Option<chrono::DateTime<Utc>>> {
    let now = Utc::now();
    let decision = policy::decide(&mut *tx, user_id, kind, channel, now).await?;
    let (log, reason, due) = match decision {
        Decision::Now { reason } => ("queued", reason, Some(now)),
        Decision::At { due, reason } => ("deferred", Some(reason), Some(due)),
        Decision::Suppress { reason } => ("suppressed", Some(reason), None),
    };
    repo::insert_log(&mut *tx, user_id, kind.as_str(), channel.as_str(), to, log, reason).await?;
    Ok(due)
}

/// Renders `kind` with `context` and queues it for `to` if the policy lets it go; returns
/// the outbox row, or None when suppressed.
pub async fn enqueue_email(
    tx: &mut PgConnection,
    user_id: Uuid,
    to: &str,
    kind: NotificationType,
    context: minijinja::Value,
) -> Result<Option<Uuid>, EnqueueError> {
    let Some(due) = decide(&mut *tx, user_id, kind, Channel::Email, to).await? else { return Ok(None) };
    let rendered = templates::render(kind, context)?;
    let id = repo::insert_email(
        &mut *tx,
        &NewEmail {
            user_id,
            due,
            to_email: to,
            subject: &rendered.subject,
            email_type: kind.as_str(),
            body: &rendered.text,
            html_body: &rendered.html,
            priority: kind.priority().as_str(),
        },
    )
    .await?;
    Ok(Some(id))
}

/// The SMS counterpart of `enqueue_email`, to an E.164 number.
pub async fn enqueue_sms(
    tx: &mut PgConnection,
    user_id: Uuid,
    phone: &str,
    kind: NotificationType,
    context: minijinja::Value,
) -> Result<Option<Uuid>, EnqueueError> {
    if !is_e164(phone) {
        return Err(EnqueueError::Invalid {
            field: "phone_number",
            message: "must be an E.164 number such as +15551234567",
        });
    }
    if !templates::has_sms(kind) {
        return Err(EnqueueError::Template(minijinja::Error::new(
            minijinja::ErrorKind::TemplateNotFound,
            format!("{kind} has no SMS template"),
        )));
    }
    let Some(due) = decide(&mut *tx, user_id, kind, Channel::Sms, phone).await? else { return Ok(None) };
    let message = templates::render_sms(kind, context)?;
    let id = repo::insert_sms(&mut *tx, user_id, phone, &message, kind.as_str(), kind.priority().as_str(), due).await?;
    Ok(Some(id))
}

/// `+` then 2 to 15 digits, the first not 0 (ITU-T E.164).
pub fn is_e164(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// A one-time code to deliver for MFA. The caller (the otp app) makes and hashes the code;
/// the code itself travels only inside the outgoing message, which is redacted once sent.
pub struct MfaCode<'a> {
    pub user_id: Uuid,
    pub channel: Channel,
    /// The email address or E.164 number.
    pub recipient: &'a str,
    pub code: &'a str,
    /// HMAC of the code under the server key, as otp stores it.
    pub code_hash: &'a str,
    /// `login`, `setup` or `step_up`.
    pub mfa_type: &'a str,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Queues an MFA code (always sent: a security message) and its notifications_mfanotification
/// row, linked to the outbox row that carries it.
pub async fn enqueue_mfa_code(tx: &mut PgConnection, m: &MfaCode<'_>) -> Result<Uuid, EnqueueError> {
    let minutes = (m.expires_at - Utc::now()).num_minutes().max(1);
    let context = minijinja::context! { code => m.code, minutes };
    let (email_id, sms_id) = match m.channel {
        Channel::Email => {
            (enqueue_email(&mut *tx, m.user_id, m.recipient, NotificationType::MfaCode, context).await?, None)
        }
        Channel::Sms => {
            (None, enqueue_sms(&mut *tx, m.user_id, m.recipient, NotificationType::MfaCode, context).await?)
        }
        _ => return Err(EnqueueError::Invalid { field: "method", message: "codes go by email or sms" }),
    };
    Ok(repo::insert_mfa_notification(&mut *tx, m, email_id, sms_id).await?)
}
