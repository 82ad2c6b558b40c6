//! The one integration-test binary (one link step on 2 cores). Each test gets a fresh,
//! migrated PostgreSQL database from `#[sqlx::test]` and drives the real router over HTTP.

mod helpers;
mod process;
mod smtp;

mod abuse;
mod accounts;
mod admin_page;
mod administration;
mod api_keys;
mod audit_actions;
mod audit_admin;
mod audit_summary;
mod breached;
mod console;
mod crash;
mod devices;
mod exports;
mod faults;
mod foundation;
mod hot_path;
mod link_pages;
mod logging;
mod magic_link;
mod me_cache;
mod mfa;
mod notification_holds;
mod notifications;
mod oidc;
mod outbox;
mod partitions;
mod passkeys;
mod policies;
mod recovery;
mod replica;
mod secrets;
mod softkey;
mod structure;
