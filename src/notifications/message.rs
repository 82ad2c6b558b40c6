//! Every message the service sends, typed: one variant per notification type, holding the
//! fields its templates show. The apps build a `Message`; only `context` (here, once) turns
//! it into what a template reads, so a template and its callers cannot drift apart.

use chrono::Utc;
use minijinja::{Value, context};
use serde::Serialize;

use super::models::NotificationType;

/// An API key as a notice lists it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyLine {
    pub name: String,
    pub prefix: String,
    /// Comma-separated.
    pub scopes: String,
    /// `YYYY-MM-DD`.
    pub expires: String,
}

/// What a remediation ended and kept (templates/email/_grants).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Grants {
    pub sessions_ended: usize,
    pub keys_revoked: Vec<KeyLine>,
    pub keys_kept: Vec<KeyLine>,
    /// The factors that remain, as the user reads them.
    pub factors: Vec<String>,
}

/// How a password came to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// By its owner; the other sessions ended.
    Changed,
    /// By its owner, every session ended.
    ChangedEverywhere,
    /// With an emailed reset link.
    Reset,
}

/// One held message in a digest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DigestItem {
    pub subject: String,
    pub text: String,
}

/// The device a notice is about.
#[derive(Debug, Clone, Default)]
pub struct DeviceLine {
    /// `desktop`, `mobile`, ...
    pub device_type: String,
    pub browser: Option<String>,
    pub os: Option<String>,
    /// City and country, or country, when known.
    pub place: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Message {
    /// The held non-security messages of a digest user, in one email.
    Digest {
        items: Vec<DigestItem>,
    },
    EmailVerification {
        username: String,
        link: String,
    },
    PasswordReset {
        username: String,
        link: String,
    },
    /// A magic link: one sign-in, within five minutes.
    MagicLink {
        username: String,
        link: String,
    },
    MfaCode {
        code: String,
        minutes: i64,
    },
    TokenReused {
        username: String,
    },
    PasswordChanged {
        username: String,
        how: PasswordChange,
        grants: Grants,
    },
    MfaDisabled {
        username: String,
        method: String,
        approved: bool,
        /// API keys that stopped with it (`enforce_for_api`).
        keys_revoked: Vec<String>,
    },
    NewDevice {
        username: String,
        device: DeviceLine,
    },
    DeviceCompromised {
        username: String,
        sessions: usize,
    },
    Marketing {
        username: String,
        body: String,
    },
    BackupCodesLow {
        username: String,
        remaining: i64,
    },
    ApiKeyCreated {
        username: String,
        key: KeyLine,
    },
    EmailChange {
        username: String,
        link: String,
    },
    EmailChangeRequested {
        username: String,
        new_email: String,
    },
    MfaChangeDecided {
        username: String,
        change: String,
        decision: String,
        all_off: bool,
    },
    DeviceTrusted {
        username: String,
        device: DeviceLine,
        until: String,
    },
    MfaMethodAdded {
        username: String,
        method: String,
        first: bool,
    },
    /// A factor removed while others remain (the last one's removal is `MfaDisabled`).
    MfaMethodRemoved {
        username: String,
        method: String,
        factors: Vec<String>,
    },
    /// A provider's identity now signs in to the account (social login).
    IdentityLinked {
        username: String,
        provider: String,
        email: Option<String>,
    },
    IdentityUnlinked {
        username: String,
        provider: String,
    },
    SignedOutEverywhere {
        username: String,
        by_admin: bool,
        grants: Grants,
    },
    EmailChanged {
        username: String,
        new_email: String,
        link: String,
    },
    EmailChangeUndone {
        username: String,
        link: String,
        factors_added: Vec<String>,
        grants: Grants,
    },
    EmailChangeReverted {
        username: String,
    },
    ApiKeyExpiring {
        username: String,
        key: KeyLine,
    },
    ExportRequested {
        username: String,
    },
}

impl Message {
    pub fn kind(&self) -> NotificationType {
        use NotificationType as T;
        match self {
            Message::Digest { .. } => T::Digest,
            Message::EmailVerification { .. } => T::EmailVerification,
            Message::PasswordReset { .. } => T::PasswordReset,
            Message::MagicLink { .. } => T::MagicLink,
            Message::MfaCode { .. } => T::MfaCode,
            Message::TokenReused { .. } => T::TokenReused,
            Message::PasswordChanged { .. } => T::PasswordChanged,
            Message::MfaDisabled { .. } => T::MfaDisabled,
            Message::NewDevice { .. } => T::NewDevice,
            Message::DeviceCompromised { .. } => T::DeviceCompromised,
            Message::Marketing { .. } => T::Marketing,
            Message::BackupCodesLow { .. } => T::BackupCodesLow,
            Message::ApiKeyCreated { .. } => T::ApiKeyCreated,
            Message::EmailChange { .. } => T::EmailChange,
            Message::EmailChangeRequested { .. } => T::EmailChangeRequested,
            Message::MfaChangeDecided { .. } => T::MfaChangeDecided,
            Message::DeviceTrusted { .. } => T::DeviceTrusted,
            Message::MfaMethodAdded { .. } => T::MfaMethodAdded,
            Message::MfaMethodRemoved { .. } => T::MfaMethodRemoved,
            Message::IdentityLinked { .. } => T::IdentityLinked,
            Message::IdentityUnlinked { .. } => T::IdentityUnlinked,
            Message::SignedOutEverywhere { .. } => T::SignedOutEverywhere,
            Message::EmailChanged { .. } => T::EmailChanged,
            Message::EmailChangeUndone { .. } => T::EmailChangeUndone,
            Message::EmailChangeReverted { .. } => T::EmailChangeReverted,
            Message::ApiKeyExpiring { .. } => T::ApiKeyExpiring,
            Message::ExportRequested { .. } => T::ExportRequested,
        }
    }

    /// What the templates of `kind()` read; `time` is the moment the message is queued.
    pub fn context(&self) -> Value {
        let time = Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
        match self {
            Message::Digest { items } => context! { count => items.len(), items },
            Message::EmailVerification { username, link }
            | Message::PasswordReset { username, link }
            | Message::MagicLink { username, link }
            | Message::EmailChange { username, link } => context! { username, link },
            Message::MfaCode { code, minutes } => context! { code, minutes },
            Message::TokenReused { username }
            | Message::EmailChangeReverted { username }
            | Message::ExportRequested { username } => context! { username, time },
            Message::PasswordChanged { username, how, grants } => context! {
                username,
                reset => *how == PasswordChange::Reset,
                everywhere => *how == PasswordChange::ChangedEverywhere,
                ..Value::from_serialize(grants)
            },
            Message::MfaDisabled { username, method, approved, keys_revoked } => {
                context! { username, method, approved, keys_revoked }
            }
            Message::NewDevice { username, device } => context! {
                username,
                device_type => device.device_type,
                browser => device.browser.as_deref().unwrap_or("an unknown browser"),
                os => device.os.as_deref().unwrap_or("an unknown system"),
                place => device.place,
                ip => device.ip,
                time,
            },
            Message::DeviceCompromised { username, sessions } => context! { username, sessions },
            Message::Marketing { username, body } => context! { username, body },
            Message::BackupCodesLow { username, remaining } => context! { username, remaining },
            Message::ApiKeyCreated { username, key } | Message::ApiKeyExpiring { username, key } => context! {
                username, name => key.name, prefix => key.prefix, scopes => key.scopes, expires => key.expires, time,
            },
            Message::EmailChangeRequested { username, new_email } => context! { username, new_email, time },
            Message::MfaChangeDecided { username, change, decision, all_off } => {
                context! { username, change, decision, all_off, time }
            }
            Message::DeviceTrusted { username, device, until } => context! {
                username,
                browser => device.browser.as_deref().unwrap_or("an unknown browser"),
                os => device.os.as_deref().unwrap_or("an unknown system"),
                until,
                ip => device.ip,
                time,
            },
            Message::MfaMethodAdded { username, method, first } => context! { username, method, first, time },
            Message::MfaMethodRemoved { username, method, factors } => context! { username, method, factors, time },
            Message::IdentityLinked { username, provider, email } => context! { username, provider, email, time },
            Message::IdentityUnlinked { username, provider } => context! { username, provider, time },
            Message::SignedOutEverywhere { username, by_admin, grants } => {
                context! { username, by_admin, ..Value::from_serialize(grants) }
            }
            Message::EmailChanged { username, new_email, link } => context! { username, new_email, link, time },
            Message::EmailChangeUndone { username, link, factors_added, grants } => {
                context! { username, link, factors_added, ..Value::from_serialize(grants) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_message_that_renders() {
        let key =
            KeyLine { name: "k".into(), prefix: "p".into(), scopes: "me:read".into(), expires: "2027-01-01".into() };
        let grants = Grants { sessions_ended: 1, keys_revoked: vec![key.clone()], keys_kept: vec![], factors: vec![] };
        let (u, l) = (|| "ann".to_owned(), || "http://x/y?token=t".to_owned());
        let messages = vec![
            Message::Digest { items: vec![DigestItem { subject: "s".into(), text: "t".into() }] },
            Message::EmailVerification { username: u(), link: l() },
            Message::PasswordReset { username: u(), link: l() },
            Message::MagicLink { username: u(), link: l() },
            Message::MfaCode { code: "123456".into(), minutes: 5 },
            Message::TokenReused { username: u() },
            Message::PasswordChanged { username: u(), how: PasswordChange::Reset, grants: grants.clone() },
            Message::MfaDisabled {
                username: u(),
                method: "totp".into(),
                approved: false,
                keys_revoked: vec!["ci".into()],
            },
            Message::NewDevice { username: u(), device: DeviceLine::default() },
            Message::DeviceCompromised { username: u(), sessions: 2 },
            Message::Marketing { username: u(), body: "news".into() },
            Message::BackupCodesLow { username: u(), remaining: 1 },
            Message::ApiKeyCreated { username: u(), key: key.clone() },
            Message::EmailChange { username: u(), link: l() },
            Message::EmailChangeRequested { username: u(), new_email: "a@b.io".into() },
            Message::MfaChangeDecided { username: u(), change: "c".into(), decision: "approved".into(), all_off: true },
            Message::DeviceTrusted { username: u(), device: DeviceLine::default(), until: "2027".into() },
            Message::MfaMethodAdded { username: u(), method: "totp".into(), first: true },
            Message::MfaMethodRemoved { username: u(), method: "a passkey".into(), factors: vec!["x".into()] },
            Message::IdentityLinked { username: u(), provider: "Google".into(), email: Some("a@b.io".into()) },
            Message::IdentityUnlinked { username: u(), provider: "Google".into() },
            Message::SignedOutEverywhere { username: u(), by_admin: true, grants: grants.clone() },
            Message::EmailChanged { username: u(), new_email: "a@b.io".into(), link: l() },
            Message::EmailChangeUndone { username: u(), link: l(), factors_added: vec!["x".into()], grants },
            Message::EmailChangeReverted { username: u() },
            Message::ApiKeyExpiring { username: u(), key },
            Message::ExportRequested { username: u() },
        ];
        for kind in NotificationType::ALL {
            let message =
                messages.iter().find(|m| m.kind() == *kind).unwrap_or_else(|| panic!("no message for {kind}"));
            let rendered = super::super::templates::render(*kind, message.context()).unwrap();
            assert!(!rendered.text.contains("{{") && !rendered.text.trim().is_empty(), "{kind}");
        }
    }
}
