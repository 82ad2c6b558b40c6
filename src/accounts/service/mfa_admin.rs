//! MFA changes decided by someone else than the user: a staff member's (or an operator's)
//! approval of a pending change request, and the operator's TOTP enrolment at the shell for
//! the first staff account, before any session exists.

use secrecy::SecretString;
use uuid::Uuid;

use super::{
    challenges::mfa_event,
    mfa::{apply_removal, begin_totp, totp_confirm},
};
use crate::{
    accounts::{
        models::{BackupCodes, Email},
        repo,
    },
    audit_log::{self, MfaAction, MfaEvent},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext},
    otp::{MfaMethod, TotpSetup},
};

/// Approves a pending MFA change request and applies it. `approver` is the staff member
/// (never the requester); None is an operator at the shell (`gatehouse mfa approve`).
pub async fn approve_mfa_change(
    state: &AppState,
    client: &ClientContext,
    change: Uuid,
    approver: Option<Uuid>,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let request = repo::lock_pending_change(&mut *tx, change).await?.ok_or(AppError::NotFound)?;
    if approver == Some(request.user_id) {
        return Err(AppError::Forbidden);
    }
    let method = request.mfa_method.as_deref().and_then(MfaMethod::parse).ok_or(AppError::NotFound)?;
    apply_removal(&mut tx, state, request.user_id, method, client, Some(request.id)).await?;
    repo::decide_change(&mut *tx, request.id, "approved", approver).await?;
    let event = MfaEvent {
        mfa_method: Some(method.as_str().into()),
        metadata: Some(serde_json::json!({ "change_request_id": request.id, "approved_by": approver })),
        ..mfa_event(request.user_id, MfaAction::ChangeApproved, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// `gatehouse mfa enroll --email E`, step one: a TOTP secret for the account, for an
/// operator bootstrapping the first staff user (no session exists yet).
pub async fn operator_totp_setup(state: &AppState, email: &Email) -> AppResult<(Uuid, TotpSetup)> {
    let user = repo::user_by_email(&state.db, email.as_str()).await?.ok_or(AppError::NotFound)?;
    let note = Some(serde_json::json!({ "by": "operator" }));
    let setup = begin_totp(state, &ClientContext::default(), &user, note).await?;
    Ok((user.id, setup))
}

/// Step two: confirms with a code from the authenticator; MFA is on, codes issued.
pub async fn operator_totp_confirm(state: &AppState, email: &Email, code: SecretString) -> AppResult<BackupCodes> {
    let user = repo::user_by_email(&state.db, email.as_str()).await?.ok_or(AppError::NotFound)?;
    let auth = AuthUser {
        user_id: user.id,
        session_id: Uuid::nil(),
        aal: 1,
        amr: Vec::new(),
        is_staff: false,
        is_superuser: false,
        mfa_verified_at: None,
    };
    totp_confirm(state, &ClientContext::default(), &auth, code).await
}
