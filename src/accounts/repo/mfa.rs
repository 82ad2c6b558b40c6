//! accounts_mfasettings, accounts_mfamethodpreference and accounts_mfachangelog (device
//! trust is in `devices.rs`, raising a session in `sessions`).

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::accounts::models::admin::MfaChangeView;

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
