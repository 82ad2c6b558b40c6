//! The outbox worker: claim due rows, send, record the outcome. At-least-once: a worker
//! that dies mid-send leaves a stale claim that another worker retries.

use std::time::Duration;

use sqlx::PgPool;

use super::{
    mailer::Mailer,
    models::{ClaimedEmail, Outcome},
    repo,
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

/// Claims one batch and delivers it. Returns counts; an empty pass means nothing was due.
///
/// Messages go out concurrently over the transport's pooled connections: lettre sends a
/// message's body and its terminating dot in two writes, so each message on a connection
/// waits out the server's delayed ACK (~40 ms), and one-at-a-time delivery would cap a
/// worker near 25 messages/s. One recipient's messages still go in the order they fell due.
pub async fn deliver_once(db: &PgPool, mailer: &Mailer, config: &DeliveryConfig) -> sqlx::Result<Pass> {
    let claimed = repo::claim_emails(db, config.batch, config.claim.as_secs_f64()).await?;
    let mut by_recipient: Vec<Vec<ClaimedEmail>> = Vec::new();
    for email in claimed {
        match by_recipient.iter_mut().find(|g| g[0].to_email == email.to_email) {
            Some(group) => group.push(email),
            None => by_recipient.push(vec![email]),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for group in by_recipient {
        let (db, mailer, config) = (db.clone(), mailer.clone(), *config);
        tasks.spawn(async move {
            let mut pass = Pass::default();
            for email in group {
                deliver(&db, &mailer, &config, email, &mut pass).await?;
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

async fn deliver(
    db: &PgPool,
    mailer: &Mailer,
    config: &DeliveryConfig,
    email: ClaimedEmail,
    pass: &mut Pass,
) -> sqlx::Result<()> {
    match mailer.send(&email).await {
        Outcome::Sent { provider, message_id } => {
            if let Some((user, kind, to, _)) = repo::mark_sent(db, email.id, provider, message_id.as_deref()).await? {
                repo::insert_log(db, user, &kind, "email", &to, "sent", None).await?;
            }
            pass.sent += 1;
        }
        Outcome::Failed { error } => {
            let exponent = email.retry_count.clamp(0, 16) as u32;
            let backoff = config.backoff_base.as_secs_f64() * f64::from(2u32.pow(exponent));
            tracing::warn!(id = %email.id, retry = email.retry_count + 1, %error, "email delivery failed");
            match repo::mark_failed(db, email.id, mailer.provider(), &error, backoff).await? {
                Some((user, kind, to, status)) if status == "failed" => {
                    repo::insert_log(db, user, &kind, "email", &to, "failed", Some("retries exhausted")).await?;
                    pass.failed += 1;
                }
                _ => pass.retried += 1,
            }
        }
    }
    Ok(())
}

/// Delivers until stopped: immediately when woken, else every `poll` for retries.
pub async fn run(
    db: PgPool,
    mailer: Mailer,
    config: DeliveryConfig,
    wakeup: std::sync::Arc<tokio::sync::Notify>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    poll: Duration,
) {
    loop {
        match deliver_once(&db, &mailer, &config).await {
            // A full batch may mean more is due: go again without waiting.
            Ok(pass) if pass.sent + pass.retried + pass.failed >= config.batch as usize => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "outbox pass failed"),
        }
        tokio::select! {
            _ = wakeup.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => return,
        }
    }
}
