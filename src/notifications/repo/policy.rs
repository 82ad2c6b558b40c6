//! What the delivery policy reads about a user before a message is queued.

use sqlx::PgExecutor;
use uuid::Uuid;

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
    /// The global quiet window (`notifications_notificationpreference`), every day.
    pub quiet_hours_enabled: bool,
    pub quiet_start: Option<chrono::NaiveTime>,
    pub quiet_end: Option<chrono::NaiveTime>,
    /// The user's priority for this type, when set.
    pub priority: Option<String>,
    /// The in-app and push switches of the type, and push for the account.
    pub in_app_enabled: bool,
    pub push_enabled: bool,
    pub push_global: bool,
    /// `real-time`, or the period of the digest non-security emails wait for.
    pub digest_frequency: String,
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
                  COALESCE(p.quiet_hours_enabled, false) AS "quiet_hours_enabled!",
                  p.quiet_start AS "quiet_start?",
                  p.quiet_end AS "quiet_end?",
                  d.priority AS "priority?",
                  COALESCE(d.in_app_enabled, true) AS "in_app_enabled!",
                  COALESCE(d.push_enabled, true) AS "push_enabled!",
                  COALESCE(p.push_enabled, false) AS "push_global!",
                  COALESCE(p.digest_frequency, 'real-time') AS "digest_frequency!",
                  EXISTS (SELECT 1 FROM notifications_notificationblocklist b
                           WHERE b.user_id = u.id AND b.is_active
                             AND ((b.block_type = 'notification_type' AND b.blocked_value = $2)
                               OR (b.block_type = 'channel' AND b.blocked_value = $3)
                               OR (b.block_type = 'sender' AND b.blocked_value = $4))) AS "blocked!",
                  COALESCE(c.is_consented, false) AS "consented!",
                  (SELECT count(*) FROM notifications_notificationlog l
                    WHERE l.user_id = u.id AND l.notification_type = $2 AND l.channel = $3
                      AND l.decision IN ('queued', 'deferred', 'held')
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

pub async fn quiet_windows(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> sqlx::Result<Vec<crate::notifications::models::Window>> {
    let rows = sqlx::query!(
        "SELECT day_of_week, start_time, end_time, allow_critical_only FROM notifications_quiethours
          WHERE user_id = $1 AND is_enabled",
        user_id
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| crate::notifications::models::Window {
            day_of_week: r.day_of_week,
            start: r.start_time,
            end: r.end_time,
            allow_critical_only: r.allow_critical_only,
        })
        .collect())
}
