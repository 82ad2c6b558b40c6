//! Notification types, priorities and outbox rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::core::text_enum;

text_enum!(
    /// Every kind of message the service sends; one email template each (and an SMS
    /// template where the type can go by SMS).
    NotificationType {
        EmailVerification => "email_verification",
        PasswordReset => "password_reset",
        MfaCode => "mfa_code",
        TokenReused => "token_reused",
        PasswordChanged => "password_changed",
        Marketing => "marketing",
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
    /// Security messages always go: no preference, quiet hours or blocklist holds them.
    pub fn is_security(self) -> bool {
        matches!(
            self,
            NotificationType::EmailVerification
                | NotificationType::PasswordReset
                | NotificationType::MfaCode
                | NotificationType::TokenReused
        )
    }

    pub fn priority(self) -> Priority {
        match self {
            NotificationType::MfaCode | NotificationType::TokenReused => Priority::Critical,
            NotificationType::PasswordReset | NotificationType::EmailVerification => Priority::High,
            NotificationType::PasswordChanged => Priority::High,
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
            NotificationType::MfaCode => "Your sign-in code",
            NotificationType::TokenReused => "Security alert: a session was signed out",
            NotificationType::PasswordChanged => "Your password was changed",
            NotificationType::Marketing => "News from Gatehouse",
        }
    }
}

/// When and whether a message goes (the policy's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Queue for now; `reason` is `security` for messages that bypass every preference.
    Now { reason: Option<&'static str> },
    /// Queue for later (quiet hours, a per-type delay).
    At { due: DateTime<Utc>, reason: &'static str },
    /// Do not send.
    Suppress { reason: &'static str },
}

/// An SMS claimed by a worker for delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedSms {
    pub id: Uuid,
    pub phone_number: String,
    pub message: String,
    pub retry_count: i32,
}

/// An email claimed by a worker for delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedEmail {
    pub id: Uuid,
    pub to_email: String,
    pub subject: String,
    pub body: String,
    pub html_body: Option<String>,
    pub retry_count: i32,
    pub max_retries: i32,
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
