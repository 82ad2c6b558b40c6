//! Paths of the accounts app: the JSON API, each route from its handler's
//! `#[utoipa::path]` (the path is written there once), and the emailed links' pages.

use axum::Router;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{handlers, link_pages};
use crate::core::AppState;

/// The JSON API of accounts.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::register))
        .routes(routes!(handlers::verify_email))
        .routes(routes!(handlers::resend_verification))
        .routes(routes!(handlers::login))
        .routes(routes!(handlers::whoami))
        .routes(routes!(handlers::introspect))
        .routes(routes!(handlers::refresh))
        .routes(routes!(handlers::logout))
        .routes(routes!(handlers::logout_all))
        .routes(routes!(handlers::change_password))
        .routes(routes!(handlers::request_password_reset))
        .routes(routes!(handlers::confirm_password_reset))
        .routes(routes!(handlers::request_email_change))
        .routes(routes!(handlers::request_export))
        .routes(routes!(handlers::export_status))
        .routes(routes!(handlers::export_download))
        .routes(routes!(handlers::confirm_email_change))
        .routes(routes!(handlers::undo_email_change))
        .routes(routes!(handlers::me, handlers::update_me, handlers::delete_me))
        .routes(routes!(handlers::sessions))
        .routes(routes!(handlers::revoke_session))
        .routes(routes!(handlers::api_keys, handlers::create_api_key))
        .routes(routes!(handlers::revoke_api_key))
        .routes(routes!(handlers::devices))
        .routes(routes!(handlers::device, handlers::rename_device, handlers::delete_device))
        .routes(routes!(handlers::trust_device, handlers::untrust_device))
        .routes(routes!(handlers::mark_compromised))
        .routes(routes!(handlers::mfa_send))
        .routes(routes!(handlers::mfa_verify))
        .routes(routes!(handlers::step_up))
        .routes(routes!(handlers::mfa_status))
        .routes(routes!(handlers::totp_remove))
        .routes(routes!(handlers::totp_setup))
        .routes(routes!(handlers::totp_confirm))
        .routes(routes!(handlers::regenerate_backup_codes))
        .routes(routes!(handlers::email_remove))
        .routes(routes!(handlers::email_setup))
        .routes(routes!(handlers::email_confirm))
        .routes(routes!(handlers::sms_remove))
        .routes(routes!(handlers::sms_setup))
        .routes(routes!(handlers::sms_confirm))
        .routes(routes!(handlers::set_primary))
        .routes(routes!(handlers::admin_devices_near))
        .routes(routes!(handlers::admin_users))
        .routes(routes!(handlers::admin_user, handlers::admin_update_user))
        .routes(routes!(handlers::admin_unlock))
        .routes(routes!(handlers::admin_mfa_reset))
        .routes(routes!(handlers::admin_change_requests))
        .routes(routes!(handlers::admin_approve_change))
        .routes(routes!(handlers::admin_reject_change))
        .routes(routes!(handlers::admin_logout_all))
}

/// The pages the emailed links open, served at the root (not under `/api/v1`).
pub fn pages() -> Router<AppState> {
    link_pages::router()
}
