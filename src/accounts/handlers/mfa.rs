//! MFA: managing one's factors (signed in) and the second step of a login or a step-up.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};

use super::auth::{Accepted, accepted};
use crate::{
    accounts::{
        forms::mfa::{
            CodeRequest, MfaSendRequest, MfaVerifyRequest, PasswordConfirmation, PrimaryRequest, RemoveFactorRequest,
            SmsSetupRequest,
        },
        models::{ApprovalRequired, Authenticated, BackupCodes, MfaRequired, MfaStatus},
        service::{self, Removal},
    },
    core::{
        AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        error::ErrorBody,
        extract::{AppJson, OptionalJson},
    },
    otp::{MfaMethod, TotpSetup},
};

#[utoipa::path(get, path = "/api/v1/mfa", extensions(("x-api-key-scope" = json!("me:read"))), tag = "mfa", security(("bearer" = [])), responses(
    (status = 200, body = MfaStatus), (status = 401, body = ErrorBody),
))]
pub async fn mfa_status(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<MfaStatus>> {
    Ok(Json(service::mfa_status(&state, &auth).await?))
}

#[utoipa::path(post, path = "/api/v1/mfa/totp/setup", tag = "mfa", security(("bearer" = [])),
    request_body(content = PasswordConfirmation, description = "the password, MFA on or off (missing: 422; wrong: 403 PASSWORD_INCORRECT); while MFA is on, also a session with a second factor within STEP_UP_MAX_AGE_SECONDS (403 MFA_REQUIRED, checked first). The confirmed factor is announced to the owner by a security notice"),
    responses(
    (status = 200, body = TotpSetup, description = "the secret, its otpauth URI and a QR code (SVG); not active until confirmed"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT or MFA_REQUIRED"),
    (status = 409, body = ErrorBody, description = "MFA_METHOD_EXISTS: TOTP is already set up"),
    (status = 422, body = ErrorBody),
))]
pub async fn totp_setup(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    OptionalJson(body): OptionalJson<PasswordConfirmation>,
) -> AppResult<Json<TotpSetup>> {
    Ok(Json(service::totp_setup(&state, &client, &auth, body.password).await?))
}

#[utoipa::path(post, path = "/api/v1/mfa/totp/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest, responses(
    (status = 200, body = BackupCodes, description = "TOTP is on; the first factor turns MFA on and issues 10 backup codes, shown once (empty when MFA was already on)"),
    (status = 401, body = ErrorBody, description = "UNAUTHENTICATED, or MFA_CODE_INVALID"),
))]
pub async fn totp_confirm(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<CodeRequest>,
) -> AppResult<Json<BackupCodes>> {
    Ok(Json(service::totp_confirm(&state, &client, &auth, body.code).await?))
}

async fn remove(
    state: AppState,
    client: ClientContext,
    auth: AuthUser,
    method: MfaMethod,
    body: RemoveFactorRequest,
) -> AppResult<axum::response::Response> {
    Ok(match service::remove_factor(&state, &client, &auth, method, body.password, body.code).await? {
        Removal::Done => StatusCode::NO_CONTENT.into_response(),
        Removal::ApprovalRequired(id) => {
            (StatusCode::ACCEPTED, Json(ApprovalRequired { status: "approval_required", change_request_id: id }))
                .into_response()
        }
    })
}

#[utoipa::path(delete, path = "/api/v1/mfa/totp", tag = "mfa", security(("bearer" = [])),
    request_body = RemoveFactorRequest, responses(
    (status = 204, description = "removed; MFA goes off with the last factor"),
    (status = 202, body = ApprovalRequired, description = "a staff user's change waits for another staff member"),
    (status = 401, body = ErrorBody, description = "UNAUTHENTICATED, or MFA_CODE_INVALID"),
    (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT or MFA_REQUIRED"),
    (status = 404, body = ErrorBody, description = "not set up"),
))]
pub async fn totp_remove(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<RemoveFactorRequest>,
) -> AppResult<axum::response::Response> {
    remove(state, client, auth, MfaMethod::Totp, body).await
}

#[utoipa::path(delete, path = "/api/v1/mfa/email", tag = "mfa", security(("bearer" = [])),
    request_body = RemoveFactorRequest, responses(
    (status = 204), (status = 202, body = ApprovalRequired), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn email_remove(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<RemoveFactorRequest>,
) -> AppResult<axum::response::Response> {
    remove(state, client, auth, MfaMethod::Email, body).await
}

#[utoipa::path(delete, path = "/api/v1/mfa/sms", tag = "mfa", security(("bearer" = [])),
    request_body = RemoveFactorRequest, responses(
    (status = 204), (status = 202, body = ApprovalRequired), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn sms_remove(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<RemoveFactorRequest>,
) -> AppResult<axum::response::Response> {
    remove(state, client, auth, MfaMethod::Sms, body).await
}

#[utoipa::path(post, path = "/api/v1/mfa/backup-codes", tag = "mfa", security(("bearer" = [])),
    request_body = PasswordConfirmation, responses(
    (status = 200, body = BackupCodes, description = "10 new codes, shown once; the old ones are dead"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT or MFA_REQUIRED"),
    (status = 409, body = ErrorBody, description = "MFA_NOT_ENABLED"), (status = 422, body = ErrorBody),
))]
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<PasswordConfirmation>,
) -> AppResult<Json<BackupCodes>> {
    let password = body.password.ok_or_else(|| crate::core::AppError::validation("password", "is required"))?;
    Ok(Json(service::regenerate_backup_codes(&state, &client, &auth, password).await?))
}

#[utoipa::path(post, path = "/api/v1/mfa/email/setup", tag = "mfa", security(("bearer" = [])),
    request_body(content = PasswordConfirmation, description = "as for TOTP setup"), responses(
    (status = 202, body = Accepted, description = "a code is on its way to the account's email"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT or MFA_REQUIRED"),
    (status = 422, body = ErrorBody, description = "VALIDATION_FAILED: the password is missing"),
    (status = 429, body = ErrorBody, description = "10 codes an hour per method"),
))]
pub async fn email_setup(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    OptionalJson(body): OptionalJson<PasswordConfirmation>,
) -> AppResult<impl IntoResponse> {
    service::email_setup(&state, &client, &auth, body.password).await?;
    Ok(accepted())
}

#[utoipa::path(post, path = "/api/v1/mfa/email/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest, responses(
    (status = 200, body = BackupCodes), (status = 401, body = ErrorBody, description = "MFA_CODE_INVALID"),
))]
pub async fn email_confirm(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<CodeRequest>,
) -> AppResult<Json<BackupCodes>> {
    Ok(Json(service::method_confirm(&state, &client, &auth, MfaMethod::Email, body.code).await?))
}

#[utoipa::path(post, path = "/api/v1/mfa/sms/setup", tag = "mfa", security(("bearer" = [])),
    request_body = SmsSetupRequest, responses(
    (status = 202, body = Accepted, description = "a code is on its way to the phone"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "PASSWORD_INCORRECT or MFA_REQUIRED"),
    (status = 422, body = ErrorBody, description = "phone_number not E.164, or the password missing (as for TOTP setup)"),
    (status = 429, body = ErrorBody),
))]
pub async fn sms_setup(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<SmsSetupRequest>,
) -> AppResult<impl IntoResponse> {
    let (phone, password) = body.parse()?;
    service::sms_setup(&state, &client, &auth, phone, password).await?;
    Ok(accepted())
}

#[utoipa::path(post, path = "/api/v1/mfa/sms/confirm", tag = "mfa", security(("bearer" = [])),
    request_body = CodeRequest, responses(
    (status = 200, body = BackupCodes), (status = 401, body = ErrorBody, description = "MFA_CODE_INVALID"),
))]
pub async fn sms_confirm(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<CodeRequest>,
) -> AppResult<Json<BackupCodes>> {
    Ok(Json(service::method_confirm(&state, &client, &auth, MfaMethod::Sms, body.code).await?))
}

#[utoipa::path(put, path = "/api/v1/mfa/primary", tag = "mfa", security(("bearer" = [])),
    request_body = PrimaryRequest, responses(
    (status = 200, body = MfaStatus), (status = 401, body = ErrorBody),
    (status = 422, body = ErrorBody, description = "not a factor that is set up"),
))]
pub async fn set_primary(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
    AppJson(body): AppJson<PrimaryRequest>,
) -> AppResult<Json<MfaStatus>> {
    Ok(Json(service::set_primary(&state, &client, &auth, body.method).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/send", tag = "auth", request_body = MfaSendRequest, responses(
    (status = 202, body = Accepted, description = "a code for the challenge is on its way"),
    (status = 401, body = ErrorBody, description = "CHALLENGE_EXPIRED: unknown, expired, used or out of attempts"),
    (status = 422, body = ErrorBody, description = "method is not email or sms, or not set up"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED with Retry-After: 10 codes an hour per method and user, or RATE_LIMIT_MFA_SEND_PER_HOUR (60) from this address"),
))]
pub async fn mfa_send(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<MfaSendRequest>,
) -> AppResult<impl IntoResponse> {
    service::mfa_send(&state, &client, body.challenge_id, body.method).await?;
    Ok(accepted())
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/verify", tag = "auth", request_body = MfaVerifyRequest, responses(
    (status = 200, body = Authenticated, description = "aal 2: a new session (login) or the raised one (step-up)"),
    (status = 401, body = ErrorBody, description = "MFA_CODE_INVALID (details.attempts_remaining; a refused passkey assertion too), or CHALLENGE_EXPIRED (for a passkey also: no options asked for this challenge, or already answered)"),
    (status = 403, body = ErrorBody, description = "FORBIDDEN: trust asked for a device marked compromised"),
    (status = 422, body = ErrorBody, description = "code missing, or for method passkey credential missing or not a PublicKeyCredential"),
    (status = 429, body = ErrorBody, description = "RATE_LIMITED while the account is locked"),
))]
pub async fn mfa_verify(
    State(state): State<AppState>,
    client: ClientContext,
    AppJson(body): AppJson<MfaVerifyRequest>,
) -> AppResult<Json<Authenticated>> {
    let (challenge, response, trust_device) = body.parse()?;
    // Its own task, as login: a client hanging up must not cut the verification midway.
    let task =
        tokio::spawn(async move { service::mfa_verify(&state, &client, challenge, response, trust_device).await });
    Ok(Json(task.await.map_err(crate::core::AppError::internal)??))
}

#[utoipa::path(post, path = "/api/v1/auth/mfa/step-up", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = MfaRequired, description = "a challenge for the current session; verifying it raises the session to aal 2"),
    (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "MFA_NOT_ENABLED"),
))]
pub async fn step_up(
    State(state): State<AppState>,
    client: ClientContext,
    auth: AuthUser,
) -> AppResult<Json<MfaRequired>> {
    Ok(Json(service::step_up(&state, &client, &auth).await?))
}
