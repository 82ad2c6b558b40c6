//! The pages the service's emails link to (`/verify-email`, `/reset-password`,
//! `/confirm-email-change`, `/undo-email-change`), for deployments whose PUBLIC_BASE_URL is Gatehouse itself.
//! Server-rendered like `/admin`, no JavaScript. Opening a link changes nothing: mail
//! scanners fetch links, so the page asks for one click (a POST), and that POST carries a
//! CSRF token (double-submit cookie). The same service calls as the API do the work, so
//! the same rules (password policy, one use per token) hold and show as messages.

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use minijinja::{Environment, context};
use secrecy::SecretString;
use serde::Deserialize;

use super::service;
use crate::core::{AppError, AppState, client::ClientContext, crypto};

const CSRF_COOKIE: &str = "gh_link_csrf";

/// Which link a page serves.
#[derive(Clone, Copy)]
enum Link {
    VerifyEmail,
    ResetPassword,
    EmailChange,
    UndoEmailChange,
}

impl Link {
    const ALL: [Link; 4] = [Link::VerifyEmail, Link::ResetPassword, Link::EmailChange, Link::UndoEmailChange];

    fn path(self) -> &'static str {
        match self {
            Link::VerifyEmail => "/verify-email",
            Link::ResetPassword => "/reset-password",
            Link::EmailChange => "/confirm-email-change",
            Link::UndoEmailChange => "/undo-email-change",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Link::VerifyEmail => "Confirm your email address",
            Link::ResetPassword => "Choose a new password",
            Link::EmailChange => "Confirm your new email address",
            Link::UndoEmailChange => "Take your account back",
        }
    }

    fn intro(self) -> &'static str {
        match self {
            Link::VerifyEmail => "One click confirms this address for your Gatehouse account.",
            Link::ResetPassword => "Type the new password twice. Every session of the account will be signed out.",
            Link::EmailChange => "One click moves your Gatehouse account to this address.",
            Link::UndoEmailChange => {
                "One click moves your Gatehouse account back to this address, signs out every session, revokes \
                 its API keys and stops its password; a link to choose a new password then comes to this address."
            }
        }
    }

    fn button(self) -> &'static str {
        match self {
            Link::VerifyEmail => "Confirm my email",
            Link::ResetPassword => "Set the new password",
            Link::EmailChange => "Use this address",
            Link::UndoEmailChange => "Undo the change",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Link::VerifyEmail => "Your email address is confirmed. You can close this page.",
            Link::ResetPassword => "Your password is changed and every session signed out. Sign in with the new one.",
            Link::EmailChange => "Your account now uses this address. Sign in with it from now on.",
            Link::UndoEmailChange => {
                "Your account is back on this address and every session is signed out. Choose a new password \
                 with the link we just emailed you."
            }
        }
    }
}

fn template() -> Result<&'static Environment<'static>, AppError> {
    static ENV: std::sync::OnceLock<Result<Environment<'static>, String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.add_template("pages/link.html", include_str!("../../templates/pages/link.html"))
            .map_err(|e| e.to_string())?;
        Ok(env)
    })
    .as_ref()
    .map_err(AppError::internal)
}

/// What a page shows besides its link's texts.
#[derive(Default)]
struct View<'a> {
    token: Option<&'a str>,
    errors: Vec<String>,
    done: bool,
}

fn page(state: &AppState, link: Link, status: StatusCode, view: View<'_>) -> Response {
    let csrf = crypto::random_token();
    let ctx = context! {
        title => link.title(), intro => link.intro(), button => link.button(), action => link.path(),
        passwords => matches!(link, Link::ResetPassword),
        token => view.token, errors => view.errors, csrf => csrf,
        done => view.done.then(|| link.done()),
        // With the account console on, a finished link leads on to its sign-in page.
        console => state.config.account_console,
    };
    let html = match template()
        .and_then(|t| t.get_template("pages/link.html").and_then(|t| t.render(ctx)).map_err(AppError::internal))
    {
        Ok(html) => html,
        Err(e) => return e.into_response(),
    };
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    // The token is in this page's URL and form: no cache, no referrer.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let https = state.config.public_base_url.starts_with("https://") || state.config.is_production();
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!("{CSRF_COOKIE}={csrf}; Path={}; HttpOnly; SameSite=Strict; Max-Age=3600{secure}", link.path());
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

fn get_page(state: &AppState, link: Link, q: &TokenQuery) -> Response {
    match q.token.as_deref().filter(|t| !t.is_empty() && t.len() <= 256 && !t.contains('\0')) {
        Some(token) => page(state, link, StatusCode::OK, View { token: Some(token), ..View::default() }),
        None => invalid(state, link),
    }
}

fn invalid(state: &AppState, link: Link) -> Response {
    let errors = vec!["This link is not valid any more: it was used, it expired, or a newer one replaced it.".into()];
    page(state, link, StatusCode::BAD_REQUEST, View { errors, ..View::default() })
}

/// The submitted form, once its CSRF token matches the cookie; None for a forged or
/// malformed one.
#[derive(Deserialize)]
struct LinkForm {
    csrf: String,
    token: String,
    new_password: Option<String>,
    new_password_again: Option<String>,
}

fn checked_form(headers: &HeaderMap, body: &Bytes) -> Option<LinkForm> {
    if form_urlencoded::parse(body).any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return None;
    }
    let form: LinkForm = serde_urlencoded::from_bytes(body).ok()?;
    let expected = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == CSRF_COOKIE)
        .map(|(_, v)| v)?;
    crypto::constant_time_eq(expected.as_bytes(), form.csrf.as_bytes()).then_some(form)
}

async fn submit(state: &AppState, client: &ClientContext, link: Link, headers: &HeaderMap, body: &Bytes) -> Response {
    let Some(form) = checked_form(headers, body) else {
        let errors = vec!["This form expired. Open the link from the email again.".into()];
        return page(state, link, StatusCode::BAD_REQUEST, View { errors, ..View::default() });
    };
    let token = SecretString::from(form.token.clone());
    let outcome = match link {
        Link::VerifyEmail => service::verify_email(state, client, token).await.map(|_| ()),
        Link::EmailChange => service::confirm_email_change(state, client, token).await.map(|_| ()),
        Link::UndoEmailChange => service::undo_email_change(state, client, token).await.map(|_| ()),
        Link::ResetPassword => {
            let (first, again) = (form.new_password.unwrap_or_default(), form.new_password_again.unwrap_or_default());
            if first != again {
                let errors = vec!["The two passwords differ.".into()];
                return page(
                    state,
                    link,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    View { token: Some(&form.token), errors, done: false },
                );
            }
            service::confirm_password_reset(state, client, token, SecretString::from(first)).await
        }
    };
    match outcome {
        Ok(()) => page(state, link, StatusCode::OK, View { done: true, ..View::default() }),
        Err(AppError::TokenInvalid) => invalid(state, link),
        Err(AppError::Validation(fields)) => {
            let errors = fields.into_values().flatten().collect();
            page(state, link, StatusCode::UNPROCESSABLE_ENTITY, View { token: Some(&form.token), errors, done: false })
        }
        Err(e @ (AppError::PasswordReused | AppError::Conflict(_))) => {
            let errors = vec![match &e {
                AppError::Conflict(c) => c.message().to_owned(),
                _ => "That is one of your last five passwords; choose another.".to_owned(),
            }];
            page(state, link, StatusCode::UNPROCESSABLE_ENTITY, View { token: Some(&form.token), errors, done: false })
        }
        Err(e) => e.into_response(),
    }
}

/// Every link page at its path: GET shows it, POST does its one action.
pub fn router() -> Router<AppState> {
    Link::ALL.iter().copied().fold(Router::new(), |router, link| {
        let show = move |State(state): State<AppState>, Query(q): Query<TokenQuery>| async move {
            get_page(&state, link, &q)
        };
        let act = move |State(state): State<AppState>, client: ClientContext, headers: HeaderMap, body: Bytes| async move {
            submit(&state, &client, link, &headers, &body).await
        };
        router.route(link.path(), get(show).post(act))
    })
}
