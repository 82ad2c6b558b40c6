//! The security page: change the password; the second factors (an authenticator app from a
//! QR code or its secret as text, codes by email or SMS, backup codes shown once, passkeys).
//! A POST that reveals a secret once (a TOTP secret, backup codes) answers with the page
//! that shows it (200) instead of a redirect, so the secret is never in a URL or a cache.

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::Engine;
use minijinja::{Value, context};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;

use super::{Browser, Page, Signed, base, checked, csrf_form, refused, see_other, t};
use crate::{
    accounts::service::{self, ChangeOptions},
    core::{AppError, AppState, auth::AuthUser, types::Phone},
    otp::MfaMethod,
};

/// What the page shows besides the account's factors.
#[derive(Default)]
pub(super) struct Shown {
    pub errors: BTreeMap<String, String>,
    pub totp: Option<Value>,
    pub codes: Option<Vec<String>>,
    pub pending: Option<&'static str>,
    pub done: Option<String>,
}

pub(super) async fn security_page(state: &AppState, user: &AuthUser, status: StatusCode, shown: Shown) -> Response {
    let outcome = async {
        let mfa = service::mfa_status(state, user).await?;
        let passkeys = service::passkeys(state, user).await?;
        Ok::<_, AppError>((mfa, passkeys))
    }
    .await;
    match outcome {
        Ok((mfa, passkeys)) => {
            let webauthn = state.relying_party.get().is_ok();
            let ctx = base(
                state,
                user,
                "security",
                context! {
                title => t("security"), mfa, passkeys, webauthn, errors => shown.errors, totp => shown.totp,
                codes => shown.codes, pending => shown.pending, done => shown.done },
            );
            Page::new(status, "security.html", ctx).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

/// GET /account/security.
pub async fn security(State(state): State<AppState>, Signed(user): Signed, Query(q): Query<DoneQuery>) -> Response {
    let done = q.done.as_deref().and_then(|d| match d {
        "password" => Some(t("password_changed")),
        "passkey" => Some(t("passkey_added")),
        "removed" => Some(t("factor_removed")),
        "approval" => Some(t("approval_required")),
        _ => None,
    });
    security_page(&state, &user, StatusCode::OK, Shown { done, ..Shown::default() }).await
}

/// A refused security form: the page again with the errors next to their fields.
pub(super) async fn again_at_security(state: &AppState, user: &AuthUser, e: AppError) -> Response {
    refused(e, "/account/security", |r| {
        security_page(state, user, r.status, Shown { errors: r.errors, ..Shown::default() })
    })
    .await
}

csrf_form!(
    struct PasswordForm {
        current_password: String,
        new_password: String,
        sign_out_everywhere: Option<String>,
    }
);

/// POST /account/security/password: other sessions are signed out (API.md "Recovery");
/// this one too when asked.
pub async fn change_password(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<PasswordForm>(&state, &user, &body) else {
        return super::forged();
    };
    let everywhere = f.sign_out_everywhere.is_some();
    let options = ChangeOptions { sign_out_everywhere: everywhere, revoke_api_keys: false };
    let (current, new) = (SecretString::from(f.current_password), SecretString::from(f.new_password));
    match service::change_password(&state, &client, &user, current, new, options).await {
        Ok(()) if everywhere => see_other("/account/login"),
        Ok(()) => see_other("/account/security?done=password"),
        // The service names the current password `password`; the form calls it `current_password`.
        Err(AppError::PasswordIncorrect) => {
            let errors = [("current_password".to_owned(), t("password_incorrect"))].into_iter().collect();
            security_page(&state, &user, StatusCode::FORBIDDEN, Shown { errors, ..Shown::default() }).await
        }
        Err(e) => again_at_security(&state, &user, e).await,
    }
}

csrf_form!(
    struct PasswordOnly {
        password: String,
    }
);

/// POST /account/security/totp: a new secret, shown as a QR code and as text, not active
/// until a code from it is confirmed.
pub async fn totp_setup(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<PasswordOnly>(&state, &user, &body) else {
        return super::forged();
    };
    match service::totp_setup(&state, &client, &user, Some(SecretString::from(f.password))).await {
        Ok(setup) => {
            let qr = base64::engine::general_purpose::STANDARD.encode(setup.qr_svg.as_bytes());
            let totp = context! {
                qr => format!("data:image/svg+xml;base64,{qr}"),
                secret => setup.secret.expose_secret(),
                uri => setup.otpauth_uri.expose_secret(),
            };
            security_page(&state, &user, StatusCode::OK, Shown { totp: Some(totp), ..Shown::default() }).await
        }
        Err(e) => again_at_security(&state, &user, e).await,
    }
}

csrf_form!(
    struct CodeForm {
        code: String,
        method: String,
    }
);

/// POST /account/security/confirm: a code from the new factor turns it on; the first factor
/// turns MFA on and its backup codes are shown once.
pub async fn confirm(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<CodeForm>(&state, &user, &body) else {
        return super::forged();
    };
    let code = SecretString::from(f.code);
    let outcome = match MfaMethod::parse(&f.method) {
        Some(MfaMethod::Totp) => service::totp_confirm(&state, &client, &user, code).await,
        Some(m @ (MfaMethod::Email | MfaMethod::Sms)) => service::method_confirm(&state, &client, &user, m, code).await,
        _ => Err(AppError::validation("method", t("method_unknown"))),
    };
    match outcome {
        Ok(codes) => {
            let codes = Some(codes.backup_codes).filter(|c| !c.is_empty());
            let done = Some(t("factor_added"));
            security_page(&state, &user, StatusCode::OK, Shown { codes, done, ..Shown::default() }).await
        }
        Err(e) => again_at_security(&state, &user, e).await,
    }
}

/// POST /account/security/backup-codes: new codes, shown once; the old ones die.
pub async fn backup_codes(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<PasswordOnly>(&state, &user, &body) else {
        return super::forged();
    };
    match service::regenerate_backup_codes(&state, &client, &user, SecretString::from(f.password)).await {
        Ok(codes) => {
            let shown = Shown { codes: Some(codes.backup_codes), ..Shown::default() };
            security_page(&state, &user, StatusCode::OK, shown).await
        }
        Err(e) => again_at_security(&state, &user, e).await,
    }
}

csrf_form!(
    struct MethodSetupForm {
        password: String,
        method: String,
        phone_number: String,
    }
);

/// POST /account/security/method: codes by email (to the account's address) or by SMS (to
/// `phone_number`); a code is sent, and the page asks for it.
pub async fn method_setup(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<MethodSetupForm>(&state, &user, &body) else {
        return super::forged();
    };
    let password = Some(SecretString::from(f.password));
    let outcome = match f.method.as_str() {
        "email" => service::email_setup(&state, &client, &user, password).await.map(|()| "email"),
        "sms" => match Phone::parse(&f.phone_number) {
            Ok(phone) => service::sms_setup(&state, &client, &user, phone, password).await.map(|()| "sms"),
            Err(m) => Err(AppError::validation("phone_number", m)),
        },
        _ => Err(AppError::validation("method", t("method_unknown"))),
    };
    match outcome {
        Ok(method) => {
            security_page(&state, &user, StatusCode::OK, Shown { pending: Some(method), ..Shown::default() }).await
        }
        Err(e) => again_at_security(&state, &user, e).await,
    }
}

csrf_form!(
    struct RemoveForm {
        password: String,
        code: String,
        method: String,
    }
);

/// POST /account/security/remove: turns one factor off (the password and a code from a
/// factor; for staff the change waits for a second staff member).
pub async fn remove(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<RemoveForm>(&state, &user, &body) else {
        return super::forged();
    };
    let Some(method) = MfaMethod::parse(&f.method) else {
        return again_at_security(&state, &user, AppError::validation("method", t("method_unknown"))).await;
    };
    let (password, code) = (SecretString::from(f.password), SecretString::from(f.code));
    match service::remove_factor(&state, &client, &user, method, password, code).await {
        Ok(service::Removal::Done) => see_other("/account/security?done=removed"),
        Ok(service::Removal::ApprovalRequired(_)) => see_other("/account/security?done=approval"),
        Err(e) => again_at_security(&state, &user, e).await,
    }
}
