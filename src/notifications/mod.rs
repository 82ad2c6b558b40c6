//! notifications: the durable outbox (email over SMTP, SMS and push through a provider,
//! digests), the in-app inbox, the one delivery policy, the user's settings and history. Imports audit_log and core only.

pub mod delivery;
pub mod digest;
pub mod forms;
pub mod handlers;
pub mod inbox;
pub mod mailer;
pub mod message;
pub mod models;
pub mod policy;
pub mod push;
pub mod repo;
pub mod routes;
pub mod service;
pub mod settings;
pub mod sms;
pub mod templates;

pub use message::Message;
pub use models::{MfaCode, NotificationType, Recipient};
pub use service::{enqueue_email, enqueue_mfa_code, enqueue_sms};
