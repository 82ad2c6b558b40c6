//! Administration of one user (API.md "Administration") and the operator's
//! `createsuperuser`. The caller's permission is checked by the handler.

use uuid::Uuid;

use super::{
    account_event,
    lockout::account_lock,
    mfa::mfa_status_of,
    recovery::{Remedy, end_grants},
    registration::create_user,
    session_event,
    tokens::sign_out_everywhere,
};
use crate::{
    accounts::{
        credentials,
        forms::{
            admin::{UserPatch, UserSearch},
            auth::Registration,
        },
        models::{
            User, UserRow,
            admin::{AdminUserDetail, LockState},
        },
        repo::{self, api_keys::KeySelection},
    },
    audit_log::{self, SessionAction, SessionEvent},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, extract::Page},
};

/// `gatehouse createsuperuser`: a verified staff superuser.
#[tracing::instrument(skip_all, fields(username = r.username.as_str()))]
pub async fn create_superuser(state: &AppState, r: Registration) -> AppResult<User> {
    let hash = credentials::hash(state, r.password.clone()).await?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = create_user(&mut tx, &r, &hash).await?;
    repo::users::make_superuser(&mut *tx, user.id).await?;
    account_event(&mut tx, Some(user.id), "superuser_created", serde_json::json!({}), &ClientContext::default())
        .await?;
    let user = repo::users::user_by_id(&mut *tx, user.id).await?.ok_or(AppError::NotFound)?;
    crate::core::db::commit(tx).await?;
    Ok(user.into())
}

/// Lifts a login lock: an `unlock` row restarts the identifier's failure count.
pub async fn admin_unlock(state: &AppState, client: &ClientContext, admin: &AuthUser, user_id: Uuid) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::NotFound)?;
    // Lifting a superuser's lock would let anyone below them reopen a brute force on them.
    outranks(admin, &user)?;
    repo::attempts::insert_unlock(&mut *tx, &user.email, user.id).await?;
    let details = serde_json::json!({ "by": admin.user_id });
    account_event(&mut tx, Some(user.id), "unlocked", details.clone(), client).await?;
    let event =
        SessionEvent { metadata: Some(details), ..session_event(user.id, SessionAction::AccountUnlocked, client) };
    audit_log::record_session(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    Ok(())
}

/// Signs a user out everywhere (`tokens::sign_out_everywhere`, the admin recorded): only a
/// superuser does it to a superuser.
pub async fn admin_logout_all(
    state: &AppState,
    client: &ClientContext,
    admin: &AuthUser,
    user_id: Uuid,
) -> AppResult<usize> {
    let target = repo::users::user_by_id(&state.db, user_id).await?.ok_or(AppError::NotFound)?;
    outranks(admin, &target)?;
    sign_out_everywhere(state, client, user_id, Some(admin.user_id)).await
}

/// The staff hierarchy (API.md "Recovery"): only a superuser acts on a superuser.
pub(super) fn outranks(admin: &AuthUser, target: &UserRow) -> AppResult<()> {
    if target.is_superuser && !admin.is_superuser {
        return Err(AppError::ForbiddenBecause("Only a superuser may act on a superuser."));
    }
    Ok(())
}

/// `GET /admin/users`: a page of users matching `filter`, and the total.
pub async fn list_users(state: &AppState, filter: &UserSearch, page: Page) -> AppResult<(Vec<User>, i64)> {
    let (rows, total) = repo::users::search_users(
        &state.db,
        filter.search.as_deref(),
        filter.is_active,
        filter.is_staff,
        page.limit,
        page.offset(),
    )
    .await?;
    Ok((rows.into_iter().map(User::from).collect(), total))
}

/// `GET /admin/users/{id}`: the user with groups, lock state, MFA, sessions and devices.
pub async fn user_detail(state: &AppState, user_id: Uuid) -> AppResult<AdminUserDetail> {
    let mut conn = state.db.acquire().await?;
    let user = repo::users::user_by_id(&mut *conn, user_id).await?.ok_or(AppError::NotFound)?;
    let retry_after_seconds = account_lock(&mut *conn, &user.email).await?;
    let mfa = mfa_status_of(&mut conn, user_id).await?;
    // Uuid::nil matches no session: none of them is the caller's.
    let sessions = repo::sessions::active_sessions(&mut *conn, user_id, Uuid::nil()).await?;
    let devices = repo::devices::devices(&mut *conn, user_id, Uuid::nil(), None).await?;
    let groups = repo::permissions::user_groups(&mut *conn, user_id).await?;
    let recent_events = repo::users::account_events(&mut *conn, user_id, 20).await?;
    let mfa_settings = repo::mfa::policy_row(&mut conn, user_id).await?;
    Ok(AdminUserDetail {
        mfa_settings,
        user: user.into(),
        groups,
        lock: LockState { locked: retry_after_seconds.is_some(), retry_after_seconds },
        mfa,
        sessions,
        devices,
        recent_events,
    })
}

/// Seconds until `email`'s login lock lifts, or None when the next login would be let in.
pub async fn lock_of(state: &AppState, email: &str) -> AppResult<Option<u64>> {
    account_lock(&state.db, email).await
}

/// `PATCH /admin/users/{id}`. Staff flags and groups are a superuser's to change, only a
/// superuser changes a superuser, and nobody changes their own (an admin cannot lock
/// themselves out or raise themselves). Deactivating ends every grant (`Remedy::
/// Deactivation`); losing staff ends the keys with staff scopes. One transaction, audited
/// with the admin.
pub async fn update_user(
    state: &AppState,
    client: &ClientContext,
    admin: &AuthUser,
    user_id: Uuid,
    patch: UserPatch,
) -> AppResult<AdminUserDetail> {
    if (patch.is_staff.is_some() || patch.groups.is_some() || patch.mfa_settings.is_some()) && !admin.is_superuser {
        return Err(AppError::Forbidden);
    }
    if user_id == admin.user_id {
        return Err(AppError::Forbidden);
    }
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::NotFound)?;
    outranks(admin, &user)?;
    if let Some(groups) = &patch.groups {
        let unknown = repo::permissions::unknown_groups(&mut *tx, groups).await?;
        if !unknown.is_empty() {
            return Err(AppError::validation("groups", format!("no such group: {}", unknown.join(", "))));
        }
        repo::permissions::set_user_groups(&mut *tx, user_id, groups).await?;
    }
    repo::users::set_flags(&mut *tx, user_id, patch.is_active, patch.is_staff).await?;
    if patch.is_staff == Some(true) && !user.is_staff {
        repo::mfa::start_staff_grace(&mut *tx, user_id).await?;
    }
    if let Some(settings) = &patch.mfa_settings {
        let methods: Vec<_> = (settings.methods.iter().flatten())
            .map(|(m, l)| repo::mfa::MethodLimitsSet {
                method: m.clone(),
                rate_limit_per_hour: l.rate_limit_per_hour,
                max_attempts: l.max_attempts,
                lockout_minutes: l.lockout_minutes,
            })
            .collect();
        repo::mfa::set_policy(
            &mut tx,
            user_id,
            settings.grace_period_days,
            settings.code_length,
            settings.code_validity_seconds,
            settings.enforce_for_api,
            &methods,
        )
        .await?;
    }
    let ended = if patch.is_active == Some(false) && user.is_active {
        Some(
            end_grants(&mut tx, client, user_id, Remedy::Deactivation, SessionAction::SessionRevoked, "deactivated")
                .await?,
        )
    } else {
        None
    };
    // Keys with staff scopes stand in for a staff session: they stop with the staff flag.
    let staff_keys = if patch.is_staff == Some(false) && user.is_staff {
        repo::api_keys::revoke_keys(&mut *tx, user_id, KeySelection::AdminScoped).await?
    } else {
        Vec::new()
    };
    let details = serde_json::json!({
        "by": admin.user_id,
        "is_active": patch.is_active,
        "is_staff": patch.is_staff,
        "groups": patch.groups,
        "mfa_settings": patch.mfa_settings,
        "sessions_revoked": ended.as_ref().map_or(0, |e| e.sessions.len()),
        "ended": ended.as_ref().map(|e| e.details()),
        "staff_keys_revoked": staff_keys.iter().map(|k| k.id).collect::<Vec<_>>(),
    });
    account_event(&mut tx, Some(user_id), "user_changed_by_admin", details, client).await?;
    crate::core::db::commit(tx).await?;
    for key in &staff_keys {
        state.auth_cache.evict(key.id);
    }
    if let Some(ended) = ended {
        ended.settle(state).await;
    }
    user_detail(state, user_id).await
}

/// Usernames of the given users, for staff pages that show who an event is about.
pub async fn usernames(state: &AppState, ids: &[Uuid]) -> AppResult<Vec<(Uuid, String)>> {
    Ok(repo::users::usernames(&state.db, ids).await?)
}
