//! Signing in and out of the console: email and password, then the second step with the
//! account's methods (authenticator or backup code, an emailed or texted code, a passkey);
//! passwordless with a passkey. Before sign-in, forms carry a double-submit CSRF token
//! (`gh_account_csrf`); sign-up and the emailed sign-ins are in `signup`, providers in `social`.

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use minijinja::{Value, context};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{
    Browser, CSRF_COOKIE, MFA_COOKIE, Page, SESSION_COOKIE, Signed, checked, cookie, csrf_form, form, login_csrf_ok,
    next_param, refused_form, safe_next, see_other, set_cookie, t,
};
use crate::{
    accounts::{
        forms::mfa::assertion,
        models::{Authenticated, LoginIdentifier, LoginResponse, MfaRequired},
        service,
    },
    core::{AppError, AppState, crypto},
    otp::{MfaMethod, challenges::Response as Answer},
};

#[derive(Deserialize, Default)]
pub struct NextQuery {
    pub(super) next: Option<String>,
    pub(super) sent: Option<String>,
    pub(super) token: Option<String>,
}

/// A page shown before sign-in, with a fresh double-submit CSRF token.
pub(super) fn public_page(state: &AppState, status: StatusCode, name: &str, ctx: Value) -> Response {
    let csrf = crypto::random_token();
    let ctx = context! { csrf, ..ctx };
    Page::new(status, name, ctx).cookie(set_cookie(state, CSRF_COOKIE, &csrf, 3600)).into_response()
}

async fn login_page(
    state: &AppState,
    status: StatusCode,
    next: &str,
    email: &str,
    errors: BTreeMap<String, String>,
) -> Response {
    let passkeys = state.relying_party.get().is_ok();
    let magic = state.config.magic_link_enabled;
    let providers = service::oidc_providers(state).await.items;
    let ctx = context! { title => t("sign_in"), next, email, errors, passkeys, magic, providers };
    public_page(state, status, "login.html", ctx)
}

/// The sign-in page with one message for the whole form.
pub(super) async fn login_page_saying(state: &AppState, status: StatusCode, message: String) -> Response {
    login_page(state, status, "/account", "", [("form".to_owned(), message)].into_iter().collect()).await
}

/// A refused sign-in (a provider's answer redeemed, a flow that could not start) on the
/// sign-in page; what no field explains (an outage: 503) is the house error.
pub(super) async fn refused_sign_in(state: &AppState, e: AppError) -> Response {
    refused_form(e, |r| async move { login_page(state, r.status, "/account", "", r.errors).await }).await
}

/// GET /account/login.
pub async fn login_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && service::console_user(&state, secret).await.is_ok()
    {
        return see_other(next);
    }
    login_page(&state, StatusCode::OK, next, "", BTreeMap::new()).await
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// POST /account/login: the password step.
pub async fn login(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<LoginForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    let next = safe_next(f.next.as_deref()).to_owned();
    let identifier = LoginIdentifier::from_submitted(&f.email);
    match service::login(&state, &client, identifier, SecretString::from(f.password)).await {
        Ok(LoginResponse::Authenticated(a)) => admit(&state, a, &next).await,
        Ok(LoginResponse::MfaRequired(challenge)) => second_step(&state, &challenge, &next),
        Err(e) => {
            refused_form(e, |r| async move { login_page(&state, r.status, &next, &f.email, r.errors).await }).await
        }
    }
}

/// The challenge a login left pending, in a cookie for its lifetime: `<id>:<methods>`.
pub(super) fn second_step(state: &AppState, challenge: &MfaRequired, next: &str) -> Response {
    let methods: Vec<&str> = challenge.methods.iter().map(|m| m.as_str()).collect();
    let value = format!("{}:{}", challenge.challenge_id, methods.join(","));
    let mut response = Redirect::to(&format!("/account/login/mfa?next={}", next_param(next))).into_response();
    if let Some(c) = set_cookie(state, MFA_COOKIE, &value, challenge.expires_in) {
        response.headers_mut().append(axum::http::header::SET_COOKIE, c);
    }
    response
}

fn pending(headers: &HeaderMap) -> Option<(Uuid, Vec<MfaMethod>)> {
    let (id, methods) = cookie(headers, MFA_COOKIE)?.split_once(':')?;
    let methods = methods.split(',').filter_map(MfaMethod::parse).collect();
    Some((Uuid::parse_str(id).ok()?, methods))
}

/// A signed-in session becomes the console's cookie; the login's other cookies are cleared.
pub(super) async fn admit(state: &AppState, a: Authenticated, next: &str) -> Response {
    let secret = match service::open_console_session(state, a.session_id).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    use secrecy::ExposeSecret;
    let max_age = state.config.session_max_age.as_secs().try_into().unwrap_or(i64::MAX);
    let mut response = see_other(safe_next(Some(next)));
    for c in [
        set_cookie(state, SESSION_COOKIE, secret.expose_secret(), max_age),
        set_cookie(state, CSRF_COOKIE, "", 0),
        set_cookie(state, MFA_COOKIE, "", 0),
    ]
    .into_iter()
    .flatten()
    {
        response.headers_mut().append(axum::http::header::SET_COOKIE, c);
    }
    response
}

async fn mfa_page(
    state: &AppState,
    status: StatusCode,
    headers: &HeaderMap,
    q: &NextQuery,
    errors: BTreeMap<String, String>,
) -> Response {
    let Some((challenge, methods)) = pending(headers) else {
        return login_page(state, StatusCode::UNAUTHORIZED, safe_next(q.next.as_deref()), "", expired()).await;
    };
    let has = |m: MfaMethod| methods.contains(&m);
    let ctx = context! {
        title => t("second_step"), next => safe_next(q.next.as_deref()), errors, challenge,
        totp => has(MfaMethod::Totp), backup => has(MfaMethod::BackupCode), email => has(MfaMethod::Email),
        sms => has(MfaMethod::Sms), passkey => has(MfaMethod::Passkey) && state.relying_party.get().is_ok(),
        sent => q.sent.as_deref().filter(|s| matches!(*s, "email" | "sms")),
    };
    public_page(state, status, "mfa.html", ctx)
}

fn expired() -> BTreeMap<String, String> {
    [("form".to_owned(), t("challenge_expired"))].into_iter().collect()
}

/// GET /account/login/mfa: the second step.
pub async fn mfa_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    mfa_page(&state, StatusCode::OK, &headers, &q, BTreeMap::new()).await
}

#[derive(Deserialize)]
struct MfaForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    code: String,
    /// The `PublicKeyCredential` JSON of `navigator.credentials.get()` (method `passkey`).
    #[serde(default)]
    credential: String,
    trust_device: Option<String>,
    next: Option<String>,
}

/// POST /account/login/mfa: answers the pending challenge.
pub async fn mfa(State(state): State<AppState>, Browser(client): Browser, headers: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form::<MfaForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    let q = NextQuery { next: f.next.clone(), ..NextQuery::default() };
    let Some((challenge, _)) = pending(&headers) else {
        return mfa_page(&state, StatusCode::UNAUTHORIZED, &headers, &q, BTreeMap::new()).await;
    };
    let trust = f.trust_device.is_some();
    let outcome = async {
        let answer = answer(&f.method, f.code, &f.credential)?;
        service::mfa_verify_expected(&state, &client, challenge, service::ChallengeExpected::Login, answer, trust).await
    }
    .await;
    match outcome {
        Ok(a) => admit(&state, a, safe_next(f.next.as_deref())).await,
        Err(e) => refused_form(e, |r| async move { mfa_page(&state, r.status, &headers, &q, r.errors).await }).await,
    }
}

/// The form's answer to a challenge: a code for a code method, an assertion for a passkey.
pub(super) fn answer(method: &str, code: String, credential: &str) -> Result<Answer, AppError> {
    match MfaMethod::parse(method) {
        Some(MfaMethod::Passkey) => serde_json::from_str(credential)
            .ok()
            .and_then(|v| assertion(v).ok())
            .map(|c| Answer::Passkey { credential: Box::new(c) })
            .ok_or_else(|| AppError::validation("form", t("passkey_unreadable"))),
        Some(method) if !code.trim().is_empty() => Ok(Answer::Code { method, code: SecretString::from(code) }),
        Some(_) => Err(AppError::validation("code", t("code_missing"))),
        None => Err(AppError::validation("form", t("method_unknown"))),
    }
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    method: String,
    next: Option<String>,
}

/// POST /account/login/send: an emailed or texted code for the pending challenge.
pub async fn send(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<SendForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    let q = NextQuery { next: f.next.clone(), ..NextQuery::default() };
    let (Some((challenge, _)), Some(method)) = (pending(&headers), MfaMethod::parse(&f.method)) else {
        return mfa_page(&state, StatusCode::UNAUTHORIZED, &headers, &q, expired()).await;
    };
    match service::mfa_send(&state, &client, challenge, method).await {
        Ok(()) => see_other(&format!(
            "/account/login/mfa?sent={}&next={}",
            method.as_str(),
            next_param(safe_next(f.next.as_deref()))
        )),
        Err(e) => refused_form(e, |r| async move { mfa_page(&state, r.status, &headers, &q, r.errors).await }).await,
    }
}

#[derive(Deserialize)]
struct PasskeyForm {
    #[serde(default)]
    csrf_token: String,
    ceremony_id: Option<Uuid>,
    #[serde(default)]
    credential: String,
    next: Option<String>,
}

/// POST /account/login/passkey: passwordless, the answer to a ceremony of
/// `POST /api/v1/auth/passkey/options` (a passkey with user verification is both factors).
pub async fn passkey(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<PasskeyForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    let next = safe_next(f.next.as_deref()).to_owned();
    let refuse =
        |status, key: &str| login_page(&state, status, &next, "", [("form".to_owned(), t(key))].into_iter().collect());
    let credential = serde_json::from_str(&f.credential).ok().and_then(|v| assertion(v).ok());
    let (Some(ceremony), Some(credential)) = (f.ceremony_id, credential) else {
        return refuse(StatusCode::BAD_REQUEST, "passkey_unreadable").await;
    };
    match service::passkey_sign_in(&state, &client, ceremony, &credential).await {
        Ok(a) => admit(&state, a, &next).await,
        Err(AppError::InvalidCredentials | AppError::AccountDisabled) => {
            refuse(StatusCode::UNAUTHORIZED, "passkey_unknown").await
        }
        Err(e) => refused_form(e, |r| async move { login_page(&state, r.status, &next, "", r.errors).await }).await,
    }
}

csrf_form!(
    struct LogoutForm {}
);

/// POST /account/logout: ends the console's session (a sign-out is a POST: a link or an
/// image cannot sign anyone out).
pub async fn logout(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    if checked::<LogoutForm>(&state, &user, &body).is_none() {
        return super::forged();
    }
    if let Err(e) = service::logout(&state, &client, &user).await {
        return e.into_response();
    }
    let mut response = see_other("/account/login");
    if let Some(c) = set_cookie(&state, SESSION_COOKIE, "", 0) {
        response.headers_mut().append(axum::http::header::SET_COOKIE, c);
    }
    response
}
