//! Second factors, codes and challenges: their fixed names and their rows.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::text_enum;

text_enum!(
    /// A second factor, by the name the API uses.
    MfaMethod { Totp => "totp", BackupCode => "backup_code", Email => "email", Sms => "sms", Passkey => "passkey" }
);

impl MfaMethod {
    /// The RFC 8176 method reference a session verified with this factor carries, beside
    /// `pwd` and `mfa`.
    pub fn amr(self) -> &'static str {
        match self {
            MfaMethod::Sms => "sms",
            // A key held in hardware (or a platform's keystore) that proved possession.
            MfaMethod::Passkey => "hwk",
            MfaMethod::Totp | MfaMethod::BackupCode | MfaMethod::Email => "otp",
        }
    }

    /// How a message to the user names the factor.
    pub fn label(self) -> &'static str {
        match self {
            MfaMethod::Totp => "an authenticator app (TOTP)",
            MfaMethod::BackupCode => "backup codes",
            MfaMethod::Email => "codes by email",
            MfaMethod::Sms => "codes by SMS",
            MfaMethod::Passkey => "a passkey",
        }
    }
}

text_enum!(
    /// Why a challenge was opened: a login, raising a live session, or the staff page.
    ChallengeType { Login => "login", StepUp => "step_up", Admin => "admin" }
);

/// What `POST /mfa/totp/setup` answers: the secret three ways. Shown once; its `Debug`
/// hides the secret.
#[derive(Clone, Serialize, ToSchema)]
pub struct TotpSetup {
    /// Base32, for typing into an authenticator.
    #[schema(value_type = String)]
    #[serde(serialize_with = "expose")]
    pub secret: SecretString,
    /// `otpauth://totp/Gatehouse:<email>?secret=...&issuer=Gatehouse`.
    #[schema(value_type = String)]
    #[serde(serialize_with = "expose")]
    pub otpauth_uri: SecretString,
    /// The same URI as a QR code, an SVG document.
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpSetup").finish_non_exhaustive()
    }
}

fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    s.serialize_str(secret.expose_secret())
}

/// A passkey as its owner sees it (`GET /mfa/passkeys`); never its key or counter.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PasskeyInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The authenticator may sync it to other devices (a synced passkey).
    pub backup_eligible: bool,
}

/// An otp_mfachallenge row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Challenge {
    /// The row id (internal).
    pub id: Uuid,
    /// The id clients see.
    pub challenge_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub challenge_type: String,
    pub expires_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub failed_attempts: i32,
    pub max_attempts: i32,
    pub metadata: Option<serde_json::Value>,
}

impl Challenge {
    /// Not verified, not expired, attempts left.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.verified_at.is_none() && self.expires_at > now && self.failed_attempts < self.max_attempts
    }

    pub fn kind(&self) -> Option<ChallengeType> {
        ChallengeType::parse(&self.challenge_type)
    }

    /// The login attempt this challenge settles (recorded when the password passed).
    pub fn attempt_id(&self) -> Option<Uuid> {
        self.metadata.as_ref()?.get("attempt_id")?.as_str()?.parse().ok()
    }
}

/// A user's factors as `GET /mfa` and the login's `methods` list need them.
#[derive(Debug, Clone, Default)]
pub struct Factors {
    pub totp: bool,
    pub email: bool,
    pub sms: bool,
    pub backup_codes_remaining: i64,
    /// Registered passkeys (otp_webauthncredential).
    pub passkeys: i64,
    /// The verified phone, for sending SMS codes.
    pub phone: Option<String>,
    /// The verified email the codes go to.
    pub email_address: Option<String>,
}

impl Factors {
    /// The factors that can answer a challenge, in a fixed order.
    pub fn usable(&self) -> Vec<MfaMethod> {
        let mut methods = Vec::new();
        if self.totp {
            methods.push(MfaMethod::Totp);
        }
        if self.backup_codes_remaining > 0 {
            methods.push(MfaMethod::BackupCode);
        }
        if self.email {
            methods.push(MfaMethod::Email);
        }
        if self.sms {
            methods.push(MfaMethod::Sms);
        }
        if self.passkeys > 0 {
            methods.push(MfaMethod::Passkey);
        }
        methods
    }

    /// The factors as a message to the user lists them.
    pub fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self
            .usable()
            .into_iter()
            .filter(|m| !matches!(m, MfaMethod::BackupCode | MfaMethod::Passkey))
            .map(|m| m.label().to_owned())
            .collect();
        match self.passkeys {
            0 => {}
            1 => labels.push("a passkey".to_owned()),
            n => labels.push(format!("{n} passkeys")),
        }
        if self.backup_codes_remaining > 0 {
            labels.push(format!("{} unused backup codes", self.backup_codes_remaining));
        }
        labels
    }

    /// Whether any first-class factor (not a backup code) is on.
    pub fn any(&self) -> bool {
        self.totp || self.email || self.sms || self.passkeys > 0
    }
}
