//! notifications: the email outbox and its delivery over SMTP. Imports audit_log and core only.

pub mod delivery;
pub mod handlers;
pub mod mailer;
pub mod models;
pub mod policy;
pub mod repo;
pub mod routes;
pub mod service;
pub mod settings;
pub mod sms;
pub mod templates;

pub use models::NotificationType;
pub use service::{MfaCode, enqueue_email, enqueue_mfa_code, enqueue_sms};
