//! Paths of the accounts app: the JSON API (nested under `/api/v1`) and the emailed links'
//! pages.

use axum::{
    Router,
    routing::{delete, get, post, put},
};

use super::{handlers, link_pages};
use crate::core::AppState;

/// The JSON API of accounts.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(handlers::register))
        .route("/auth/email/verify", post(handlers::verify_email))
        .route("/auth/email/resend", post(handlers::resend_verification))
        .route("/auth/login", post(handlers::login))
        .route("/auth/whoami", get(handlers::whoami))
        .route("/auth/introspect", post(handlers::introspect))
        .route("/auth/refresh", post(handlers::refresh))
        .route("/auth/logout", post(handlers::logout))
        .route("/auth/logout-all", post(handlers::logout_all))
        .route("/auth/password/change", post(handlers::change_password))
        .route("/auth/password/reset", post(handlers::request_password_reset))
        .route("/auth/password/reset/confirm", post(handlers::confirm_password_reset))
        .route("/users/me/email", post(handlers::request_email_change))
        .route("/users/me/export", post(handlers::request_export))
        .route("/users/me/export/{id}", get(handlers::export_status))
        .route("/users/me/export/{id}/download", get(handlers::export_download))
        .route("/auth/email/change/confirm", post(handlers::confirm_email_change))
        .route("/auth/email/change/undo", post(handlers::undo_email_change))
        .route("/users/me", get(handlers::me).patch(handlers::update_me).delete(handlers::delete_me))
        .route("/sessions", get(handlers::sessions))
        .route("/sessions/{id}", delete(handlers::revoke_session))
        .route("/api-keys", get(handlers::api_keys).post(handlers::create_api_key))
        .route("/api-keys/{id}", delete(handlers::revoke_api_key))
        .route("/devices", get(handlers::devices))
        .route("/devices/{id}", get(handlers::device).patch(handlers::rename_device).delete(handlers::delete_device))
        .route("/devices/{id}/trust", post(handlers::trust_device).delete(handlers::untrust_device))
        .route("/devices/{id}/compromised", post(handlers::mark_compromised))
        .route("/auth/mfa/send", post(handlers::mfa_send))
        .route("/auth/mfa/verify", post(handlers::mfa_verify))
        .route("/auth/mfa/step-up", post(handlers::step_up))
        .route("/mfa", get(handlers::mfa_status))
        .route("/mfa/totp", delete(handlers::totp_remove))
        .route("/mfa/totp/setup", post(handlers::totp_setup))
        .route("/mfa/totp/confirm", post(handlers::totp_confirm))
        .route("/mfa/backup-codes", post(handlers::regenerate_backup_codes))
        .route("/mfa/email", delete(handlers::email_remove))
        .route("/mfa/email/setup", post(handlers::email_setup))
        .route("/mfa/email/confirm", post(handlers::email_confirm))
        .route("/mfa/sms", delete(handlers::sms_remove))
        .route("/mfa/sms/setup", post(handlers::sms_setup))
        .route("/mfa/sms/confirm", post(handlers::sms_confirm))
        .route("/mfa/primary", put(handlers::set_primary))
        .route("/admin/devices", get(handlers::admin_devices_near))
        .route("/admin/users", get(handlers::admin_users))
        .route("/admin/users/{id}", get(handlers::admin_user).patch(handlers::admin_update_user))
        .route("/admin/users/{id}/unlock", post(handlers::admin_unlock))
        .route("/admin/users/{id}/mfa/reset", post(handlers::admin_mfa_reset))
        .route("/admin/mfa/change-requests", get(handlers::admin_change_requests))
        .route("/admin/mfa/change-requests/{id}/approve", post(handlers::admin_approve_change))
        .route("/admin/mfa/change-requests/{id}/reject", post(handlers::admin_reject_change))
        .route("/admin/users/{id}/logout-all", post(handlers::admin_logout_all))
}

/// The pages the emailed links open, served at the root (not under `/api/v1`).
pub fn pages() -> Router<AppState> {
    Router::new()
        .route("/verify-email", get(link_pages::verify_email_page).post(link_pages::verify_email_submit))
        .route("/reset-password", get(link_pages::reset_password_page).post(link_pages::reset_password_submit))
        .route("/confirm-email-change", get(link_pages::email_change_page).post(link_pages::email_change_submit))
        .route("/undo-email-change", get(link_pages::undo_email_change_page).post(link_pages::undo_email_change_submit))
}
