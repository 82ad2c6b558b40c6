//! The user's notification settings and delivery history.

use sqlx::PgExecutor;
use uuid::Uuid;

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
) -> sqlx::Result<Vec<crate::notifications::models::Delivery>> {
    sqlx::query_as!(
        crate::notifications::models::Delivery,
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
