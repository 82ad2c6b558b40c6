//! SQL of the outbox. Inserts take any executor so they join the caller's transaction.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::models::{ClaimedEmail, EmailStatus};

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
}

pub async fn insert_email(db: impl PgExecutor<'_>, e: &NewEmail<'_>) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO notifications_emailnotification
             (user_id, to_email, subject, email_type, template_name, body, html_body, priority, next_attempt_at)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8) RETURNING id",
        e.user_id,
        e.to_email,
        e.subject,
        e.email_type,
        e.body,
        e.html_body,
        e.priority,
        e.due,
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
                     ORDER BY next_attempt_at
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED)
            RETURNING e.id, e.to_email, e.subject, e.body, e.html_body, e.retry_count, e.max_retries,
                      e.next_attempt_at
           )
           -- RETURNING has no order: send in the order the messages fell due.
           SELECT id AS "id!", to_email AS "to_email!", subject AS "subject!", body AS "body!", html_body,
                  retry_count AS "retry_count!", max_retries AS "max_retries!"
             FROM claimed ORDER BY next_attempt_at, id"#,
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

/// What the policy needs about a user, a type and a channel, with defaults where no row is.
pub struct PolicyFacts {
    pub email_alerts: bool,
    pub email_marketing: bool,
    pub sms_alerts: bool,
    pub email_enabled: bool,
    pub sms_enabled: bool,
    pub respect_quiet_hours: bool,
    pub delay_minutes: i32,
    pub max_per_day: i32,
    pub timezone: String,
    pub blocked: bool,
    pub consented: bool,
    pub sent_last_day: i64,
}

pub async fn policy_facts(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    kind: &str,
    channel: &str,
    sender: &str,
) -> sqlx::Result<PolicyFacts> {
    // The timezone lives on the profile (API.md: quiet hours are in the profile's timezone).
    sqlx::query_as!(
        PolicyFacts,
        r#"SELECT COALESCE(p.email_alerts, true) AS "email_alerts!",
                  COALESCE(p.email_marketing, false) AS "email_marketing!",
                  COALESCE(p.sms_alerts, true) AS "sms_alerts!",
                  COALESCE(d.email_enabled, true) AS "email_enabled!",
                  COALESCE(d.sms_enabled, true) AS "sms_enabled!",
                  COALESCE(d.respect_quiet_hours, true) AS "respect_quiet_hours!",
                  COALESCE(d.delay_minutes, 0) AS "delay_minutes!",
                  COALESCE(d.max_per_day, 100) AS "max_per_day!",
                  COALESCE(pr.timezone, 'UTC') AS "timezone!",
                  EXISTS (SELECT 1 FROM notifications_notificationblocklist b
                           WHERE b.user_id = u.id AND b.is_active
                             AND ((b.block_type = 'notification_type' AND b.blocked_value = $2)
                               OR (b.block_type = 'channel' AND b.blocked_value = $3)
                               OR (b.block_type = 'sender' AND b.blocked_value = $4))) AS "blocked!",
                  COALESCE(c.is_consented, false) AS "consented!",
                  (SELECT count(*) FROM notifications_notificationlog l
                    WHERE l.user_id = u.id AND l.notification_type = $2 AND l.decision IN ('queued', 'deferred')
                      AND l.created_at > now() - interval '1 day') AS "sent_last_day!"
             FROM auth_user u
             LEFT JOIN notifications_notificationpreference p ON p.user_id = u.id
             LEFT JOIN notifications_detailednotificationpreference d ON d.user_id = u.id AND d.notification_type = $2
             LEFT JOIN accounts_profile pr ON pr.user_id = u.id
             LEFT JOIN notifications_notificationconsent c ON c.user_id = u.id AND c.consent_type = 'marketing'
            WHERE u.id = $1"#,
        user_id,
        kind,
        channel,
        sender,
    )
    .fetch_one(db)
    .await
}

pub async fn quiet_windows(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<super::policy::Window>> {
    let rows = sqlx::query!(
        "SELECT day_of_week, start_time, end_time, allow_critical_only FROM notifications_quiethours
          WHERE user_id = $1 AND is_enabled",
        user_id
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| super::policy::Window {
            day_of_week: r.day_of_week,
            start: r.start_time,
            end: r.end_time,
            allow_critical_only: r.allow_critical_only,
        })
        .collect())
}

/// SMS counterpart of `claim_emails`.
pub async fn claim_sms(
    db: impl PgExecutor<'_>,
    limit: i64,
    claim_secs: f64,
) -> sqlx::Result<Vec<super::models::ClaimedSms>> {
    sqlx::query_as!(
        super::models::ClaimedSms,
        r#"WITH claimed AS (
               UPDATE notifications_smsnotification s
                  SET status = 'sending', claimed_until = now() + make_interval(secs => $2)
                WHERE s.id IN (
                    SELECT id FROM notifications_smsnotification
                     WHERE (status = 'pending' AND next_attempt_at <= now())
                        OR (status = 'sending' AND claimed_until < now())
                     ORDER BY next_attempt_at
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED)
            RETURNING s.id, s.phone_number, s.message, s.retry_count, s.next_attempt_at
           )
           SELECT id AS "id!", phone_number AS "phone_number!", message AS "message!", retry_count AS "retry_count!"
             FROM claimed ORDER BY next_attempt_at, id"#,
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
    m: &super::service::MfaCode<'_>,
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
        m.channel.as_str(),
        m.recipient,
        super::models::NotificationType::MfaCode.subject(),
        m.code_hash,
        m.code.chars().count() as i32,
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

// Notification settings (the rules are in settings.rs).

pub struct PreferenceRow {
    pub email_otp: bool,
    pub email_alerts: bool,
    pub email_marketing: bool,
    pub sms_otp: bool,
    pub sms_alerts: bool,
    pub push_enabled: bool,
    pub quiet_hours_enabled: bool,
    pub quiet_start: Option<chrono::NaiveTime>,
    pub quiet_end: Option<chrono::NaiveTime>,
    pub digest_frequency: String,
}

pub async fn preference_row(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Option<PreferenceRow>> {
    sqlx::query_as!(
        PreferenceRow,
        "SELECT email_otp, email_alerts, email_marketing, sms_otp, sms_alerts, push_enabled, quiet_hours_enabled,
                quiet_start, quiet_end, digest_frequency
           FROM notifications_notificationpreference WHERE user_id = $1",
        user
    )
    .fetch_optional(db)
    .await
}

pub async fn save_preferences(db: impl PgExecutor<'_>, user: Uuid, p: &PreferenceRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO notifications_notificationpreference
             (user_id, email_otp, email_alerts, email_marketing, sms_otp, sms_alerts, push_enabled,
              quiet_hours_enabled, quiet_start, quiet_end, digest_frequency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT ON CONSTRAINT notifications_notificationpreference_user_key DO UPDATE SET
             email_otp = EXCLUDED.email_otp, email_alerts = EXCLUDED.email_alerts,
             email_marketing = EXCLUDED.email_marketing, sms_otp = EXCLUDED.sms_otp, sms_alerts = EXCLUDED.sms_alerts,
             push_enabled = EXCLUDED.push_enabled, quiet_hours_enabled = EXCLUDED.quiet_hours_enabled,
             quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
             digest_frequency = EXCLUDED.digest_frequency, updated_at = now()",
        user,
        p.email_otp,
        p.email_alerts,
        p.email_marketing,
        p.sms_otp,
        p.sms_alerts,
        p.push_enabled,
        p.quiet_hours_enabled,
        p.quiet_start,
        p.quiet_end,
        p.digest_frequency,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub struct TypePreferenceRow {
    pub notification_type: String,
    pub email_enabled: bool,
    pub sms_enabled: bool,
    pub in_app_enabled: bool,
    pub push_enabled: bool,
    pub priority: String,
    pub respect_quiet_hours: bool,
    pub delay_minutes: i32,
    pub max_per_day: i32,
}

pub async fn type_preference_rows(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<TypePreferenceRow>> {
    sqlx::query_as!(
        TypePreferenceRow,
        "SELECT notification_type, email_enabled, sms_enabled, in_app_enabled, push_enabled, priority,
                respect_quiet_hours, delay_minutes, max_per_day
           FROM notifications_detailednotificationpreference WHERE user_id = $1",
        user
    )
    .fetch_all(db)
    .await
}

pub async fn save_type_preference(db: impl PgExecutor<'_>, user: Uuid, p: &TypePreferenceRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO notifications_detailednotificationpreference
             (user_id, notification_type, email_enabled, sms_enabled, in_app_enabled, push_enabled, priority,
              respect_quiet_hours, delay_minutes, max_per_day)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT ON CONSTRAINT notifications_detailednotificationpreference_user_type_key DO UPDATE SET
             email_enabled = EXCLUDED.email_enabled, sms_enabled = EXCLUDED.sms_enabled,
             in_app_enabled = EXCLUDED.in_app_enabled, push_enabled = EXCLUDED.push_enabled,
             priority = EXCLUDED.priority, respect_quiet_hours = EXCLUDED.respect_quiet_hours,
             delay_minutes = EXCLUDED.delay_minutes, max_per_day = EXCLUDED.max_per_day, updated_at = now()",
        user,
        p.notification_type,
        p.email_enabled,
        p.sms_enabled,
        p.in_app_enabled,
        p.push_enabled,
        p.priority,
        p.respect_quiet_hours,
        p.delay_minutes,
        p.max_per_day,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub struct QuietHourRow {
    pub id: Uuid,
    pub day_of_week: i32,
    pub start_time: chrono::NaiveTime,
    pub end_time: chrono::NaiveTime,
    pub is_enabled: bool,
    pub allow_critical_only: bool,
    pub description: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn quiet_hour_rows(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<QuietHourRow>> {
    sqlx::query_as!(
        QuietHourRow,
        "SELECT id, day_of_week, start_time, end_time, is_enabled, allow_critical_only, description, created_at
           FROM notifications_quiethours WHERE user_id = $1 ORDER BY day_of_week, start_time",
        user
    )
    .fetch_all(db)
    .await
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_quiet_hours(
    db: impl PgExecutor<'_>,
    user: Uuid,
    day_of_week: i32,
    start: chrono::NaiveTime,
    end: chrono::NaiveTime,
    is_enabled: bool,
    allow_critical_only: bool,
    description: Option<&str>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO notifications_quiethours
             (user_id, day_of_week, start_time, end_time, is_enabled, allow_critical_only, description)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        user,
        day_of_week,
        start,
        end,
        is_enabled,
        allow_critical_only,
        description,
    )
    .fetch_one(db)
    .await
}

/// Whether a window of `user` with this id was deleted.
pub async fn delete_quiet_hours(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM notifications_quiethours WHERE id = $1 AND user_id = $2", id, user)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub struct BlockRow {
    pub id: Uuid,
    pub block_type: String,
    pub blocked_value: String,
    pub reason: Option<String>,
    pub blocked_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn block_rows(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<BlockRow>> {
    sqlx::query_as!(
        BlockRow,
        "SELECT id, block_type, blocked_value, reason, blocked_at, created_at FROM notifications_notificationblocklist
          WHERE user_id = $1 AND is_active ORDER BY blocked_at DESC",
        user
    )
    .fetch_all(db)
    .await
}

/// Blocks `value`, re-activating an earlier entry for it.
pub async fn upsert_block(
    db: impl PgExecutor<'_>,
    user: Uuid,
    block_type: &str,
    value: &str,
    reason: Option<&str>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO notifications_notificationblocklist (user_id, block_type, blocked_value, reason)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT ON CONSTRAINT notifications_notificationblocklist_user_value_key DO UPDATE SET
             is_active = true, unblocked_at = NULL, blocked_at = now(), reason = EXCLUDED.reason
         RETURNING id",
        user,
        block_type,
        value,
        reason,
    )
    .fetch_one(db)
    .await
}

/// Whether an active entry of `user` with this id was deactivated.
pub async fn deactivate_block(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE notifications_notificationblocklist SET is_active = false, unblocked_at = now()
          WHERE id = $1 AND user_id = $2 AND is_active",
        id,
        user
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub struct ConsentRow {
    pub consent_type: String,
    pub is_consented: bool,
    pub consented_at: Option<chrono::DateTime<chrono::Utc>>,
    pub withdrawn_at: Option<chrono::DateTime<chrono::Utc>>,
    pub source: Option<String>,
    pub ip_address: Option<ipnetwork::IpNetwork>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub async fn consent_rows(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<ConsentRow>> {
    sqlx::query_as!(
        ConsentRow,
        "SELECT consent_type, is_consented, consented_at, withdrawn_at, source, ip_address, updated_at
           FROM notifications_notificationconsent WHERE user_id = $1",
        user
    )
    .fetch_all(db)
    .await
}

/// Records a consent or its withdrawal, with where it came from.
pub async fn save_consent(
    db: impl PgExecutor<'_>,
    user: Uuid,
    consent_type: &str,
    is_consented: bool,
    source: Option<&str>,
    ip: Option<ipnetwork::IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO notifications_notificationconsent
             (user_id, consent_type, is_consented, consented_at, withdrawn_at, source, ip_address, user_agent)
         VALUES ($1, $2, $3, CASE WHEN $3 THEN now() END, CASE WHEN NOT $3 THEN now() END, $4, $5, $6)
         ON CONFLICT ON CONSTRAINT notifications_notificationconsent_user_type_key DO UPDATE SET
             is_consented = EXCLUDED.is_consented,
             consented_at = CASE WHEN EXCLUDED.is_consented THEN now() ELSE notifications_notificationconsent.consented_at END,
             withdrawn_at = CASE WHEN EXCLUDED.is_consented THEN NULL ELSE now() END,
             source = EXCLUDED.source, ip_address = EXCLUDED.ip_address, user_agent = EXCLUDED.user_agent,
             updated_at = now()",
        user,
        consent_type,
        is_consented,
        source,
        ip,
        user_agent,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The user's emails and texts, newest first.
pub async fn deliveries(
    db: impl PgExecutor<'_>,
    user: Uuid,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<super::settings::Delivery>> {
    sqlx::query_as!(
        super::settings::Delivery,
        r#"SELECT id AS "id!", channel AS "channel!", notification_type AS "notification_type!",
                  recipient AS "recipient!", subject, status AS "status!", retry_count AS "retry_count!",
                  due_at AS "due_at!", sent_at, created_at AS "created_at!"
             FROM (SELECT id, 'email' AS channel, email_type AS notification_type, to_email AS recipient, subject,
                          status, retry_count, next_attempt_at AS due_at, sent_at, created_at
                     FROM notifications_emailnotification WHERE user_id = $1
                   UNION ALL
                   SELECT id, 'sms', sms_type, phone_number, NULL, status, retry_count, next_attempt_at, sent_at,
                          created_at
                     FROM notifications_smsnotification WHERE user_id = $1) d
            ORDER BY created_at DESC, id DESC
            LIMIT $2 OFFSET $3"#,
        user,
        limit,
        offset,
    )
    .fetch_all(db)
    .await
}

pub async fn delivery_count(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT (SELECT count(*) FROM notifications_emailnotification WHERE user_id = $1)
                + (SELECT count(*) FROM notifications_smsnotification WHERE user_id = $1) AS "n!""#,
        user
    )
    .fetch_one(db)
    .await
}
