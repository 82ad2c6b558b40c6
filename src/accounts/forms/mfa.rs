//! Bodies of the MFA routes: management (signed in) and the login's second step.

use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    core::{AppError, AppResult, types::Phone},
    otp::MfaMethod,
};

/// The password that actions a stolen access token must not be enough for ask again (every
/// factor setup, data exports): missing -> 422, wrong -> 403 `PASSWORD_INCORRECT`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfirmation {
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretString>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The 6-digit code from the authenticator, email or SMS.
    #[schema(value_type = String)]
    pub code: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsSetupRequest {
    /// E.164, e.g. `+15551234567`.
    pub phone_number: String,
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretString>,
}

impl SmsSetupRequest {
    pub fn parse(self) -> AppResult<(Phone, Option<SecretString>)> {
        let phone = Phone::parse(&self.phone_number).map_err(|m| AppError::validation("phone_number", m))?;
        Ok((phone, self.password))
    }
}

/// Removing a factor: the password and a current code (TOTP or a backup code).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveFactorRequest {
    #[schema(value_type = String)]
    pub password: SecretString,
    #[schema(value_type = String)]
    pub code: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrimaryRequest {
    /// `totp`, `email` or `sms`: a factor that is set up.
    pub method: MfaMethod,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaSendRequest {
    pub challenge_id: Uuid,
    /// `email` or `sms`.
    pub method: MfaMethod,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyRequest {
    pub challenge_id: Uuid,
    pub method: MfaMethod,
    #[schema(value_type = String)]
    pub code: SecretString,
    /// Trust the device that sent `X-Device-Fingerprint` to skip MFA for 30 days (the owner
    /// gets a notice). Ignored without a fingerprint (a device known only by its User-Agent
    /// is never trusted) and, for a step-up, unless the session runs on that device.
    #[serde(default)]
    pub trust_device: bool,
}
