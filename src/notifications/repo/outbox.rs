//! The outbox: queued emails and texts, their claims by workers, their outcomes, and the
//! MFA delivery records. Inserts take any executor so they join the caller's transaction.

use secrecy::ExposeSecret;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::notifications::models::{ClaimedEmail, EmailStatus};

pub struct NewEmail<'a> {
    pub user_id: Uuid,
    /// When the message falls due (now, or later for deferred messages).
    pub due: chrono::DateTime<chrono::Utc>,
    pub to_email: &'a str,
    pub subject: &'a str,
    pub email_type: &'a str,
    pub body: &'a str,
    pub html_body: &'a str,
    pub priority: &'a str,
    /// Waits for the user's digest (`held`) instead of going out on its own.
    pub held: bool,
}

pub async fn insert_email(db: impl PgExecutor<'_>, e: &NewEmail<'_>) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO notifications_emailnotification
             (user_id, to_email, subject, email_type, template_name, body, html_body, priority, next_attempt_at,
              status)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, CASE WHEN $9 THEN 'held' ELSE 'pending' END) RETURNING id",
        e.user_id,
        e.to_email,
        e.subject,
        e.email_type,
        e.body,
        e.html_body,
        e.priority,
        e.due,
        e.held,
    )
    .fetch_one(db)
    .await
}

pub async fn insert_sms(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    phone: &str,
    message: &str,
    sms_type: &str,
    priority: &str,
    due: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO notifications_smsnotification (user_id, phone_number, message, sms_type, priority, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        user_id,
        phone,
        message,
        sms_type,
        priority,
        due,
    )
    .fetch_one(db)
    .await
}

pub async fn insert_log(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    notification_type: &str,
    channel: &str,
    recipient: &str,
    decision: &str,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO notifications_notificationlog
             (user_id, notification_type, channel, recipient, decision, reason, delivered)
         VALUES ($1, $2, $3, $4, $5::text, $6, $5::text = 'sent')",
        user_id,
        notification_type,
        channel,
        recipient,
        decision,
        reason,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Claims up to `limit` due emails: pending ones whose time has come, and ones whose
/// previous claim went stale (a worker died mid-send). SKIP LOCKED lets many workers claim
/// side by side without ever taking the same row.
pub async fn claim_emails(db: impl PgExecutor<'_>, limit: i64, claim_secs: f64) -> sqlx::Result<Vec<ClaimedEmail>> {
    sqlx::query_as!(
        ClaimedEmail,
        r#"WITH claimed AS (
               UPDATE notifications_emailnotification e
                  SET status = 'sending', claimed_until = now() + make_interval(secs => $2)
                WHERE e.id IN (
                    SELECT id FROM notifications_emailnotification
                     WHERE (status = 'pending' AND next_attempt_at <= now())
                        OR (status = 'sending' AND claimed_until < now())
                     -- Per-type priority first (critical, high, medium, low), then due time.
                     ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low']::varchar[], priority),
                              next_attempt_at
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED)
            RETURNING e.id, e.to_email, e.subject, e.body, e.html_body, e.retry_count, e.max_retries,
                      e.next_attempt_at, e.priority
           )
           -- RETURNING has no order: send by priority, then in the order the messages fell due.
           SELECT id AS "id!", to_email AS "to_email!", subject AS "subject!", body AS "body!", html_body,
                  retry_count AS "retry_count!", max_retries AS "max_retries!"
             FROM claimed
            ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low']::varchar[], priority), next_attempt_at, id"#,
        limit,
        claim_secs,
    )
    .fetch_all(db)
    .await
}

/// Email types whose body holds a one-time secret (a link token or a code).
pub const SECRET_BEARING: &[&str] = &["email_verification", "password_reset", "mfa_code"];
/// What such a body becomes once delivery has ended: the secret must not outlive it.
pub const REDACTED: &str = "[removed after delivery: the message held a one-time secret]";

pub async fn mark_sent(
    db: impl PgExecutor<'_>,
    id: Uuid,
    provider: &str,
    message_id: Option<&str>,
) -> sqlx::Result<Option<(Uuid, String, String, String)>> {
    let row = sqlx::query!(
        "UPDATE notifications_emailnotification
            SET status = 'sent', sent_at = now(), claimed_until = NULL, provider = $2, provider_message_id = $3,
                error_message = NULL,
                body = CASE WHEN email_type = ANY($4) THEN $5 ELSE body END,
                html_body = CASE WHEN email_type = ANY($4) THEN NULL ELSE html_body END
          WHERE id = $1 AND status = 'sending'
      RETURNING user_id, email_type, to_email, provider AS \"provider!\"",
        id,
        provider,
        message_id,
        SECRET_BEARING as &[&str],
        REDACTED,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user_id, r.email_type, r.to_email, r.provider)))
}

/// Records a failed attempt: back to pending after `backoff_secs`, or failed for good once
/// the retries are spent. Returns the new status.
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    provider: &str,
    error: &str,
    backoff_secs: f64,
) -> sqlx::Result<Option<(Uuid, String, String, String)>> {
    let row = sqlx::query!(
        r#"UPDATE notifications_emailnotification
              SET retry_count = retry_count + 1,
                  status = CASE WHEN retry_count + 1 > max_retries THEN 'failed' ELSE 'pending' END,
                  next_attempt_at = now() + make_interval(secs => $4),
                  claimed_until = NULL, provider = $2, error_message = $3,
                  body = CASE WHEN retry_count + 1 > max_retries AND email_type = ANY($5) THEN $6 ELSE body END,
                  html_body = CASE WHEN retry_count + 1 > max_retries AND email_type = ANY($5) THEN NULL
                                   ELSE html_body END
            WHERE id = $1 AND status = 'sending'
        RETURNING user_id, email_type, to_email, status"#,
        id,
        provider,
        error,
        backoff_secs,
        SECRET_BEARING as &[&str],
        REDACTED,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user_id, r.email_type, r.to_email, r.status)))
}

pub async fn email_status(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<EmailStatus>> {
    sqlx::query_as!(
        EmailStatus,
        "SELECT id, status, retry_count, sent_at, provider, error_message
           FROM notifications_emailnotification WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// Undelivered emails, for the outbox-depth gauge.
pub async fn pending_count(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM notifications_emailnotification WHERE status IN ('pending', 'sending')"#
    )
    .fetch_one(db)
    .await
}

/// SMS counterpart of `claim_emails`.
pub async fn claim_sms(
    db: impl PgExecutor<'_>,
    limit: i64,
    claim_secs: f64,
) -> sqlx::Result<Vec<crate::notifications::models::ClaimedSms>> {
    sqlx::query_as!(
        crate::notifications::models::ClaimedSms,
        r#"WITH claimed AS (
               UPDATE notifications_smsnotification s
                  SET status = 'sending', claimed_until = now() + make_interval(secs => $2)
                WHERE s.id IN (
                    SELECT id FROM notifications_smsnotification
                     WHERE (status = 'pending' AND next_attempt_at <= now())
                        OR (status = 'sending' AND claimed_until < now())
                     -- Per-type priority first (critical, high, medium, low), then due time.
                     ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low']::varchar[], priority),
                              next_attempt_at
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED)
            RETURNING s.id, s.phone_number, s.message, s.retry_count, s.next_attempt_at, s.priority
           )
           SELECT id AS "id!", phone_number AS "phone_number!", message AS "message!", retry_count AS "retry_count!"
             FROM claimed
            ORDER BY array_position(ARRAY['critical', 'high', 'medium', 'low']::varchar[], priority), next_attempt_at, id"#,
        limit,
        claim_secs,
    )
    .fetch_all(db)
    .await
}

pub async fn mark_sms_sent(
    db: impl PgExecutor<'_>,
    id: Uuid,
    provider: &str,
    message_id: Option<&str>,
    cost: Option<rust_decimal::Decimal>,
) -> sqlx::Result<Option<(Uuid, String, String)>> {
    let row = sqlx::query!(
        "UPDATE notifications_smsnotification
            SET status = 'sent', sent_at = now(), claimed_until = NULL, provider = $2, provider_message_id = $3,
                cost = $4, error_message = NULL,
                message = CASE WHEN sms_type = ANY($5) THEN $6 ELSE message END
          WHERE id = $1 AND status = 'sending'
      RETURNING user_id, sms_type, phone_number",
        id,
        provider,
        message_id,
        cost,
        SECRET_BEARING as &[&str],
        REDACTED,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user_id, r.sms_type, r.phone_number)))
}

pub async fn mark_sms_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    provider: &str,
    error: &str,
    backoff_secs: f64,
) -> sqlx::Result<Option<(Uuid, String, String, String)>> {
    let row = sqlx::query!(
        r#"UPDATE notifications_smsnotification
              SET retry_count = retry_count + 1,
                  status = CASE WHEN retry_count + 1 > max_retries THEN 'failed' ELSE 'pending' END,
                  next_attempt_at = now() + make_interval(secs => $4),
                  claimed_until = NULL, provider = $2, error_message = $3,
                  message = CASE WHEN retry_count + 1 > max_retries AND sms_type = ANY($5) THEN $6 ELSE message END
            WHERE id = $1 AND status = 'sending'
        RETURNING user_id, sms_type, phone_number, status"#,
        id,
        provider,
        error,
        backoff_secs,
        SECRET_BEARING as &[&str],
        REDACTED,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user_id, r.sms_type, r.phone_number, r.status)))
}

pub async fn sms_status(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<(String, i32, Option<String>, Option<rust_decimal::Decimal>)>> {
    let row =
        sqlx::query!("SELECT status, retry_count, provider, cost FROM notifications_smsnotification WHERE id = $1", id)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|r| (r.status, r.retry_count, r.provider, r.cost)))
}

pub async fn insert_mfa_notification(
    db: impl PgExecutor<'_>,
    m: &crate::notifications::models::MfaCode<'_>,
    email_id: Option<Uuid>,
    sms_id: Option<Uuid>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO notifications_mfanotification
             (user_id, email_notification_id, sms_notification_id, mfa_type, delivery_method, recipient, subject,
              otp_code_hash, code_length, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        m.user_id,
        email_id,
        sms_id,
        m.mfa_type,
        m.to.channel().as_str(),
        m.to.as_str(),
        crate::notifications::models::NotificationType::MfaCode.subject(),
        m.code_hash,
        m.code.expose_secret().chars().count() as i32,
        m.expires_at,
    )
    .fetch_one(db)
    .await
}

/// Marks the MFA delivery record of a sent outbox row (email or SMS) as sent.
pub async fn mark_mfa_sent(
    db: impl PgExecutor<'_>,
    outbox_id: Uuid,
    provider: &str,
    message_id: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE notifications_mfanotification
            SET is_sent = true, sent_at = now(), provider = $2, provider_message_id = $3
          WHERE email_notification_id = $1 OR sms_notification_id = $1",
        outbox_id,
        provider,
        message_id,
    )
    .execute(db)
    .await?;
    Ok(())
}
