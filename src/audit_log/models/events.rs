//! Audit events and their fixed action names, as other apps record them.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;

use uuid::Uuid;

use crate::core::text_enum;

text_enum!(
    /// Risk of an event, lowest first.
    RiskLevel { Low => "low", Medium => "medium", High => "high", Critical => "critical" }
);

impl RiskLevel {
    /// The level of a 0-100 device risk score.
    pub fn from_score(score: i32) -> Self {
        match score {
            i32::MIN..=24 => RiskLevel::Low,
            25..=49 => RiskLevel::Medium,
            50..=74 => RiskLevel::High,
            _ => RiskLevel::Critical,
        }
    }
}

text_enum!(
    /// Session actions (audit_log_sessionauditlog.action): the seed's 19 and `audit_reviewed`.
    SessionAction {
        Login => "login",
        LoginFailed => "login_failed",
        LoginLocked => "login_locked",
        Logout => "logout",
        LogoutAll => "logout_all",
        Refresh => "refresh",
        TokenReused => "token_reused",
        ConsentChanged => "consent_changed",
        SessionRevoked => "session_revoked",
        SessionExpired => "session_expired",
        NotificationFailed => "notification_failed",
        MfaVerified => "mfa_verified",
        MfaFailed => "mfa_failed",
        PasswordChanged => "password_changed",
        PasswordReset => "password_reset",
        AccountUnlocked => "account_unlocked",
        Registered => "registered",
        EmailVerified => "email_verified",
        SuspiciousActivity => "suspicious_activity",
        AuditReviewed => "audit_reviewed",
        RetentionChanged => "retention_changed",
    }
);

text_enum!(
    /// Device actions (audit_log_deviceauditlog.action).
    DeviceAction {
        Registered => "registered",
        Seen => "seen",
        Verified => "verified",
        Trusted => "trusted",
        Untrusted => "untrusted",
        TrustExpired => "trust_expired",
        Compromised => "compromised",
        RiskChanged => "risk_changed",
        Renamed => "renamed",
        NewLocation => "new_location",
        Deleted => "deleted",
    }
);

text_enum!(
    /// MFA actions (audit_log_mfaauditlog.action).
    MfaAction {
        SetupStarted => "setup_started",
        Enabled => "enabled",
        Disabled => "disabled",
        MethodAdded => "method_added",
        MethodRemoved => "method_removed",
        PrimaryChanged => "primary_changed",
        ChallengeCreated => "challenge_created",
        CodeSent => "code_sent",
        Verified => "verified",
        Failed => "failed",
        ChallengeExpired => "challenge_expired",
        BackupCodeUsed => "backup_code_used",
        CodesRegenerated => "codes_regenerated",
        RateLimited => "rate_limited",
        RecoveryUsed => "recovery_used",
        ChangeRequested => "change_requested",
        ChangeApproved => "change_approved",
        ChangeRejected => "change_rejected",
        CloneSuspected => "clone_suspected",
    }
);

text_enum!(
    /// Session-device link actions (audit_log_sessiondevicelinkauditlog.link_action).
    LinkAction {
        Linked => "linked",
        Switched => "switched",
        Verified => "verified",
        Trusted => "trusted",
        Revoked => "revoked",
        Unlinked => "unlinked",
    }
);

text_enum!(
    /// The four partitioned audit tables, by the name the admin API uses.
    AuditKind { Session => "session", Device => "device", Mfa => "mfa", Link => "link" }
);

impl AuditKind {
    pub fn table(self) -> &'static str {
        match self {
            AuditKind::Session => "audit_log_sessionauditlog",
            AuditKind::Device => "audit_log_deviceauditlog",
            AuditKind::Mfa => "audit_log_mfaauditlog",
            AuditKind::Link => "audit_log_sessiondevicelinkauditlog",
        }
    }

    pub fn from_table(table: &str) -> Option<Self> {
        AuditKind::ALL.iter().copied().find(|k| k.table() == table)
    }

    /// The kind a path names; anything else is a 400, as for any malformed path value.
    pub fn from_path(raw: &str) -> Result<Self, crate::core::AppError> {
        AuditKind::parse(raw)
            .ok_or_else(|| crate::core::AppError::MalformedRequest(format!("unknown audit kind {raw:?}")))
    }
}

/// Where a request came from, as the audit tables record it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<IpNetwork>,
    pub country: Option<String>,
    pub city: Option<String>,
}

/// Marks an event for an administrator's attention.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub is_anomalous: bool,
    pub anomaly_reasons: Vec<String>,
    pub requires_review: bool,
}

/// A row for audit_log_sessionauditlog.
#[derive(Debug, Clone)]
pub struct SessionEvent {
    pub user_id: Uuid,
    pub action: SessionAction,
    pub session_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub risk_level: RiskLevel,
    pub origin: Origin,
    pub session_type: Option<String>,
    pub mfa_verified: Option<bool>,
    pub mfa_method: Option<String>,
    pub flags: Flags,
    pub metadata: Option<serde_json::Value>,
    pub error_message: Option<String>,
    /// Defaults to now; set only when recording history (tests, imports).
    pub created_at: Option<DateTime<Utc>>,
}

impl SessionEvent {
    pub fn new(user_id: Uuid, action: SessionAction) -> Self {
        SessionEvent {
            user_id,
            action,
            session_id: None,
            device_id: None,
            risk_level: RiskLevel::Low,
            origin: Origin::default(),
            session_type: None,
            mfa_verified: None,
            mfa_method: None,
            flags: Flags::default(),
            metadata: None,
            error_message: None,
            created_at: None,
        }
    }
}

/// A session event's text columns as stored: enums in their text form, free text cut to
/// the column's width, no empty reason array. For a statement of another app that writes
/// the event together with its own rows (login's session statement).
#[derive(Debug)]
pub struct SessionEventColumns {
    pub action: &'static str,
    pub risk_level: &'static str,
    pub session_type: Option<String>,
    pub mfa_method: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub anomaly_reasons: Option<Vec<String>>,
}

impl SessionEvent {
    pub fn columns(&self) -> SessionEventColumns {
        SessionEventColumns {
            action: self.action.as_str(),
            risk_level: self.risk_level.as_str(),
            session_type: fit(&self.session_type, 20),
            mfa_method: fit(&self.mfa_method, 20),
            country: fit(&self.origin.country, 100),
            city: fit(&self.origin.city, 100),
            anomaly_reasons: reasons(&self.flags.anomaly_reasons),
        }
    }
}

/// Cuts free text to a column's width so an over-long header never fails the caller.
pub(in crate::audit_log) fn fit(value: &Option<String>, max: usize) -> Option<String> {
    value.as_ref().map(|v| v.chars().take(max).collect())
}

/// An empty reason list is stored as NULL.
pub(in crate::audit_log) fn reasons(r: &[String]) -> Option<Vec<String>> {
    if r.is_empty() { None } else { Some(r.to_vec()) }
}

/// A row for audit_log_deviceauditlog.
#[derive(Debug, Clone)]
pub struct DeviceEvent {
    pub user_id: Uuid,
    pub action: DeviceAction,
    pub device_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub risk_score: i32,
    pub previous_risk_score: Option<i32>,
    pub device_type: Option<String>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub trust_state_change: Option<String>,
    pub origin: Origin,
    pub flags: Flags,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Option<DateTime<Utc>>,
}

impl DeviceEvent {
    pub fn new(user_id: Uuid, action: DeviceAction) -> Self {
        DeviceEvent {
            user_id,
            action,
            device_id: None,
            session_id: None,
            risk_score: 0,
            previous_risk_score: None,
            device_type: None,
            browser: None,
            os: None,
            trust_state_change: None,
            origin: Origin::default(),
            flags: Flags::default(),
            metadata: None,
            created_at: None,
        }
    }
}

/// A row for audit_log_mfaauditlog.
#[derive(Debug, Clone)]
pub struct MfaEvent {
    pub user_id: Uuid,
    pub action: MfaAction,
    pub mfa_method: Option<String>,
    pub device_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub challenge_id: Option<Uuid>,
    pub verification_attempts: Option<i32>,
    pub request_count_last_hour: Option<i32>,
    /// How access was recovered (`recovery_used`): `backup_code` or `admin_reset`.
    pub recovery_method: Option<&'static str>,
    pub rate_limit_status: &'static str,
    pub risk_level: RiskLevel,
    pub origin: Origin,
    pub flags: Flags,
    pub old_value: Option<serde_json::Value>,
    pub new_value: Option<serde_json::Value>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Option<DateTime<Utc>>,
}

impl MfaEvent {
    pub fn new(user_id: Uuid, action: MfaAction) -> Self {
        MfaEvent {
            user_id,
            action,
            mfa_method: None,
            device_id: None,
            session_id: None,
            challenge_id: None,
            verification_attempts: None,
            request_count_last_hour: None,
            recovery_method: None,
            rate_limit_status: "ok",
            risk_level: RiskLevel::Low,
            origin: Origin::default(),
            flags: Flags::default(),
            old_value: None,
            new_value: None,
            metadata: None,
            created_at: None,
        }
    }
}

/// A row for audit_log_sessiondevicelinkauditlog.
#[derive(Debug, Clone)]
pub struct LinkEvent {
    pub user_id: Uuid,
    pub action: LinkAction,
    pub session_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub previous_device_id: Option<Uuid>,
    pub link_duration_seconds: Option<i32>,
    pub risk_level: RiskLevel,
    pub origin: Origin,
    pub flags: Flags,
    pub metadata: Option<serde_json::Value>,
    pub created_at: Option<DateTime<Utc>>,
}

impl LinkEvent {
    pub fn new(user_id: Uuid, action: LinkAction) -> Self {
        LinkEvent {
            user_id,
            action,
            session_id: None,
            device_id: None,
            previous_device_id: None,
            link_duration_seconds: None,
            risk_level: RiskLevel::Low,
            origin: Origin::default(),
            flags: Flags::default(),
            metadata: None,
            created_at: None,
        }
    }
}
