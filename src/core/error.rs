//! The one error type: every failure becomes API.md's JSON error body, mapped here only.

use std::collections::BTreeMap;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::request_id;

/// Field name -> messages, the `details` of a 422.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// The one way to build a 422: collect every field's problems, then fail once, so a
/// client sees all of them in one answer.
#[derive(Debug, Default)]
pub struct Problems(FieldErrors);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_default().push(message.into());
    }

    /// The value of a parse, or None after recording its problem under `field`.
    pub fn check<T, E: Into<String>>(&mut self, field: &str, parsed: Result<T, E>) -> Option<T> {
        parsed.map_err(|m| self.add(field, m)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else one `VALIDATION_FAILED`.
    pub fn into_result(self) -> Result<(), AppError> {
        if self.0.is_empty() { Ok(()) } else { Err(AppError::Validation(self.0)) }
    }

    /// `value` when nothing was recorded, else one `VALIDATION_FAILED`.
    pub fn finish<T>(self, value: T) -> Result<T, AppError> {
        self.into_result().map(|()| value)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// A body that is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("authentication required")]
    Unauthenticated,
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A one-time token (email verification, password reset) that is unknown, used or expired.
    #[error("token invalid")]
    TokenInvalid,
    /// A refresh token that is unknown, expired or revoked.
    #[error("refresh token invalid")]
    RefreshTokenInvalid,
    #[error("refresh token reused")]
    TokenReused,
    #[error("challenge expired")]
    ChallengeExpired,
    #[error("mfa code invalid")]
    MfaCodeInvalid { attempts_remaining: i32 },
    #[error("forbidden")]
    Forbidden,
    /// 403 `FORBIDDEN` with the rule that refused it, e.g. that only a superuser acts on a
    /// superuser.
    #[error("forbidden: {0}")]
    ForbiddenBecause(&'static str),
    #[error("account disabled")]
    AccountDisabled,
    #[error("password incorrect")]
    PasswordIncorrect,
    #[error("mfa required")]
    MfaRequired,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 with its own code, e.g. `EMAIL_TAKEN`, naming the field at fault.
    #[error("conflict: {}", .0.code())]
    Conflict(Conflict),
    #[error("password reused")]
    PasswordReused,
    /// The breached-password check found the new password in the range API's list.
    #[error("password breached")]
    PasswordBreached,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// The database is out of reach or the service sheds load; the client may retry.
    #[error("service unavailable")]
    Unavailable { retry_after_secs: u64 },
    /// Anything the client cannot fix; the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

/// Every 409 the API answers: a stable code, the field at fault and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Registration: the email is another account's.
    EmailTaken,
    /// An email change: the new address is another account's.
    NewEmailTaken,
    UsernameTaken,
    MfaMethodExists,
    MfaNotEnabled,
    ApiKeyLimit,
    QuietHoursExist,
    DeviceCompromised,
    DeviceNotVerified,
    PasskeyExists,
    /// Unlinking the account's only way in (no usable password, passkey or other identity).
    LastSignInMethod,
}

impl Conflict {
    pub const ALL: [Conflict; 11] = [
        Conflict::EmailTaken,
        Conflict::NewEmailTaken,
        Conflict::UsernameTaken,
        Conflict::MfaMethodExists,
        Conflict::MfaNotEnabled,
        Conflict::ApiKeyLimit,
        Conflict::QuietHoursExist,
        Conflict::DeviceCompromised,
        Conflict::DeviceNotVerified,
        Conflict::PasskeyExists,
        Conflict::LastSignInMethod,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Conflict::EmailTaken | Conflict::NewEmailTaken => "EMAIL_TAKEN",
            Conflict::UsernameTaken => "USERNAME_TAKEN",
            Conflict::MfaMethodExists => "MFA_METHOD_EXISTS",
            Conflict::MfaNotEnabled => "MFA_NOT_ENABLED",
            Conflict::ApiKeyLimit => "API_KEY_LIMIT",
            Conflict::QuietHoursExist => "QUIET_HOURS_EXIST",
            Conflict::DeviceCompromised => "DEVICE_COMPROMISED",
            Conflict::DeviceNotVerified => "DEVICE_NOT_VERIFIED",
            Conflict::PasskeyExists => "PASSKEY_EXISTS",
            Conflict::LastSignInMethod => "LAST_SIGN_IN_METHOD",
        }
    }

    /// The field `details` names.
    pub fn field(self) -> &'static str {
        match self {
            Conflict::EmailTaken => "email",
            Conflict::NewEmailTaken => "new_email",
            Conflict::UsernameTaken => "username",
            Conflict::MfaMethodExists => "method",
            Conflict::MfaNotEnabled => "mfa",
            Conflict::ApiKeyLimit => "name",
            Conflict::QuietHoursExist => "start_time",
            Conflict::DeviceCompromised | Conflict::DeviceNotVerified => "device",
            Conflict::PasskeyExists => "credential",
            Conflict::LastSignInMethod => "connection",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Conflict::EmailTaken | Conflict::NewEmailTaken => "An account with this email already exists.",
            Conflict::UsernameTaken => "This username is taken.",
            Conflict::MfaMethodExists => "TOTP is already set up; remove it first.",
            Conflict::MfaNotEnabled => "There is no second factor: set one up first.",
            Conflict::ApiKeyLimit => "this account already has the most live API keys it may hold; revoke one first",
            Conflict::QuietHoursExist => "A window already starts at this time on this day.",
            Conflict::DeviceCompromised => "A device marked compromised cannot be trusted.",
            Conflict::PasskeyExists => "This passkey is already registered.",
            Conflict::LastSignInMethod => {
                "This is the account's only way to sign in: set a password (reset it) or add a passkey first."
            }
            Conflict::DeviceNotVerified => {
                "A device known only by its User-Agent is never trusted: it must send X-Device-Fingerprint."
            }
        }
    }
}

/// A unique (or other) constraint's violation as the conflict it means (realworld's
/// `on_constraint`): the database decides, not a check-then-insert that two requests could
/// race. Any other error converts as usual.
pub trait ResultExt<T> {
    fn on_constraint(self, constraints: &[(&str, Conflict)]) -> AppResult<T>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, constraints: &[(&str, Conflict)]) -> AppResult<T> {
        self.map_err(|e| {
            let violated = match &e {
                sqlx::Error::Database(db) => db.constraint(),
                _ => None,
            };
            match constraints.iter().find(|(name, _)| Some(*name) == violated) {
                Some((_, conflict)) => AppError::Conflict(*conflict),
                None => e.into(),
            }
        })
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable UPPER_SNAKE code, e.g. `VALIDATION_FAILED`.
    pub code: &'static str,
    pub message: String,
    /// For 422: field -> list of messages.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    pub request_id: String,
    pub timestamp: String,
}

impl AppError {
    /// A 422 about one field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let mut problems = Problems::new();
        problems.add(field, message);
        AppError::Validation(problems.0)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        AppError::Internal(e.to_string())
    }

    /// Status, stable code and client-facing message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        use AppError::*;
        let (status, code, message): (StatusCode, &'static str, &str) = match self {
            MalformedRequest(m) => return (StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", m.clone()),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "The request body must be application/json.",
            ),
            Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED", "The request has invalid fields."),
            Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Authentication is required."),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS", "Invalid email or password."),
            TokenInvalid => (StatusCode::BAD_REQUEST, "TOKEN_INVALID", "The token is invalid, used or expired."),
            RefreshTokenInvalid => {
                (StatusCode::UNAUTHORIZED, "TOKEN_INVALID", "The refresh token is invalid or expired.")
            }
            TokenReused => (
                StatusCode::UNAUTHORIZED,
                "TOKEN_REUSED",
                "The refresh token was already used; the session is revoked.",
            ),
            ChallengeExpired => {
                (StatusCode::UNAUTHORIZED, "CHALLENGE_EXPIRED", "The challenge is expired, used or out of attempts.")
            }
            MfaCodeInvalid { .. } => (StatusCode::UNAUTHORIZED, "MFA_CODE_INVALID", "The code is invalid."),
            Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN", "You may not do this."),
            ForbiddenBecause(why) => (StatusCode::FORBIDDEN, "FORBIDDEN", *why),
            AccountDisabled => (StatusCode::FORBIDDEN, "ACCOUNT_DISABLED", "This account is disabled."),
            PasswordIncorrect => (StatusCode::FORBIDDEN, "PASSWORD_INCORRECT", "The password is incorrect."),
            MfaRequired => (StatusCode::FORBIDDEN, "MFA_REQUIRED", "This needs a session verified with MFA."),
            NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND", "Not found."),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "Method not allowed."),
            Conflict(c) => (StatusCode::CONFLICT, c.code(), c.message()),
            PasswordReused => (StatusCode::UNPROCESSABLE_ENTITY, "PASSWORD_REUSED", "The password was used recently."),
            PasswordBreached => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "PASSWORD_BREACHED",
                "This password appears in known data breaches; choose another.",
            ),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "The request body is too large."),
            RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "Too many requests; try again later.")
            }
            Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "The service is temporarily unavailable.")
            }
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Internal server error."),
        };
        (status, code, message.to_owned())
    }

    fn details(&self) -> Option<Value> {
        match self {
            AppError::Validation(fields) => serde_json::to_value(fields).ok(),
            AppError::MfaCodeInvalid { attempts_remaining } => {
                Some(serde_json::json!({ "attempts_remaining": attempts_remaining }))
            }
            AppError::Conflict(c) => Some(serde_json::json!({ c.field(): [c.message()] })),
            _ => None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if let AppError::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        let body = ErrorBody {
            error: ErrorObject {
                code,
                message,
                details: self.details(),
                request_id: request_id::current().unwrap_or_default(),
                timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let AppError::RateLimited { retry_after_secs } | AppError::Unavailable { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        if database_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            // The pool replaces a broken connection on its next acquire and a restarted
            // server takes connections within seconds: a short wait is the right advice.
            return AppError::Unavailable { retry_after_secs: 2 };
        }
        match e {
            sqlx::Error::RowNotFound => AppError::NotFound,
            other => AppError::Internal(other.to_string()),
        }
    }
}

/// Whether `e` says the database cannot be reached or kept right now (an outage, a
/// restart, a network drop, a full server, a statement over its budget) rather than that
/// the request or the code is wrong. These answer 503 with `Retry-After`, never 500.
pub fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // The link broke mid-exchange, e.g. a connection closed during its start-up
        // ("unexpected response from SSLRequest"): the connection is gone either way.
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of an unreachable or overloaded server: class 08 (connection exception),
/// class 53 (insufficient resources: disk full, out of memory, too many connections),
/// 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now: a stop, a restart, a
/// server still starting), 57014 (query canceled: `statement_timeout`), 25P03 (idle in
/// transaction timeout).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "25P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status_and_code() {
        let cases = [
            (AppError::MalformedRequest("x".into()), 400, "MALFORMED_REQUEST"),
            (AppError::UnsupportedMediaType, 415, "UNSUPPORTED_MEDIA_TYPE"),
            (AppError::validation("email", "bad"), 422, "VALIDATION_FAILED"),
            (AppError::Unauthenticated, 401, "UNAUTHENTICATED"),
            (AppError::InvalidCredentials, 401, "INVALID_CREDENTIALS"),
            (AppError::TokenInvalid, 400, "TOKEN_INVALID"),
            (AppError::RefreshTokenInvalid, 401, "TOKEN_INVALID"),
            (AppError::TokenReused, 401, "TOKEN_REUSED"),
            (AppError::ChallengeExpired, 401, "CHALLENGE_EXPIRED"),
            (AppError::MfaCodeInvalid { attempts_remaining: 2 }, 401, "MFA_CODE_INVALID"),
            (AppError::Forbidden, 403, "FORBIDDEN"),
            (AppError::ForbiddenBecause("only a superuser"), 403, "FORBIDDEN"),
            (AppError::AccountDisabled, 403, "ACCOUNT_DISABLED"),
            (AppError::PasswordIncorrect, 403, "PASSWORD_INCORRECT"),
            (AppError::MfaRequired, 403, "MFA_REQUIRED"),
            (AppError::NotFound, 404, "NOT_FOUND"),
            (AppError::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
            (AppError::Conflict(Conflict::EmailTaken), 409, "EMAIL_TAKEN"),
            (AppError::PasswordReused, 422, "PASSWORD_REUSED"),
            (AppError::PasswordBreached, 422, "PASSWORD_BREACHED"),
            (AppError::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
            (AppError::RateLimited { retry_after_secs: 5 }, 429, "RATE_LIMITED"),
            (AppError::Unavailable { retry_after_secs: 1 }, 503, "UNAVAILABLE"),
            (AppError::Internal("secret detail".into()), 500, "INTERNAL"),
        ];
        for (error, status, code) in cases {
            let (s, c, message) = error.parts();
            assert_eq!((s.as_u16(), c), (status, code), "{error:?}");
            assert!(!message.contains("secret"), "internal detail leaked: {message}");
        }
    }

    #[test]
    fn outage_sqlstates_are_unavailable_and_request_errors_are_not() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "53300", "53100", "57014", "25P03"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "23503", "40001", "22P02", "42601"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
        assert!(database_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!database_unavailable(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn rate_limited_sets_retry_after() {
        let response = AppError::RateLimited { retry_after_secs: 42 }.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }
}
