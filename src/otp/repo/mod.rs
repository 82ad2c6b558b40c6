//! SQL of the otp app, by what it keeps: `totp`, `backup` (codes and recoveries), `codes`
//! (emailed and texted codes and their methods), `challenges`; here, what spans them.
//! Functions take any executor; the caller's transaction decides what commits together.
//! Every "use once" is one UPDATE, so of concurrent uses exactly one finds the row still
//! unused.

pub mod backup;
pub mod challenges;
pub mod codes;
pub mod passkeys;
pub mod totp;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::models::Factors;

/// Every factor of a user in one round trip.
pub async fn factors(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Factors> {
    let r = sqlx::query!(
        r#"SELECT
             COALESCE((SELECT is_verified FROM otp_totpdevice WHERE user_id = $1), false) AS "totp!",
             (SELECT is_verified FROM otp_emailmfamethod WHERE user_id = $1) AS email_verified,
             (SELECT email FROM otp_emailmfamethod WHERE user_id = $1) AS email_address,
             (SELECT is_verified FROM otp_smsmfamethod WHERE user_id = $1) AS sms_verified,
             (SELECT phone_number FROM otp_smsmfamethod WHERE user_id = $1) AS phone,
             (SELECT count(*) FROM otp_backupcode WHERE user_id = $1 AND used_at IS NULL) AS "backup!",
             (SELECT count(*) FROM otp_webauthncredential WHERE user_id = $1) AS "passkeys!""#,
        user
    )
    .fetch_one(db)
    .await?;
    Ok(Factors {
        totp: r.totp,
        email: r.email_verified == Some(true),
        sms: r.sms_verified == Some(true),
        backup_codes_remaining: r.backup,
        passkeys: r.passkeys,
        phone: r.phone.filter(|_| r.sms_verified.is_some()),
        email_address: r.email_address,
    })
}

/// The factors of a user proven after `since` (an undone email change lists them).
pub async fn factors_added_since(
    db: impl PgExecutor<'_>,
    user: Uuid,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT m AS "m!" FROM (
               SELECT 'totp' AS m FROM otp_totpdevice WHERE user_id = $1 AND is_verified AND verified_at > $2
               UNION ALL
               SELECT 'email' FROM otp_emailmfamethod WHERE user_id = $1 AND is_verified AND verified_at > $2
               UNION ALL
               SELECT 'sms' FROM otp_smsmfamethod WHERE user_id = $1 AND is_verified AND verified_at > $2
               UNION ALL
               SELECT DISTINCT 'passkey' FROM otp_webauthncredential WHERE user_id = $1 AND created_at > $2
           ) added"#,
        user,
        since
    )
    .fetch_all(db)
    .await
}

/// Expired challenges and codes, deleted by the cleanup job; returns (challenges, codes).
pub async fn delete_expired(db: &mut sqlx::PgConnection) -> sqlx::Result<(u64, u64)> {
    let codes = sqlx::query!("DELETE FROM otp_otp WHERE expires_at < now() - interval '1 hour'")
        .execute(&mut *db)
        .await?
        .rows_affected();
    // A challenge that died unanswered leaves `challenge_expired` as it goes (one that ran
    // out of attempts wrote its row when it died; one a remediation ended says so).
    let challenges = sqlx::query_scalar!(
        r#"WITH gone AS (
               DELETE FROM otp_mfachallenge WHERE expires_at < now() - interval '1 hour'
               RETURNING user_id, device_id, challenge_id, challenge_type, expires_at, verified_at, failed_attempts,
                         max_attempts, metadata
           ), audit AS (
               INSERT INTO audit_log_mfaauditlog
                   (user_id, device_id, action, challenge_id, verification_attempts, max_attempts, risk_level, metadata)
               SELECT user_id, device_id, 'challenge_expired', challenge_id, failed_attempts, max_attempts, 'low',
                      jsonb_build_object('reason', CASE WHEN metadata ? 'ended' THEN 'ended' ELSE 'time' END,
                                         'expired_at', expires_at, 'challenge_type', challenge_type)
                 FROM gone WHERE verified_at IS NULL AND failed_attempts < max_attempts
               RETURNING 1
           )
           SELECT count(*) + 0 * (SELECT count(*) FROM audit) AS "n!" FROM gone"#
    )
    .fetch_one(&mut *db)
    .await?;
    Ok((challenges as u64, codes))
}

/// The addresses codes were used from, and what dates them (core::db::truncate_ips).
pub const IP_COLUMNS: &[crate::core::db::IpColumn] = &[
    crate::core::db::IpColumn { table: "otp_backupcode", ip: "used_by_ip", dated_by: "used_at" },
    crate::core::db::IpColumn { table: "otp_mfarecovery", ip: "used_by_ip", dated_by: "used_at" },
    crate::core::db::IpColumn { table: "otp_otp", ip: "used_by_ip", dated_by: "used_at" },
];
