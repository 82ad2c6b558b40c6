//! Paths of the account console, served at the root beside the emailed links' pages
//! (`guard` answers 404 for all of them when `ACCOUNT_CONSOLE` is off).

use axum::{
    Router,
    routing::{get, post},
};

use super::{account, data, devices, notifications, passkeys, security, sign_in, signup, social};
use crate::core::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account::overview))
        .route("/account/console.css", get(super::stylesheet))
        .route("/account/console.js", get(super::script))
        .route("/account/login", get(sign_in::login_form).post(sign_in::login))
        .route("/account/login/mfa", get(sign_in::mfa_form).post(sign_in::mfa))
        .route("/account/login/send", post(sign_in::send))
        .route("/account/login/passkey", post(sign_in::passkey))
        .route("/account/logout", post(sign_in::logout))
        .route("/account/signup", get(signup::signup_form).post(signup::signup))
        .route("/account/signup/done", get(signup::signup_done))
        .route("/account/forgot-password", get(signup::forgot_form).post(signup::forgot))
        .route("/account/magic-link", get(signup::magic_form).post(signup::magic_request))
        .route("/magic-link", get(signup::magic_page).post(signup::magic_confirm))
        .route("/account/verify-email/resend", post(account::resend_verification))
        .route("/account/step-up", get(account::step_up_form).post(account::step_up))
        .route("/account/step-up/send", post(account::step_up_send))
        .route("/account/sessions", get(account::sessions))
        .route("/account/sessions/revoke", post(account::revoke_session))
        .route("/account/sessions/revoke-all", post(account::revoke_all))
        .route("/account/activity", get(account::activity))
        .route("/account/security", get(security::security))
        .route("/account/security/password", post(security::change_password))
        .route("/account/security/totp", post(security::totp_setup))
        .route("/account/security/confirm", post(security::confirm))
        .route("/account/security/backup-codes", post(security::backup_codes))
        .route("/account/security/method", post(security::method_setup))
        .route("/account/security/remove", post(security::remove))
        .route("/account/passkeys/start", post(passkeys::start))
        .route("/account/passkeys/finish", post(passkeys::finish))
        .route("/account/passkeys/rename", post(passkeys::rename))
        .route("/account/passkeys/remove", post(passkeys::remove))
        .route("/account/devices", get(devices::devices).post(devices::device_action))
        .route("/account/export", get(data::export).post(data::request_export))
        .route("/account/export/{id}/download", get(data::download))
        .route("/account/api-keys", get(data::api_keys).post(data::create_key))
        .route("/account/api-keys/revoke", post(data::revoke_key))
        .route("/account/email", get(data::email_form).post(data::change_email))
        .route("/account/delete", get(data::delete_form).post(data::delete))
        .route("/account/deleted", get(data::deleted))
        .route("/account/notifications", get(notifications::notifications))
        .route("/account/notifications/preferences", post(notifications::preferences))
        .route("/account/notifications/types", post(notifications::type_preference))
        .route("/account/notifications/quiet-hours", post(notifications::add_quiet_hours))
        .route("/account/notifications/blocklist", post(notifications::add_block))
        .route("/account/notifications/remove", post(notifications::remove))
        .route("/account/notifications/consents", post(notifications::consent))
        .route("/account/social/start", post(social::start))
        .route("/account/social/done", get(social::done))
        .route("/account/connections", get(social::connections))
        .route("/account/connections/link", post(social::link))
        .route("/account/connections/unlink", post(social::unlink))
}
