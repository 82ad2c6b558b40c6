//! Inserts into the four partitioned audit tables. They take any executor, so an event
//! joins the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::audit_log::models::events::{DeviceEvent, LinkEvent, MfaEvent, SessionEvent, fit, reasons};

pub async fn insert_session_event(db: impl PgExecutor<'_>, e: &SessionEvent) -> sqlx::Result<()> {
    let c = e.columns();
    sqlx::query!(
        r#"INSERT INTO audit_log_sessionauditlog
             (user_id, session_id, device_id, action, session_type, mfa_verified, mfa_method, country, city,
              ip_address, risk_level, is_anomalous, anomaly_reasons, requires_review, metadata, error_message,
              created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, COALESCE($17, now()))"#,
        e.user_id,
        e.session_id,
        e.device_id,
        c.action,
        c.session_type,
        e.mfa_verified,
        c.mfa_method,
        c.country,
        c.city,
        e.origin.ip,
        c.risk_level,
        e.flags.is_anomalous,
        c.anomaly_reasons.as_deref(),
        e.flags.requires_review,
        e.metadata,
        e.error_message,
        e.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_device_event(db: impl PgExecutor<'_>, e: &DeviceEvent) -> sqlx::Result<()> {
    let level = crate::audit_log::models::events::RiskLevel::from_score(e.risk_score);
    let reasons = reasons(&e.flags.anomaly_reasons);
    sqlx::query!(
        r#"INSERT INTO audit_log_deviceauditlog
             (user_id, device_id, session_id, action, device_type, browser, os, risk_score, previous_risk_score,
              risk_level, is_anomalous, anomaly_reasons, requires_review, country, city, ip_address,
              trust_state_change, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                   COALESCE($19, now()))"#,
        e.user_id,
        e.device_id,
        e.session_id,
        e.action.as_str(),
        fit(&e.device_type, 50),
        fit(&e.browser, 100),
        fit(&e.os, 100),
        e.risk_score.clamp(0, 100),
        e.previous_risk_score.map(|s| s.clamp(0, 100)),
        level.as_str(),
        e.flags.is_anomalous,
        reasons.as_deref(),
        e.flags.requires_review,
        fit(&e.origin.country, 100),
        fit(&e.origin.city, 100),
        e.origin.ip,
        fit(&e.trust_state_change, 100),
        e.metadata,
        e.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_mfa_event(db: impl PgExecutor<'_>, e: &MfaEvent) -> sqlx::Result<()> {
    let reasons = reasons(&e.flags.anomaly_reasons);
    sqlx::query!(
        r#"INSERT INTO audit_log_mfaauditlog
             (user_id, device_id, session_id, action, mfa_method, challenge_id, verification_attempts,
              request_count_last_hour, rate_limit_status, ip_address, risk_level, is_anomalous, anomaly_reasons,
              requires_review, old_value, new_value, metadata, created_at, recovery_method)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                   COALESCE($18, now()), $19)"#,
        e.user_id,
        e.device_id,
        e.session_id,
        e.action.as_str(),
        e.mfa_method,
        e.challenge_id,
        e.verification_attempts,
        e.request_count_last_hour,
        e.rate_limit_status,
        e.origin.ip,
        e.risk_level.as_str(),
        e.flags.is_anomalous,
        reasons.as_deref(),
        e.flags.requires_review,
        e.old_value,
        e.new_value,
        e.metadata,
        e.created_at,
        e.recovery_method,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_link_event(db: impl PgExecutor<'_>, e: &LinkEvent) -> sqlx::Result<()> {
    let reasons = reasons(&e.flags.anomaly_reasons);
    sqlx::query!(
        r#"INSERT INTO audit_log_sessiondevicelinkauditlog
             (user_id, session_id, device_id, link_action, previous_device_id, link_duration_seconds, ip_address,
              risk_level, is_anomalous, anomaly_reasons, requires_review, metadata, created_at, verified_at, trusted_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, COALESCE($13, now()),
                   CASE WHEN $4::varchar = 'verified' THEN COALESCE($13, now()) END,
                   CASE WHEN $4::varchar = 'trusted' THEN COALESCE($13, now()) END)"#,
        e.user_id,
        e.session_id,
        e.device_id,
        e.action.as_str(),
        e.previous_device_id,
        e.link_duration_seconds,
        e.origin.ip,
        e.risk_level.as_str(),
        e.flags.is_anomalous,
        reasons.as_deref(),
        e.flags.requires_review,
        e.metadata,
        e.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// When `user`'s wrong answers with `method` happened since `since`, oldest first (at most
/// the newest 200: enough to find any lock a policy can set).
pub async fn mfa_failures_since(
    db: impl PgExecutor<'_>,
    user: Uuid,
    method: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    let mut times = sqlx::query_scalar!(
        "SELECT created_at FROM audit_log_mfaauditlog
          WHERE user_id = $1 AND mfa_method = $2 AND action = 'failed' AND created_at > $3
          ORDER BY created_at DESC LIMIT 200",
        user,
        method,
        since
    )
    .fetch_all(db)
    .await?;
    times.reverse();
    Ok(times)
}
