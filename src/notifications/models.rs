//! Notification types, priorities, outbox rows, the shapes of the settings API and the
//! values the policy and the MFA delivery pass around.

use chrono::{DateTime, NaiveTime, Utc};
use ipnetwork::IpNetwork;
use secrecy::SecretString;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::{
    text_enum,
    types::{Email, Phone},
};

text_enum!(
    /// Every kind of message the service sends; one email template each (and an SMS
    /// template where the type can go by SMS).
    NotificationType {
        EmailVerification => "email_verification",
        PasswordReset => "password_reset",
        MfaCode => "mfa_code",
        TokenReused => "token_reused",
        PasswordChanged => "password_changed",
        MfaDisabled => "mfa_disabled",
        NewDevice => "new_device",
        DeviceCompromised => "device_compromised",
        Marketing => "marketing",
        BackupCodesLow => "backup_codes_low",
        ApiKeyCreated => "api_key_created",
        EmailChange => "email_change",
        EmailChangeRequested => "email_change_requested",
        MfaChangeDecided => "mfa_change_decided",
        DeviceTrusted => "device_trusted",
        MfaMethodAdded => "mfa_method_added",
        MfaMethodRemoved => "mfa_method_removed",
        IdentityLinked => "identity_linked",
        IdentityUnlinked => "identity_unlinked",
        Digest => "digest",
        SignedOutEverywhere => "signed_out_everywhere",
        EmailChanged => "email_changed",
        EmailChangeUndone => "email_change_undone",
        EmailChangeReverted => "email_change_reverted",
        ApiKeyExpiring => "api_key_expiring",
        ExportRequested => "export_requested",
        MagicLink => "magic_link",
    }
);

text_enum!(
    /// Delivery channels; `in_app` and `push` exist as preferences only.
    Channel { Email => "email", Sms => "sms", InApp => "in_app", Push => "push" }
);

text_enum!(
    /// GDPR consent types (API.md).
    ConsentType { Marketing => "marketing", Analytics => "analytics", ThirdParty => "third_party" }
);

text_enum!(
    /// What a blocklist entry blocks.
    BlockType { NotificationType => "notification_type", Channel => "channel", Sender => "sender" }
);

text_enum!(
    /// Delivery priority, lowest first.
    Priority { Low => "low", Medium => "medium", High => "high", Critical => "critical" }
);

impl NotificationType {
    /// Whether the message carries a code or a live one-time link: its body is sealed while
    /// it waits and removed once delivery ends.
    pub fn carries_secret(self) -> bool {
        matches!(
            self,
            NotificationType::EmailVerification
                | NotificationType::PasswordReset
                | NotificationType::MagicLink
                | NotificationType::MfaCode
                | NotificationType::EmailChange
                | NotificationType::EmailChanged
                | NotificationType::EmailChangeUndone
        )
    }

    /// Security messages always go: no preference, quiet hours or blocklist holds them.
    /// Codes and links, and every notice that the account changed or was used (an attacker
    /// who took it over would rather the owner did not hear). Reminders (backup codes
    /// running low, a key about to expire) and news are not (API.md "Magic link and in-app
    /// notifications"); a new type is a security message unless it is listed here.
    pub fn is_security(self) -> bool {
        !matches!(
            self,
            NotificationType::Marketing | NotificationType::BackupCodesLow | NotificationType::ApiKeyExpiring
        )
    }

    pub fn priority(self) -> Priority {
        match self {
            NotificationType::MfaCode | NotificationType::TokenReused => Priority::Critical,
            NotificationType::PasswordReset
            | NotificationType::EmailVerification
            | NotificationType::EmailChange
            | NotificationType::MagicLink => Priority::High,
            NotificationType::PasswordChanged
            | NotificationType::MfaDisabled
            | NotificationType::NewDevice
            | NotificationType::DeviceCompromised
            | NotificationType::ApiKeyCreated
            | NotificationType::EmailChangeRequested
            | NotificationType::MfaChangeDecided
            | NotificationType::DeviceTrusted
            | NotificationType::MfaMethodAdded
            | NotificationType::MfaMethodRemoved
            | NotificationType::IdentityLinked
            | NotificationType::IdentityUnlinked
            | NotificationType::SignedOutEverywhere
            | NotificationType::EmailChanged
            | NotificationType::EmailChangeUndone
            | NotificationType::EmailChangeReverted
            | NotificationType::ExportRequested => Priority::Critical,
            NotificationType::BackupCodesLow | NotificationType::ApiKeyExpiring => Priority::High,
            NotificationType::Digest => Priority::Medium,
            NotificationType::Marketing => Priority::Low,
        }
    }

    /// Marketing needs the user's recorded consent.
    pub fn needs_consent(self) -> Option<ConsentType> {
        (self == NotificationType::Marketing).then_some(ConsentType::Marketing)
    }

    pub fn subject(self) -> &'static str {
        match self {
            NotificationType::EmailVerification => "Confirm your email address",
            NotificationType::PasswordReset => "Reset your password",
            NotificationType::MagicLink => "Your sign-in link",
            NotificationType::MfaCode => "Your sign-in code",
            NotificationType::TokenReused => "Security alert: a session was signed out",
            NotificationType::PasswordChanged => "Your password was changed",
            NotificationType::MfaDisabled => "Two-step verification was turned off",
            NotificationType::NewDevice => "A new device signed in to your account",
            NotificationType::DeviceCompromised => "A device was marked compromised",
            NotificationType::Marketing => "News from Gatehouse",
            NotificationType::BackupCodesLow => "You are running out of backup codes",
            NotificationType::ApiKeyCreated => "A new API key was created for your account",
            NotificationType::EmailChange => "Confirm your new email address",
            NotificationType::EmailChangeRequested => "A change of your email address was requested",
            NotificationType::MfaChangeDecided => "Your two-step verification change request was decided",
            NotificationType::DeviceTrusted => "A device may now sign in without two-step verification",
            NotificationType::MfaMethodAdded => "A sign-in factor was added to your account",
            NotificationType::MfaMethodRemoved => "A sign-in factor was removed from your account",
            NotificationType::IdentityLinked => "A sign-in provider was linked to your account",
            NotificationType::IdentityUnlinked => "A sign-in provider was unlinked from your account",
            NotificationType::Digest => "Your Gatehouse digest",
            NotificationType::SignedOutEverywhere => "Your account was signed out everywhere",
            NotificationType::EmailChanged => "The email address of your account was changed",
            NotificationType::EmailChangeUndone => "Your email address is restored: choose a new password",
            NotificationType::EmailChangeReverted => "This address no longer signs in to a Gatehouse account",
            NotificationType::ApiKeyExpiring => "An API key of your account expires soon",
            NotificationType::ExportRequested => "A copy of your account's data was requested",
        }
    }
}

/// When and whether a message goes (the policy's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Queue for now; `reason` is `security` for messages that bypass every preference.
    Now { reason: Option<&'static str>, priority: Priority },
    /// Queue for later (quiet hours, a per-type delay).
    At { due: DateTime<Utc>, reason: &'static str, priority: Priority },
    /// Hold for the user's digest (an email the digest job sends with the others).
    Held { priority: Priority },
    /// Do not send.
    Suppress { reason: &'static str },
}

/// `GET /notifications/inbox`: an in-app message.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct InboxItem {
    pub id: Uuid,
    pub notification_type: String,
    pub title: String,
    pub body: String,
    pub priority: String,
    /// Null while unread.
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `GET /notifications/inbox`: a page of the inbox and the unread count.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inbox {
    pub items: Vec<InboxItem>,
    pub unread_count: i64,
    pub pagination: crate::core::extract::Pagination,
}

/// A push claimed by a worker for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedPush {
    pub id: Uuid,
    pub user_id: Uuid,
    pub notification_type: String,
    pub title: String,
    pub body: String,
    pub retry_count: i32,
}

/// An SMS claimed by a worker for delivery. Its `Debug` leaves the message out: it may
/// carry a code.
#[derive(Clone, sqlx::FromRow)]
pub struct ClaimedSms {
    pub id: Uuid,
    pub phone_number: String,
    pub message: String,
    pub retry_count: i32,
}

impl std::fmt::Debug for ClaimedSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedSms")
            .field("id", &self.id)
            .field("retry_count", &self.retry_count)
            .finish_non_exhaustive()
    }
}

/// An email claimed by a worker for delivery. Its `Debug` leaves the bodies out: they may
/// carry a code or a one-time link.
#[derive(Clone, sqlx::FromRow)]
pub struct ClaimedEmail {
    pub id: Uuid,
    pub to_email: String,
    pub subject: String,
    pub body: String,
    pub html_body: Option<String>,
    pub retry_count: i32,
    pub max_retries: i32,
}

impl std::fmt::Debug for ClaimedEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedEmail")
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("retry_count", &self.retry_count)
            .finish_non_exhaustive()
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent { provider: &'static str, message_id: Option<String> },
    Failed { error: String },
}

/// A row's state after delivery, for callers and tests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmailStatus {
    pub id: Uuid,
    pub status: String,
    pub retry_count: i32,
    pub sent_at: Option<DateTime<Utc>>,
    pub provider: Option<String>,
    pub error_message: Option<String>,
}

/// A quiet-hours window as the policy reads it: from `start` on `day_of_week`
/// (0 = Monday) to `end`, the same day or, when `end <= start`, the next.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub day_of_week: i32,
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub allow_critical_only: bool,
}

/// Where an MFA code goes: the account's email or a verified phone.
#[derive(Debug, Clone, Copy)]
pub enum Recipient<'a> {
    Email(&'a Email),
    Sms(&'a Phone),
}

impl Recipient<'_> {
    pub fn channel(&self) -> Channel {
        match self {
            Recipient::Email(_) => Channel::Email,
            Recipient::Sms(_) => Channel::Sms,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Email(e) => e.as_str(),
            Recipient::Sms(p) => p.as_str(),
        }
    }
}

/// A one-time code to deliver for MFA. The caller (the otp app) makes and hashes the code;
/// the code itself travels only inside the outgoing message, which is redacted once sent.
#[derive(Debug)]
pub struct MfaCode<'a> {
    pub user_id: Uuid,
    pub to: Recipient<'a>,
    pub code: &'a SecretString,
    /// HMAC of the code under the server key, as otp stores it.
    pub code_hash: &'a str,
    /// `login`, `setup` or `step_up`.
    pub mfa_type: &'a str,
    pub expires_at: DateTime<Utc>,
}

// The settings API (API.md "Notification settings"); the rules are in settings.rs.

/// Global switches (notifications_notificationpreference).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Preferences {
    pub email_otp: bool,
    pub email_alerts: bool,
    pub email_marketing: bool,
    pub sms_otp: bool,
    pub sms_alerts: bool,
    pub push_enabled: bool,
    pub quiet_hours_enabled: bool,
    /// `HH:MM` or null.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    /// `real-time`, `hourly`, `daily` or `weekly`.
    pub digest_frequency: String,
}

/// One type's preference (notifications_detailednotificationpreference).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TypePreference {
    pub notification_type: NotificationType,
    /// Security messages (codes, resets, token reuse) go whatever this says.
    pub security: bool,
    pub email_enabled: bool,
    pub sms_enabled: bool,
    pub in_app_enabled: bool,
    pub push_enabled: bool,
    pub priority: Priority,
    pub respect_quiet_hours: bool,
    /// 0..=1440.
    pub delay_minutes: i32,
    /// 0..=10000 messages of this type per rolling 24 hours.
    pub max_per_day: i32,
}

/// A quiet-hours window; times are `HH:MM` in the user's profile timezone, and a window
/// whose end is not after its start runs past midnight into the next day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuietHours {
    pub id: Uuid,
    /// 0 = Monday .. 6 = Sunday.
    pub day_of_week: i32,
    pub start_time: String,
    pub end_time: String,
    pub is_enabled: bool,
    /// Critical messages still go during the window.
    pub allow_critical_only: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An active blocklist entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Block {
    pub id: Uuid,
    pub block_type: BlockType,
    /// A notification type, a channel (`email`, `sms`, `in_app`, `push`), or a sender
    /// class (`alerts`, `news`).
    pub blocked_value: String,
    pub reason: Option<String>,
    pub blocked_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A consent record (GDPR): what, when, from where.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consent {
    pub consent_type: ConsentType,
    pub is_consented: bool,
    pub consented_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    pub source: Option<String>,
    #[schema(value_type = Option<String>)]
    pub ip_address: Option<IpNetwork>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// One message of the user's delivery history.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    /// `email` or `sms`.
    pub channel: String,
    pub notification_type: String,
    pub recipient: String,
    pub subject: Option<String>,
    /// `pending`, `sending`, `sent`, `delivered`, `opened`, `failed`, `cancelled`.
    pub status: String,
    pub retry_count: i32,
    /// When it is (or was) due: later than `created_at` for a deferred message.
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_debug_prints_a_code_or_a_message_body() {
        let secret = "904117-or-a-link-token";
        let email = Email::parse("ann@example.com").unwrap();
        let code = SecretString::from(secret);
        let mfa = MfaCode {
            user_id: Uuid::nil(),
            to: Recipient::Email(&email),
            code: &code,
            code_hash: "hmac",
            mfa_type: "login",
            expires_at: Utc::now(),
        };
        let sms =
            ClaimedSms { id: Uuid::nil(), phone_number: "+15551234567".into(), message: secret.into(), retry_count: 0 };
        let mail = ClaimedEmail {
            id: Uuid::nil(),
            to_email: "ann@example.com".into(),
            subject: "Your sign-in code".into(),
            body: secret.into(),
            html_body: Some(secret.into()),
            retry_count: 0,
            max_retries: 5,
        };
        for debug in [format!("{mfa:?}"), format!("{sms:?}"), format!("{mail:?}")] {
            assert!(!debug.contains(secret), "leaked: {debug}");
        }
    }
}
