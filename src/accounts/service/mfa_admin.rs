//! MFA changes decided by someone else than the user: a staff member's (or an operator's)
//! approval of a pending change request, and the operator's TOTP enrolment at the shell for
//! the first staff account, before any session exists.

use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    admin::outranks,
    challenges::mfa_event,
    mfa::apply_removal,
    mfa_setup::{begin_totp, totp_confirm},
    recovery::{Ended, Remedy, end_grants},
};
use crate::{
    accounts::{
        models::{BackupCodes, Email, admin::MfaChangeView},
        repo,
    },
    audit_log::{self, MfaAction, MfaEvent, RiskLevel, SessionAction},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, error::Conflict, extract::Page},
    notifications::{self, Message},
    otp::{self, MfaMethod, TotpSetup},
};

/// `GET /admin/mfa/change-requests`: requests that need approval, by status.
pub async fn change_requests(
    state: &AppState,
    status: Option<&str>,
    page: Page,
) -> AppResult<(Vec<MfaChangeView>, i64)> {
    Ok(repo::mfa::change_requests(&state.db, status, None, page.limit, page.offset()).await?)
}

/// `POST /admin/users/{id}/mfa/reset`: asks for every factor of a user who lost them all
/// to be removed. Nothing changes until a second staff member approves (the identity
/// check happens out of band; `reason` records it).
pub async fn request_mfa_reset(
    state: &AppState,
    client: &ClientContext,
    admin: &AuthUser,
    user_id: Uuid,
    reason: Option<String>,
) -> AppResult<MfaChangeView> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::NotFound)?;
    outranks(admin, &user)?;
    if !user.mfa_enabled {
        return Err(AppError::Conflict(Conflict::MfaNotEnabled));
    }
    let id = repo::mfa::insert_change_request(&mut *tx, user.id, RESET, None, reason.as_deref(), admin.user_id, None)
        .await?;
    let event = MfaEvent {
        metadata: Some(serde_json::json!({ "change_request_id": id, "requested_by": admin.user_id })),
        risk_level: RiskLevel::High,
        ..mfa_event(user.id, MfaAction::ChangeRequested, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    let (mut found, _) = repo::mfa::change_requests(&mut *tx, None, Some(id), 1, 0).await?;
    crate::core::db::commit(tx).await?;
    found.pop().ok_or(AppError::NotFound)
}

/// The action of a staff-requested reset of every factor.
const RESET: &str = "reset";

/// Approves a pending MFA change request and applies it. `approver` is a staff member who
/// is neither the user nor whoever asked, and a superuser when the user is one (403
/// otherwise); None is an operator at the shell (`gatehouse mfa approve`). The user is
/// told by email either way.
pub async fn approve_mfa_change(
    state: &AppState,
    client: &ClientContext,
    change: Uuid,
    approver: Option<&AuthUser>,
) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let request = repo::mfa::lock_pending_change(&mut *tx, change).await?.ok_or(AppError::NotFound)?;
    may_decide(&mut tx, &request, approver).await?;
    let approver = approver.map(|a| a.user_id);
    let mut ended = None;
    let method = if request.action == RESET {
        ended = Some(reset_all_factors(&mut tx, client, request.user_id).await?);
        None
    } else {
        let method = request.mfa_method.as_deref().and_then(MfaMethod::parse).ok_or(AppError::NotFound)?;
        apply_removal(&mut tx, state, request.user_id, method, request.passkey_id, client, Some(request.id)).await?;
        Some(method)
    };
    repo::mfa::decide_change(&mut *tx, request.id, "approved", approver).await?;
    let event = MfaEvent {
        mfa_method: method.map(|m| m.as_str().into()),
        metadata: Some(serde_json::json!({ "change_request_id": request.id, "approved_by": approver })),
        ..mfa_event(request.user_id, MfaAction::ChangeApproved, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    tell_user(&mut tx, state, &request, "approved").await?;
    crate::core::db::commit(tx).await?;
    if let Some(ended) = ended {
        ended.settle(state).await;
    }
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// Rejects a pending request: nothing changes but its status; audited, the user told.
pub async fn reject_mfa_change(
    state: &AppState,
    client: &ClientContext,
    change: Uuid,
    approver: &AuthUser,
    reason: Option<String>,
) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let request = repo::mfa::lock_pending_change(&mut *tx, change).await?.ok_or(AppError::NotFound)?;
    may_decide(&mut tx, &request, Some(approver)).await?;
    let approver = approver.user_id;
    repo::mfa::decide_change(&mut *tx, request.id, "rejected", Some(approver)).await?;
    let event = MfaEvent {
        mfa_method: request.mfa_method.clone(),
        metadata: Some(serde_json::json!({
            "change_request_id": request.id, "rejected_by": approver, "reason": reason
        })),
        ..mfa_event(request.user_id, MfaAction::ChangeRejected, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    tell_user(&mut tx, state, &request, "rejected").await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// Four eyes: whoever a change is about, and whoever asked for it, may not decide it; and
/// only a superuser decides about a superuser (the operator at the shell decides anything).
async fn may_decide(
    tx: &mut PgConnection,
    request: &repo::mfa::MfaChange,
    decider: Option<&AuthUser>,
) -> AppResult<()> {
    let Some(decider) = decider else { return Ok(()) };
    if decider.user_id == request.user_id || Some(decider.user_id) == request.requested_by_id {
        return Err(AppError::Forbidden);
    }
    let user = repo::users::user_by_id(&mut *tx, request.user_id).await?.ok_or(AppError::NotFound)?;
    outranks(decider, &user)
}

/// Every factor gone, MFA off, and what `Remedy::MfaReset` ends: every session, device
/// trust, pending links and the keys with staff scopes.
async fn reset_all_factors(tx: &mut PgConnection, client: &ClientContext, user: Uuid) -> AppResult<Ended> {
    // Passkeys are factors: a reset removes them too (API.md "Recovery").
    for method in [MfaMethod::Totp, MfaMethod::Email, MfaMethod::Sms, MfaMethod::Passkey, MfaMethod::BackupCode] {
        otp::service::remove_method(tx, user, method).await?;
        repo::mfa::set_method_state(&mut *tx, user, method.as_str(), false, false).await?;
    }
    repo::mfa::set_mfa_enabled(&mut *tx, user, false, None).await?;
    let ended = end_grants(tx, client, user, Remedy::MfaReset, SessionAction::SessionRevoked, "mfa_reset").await?;
    let event = MfaEvent {
        risk_level: RiskLevel::High,
        metadata: Some(ended.details()),
        ..mfa_event(user, MfaAction::Disabled, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    otp::service::record_admin_reset(tx, user, client.ip_network()).await?;
    let recovered = MfaEvent {
        recovery_method: Some("admin_reset"),
        risk_level: RiskLevel::High,
        ..mfa_event(user, MfaAction::RecoveryUsed, client)
    };
    audit_log::record_mfa(&mut *tx, &recovered).await?;
    Ok(ended)
}

/// The security email that tells the user how their request (or staff's) was decided.
async fn tell_user(
    tx: &mut PgConnection,
    state: &AppState,
    request: &repo::mfa::MfaChange,
    decision: &str,
) -> AppResult<()> {
    let owner = repo::users::user_by_id(&mut *tx, request.user_id).await?.ok_or(AppError::NotFound)?;
    let change = match request.mfa_method.as_deref() {
        _ if request.action == RESET => "reset every two-step verification factor".to_owned(),
        Some(method) => format!("remove the {method} factor"),
        None => "change two-step verification".to_owned(),
    };
    let message = Message::MfaChangeDecided {
        username: owner.username.clone(),
        change,
        decision: decision.to_owned(),
        all_off: request.action == RESET,
    };
    let to = Email::from_stored(&owner.email);
    notifications::enqueue_email(tx, &state.data_keys, owner.id, &to, message).await?;
    Ok(())
}

/// `gatehouse mfa enroll --email E`, step one: a TOTP secret for the account, for an
/// operator bootstrapping the first staff user (no session exists yet).
pub async fn operator_totp_setup(state: &AppState, email: &Email) -> AppResult<(Uuid, TotpSetup)> {
    let user = repo::users::user_by_email(&state.db, email.as_str()).await?.ok_or(AppError::NotFound)?;
    let note = Some(serde_json::json!({ "by": "operator" }));
    let setup = begin_totp(state, &ClientContext::default(), &user, note).await?;
    Ok((user.id, setup))
}

/// Step two: confirms with a code from the authenticator; MFA is on, codes issued.
pub async fn operator_totp_confirm(state: &AppState, email: &Email, code: SecretString) -> AppResult<BackupCodes> {
    let user = repo::users::user_by_email(&state.db, email.as_str()).await?.ok_or(AppError::NotFound)?;
    let auth = AuthUser {
        user_id: user.id,
        session_id: Uuid::nil(),
        aal: 1,
        amr: Vec::new(),
        is_staff: false,
        is_superuser: false,
        mfa_verified_at: None,
        api_key: None,
    };
    totp_confirm(state, &ClientContext::default(), &auth, code).await
}
