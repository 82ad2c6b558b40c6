//! Staff routes over users and MFA change approvals. Each declares its Django-style
//! permission in the OpenAPI document (`x-permission`) and checks the same one first.

use axum::{Json, extract::State, http::StatusCode};
use uuid::Uuid;

use crate::{
    accounts::{
        forms::admin::{ChangeReason, ChangeRequestQuery, UserPatch, UserSearchQuery},
        models::{
            User,
            admin::{AdminUserDetail, MfaChangeView},
        },
        service,
    },
    core::{
        AppResult, AppState,
        auth::{AuthUser, require_admin_write, require_permission},
        client::ClientContext,
        error::ErrorBody,
        extract::{AppJson, AppPath, AppQuery, OptionalJson, Paginated},
    },
};

#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])), params(UserSearchQuery),
    extensions(("x-permission" = json!("accounts.view_user"))), responses(
    (status = 200, body = Paginated<User>, description = "users, newest first"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED"),
))]
pub async fn admin_users(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<UserSearchQuery>,
) -> AppResult<Json<Paginated<User>>> {
    require_permission(&state, &auth, "accounts.view_user").await?;
    let (filter, page) = q.parse()?;
    let (items, total) = service::list_users(&state, &filter, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[utoipa::path(get, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), extensions(("x-permission" = json!("accounts.view_user"))), responses(
    (status = 200, body = AdminUserDetail, description = "the user with groups, lock state, MFA, sessions and devices"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED"),
))]
pub async fn admin_user(
    State(state): State<AppState>,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<Json<AdminUserDetail>> {
    require_permission(&state, &auth, "accounts.view_user").await?;
    Ok(Json(service::user_detail(&state, id).await?))
}

#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UserPatch,
    extensions(("x-permission" = json!("accounts.change_user"))), responses(
    (status = 200, body = AdminUserDetail, description = "changed and audited with the acting admin; is_active false revokes every session"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN (is_staff or groups by a non-superuser, or any change to oneself) or MFA_REQUIRED. Admin writes need a second factor within STEP_UP_MAX_AGE_SECONDS (MFA_REQUIRED otherwise) and only a superuser acts on a superuser (FORBIDDEN otherwise)"),
    (status = 422, body = ErrorBody, description = "VALIDATION_FAILED, e.g. an unknown group name"),
))]
pub async fn admin_update_user(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<UserPatch>,
) -> AppResult<Json<AdminUserDetail>> {
    require_admin_write(&state, &auth, "accounts.change_user").await?;
    let patch = body.parse()?;
    Ok(Json(service::update_user(&state, &client, &auth, id, patch).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/users/{id}/unlock", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), extensions(("x-permission" = json!("accounts.change_user"))), responses(
    (status = 204, description = "the login lock is lifted; audited"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED. Admin writes need a second factor within STEP_UP_MAX_AGE_SECONDS (MFA_REQUIRED otherwise) and only a superuser acts on a superuser (FORBIDDEN otherwise)"),
))]
pub async fn admin_unlock(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    require_admin_write(&state, &auth, "accounts.change_user").await?;
    service::admin_unlock(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/admin/users/{id}/logout-all", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), extensions(("x-permission" = json!("accounts.change_user"))), responses(
    (status = 204, description = "every session of the user is revoked; audited"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED. Admin writes need a second factor within STEP_UP_MAX_AGE_SECONDS (MFA_REQUIRED otherwise) and only a superuser acts on a superuser (FORBIDDEN otherwise)"),
))]
pub async fn admin_logout_all(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    require_admin_write(&state, &auth, "accounts.change_user").await?;
    service::admin_logout_all(&state, &client, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/admin/users/{id}/mfa/reset", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body(content = ChangeReason, description = "optional: how the identity was checked"),
    extensions(("x-permission" = json!("accounts.add_mfachangelog"))), responses(
    (status = 201, body = MfaChangeView, description = "a pending request to remove every factor; applied when another staff member approves it"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED. Admin writes need a second factor within STEP_UP_MAX_AGE_SECONDS (MFA_REQUIRED otherwise) and only a superuser acts on a superuser (FORBIDDEN otherwise)"),
    (status = 409, body = ErrorBody, description = "MFA_NOT_ENABLED: nothing to reset"),
))]
pub async fn admin_mfa_reset(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<ChangeReason>,
) -> AppResult<(StatusCode, Json<MfaChangeView>)> {
    require_admin_write(&state, &auth, "accounts.add_mfachangelog").await?;
    let reason = body.parse()?;
    Ok((StatusCode::CREATED, Json(service::request_mfa_reset(&state, &client, &auth, id, reason).await?)))
}

#[utoipa::path(get, path = "/api/v1/admin/mfa/change-requests", tag = "admin", security(("bearer" = [])),
    params(ChangeRequestQuery), extensions(("x-permission" = json!("accounts.view_mfachangelog"))), responses(
    (status = 200, body = Paginated<MfaChangeView>, description = "change requests that need approval; pending ones oldest first"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN or MFA_REQUIRED"),
))]
pub async fn admin_change_requests(
    State(state): State<AppState>,
    auth: AuthUser,
    AppQuery(q): AppQuery<ChangeRequestQuery>,
) -> AppResult<Json<Paginated<MfaChangeView>>> {
    require_permission(&state, &auth, "accounts.view_mfachangelog").await?;
    let (status, page) = q.parse()?;
    let (items, total) = service::change_requests(&state, status, page).await?;
    Ok(Json(Paginated::new(items, page, total)))
}

#[utoipa::path(post, path = "/api/v1/admin/mfa/change-requests/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), extensions(("x-permission" = json!("accounts.approve_mfachangelog"))), responses(
    (status = 204, description = "applied (a reset also signs the user out everywhere); audited; the user is emailed"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: the approver is the user or who asked; or MFA_REQUIRED. Admin writes need a second factor within STEP_UP_MAX_AGE_SECONDS (MFA_REQUIRED otherwise) and only a superuser acts on a superuser (FORBIDDEN otherwise)"),
    (status = 404, body = ErrorBody, description = "no such pending request"),
))]
pub async fn admin_approve_change(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
) -> AppResult<StatusCode> {
    require_admin_write(&state, &auth, "accounts.approve_mfachangelog").await?;
    service::approve_mfa_change(&state, &client, id, Some(&auth)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/admin/mfa/change-requests/{id}/reject", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body(content = ChangeReason, description = "optional"),
    extensions(("x-permission" = json!("accounts.approve_mfachangelog"))), responses(
    (status = 204, description = "rejected, nothing changed; audited; the user is emailed"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: the approver is the user or who asked; or MFA_REQUIRED. Admin writes need a second factor within STEP_UP_MAX_AGE_SECONDS (MFA_REQUIRED otherwise) and only a superuser acts on a superuser (FORBIDDEN otherwise)"),
    (status = 404, body = ErrorBody, description = "no such pending request"),
))]
pub async fn admin_reject_change(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppPath(id): AppPath<Uuid>,
    OptionalJson(body): OptionalJson<ChangeReason>,
) -> AppResult<StatusCode> {
    require_admin_write(&state, &auth, "accounts.approve_mfachangelog").await?;
    let reason = body.parse()?;
    service::reject_mfa_change(&state, &client, id, &auth, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}
