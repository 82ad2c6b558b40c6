//! Bodies of the MFA routes: management (signed in) and the login's second step.

use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use crate::{
    core::{AppError, AppResult, error::Problems, types::Phone},
    otp::{self, MfaMethod, challenges::Response},
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
    /// The code, for every method but `passkey`.
    #[schema(value_type = Option<String>)]
    pub code: Option<SecretString>,
    /// For `passkey`: the `PublicKeyCredential` JSON that `navigator.credentials.get()`
    /// gave for the options of `POST /auth/mfa/passkey/options` (binary fields base64url).
    #[schema(value_type = Option<Object>)]
    pub credential: Option<serde_json::Value>,
    /// Trust the device that sent `X-Device-Fingerprint` to skip MFA for 30 days (the owner
    /// gets a notice). Ignored without a fingerprint (a device known only by its User-Agent
    /// is never trusted) and, for a step-up, unless the session runs on that device.
    #[serde(default)]
    pub trust_device: bool,
}

impl MfaVerifyRequest {
    /// The answer, checked for its method's shape: a code, or a passkey's assertion.
    pub fn parse(self) -> AppResult<(Uuid, Response, bool)> {
        let response = match (self.method, self.code, self.credential) {
            (MfaMethod::Passkey, None, Some(credential)) => {
                let credential = assertion(credential).map_err(|m| AppError::validation("credential", m))?;
                Response::Passkey { credential: Box::new(credential) }
            }
            (MfaMethod::Passkey, _, None) => {
                return Err(AppError::validation("credential", "is required for a passkey"));
            }
            (MfaMethod::Passkey, Some(_), Some(_)) => {
                return Err(AppError::validation("code", "a passkey answers with its credential, not a code"));
            }
            (method, Some(code), None) => Response::Code { method, code },
            (_, None, _) => return Err(AppError::validation("code", "is required")),
            (_, Some(_), Some(_)) => return Err(AppError::validation("credential", "is for the passkey method only")),
        };
        Ok((self.challenge_id, response, self.trust_device))
    }
}

/// A `PublicKeyCredential` from `navigator.credentials.get()`.
pub fn assertion(credential: serde_json::Value) -> Result<PublicKeyCredential, &'static str> {
    serde_json::from_value(credential).map_err(|_| "is not a PublicKeyCredential (navigator.credentials.get())")
}

/// A `PublicKeyCredential` from `navigator.credentials.create()`.
pub fn attestation(credential: serde_json::Value) -> Result<RegisterPublicKeyCredential, &'static str> {
    serde_json::from_value(credential).map_err(|_| "is not a PublicKeyCredential (navigator.credentials.create())")
}

/// `POST /mfa/passkeys/register/start`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegisterStart {
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretString>,
}

/// `POST /mfa/passkeys/register/finish`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegisterFinish {
    pub ceremony_id: Uuid,
    /// What the passkey is called in lists and notices (1 to 64 characters).
    pub name: String,
    /// The `PublicKeyCredential` JSON from `navigator.credentials.create()`.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

impl PasskeyRegisterFinish {
    pub fn parse(self) -> AppResult<(Uuid, String, RegisterPublicKeyCredential)> {
        let mut problems = Problems::new();
        let name = problems.check("name", otp::passkeys::parse_name(&self.name));
        let credential = problems.check("credential", attestation(self.credential));
        match (name, credential) {
            (Some(name), Some(credential)) => Ok((self.ceremony_id, name, credential)),
            _ => Err(problems.into_result().err().unwrap_or_else(|| AppError::internal("a refused field is recorded"))),
        }
    }
}

/// `PATCH /mfa/passkeys/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRename {
    pub name: String,
}

/// `POST /auth/mfa/passkey/options`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyOptionsRequest {
    pub challenge_id: Uuid,
}

/// `POST /auth/passkey/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    pub ceremony_id: Uuid,
    /// The `PublicKeyCredential` JSON from `navigator.credentials.get()`.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}
