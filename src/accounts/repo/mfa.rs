//! accounts_mfasettings, accounts_mfamethodpreference and accounts_mfachangelog (device
//! trust is in `devices.rs`, raising a session in `sessions`).

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::{
    accounts::models::admin::{MfaChangeView, MfaPolicy},
    otp::{self, MfaMethod, Policy, policy::MethodLimits},
};

/// The user's MFA switches; defaults where no row exists.
pub struct MfaSettingsRow {
    pub is_enabled: bool,
    pub primary_method: String,
}

pub async fn mfa_settings(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<MfaSettingsRow> {
    let row = sqlx::query!("SELECT is_enabled, primary_method FROM accounts_mfasettings WHERE user_id = $1", user)
        .fetch_optional(db)
        .await?;
    Ok(row.map_or(MfaSettingsRow { is_enabled: false, primary_method: "totp".into() }, |r| MfaSettingsRow {
        is_enabled: r.is_enabled,
        primary_method: r.primary_method,
    }))
}

/// The policy the user's codes and answers run under: the stored one (`policy_row`), each
/// value kept within its bounds.
pub async fn policy(db: &mut sqlx::PgConnection, user: Uuid) -> sqlx::Result<Policy> {
    let stored = policy_row(db, user).await?;
    let methods = stored.methods.iter().filter_map(|(m, l)| MfaMethod::parse(m).map(|m| (m, *l))).collect();
    Ok(Policy::from_stored(stored.code_length, stored.code_validity_seconds, methods))
}

/// The stored policy, built-in values where no row exists (`mfa_settings` of
/// `GET /admin/users/{id}`).
pub async fn policy_row(db: &mut sqlx::PgConnection, user: Uuid) -> sqlx::Result<MfaPolicy> {
    let settings = sqlx::query!(
        "SELECT grace_period_days, code_length, code_validity_seconds, enforce_for_api, grace_started_at
           FROM accounts_mfasettings WHERE user_id = $1",
        user
    )
    .fetch_optional(&mut *db)
    .await?;
    let methods = sqlx::query!(
        "SELECT mfa_method, rate_limit_per_hour, max_attempts, lockout_minutes
           FROM accounts_mfamethodpreference WHERE user_id = $1 ORDER BY mfa_method",
        user
    )
    .fetch_all(&mut *db)
    .await?;
    let methods = methods
        .into_iter()
        .map(|r| {
            let limits = MethodLimits {
                rate_limit_per_hour: r.rate_limit_per_hour,
                max_attempts: r.max_attempts,
                lockout_minutes: r.lockout_minutes,
            };
            (r.mfa_method, limits)
        })
        .collect();
    Ok(match settings {
        Some(s) => MfaPolicy {
            grace_period_days: s.grace_period_days,
            grace_started_at: s.grace_started_at,
            code_length: s.code_length,
            code_validity_seconds: s.code_validity_seconds,
            enforce_for_api: s.enforce_for_api,
            methods,
        },
        None => MfaPolicy {
            grace_period_days: 0,
            grace_started_at: None,
            code_length: otp::policy::BUILT_IN_CODE_LENGTH,
            code_validity_seconds: otp::policy::BUILT_IN_CODE_VALIDITY_SECONDS,
            enforce_for_api: true,
            methods,
        },
    })
}

/// One method's limits to set; None keeps the stored value (the built-in one for a new row).
#[derive(Debug, Clone)]
pub struct MethodLimitsSet {
    pub method: String,
    pub rate_limit_per_hour: Option<i32>,
    pub max_attempts: Option<i32>,
    pub lockout_minutes: Option<i32>,
}

/// Sets the policy values given (None: unchanged); method rows are created when missing,
/// off and not set up (a policy for a method is not the method).
pub async fn set_policy(
    db: &mut sqlx::PgConnection,
    user: Uuid,
    grace_period_days: Option<i32>,
    code_length: Option<i32>,
    code_validity_seconds: Option<i32>,
    enforce_for_api: Option<bool>,
    methods: &[MethodLimitsSet],
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_mfasettings (user_id, grace_period_days, code_length, code_validity_seconds, enforce_for_api)
         VALUES ($1, COALESCE($2, 0), COALESCE($3, 6), COALESCE($4, 300), COALESCE($5, true))
         ON CONFLICT (user_id) DO UPDATE
            SET grace_period_days = COALESCE($2, accounts_mfasettings.grace_period_days),
                code_length = COALESCE($3, accounts_mfasettings.code_length),
                code_validity_seconds = COALESCE($4, accounts_mfasettings.code_validity_seconds),
                enforce_for_api = COALESCE($5, accounts_mfasettings.enforce_for_api),
                updated_at = now()",
        user,
        grace_period_days,
        code_length,
        code_validity_seconds,
        enforce_for_api
    )
    .execute(&mut *db)
    .await?;
    for l in methods {
        sqlx::query!(
            "INSERT INTO accounts_mfamethodpreference
                 (user_id, mfa_method, is_enabled, rate_limit_per_hour, max_attempts, lockout_minutes)
             VALUES ($1, $2, false, COALESCE($3, 10), COALESCE($4, 3), COALESCE($5, 30))
             ON CONFLICT (user_id, mfa_method) DO UPDATE
                SET rate_limit_per_hour = COALESCE($3, accounts_mfamethodpreference.rate_limit_per_hour),
                    max_attempts = COALESCE($4, accounts_mfamethodpreference.max_attempts),
                    lockout_minutes = COALESCE($5, accounts_mfamethodpreference.lockout_minutes),
                    updated_at = now()",
            user,
            l.method,
            l.rate_limit_per_hour,
            l.max_attempts,
            l.lockout_minutes
        )
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}

/// Starts the grace period of an account just made staff (`grace_period_days` counts from
/// here).
pub async fn start_staff_grace(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_mfasettings (user_id, grace_started_at) VALUES ($1, now())
         ON CONFLICT (user_id) DO UPDATE SET grace_started_at = now(), updated_at = now()",
        user
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Whether the user's API keys stop when MFA goes off (`enforce_for_api`, on by default).
pub async fn enforce_for_api(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<bool> {
    let on = sqlx::query_scalar!("SELECT enforce_for_api FROM accounts_mfasettings WHERE user_id = $1", user)
        .fetch_optional(db)
        .await?;
    Ok(on.unwrap_or(true))
}

/// Turns MFA on or off; `primary` becomes the primary method when given.
pub async fn set_mfa_enabled(
    db: impl PgExecutor<'_>,
    user: Uuid,
    enabled: bool,
    primary: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_mfasettings (user_id, is_enabled, primary_method) VALUES ($1, $2, COALESCE($3, 'totp'))
         ON CONFLICT (user_id) DO UPDATE
            SET is_enabled = $2, primary_method = COALESCE($3, accounts_mfasettings.primary_method), updated_at = now()",
        user,
        enabled,
        primary
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records a method's state for the user (accounts_mfamethodpreference).
pub async fn set_method_state(
    db: impl PgExecutor<'_>,
    user: Uuid,
    method: &str,
    enabled: bool,
    setup_completed: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_mfamethodpreference (user_id, mfa_method, is_enabled, setup_completed)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, mfa_method) DO UPDATE
            SET is_enabled = $3, setup_completed = $4, updated_at = now()",
        user,
        method,
        enabled,
        setup_completed
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A row of accounts_mfachangelog.
#[derive(Debug, Clone)]
pub struct MfaChange {
    pub id: Uuid,
    pub user_id: Uuid,
    pub action: String,
    pub mfa_method: Option<String>,
    pub approval_status: String,
    pub requested_by_id: Option<Uuid>,
    /// The one passkey a removal request names.
    pub passkey_id: Option<Uuid>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_mfa_change(
    db: impl PgExecutor<'_>,
    user: Uuid,
    action: &str,
    method: Option<&str>,
    old_value: Option<serde_json::Value>,
    new_value: Option<serde_json::Value>,
    reason: Option<&str>,
    approval_status: &str,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO accounts_mfachangelog
             (user_id, action, mfa_method, old_value, new_value, change_reason, approval_required, approval_status)
         VALUES ($1, $2, $3, $4, $5, $6, $7 = 'pending', $7) RETURNING id",
        user,
        action,
        method,
        old_value,
        new_value,
        reason,
        approval_status
    )
    .fetch_one(db)
    .await
}

/// A change that waits for a second person's approval; `requested_by` may not approve it.
pub async fn insert_change_request(
    db: impl PgExecutor<'_>,
    user: Uuid,
    action: &str,
    method: Option<&str>,
    reason: Option<&str>,
    requested_by: Uuid,
    passkey: Option<Uuid>,
) -> sqlx::Result<Uuid> {
    // One passkey's removal names it, so the approval removes that one and no other.
    sqlx::query_scalar!(
        "INSERT INTO accounts_mfachangelog
             (user_id, action, mfa_method, old_value, change_reason, approval_required, approval_status, requested_by_id)
         VALUES ($1, $2, $3::text,
                 CASE WHEN $3::text IS NOT NULL
                      THEN jsonb_build_object('method', $3::text)
                           || COALESCE(jsonb_build_object('passkey_id', $6::uuid), '{}') END,
                 $4, true, 'pending', $5)
         RETURNING id",
        user,
        action,
        method,
        reason,
        requested_by,
        passkey,
    )
    .fetch_one(db)
    .await
}

/// Change requests that needed approval (all, or the one `only`), pending ones oldest
/// first, then decided ones newest first, with the total for paging.
pub async fn change_requests(
    db: impl PgExecutor<'_>,
    status: Option<&str>,
    only: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<MfaChangeView>, i64)> {
    let rows = sqlx::query!(
        r#"SELECT c.id, c.user_id, u.username, u.email, c.action, c.mfa_method, c.change_reason, c.approval_status,
                  c.requested_by_id, c.approved_by_id, c.approved_at, c.requested_at, count(*) OVER () AS "total!"
             FROM accounts_mfachangelog c JOIN auth_user u ON u.id = c.user_id
            WHERE c.approval_required AND ($1::text IS NULL OR c.approval_status = $1)
              AND ($4::uuid IS NULL OR c.id = $4)
            ORDER BY CASE WHEN c.approval_status = 'pending' THEN c.requested_at END ASC,
                     c.requested_at DESC
            LIMIT $2 OFFSET $3"#,
        status,
        limit,
        offset,
        only
    )
    .fetch_all(db)
    .await?;
    let total = rows.first().map_or(0, |r| r.total);
    let items = rows
        .into_iter()
        .map(|r| MfaChangeView {
            id: r.id,
            user_id: r.user_id,
            username: r.username,
            email: r.email,
            action: r.action,
            mfa_method: r.mfa_method,
            change_reason: r.change_reason,
            approval_status: r.approval_status,
            requested_by_id: r.requested_by_id,
            approved_by_id: r.approved_by_id,
            approved_at: r.approved_at,
            requested_at: r.requested_at,
        })
        .collect();
    Ok((items, total))
}

/// A pending change request, locked until the transaction ends.
pub async fn lock_pending_change(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<MfaChange>> {
    sqlx::query_as!(
        MfaChange,
        r#"SELECT id, user_id, action, mfa_method, approval_status, requested_by_id,
                  (old_value->>'passkey_id')::uuid AS "passkey_id?"
             FROM accounts_mfachangelog
            WHERE id = $1 AND approval_status = 'pending' FOR UPDATE"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn decide_change(db: impl PgExecutor<'_>, id: Uuid, status: &str, by: Option<Uuid>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_mfachangelog SET approval_status = $2, approved_by_id = $3, approved_at = now() WHERE id = $1",
        id,
        status,
        by
    )
    .execute(db)
    .await?;
    Ok(())
}
