//! The outbox worker: claim due rows, open what was sealed, send, record the outcome.
//! At-least-once: a worker that dies mid-send leaves a stale claim that another worker
//! retries.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;

use super::{
    mailer::Mailer,
    models::{ClaimedEmail, NotificationType, Outcome},
    push::Push,
    repo,
    sms::{AnySms, SmsOutcome, SmsProvider},
};
use crate::{
    audit_log::{self, RiskLevel, SessionAction, SessionEvent},
    core::data_keys::{DataKeys, Purpose},
};

/// Delivery tuning; tests shorten the backoff.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryConfig {
    pub batch: i64,
    /// A claim older than this is presumed abandoned.
    pub claim: Duration,
    /// Retry n waits `backoff_base * 2^(n-1)`.
    pub backoff_base: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { batch: 50, claim: Duration::from_secs(120), backoff_base: Duration::from_secs(30) }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

impl Pass {
    pub fn total(&self) -> usize {
        self.sent + self.retried + self.failed
    }
}

/// Claims one batch and delivers it. Returns counts; an empty pass means nothing was due.
///
/// Messages go out concurrently over the transport's pooled connections: lettre sends a
/// message's body and its terminating dot in two writes, so each message on a connection
/// waits out the server's delayed ACK (~40 ms), and one-at-a-time delivery would cap a
/// worker near 25 messages/s. One recipient's messages still go in the order they fell due.
pub async fn deliver_once(
    db: &PgPool,
    keys: &Arc<DataKeys>,
    mailer: &Mailer,
    config: &DeliveryConfig,
) -> sqlx::Result<Pass> {
    let claimed = repo::outbox::claim_emails(db, config.batch, config.claim.as_secs_f64()).await?;
    let mut by_recipient: Vec<Vec<ClaimedEmail>> = Vec::new();
    for email in claimed {
        match by_recipient.iter_mut().find(|g| g[0].to_email == email.to_email) {
            Some(group) => group.push(email),
            None => by_recipient.push(vec![email]),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for group in by_recipient {
        let (db, keys, mailer, config) = (db.clone(), keys.clone(), mailer.clone(), *config);
        tasks.spawn(async move {
            let mut pass = Pass::default();
            for email in group {
                deliver(&db, &keys, &mailer, &config, email, &mut pass).await?;
            }
            Ok::<_, sqlx::Error>(pass)
        });
    }
    let mut total = Pass::default();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(pass)) => {
                total.sent += pass.sent;
                total.retried += pass.retried;
                total.failed += pass.failed;
            }
            // A row whose outcome could not be recorded keeps its claim and is retried
            // when the claim goes stale.
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(e) => tracing::error!(error = %e, "delivery task failed"),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// A claimed message with its sealed parts opened for sending.
fn opened(keys: &DataKeys, mut email: ClaimedEmail) -> Result<ClaimedEmail, String> {
    let open = |text: &str| keys.open_text(Purpose::OutboxBody, text).map_err(|e| format!("sealed body: {e}"));
    email.body = open(&email.body)?;
    email.html_body = email.html_body.as_deref().map(open).transpose()?;
    Ok(email)
}

async fn deliver(
    db: &PgPool,
    keys: &DataKeys,
    mailer: &Mailer,
    config: &DeliveryConfig,
    email: ClaimedEmail,
    pass: &mut Pass,
) -> sqlx::Result<()> {
    let (id, retry_count) = (email.id, email.retry_count);
    let outcome = match opened(keys, email) {
        Ok(email) => mailer.send(&email).await,
        Err(error) => Outcome::Failed { error },
    };
    match outcome {
        Outcome::Sent { provider, message_id } => {
            if let Some((user, kind, to, _)) = repo::outbox::mark_sent(db, id, provider, message_id.as_deref()).await? {
                repo::outbox::insert_log(db, user, &kind, "email", &to, "sent", None).await?;
                if kind == NotificationType::MfaCode.as_str() {
                    repo::outbox::mark_mfa_sent(db, id, provider, message_id.as_deref()).await?;
                }
            }
            pass.sent += 1;
        }
        Outcome::Failed { error } => {
            let backoff = backoff(config, retry_count);
            tracing::warn!(%id, retry = retry_count + 1, %error, "email delivery failed");
            let mut tx = db.begin().await?;
            match repo::outbox::mark_failed(&mut *tx, id, mailer.provider(), &error, backoff).await? {
                Some((user, kind, to, status)) if status == "failed" => {
                    gave_up(&mut tx, user, &kind, "email", &to, &error).await?;
                    pass.failed += 1;
                }
                _ => pass.retried += 1,
            }
            crate::core::db::commit(tx).await?;
        }
    }
    Ok(())
}

/// Claims one batch of SMS and delivers it, one after another.
pub async fn deliver_sms_once<P: SmsProvider>(
    db: &PgPool,
    keys: &DataKeys,
    provider: &P,
    config: &DeliveryConfig,
) -> sqlx::Result<Pass> {
    let mut pass = Pass::default();
    for sms in repo::outbox::claim_sms(db, config.batch, config.claim.as_secs_f64()).await? {
        let outcome = match keys.open_text(Purpose::OutboxBody, &sms.message) {
            Ok(message) => provider.send(&sms.phone_number, &message).await,
            Err(e) => SmsOutcome::Failed { error: format!("sealed message: {e}") },
        };
        match outcome {
            SmsOutcome::Sent { message_id, cost } => {
                let marked =
                    repo::outbox::mark_sms_sent(db, sms.id, provider.name(), message_id.as_deref(), cost).await?;
                if let Some((user, kind, to)) = marked {
                    repo::outbox::insert_log(db, user, &kind, "sms", &to, "sent", None).await?;
                    if kind == NotificationType::MfaCode.as_str() {
                        repo::outbox::mark_mfa_sent(db, sms.id, provider.name(), message_id.as_deref()).await?;
                    }
                }
                pass.sent += 1;
            }
            SmsOutcome::Failed { error } => {
                let backoff = backoff(config, sms.retry_count);
                tracing::warn!(id = %sms.id, retry = sms.retry_count + 1, %error, "sms delivery failed");
                let mut tx = db.begin().await?;
                match repo::outbox::mark_sms_failed(&mut *tx, sms.id, provider.name(), &error, backoff).await? {
                    Some((user, kind, to, status)) if status == "failed" => {
                        gave_up(&mut tx, user, &kind, "sms", &to, &error).await?;
                        pass.failed += 1;
                    }
                    _ => pass.retried += 1,
                }
                crate::core::db::commit(tx).await?;
            }
        }
    }
    Ok(pass)
}

/// Claims one batch of pushes and delivers it, most urgent first.
pub async fn deliver_push_once(db: &PgPool, push: &Push, config: &DeliveryConfig) -> sqlx::Result<Pass> {
    let mut pass = Pass::default();
    for p in repo::push::claim(db, config.batch, config.claim.as_secs_f64()).await? {
        match push.send(p.user_id, &p.title, &p.body).await {
            Ok(()) => {
                repo::push::mark_sent(db, p.id).await?;
                repo::outbox::insert_log(db, p.user_id, &p.notification_type, "push", "push", "sent", None).await?;
                pass.sent += 1;
            }
            Err(error) => {
                tracing::warn!(id = %p.id, retry = p.retry_count + 1, %error, "push delivery failed");
                let mut tx = db.begin().await?;
                if repo::push::mark_failed(&mut *tx, p.id, &error, backoff(config, p.retry_count)).await? {
                    gave_up(&mut tx, p.user_id, &p.notification_type, "push", "push", &error).await?;
                    pass.failed += 1;
                } else {
                    pass.retried += 1;
                }
                crate::core::db::commit(tx).await?;
            }
        }
    }
    Ok(pass)
}

/// Retry n waits `backoff_base * 2^(n-1)`.
fn backoff(config: &DeliveryConfig, retry_count: i32) -> f64 {
    config.backoff_base.as_secs_f64() * f64::from(2u32.pow(retry_count.clamp(0, 16) as u32))
}

/// Records a message given up after its last retry: the log row and an audit event, in the
/// same transaction as the failed status.
async fn gave_up(
    tx: &mut sqlx::PgConnection,
    user: uuid::Uuid,
    kind: &str,
    channel: &str,
    to: &str,
    error: &str,
) -> sqlx::Result<()> {
    repo::outbox::insert_log(&mut *tx, user, kind, channel, to, "failed", Some("retries exhausted")).await?;
    // Audit rows hold no address or number: a server's refusal often quotes the recipient.
    let error = error.replace(to, "[recipient]");
    let event = SessionEvent {
        risk_level: RiskLevel::Medium,
        metadata: Some(serde_json::json!({ "notification_type": kind, "channel": channel })),
        error_message: Some(error.chars().take(500).collect()),
        ..SessionEvent::new(user, SessionAction::NotificationFailed)
    };
    audit_log::record_session(&mut *tx, &event).await
}

/// Delivers until stopped: immediately when woken, else every `poll` for retries.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    db: PgPool,
    keys: Arc<DataKeys>,
    mailer: Mailer,
    sms: AnySms,
    push: Push,
    config: DeliveryConfig,
    wakeup: Arc<tokio::sync::Notify>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    poll: Duration,
) {
    let mut backoff = crate::core::backoff::Backoff::new("outbox", Duration::from_secs(30));
    loop {
        let email = deliver_once(&db, &keys, &mailer, &config).await;
        let texts = deliver_sms_once(&db, &keys, &sms, &config).await;
        let pushes = deliver_push_once(&db, &push, &config).await;
        let texts = match (texts, pushes) {
            (Ok(t), Ok(p)) => {
                Ok(Pass { sent: t.sent + p.sent, retried: t.retried + p.retried, failed: t.failed + p.failed })
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let pause = match (email, texts) {
            // A full batch may mean more is due: go again without waiting.
            (Ok(e), Ok(t)) if e.total() >= config.batch as usize || t.total() >= config.batch as usize => {
                backoff.succeeded();
                continue;
            }
            (Ok(_), Ok(_)) => {
                backoff.succeeded();
                poll
            }
            // The database is away: wait longer each time (a queued message's wake-up
            // cannot be served meanwhile either), and say so once.
            (Err(e), _) | (_, Err(e)) => {
                let pause = backoff.failed(poll, &e);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        tokio::select! {
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
