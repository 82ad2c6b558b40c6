//! What staff and integrations see: user details for admins, MFA change requests, API
//! keys, data exports.

use std::fmt;

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DeviceView, MfaStatus, REDACTED, SessionView, User};

/// Whether the account's logins are refused now by the failed-login lock.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LockState {
    pub locked: bool,
    /// Seconds until the lock lifts by itself; null when not locked.
    pub retry_after_seconds: Option<u64>,
}

/// `GET /admin/users/{id}`: the user and what staff need to help them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminUserDetail {
    pub user: User,
    /// Names of the groups the user is in.
    pub groups: Vec<String>,
    pub lock: LockState,
    pub mfa: MfaStatus,
    /// Active sessions (`current` is always false: no session here is the caller's).
    pub sessions: Vec<SessionView>,
    pub devices: Vec<DeviceView>,
    /// The newest 20 account events (accounts_auditlog), admin actions with the acting admin.
    pub recent_events: Vec<AccountEvent>,
    /// The user's MFA policy (superusers change it with `mfa_settings`).
    pub mfa_settings: MfaPolicy,
}

/// One user's MFA policy as stored. Method limits not listed are the built-in ones
/// (10 per hour, 3 attempts, 30 minutes).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MfaPolicy {
    /// Days after being made staff that the account may use the admin read routes without
    /// MFA (never the writes).
    pub grace_period_days: i32,
    /// When the account was last made staff.
    pub grace_started_at: Option<DateTime<Utc>>,
    pub code_length: i32,
    pub code_validity_seconds: i32,
    /// While on, turning MFA off revokes the user's API keys.
    pub enforce_for_api: bool,
    /// Per method (`totp`, `backup_code`, `email`, `sms`).
    #[schema(value_type = Object)]
    pub methods: std::collections::BTreeMap<String, crate::otp::policy::MethodLimits>,
}

/// A row of accounts_auditlog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountEvent {
    pub id: Uuid,
    pub action: String,
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    #[schema(value_type = Option<String>)]
    pub ip_address: Option<IpNetwork>,
    pub created_at: DateTime<Utc>,
}

/// A row of accounts_mfachangelog as staff review it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct MfaChangeView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    /// `method_removed` (a staff member removing one of their own factors) or `reset`
    /// (every factor of a user who lost them all).
    pub action: String,
    pub mfa_method: Option<String>,
    pub change_reason: Option<String>,
    /// `pending`, `approved`, `rejected` (or `not_required` for changes users made
    /// themselves, which are never listed here).
    pub approval_status: String,
    pub requested_by_id: Option<Uuid>,
    pub approved_by_id: Option<Uuid>,
    pub approved_at: Option<DateTime<Utc>>,
    pub requested_at: DateTime<Utc>,
}

/// One of the user's API keys, without its secret (`GET /api-keys`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The public part: keys look like `gh_<prefix>_<secret>`.
    pub prefix: String,
    /// Of `me:read`, `audit:read`, `introspect`.
    pub scopes: Vec<String>,
    /// Every key expires: 90 days after creation unless asked otherwise, at most 365.
    pub expires_at: DateTime<Utc>,
    /// Kept to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A key just created: the only time its secret is shown.
#[derive(Clone, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// `gh_<prefix>_<secret>`, for `Authorization: ApiKey <key>`. Shown once, stored hashed.
    pub secret: String,
}

impl fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedApiKey").field("key", &self.key).field("secret", &REDACTED).finish()
    }
}

/// A data export request (`GET /users/me/export/{id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportView {
    pub id: Uuid,
    /// `pending`, `processing`, `complete`, `failed` or `expired`.
    pub status: String,
    /// Bytes of the file, once complete.
    pub file_size: Option<i64>,
    pub error_message: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When the download goes away (24 h after completion).
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An export request with where to fetch it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportStatus {
    #[serde(flatten)]
    pub export: ExportView,
    /// Set while complete and unexpired: `GET` it with the owner's bearer token.
    pub download_url: Option<String>,
}
