//! notifications: the email/SMS outbox and its delivery, preferences, quiet hours,
//! blocklist and consent. Imports audit_log and core only.

pub mod routes;
