//! notifications: the email outbox and its delivery over SMTP. Imports audit_log and core only.

pub mod delivery;
pub mod handlers;
pub mod mailer;
pub mod models;
pub mod repo;
pub mod routes;
pub mod service;
pub mod templates;

pub use models::NotificationType;
pub use service::enqueue_email;
