//! Users, profiles and sessions: rows, response objects, and the account's own parsed
//! values (`Username`, names, the login identifier). Request bodies are in forms.rs.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use ipnetwork::IpNetwork;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub mod admin;
pub mod social;

pub use crate::core::types::Email;
use crate::{
    core::{
        client::{Agent, ClientContext},
        crypto,
    },
    otp::MfaMethod,
};

/// An auth_user row. Its `Debug` leaves the password hash out.
#[derive(Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub date_joined: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password_hash", &REDACTED)
            .field("is_active", &self.is_active)
            .field("is_staff", &self.is_staff)
            .field("is_superuser", &self.is_superuser)
            .field("mfa_enabled", &self.mfa_enabled)
            .finish_non_exhaustive()
    }
}

/// What a `Debug` shows in place of a secret.
pub const REDACTED: &str = "[REDACTED]";

/// The User object of API.md.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub date_joined: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(u: UserRow) -> Self {
        User {
            id: u.id,
            email: u.email,
            username: u.username,
            first_name: u.first_name,
            last_name: u.last_name,
            is_active: u.is_active,
            is_staff: u.is_staff,
            is_superuser: u.is_superuser,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            date_joined: u.date_joined,
            last_login: u.last_login,
        }
    }
}

/// accounts_profile fields a user reads and edits.
#[derive(Debug, Clone, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct Profile {
    /// E.164, e.g. `+15551234567`.
    pub phone_number: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub postal_code: Option<String>,
    /// IANA name, e.g. `Europe/Paris`.
    pub timezone: String,
    /// BCP 47 tag, e.g. `en` or `pt-BR`.
    pub language: String,
    /// `totp`, `email` or `sms`.
    pub preferred_mfa_method: Option<String>,
}

/// `GET /users/me`: the User plus its profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: User,
    pub profile: Profile,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserEnvelope {
    pub user: User,
}

// Its `Debug` (below) leaves the tokens out.
/// Body of a successful login, MFA verification or refresh.
#[derive(Clone, Serialize, ToSchema)]
pub struct Authenticated {
    /// Always `authenticated`.
    pub status: &'static str,
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives (900 by default).
    pub expires_in: i64,
    pub session_id: Uuid,
    pub user: User,
    /// Present when a backup code answered the challenge: the codes left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes_remaining: Option<i64>,
}

impl fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticated")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("expires_in", &self.expires_in)
            .field("session_id", &self.session_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Body of a login (or a step-up) that needs its second factor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MfaRequired {
    /// Always `mfa_required`.
    pub status: &'static str,
    /// Answer it at `POST /auth/mfa/verify` (and `mfa/send` for an emailed or texted code).
    pub challenge_id: Uuid,
    /// The factors the user has set up: `totp`, `backup_code`, `email`, `sms`.
    pub methods: Vec<MfaMethod>,
    /// Seconds the challenge lives (300).
    pub expires_in: i64,
}

/// What `POST /auth/login` answers: tokens, or a challenge for the second factor.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Authenticated(Authenticated),
    MfaRequired(MfaRequired),
}

/// One factor in `GET /mfa`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MethodStatus {
    pub method: MfaMethod,
    /// Usable to answer a challenge.
    pub enabled: bool,
    /// Ownership proven (a code came back); false while a setup waits for its code.
    pub setup_completed: bool,
}

/// `GET /mfa`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MfaStatus {
    pub enabled: bool,
    /// `totp`, `email` or `sms`; null while MFA is off.
    pub primary_method: Option<MfaMethod>,
    pub methods: Vec<MethodStatus>,
    pub backup_codes_remaining: i64,
}

/// New backup codes, shown once. Empty when a confirm added a method to an account that
/// already had MFA on (its codes stay as they were).
#[derive(Clone, Serialize, ToSchema)]
pub struct BackupCodes {
    pub backup_codes: Vec<String>,
}

impl fmt::Debug for BackupCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupCodes").field("count", &self.backup_codes.len()).finish_non_exhaustive()
    }
}

/// `POST /mfa/passkeys/register/finish` (201): the stored passkey, and the backup codes
/// when it was the account's first factor (shown once).
#[derive(Clone, Serialize, ToSchema)]
pub struct PasskeyRegistered {
    #[serde(flatten)]
    pub passkey: crate::otp::PasskeyInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_codes: Option<Vec<String>>,
}

impl fmt::Debug for PasskeyRegistered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasskeyRegistered")
            .field("passkey", &self.passkey)
            .field("backup_codes", &self.backup_codes.as_ref().map(Vec::len))
            .finish()
    }
}

/// 202 for a staff user's MFA change that waits for another staff member's approval.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalRequired {
    /// Always `approval_required`.
    pub status: &'static str,
    pub change_request_id: Uuid,
}

/// One of the caller's active sessions.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct SessionView {
    pub id: Uuid,
    pub device_id: Option<Uuid>,
    #[schema(value_type = Option<String>)]
    pub ip_address: Option<IpNetwork>,
    pub user_agent: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub mfa_verified: bool,
    /// The name the user gave the session's device, if any.
    pub device_name: Option<String>,
    /// True for the session of the token that asked.
    pub current: bool,
}

/// The device a request comes from, as a login records it: identified by the hashed
/// `X-Device-Fingerprint` (verified), or without one by the hashed user agent (unverified:
/// every browser of that make and version is one device to us, so such a device is never
/// trusted). The two namespaces never meet: a fingerprint's key is its SHA-256 (64 hex
/// digits), a user agent's starts with `ua:`.
#[derive(Debug, Clone)]
pub struct DeviceSeen {
    pub fingerprint_hash: String,
    pub verified: bool,
    pub agent: Agent,
    pub coordinates: Option<(f64, f64)>,
}

impl DeviceSeen {
    pub fn of(client: &ClientContext) -> DeviceSeen {
        let (fingerprint_hash, verified) = match client.fingerprint.as_deref() {
            Some(fp) => (crypto::sha256_hex(fp), true),
            None => {
                let agent = crypto::sha256_hex(&format!("ua:{}", client.user_agent.as_deref().unwrap_or("")));
                (format!("ua:{agent}"), false)
            }
        };
        DeviceSeen { fingerprint_hash, verified, agent: client.agent(), coordinates: client.coordinates() }
    }
}

/// A device near a point (`GET /admin/devices?near=`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NearDevice {
    pub id: Uuid,
    pub user_id: Uuid,
    pub device_name: Option<String>,
    pub device_type: Option<String>,
    pub os: Option<String>,
    pub browser: Option<String>,
    pub is_compromised: bool,
    pub risk_score: i32,
    pub last_used_at: Option<DateTime<Utc>>,
    pub latitude: f64,
    pub longitude: f64,
    /// Great-circle distance from the point asked about.
    pub distance_km: f64,
}

/// One of the user's devices (`GET /devices`).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeviceView {
    pub id: Uuid,
    pub device_name: Option<String>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`.
    pub device_type: Option<String>,
    pub os: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    /// Known by its `X-Device-Fingerprint` (false: by its user agent only).
    pub is_verified: bool,
    /// Trusted and not expired.
    pub is_trusted: bool,
    pub trust_expires_at: Option<DateTime<Utc>>,
    pub is_compromised: bool,
    /// The latest login's risk, 0-100.
    pub risk_score: i32,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// True for the device of the session that asked.
    pub current: bool,
}

/// `^[a-zA-Z0-9_-]{3,50}$`, stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Username, &'static str> {
        let name = raw.trim();
        if !(3..=50).contains(&name.chars().count()) {
            return Err("must be 3 to 50 characters");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err("may contain only letters, digits, '_' and '-'");
        }
        Ok(Username(name.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a login is attempted for: the submitted email, trimmed, lowercased and cut to the
/// column's width, but not validated, since a malformed one must still fail (and count)
/// exactly like a wrong password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentifier(String);

impl LoginIdentifier {
    pub fn from_submitted(raw: &str) -> LoginIdentifier {
        LoginIdentifier(raw.trim().to_lowercase().chars().take(255).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name field (first/last), at most 100 characters, trimmed.
pub fn parse_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.chars().count() > 100 {
        return Err("must be at most 100 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_seed_pattern() {
        assert_eq!(Username::parse("Ann_Lee-1").unwrap().as_str(), "ann_lee-1");
        for bad in ["ab", "a b c", "ann!", &"x".repeat(51)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }
}
