//! The pages before an account is signed in that are not the sign-in itself: sign-up
//! (then the verify-email page), the forgotten password, and the magic link (the request
//! form, and `/magic-link`, the emailed link's page, which signs the console in).

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use minijinja::context;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::{
    Browser, Page, form, login_csrf_ok, refused_form, see_other,
    sign_in::{NextQuery, admit, public_page, second_step},
    t,
};
use crate::{
    accounts::{forms::auth::Registration, models::LoginResponse, service},
    core::{AppError, AppState, types::Email},
};

fn signup_page(
    state: &AppState,
    status: StatusCode,
    email: &str,
    username: &str,
    errors: BTreeMap<String, String>,
) -> Response {
    let ctx = context! { title => t("sign_up"), email, username, errors };
    public_page(state, status, "form.html", context! { form => "signup", ..ctx })
}

/// GET /account/signup.
pub async fn signup_form(State(state): State<AppState>) -> Response {
    signup_page(&state, StatusCode::OK, "", "", BTreeMap::new())
}

#[derive(Deserialize)]
struct SignupForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// POST /account/signup: registers, then the page that says to open the emailed link.
pub async fn signup(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<SignupForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    let outcome = async {
        let r = Registration::parse(&f.email, &f.username, SecretString::from(f.password.clone()), None, None)?;
        service::register(&state, &client, r).await
    }
    .await;
    match outcome {
        Ok(_) => see_other("/account/signup/done"),
        Err(e) => {
            refused_form(e, |r| async move { signup_page(&state, r.status, &f.email, &f.username, r.errors) }).await
        }
    }
}

/// GET /account/signup/done: the verify-email page.
pub async fn signup_done() -> Response {
    let ctx = context! { title => t("verify_title"), message => t("verify_sent"), link => "/account/login", link_text => t("sign_in") };
    Page::new(StatusCode::OK, "notice.html", ctx).into_response()
}

fn forgot_page(state: &AppState, status: StatusCode, errors: BTreeMap<String, String>) -> Response {
    public_page(state, status, "form.html", context! { form => "forgot", title => t("forgot_title"), errors })
}

/// GET /account/forgot-password.
pub async fn forgot_form(State(state): State<AppState>) -> Response {
    forgot_page(&state, StatusCode::OK, BTreeMap::new())
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// POST /account/forgot-password: the same answer whether or not the account exists.
pub async fn forgot(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<EmailForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    let outcome = async {
        let email = Email::parse(&f.email).map_err(|m| AppError::validation("email", m))?;
        service::request_password_reset(&state, &client, email).await
    }
    .await;
    match outcome {
        Ok(()) => {
            let ctx = context! { title => t("forgot_title"), message => t("reset_sent"), link => "/account/login", link_text => t("sign_in") };
            Page::new(StatusCode::OK, "notice.html", ctx).into_response()
        }
        Err(e) => refused_form(e, |r| async move { forgot_page(&state, r.status, r.errors) }).await,
    }
}

/// GET /account/magic-link: asks for the address to email a sign-in link to.
pub async fn magic_form(State(state): State<AppState>) -> Response {
    if !state.config.magic_link_enabled {
        return AppError::NotFound.into_response();
    }
    let errors = BTreeMap::<String, String>::new();
    public_page(&state, StatusCode::OK, "form.html", context! { form => "magic", title => t("magic_title"), errors })
}

/// POST /account/magic-link: 202-like, the same page for every address.
pub async fn magic_request(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<EmailForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    let outcome = async {
        let email = Email::parse(&f.email).map_err(|m| AppError::validation("email", m))?;
        service::request_magic_link(&state, &client, email).await
    }
    .await;
    match outcome {
        Ok(()) => {
            let ctx = context! { title => t("magic_title"), message => t("magic_sent") };
            Page::new(StatusCode::ACCEPTED, "notice.html", ctx).into_response()
        }
        Err(e) => {
            refused_form(e, |r| async move {
                let ctx = context! { form => "magic", title => t("magic_title"), errors => r.errors };
                public_page(&state, r.status, "form.html", ctx)
            })
            .await
        }
    }
}

/// GET /magic-link?token=: the emailed link's page. Opening it changes nothing (mail
/// scanners fetch links): one click signs in.
pub async fn magic_page(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    let token = q.token.as_deref().filter(|t| !t.is_empty() && t.len() <= 256);
    let (status, errors) = match token {
        Some(_) => (StatusCode::OK, BTreeMap::new()),
        None => (StatusCode::BAD_REQUEST, [("form".to_owned(), t("link_invalid"))].into_iter().collect()),
    };
    public_page(
        &state,
        status,
        "form.html",
        context! { form => "magic_confirm", title => t("magic_title"), token, errors },
    )
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
}

/// POST /magic-link: signs the console in (the second step follows when MFA is on).
pub async fn magic_confirm(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<TokenForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    match service::confirm_magic_link(&state, &client, SecretString::from(f.token)).await {
        Ok(LoginResponse::Authenticated(a)) => admit(&state, a, "/account").await,
        Ok(LoginResponse::MfaRequired(challenge)) => second_step(&state, &challenge, "/account"),
        Err(e) => {
            refused_form(e, |r| async move {
                let ctx = context! { form => "magic_confirm", title => t("magic_title"), errors => r.errors };
                public_page(&state, r.status, "form.html", ctx)
            })
            .await
        }
    }
}
