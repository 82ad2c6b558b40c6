//! Paths of the accounts app: the JSON API, each route from its handler's
//! `#[utoipa::path]` (the path is written there once), and the emailed links' pages.

use axum::Router;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{handlers, link_pages};
use crate::core::AppState;

/// The JSON API of accounts.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::auth::register))
        .routes(routes!(handlers::auth::verify_email))
        .routes(routes!(handlers::auth::resend_verification))
        .routes(routes!(handlers::auth::login))
        .routes(routes!(handlers::introspection::whoami))
        .routes(routes!(handlers::introspection::introspect))
        .routes(routes!(handlers::auth::refresh))
        .routes(routes!(handlers::auth::logout))
        .routes(routes!(handlers::auth::logout_all))
        .routes(routes!(handlers::auth::change_password))
        .routes(routes!(handlers::auth::request_password_reset))
        .routes(routes!(handlers::auth::request_magic_link))
        .routes(routes!(handlers::auth::confirm_magic_link))
        .routes(routes!(handlers::auth::confirm_password_reset))
        .routes(routes!(handlers::auth::request_email_change))
        .routes(routes!(handlers::exports::request_export))
        .routes(routes!(handlers::exports::export_status))
        .routes(routes!(handlers::exports::export_download))
        .routes(routes!(handlers::auth::confirm_email_change))
        .routes(routes!(handlers::auth::undo_email_change))
        .routes(routes!(handlers::auth::me, handlers::auth::update_me, handlers::auth::delete_me))
        .routes(routes!(handlers::auth::sessions))
        .routes(routes!(handlers::auth::revoke_session))
        .routes(routes!(handlers::api_keys::api_keys, handlers::api_keys::create_api_key))
        .routes(routes!(handlers::api_keys::revoke_api_key))
        .routes(routes!(handlers::devices::devices))
        .routes(routes!(handlers::devices::device, handlers::devices::rename_device, handlers::devices::delete_device))
        .routes(routes!(handlers::devices::trust_device, handlers::devices::untrust_device))
        .routes(routes!(handlers::devices::mark_compromised))
        .routes(routes!(handlers::mfa::mfa_send))
        .routes(routes!(handlers::mfa::mfa_verify))
        .routes(routes!(handlers::mfa::step_up))
        .routes(routes!(handlers::mfa::mfa_status))
        .routes(routes!(handlers::mfa::totp_remove))
        .routes(routes!(handlers::mfa::totp_setup))
        .routes(routes!(handlers::mfa::totp_confirm))
        .routes(routes!(handlers::mfa::regenerate_backup_codes))
        .routes(routes!(handlers::mfa::email_remove))
        .routes(routes!(handlers::mfa::email_setup))
        .routes(routes!(handlers::mfa::email_confirm))
        .routes(routes!(handlers::mfa::sms_remove))
        .routes(routes!(handlers::mfa::sms_setup))
        .routes(routes!(handlers::mfa::sms_confirm))
        .routes(routes!(handlers::mfa::set_primary))
        .routes(routes!(handlers::passkeys::passkey_register_start))
        .routes(routes!(handlers::passkeys::passkey_register_finish))
        .routes(routes!(handlers::passkeys::list_passkeys))
        .routes(routes!(handlers::passkeys::rename_passkey, handlers::passkeys::delete_passkey))
        .routes(routes!(handlers::passkeys::mfa_passkey_options))
        .routes(routes!(handlers::passkeys::passkey_sign_in_options))
        .routes(routes!(handlers::passkeys::passkey_login))
        .routes(routes!(handlers::social::oidc_providers))
        .routes(routes!(handlers::social::oidc_start))
        .routes(routes!(handlers::social::oidc_callback))
        .routes(routes!(handlers::social::oidc_exchange))
        .routes(routes!(handlers::social::connections))
        .routes(routes!(handlers::social::unlink_connection))
        .routes(routes!(handlers::devices::admin_devices_near))
        .routes(routes!(handlers::admin::admin_users))
        .routes(routes!(handlers::admin::admin_user, handlers::admin::admin_update_user))
        .routes(routes!(handlers::admin::admin_unlock))
        .routes(routes!(handlers::admin::admin_mfa_reset))
        .routes(routes!(handlers::admin::admin_change_requests))
        .routes(routes!(handlers::admin::admin_approve_change))
        .routes(routes!(handlers::admin::admin_reject_change))
        .routes(routes!(handlers::admin::admin_logout_all))
}

/// The pages the emailed links open, served at the root (not under `/api/v1`).
pub fn pages() -> Router<AppState> {
    link_pages::router()
}
