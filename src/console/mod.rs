//! `/account`: the account console, every self-service action as a server-rendered page
//! (Keycloak's and Zitadel's account consoles are the model). No script is needed except the
//! WebAuthn calls (`/account/console.js`); styles are one served stylesheet. Each page calls
//! the same services as the API, so the same rules, limits, audit rows and notices hold.
//!
//! Sign-in opens an ordinary session; the browser holds a random secret referring to it
//! (`gh_account`: HttpOnly, SameSite=Lax, Secure in production), stored hashed. A random
//! device cookie (`gh_device`) is the browser's device fingerprint, so trusting a device
//! works from a browser. Every form carries `csrf_token` (a double-submit cookie before
//! sign-in, a keyed hash of the session after), and a POST from another origin is refused
//! before any handler runs.

use axum::{
    body::Bytes,
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use minijinja::{Environment, Value, context};
use serde::Deserialize;

use crate::{
    accounts::service,
    core::{AppError, AppState, auth::AuthUser, client::ClientContext, crypto, data_keys::Purpose},
};

mod account;
mod data;
mod devices;
mod notifications;
mod passkeys;
mod routes;
mod security;
mod sign_in;
mod signup;
mod social;
mod text;

pub use routes::router;
use text::t;

const SESSION_COOKIE: &str = "gh_account";
const DEVICE_COOKIE: &str = "gh_device";
const CSRF_COOKIE: &str = "gh_account_csrf";
/// The login's pending second step (a challenge id; the API hands the same id to clients).
const MFA_COOKIE: &str = "gh_account_mfa";
/// A device cookie lives 400 days (the most browsers keep one).
const DEVICE_COOKIE_DAYS: i64 = 400;

fn templates() -> Result<&'static Environment<'static>, AppError> {
    static ENV: std::sync::OnceLock<Result<Environment<'static>, String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.add_global("t", Value::from_serialize(text::strings()));
        for (name, body) in [
            ("layout.html", include_str!("../../templates/console/layout.html")),
            ("macros.html", include_str!("../../templates/console/macros.html")),
            ("form.html", include_str!("../../templates/console/form.html")),
            ("login.html", include_str!("../../templates/console/login.html")),
            ("mfa.html", include_str!("../../templates/console/mfa.html")),
            ("notice.html", include_str!("../../templates/console/notice.html")),
            ("overview.html", include_str!("../../templates/console/overview.html")),
            ("security.html", include_str!("../../templates/console/security.html")),
            ("sessions.html", include_str!("../../templates/console/sessions.html")),
            ("devices.html", include_str!("../../templates/console/devices.html")),
            ("export.html", include_str!("../../templates/console/export.html")),
            ("api_keys.html", include_str!("../../templates/console/api_keys.html")),
            ("activity.html", include_str!("../../templates/console/activity.html")),
            ("notifications.html", include_str!("../../templates/console/notifications.html")),
            ("connections.html", include_str!("../../templates/console/connections.html")),
        ] {
            env.add_template(name, body).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(env)
    })
    .as_ref()
    .map_err(AppError::internal)
}

/// A rendered page with its status and any cookies to set.
pub(crate) struct Page {
    status: StatusCode,
    html: Result<String, AppError>,
    cookies: Vec<HeaderValue>,
}

impl Page {
    fn new(status: StatusCode, name: &str, ctx: Value) -> Page {
        let html =
            templates().and_then(|env| env.get_template(name).and_then(|t| t.render(ctx)).map_err(AppError::internal));
        Page { status, html, cookies: Vec::new() }
    }

    fn cookie(mut self, value: Option<HeaderValue>) -> Page {
        self.cookies.extend(value);
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let html = match self.html {
            Ok(html) => html,
            Err(e) => return e.into_response(),
        };
        let mut response = (self.status, Html(html)).into_response();
        let headers = response.headers_mut();
        for c in self.cookies {
            headers.append(header::SET_COOKIE, c);
        }
        response
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A console cookie: HttpOnly, SameSite=Lax (an emailed link opened from a mail client
/// still arrives signed in; cross-site POSTs carry no cookie), Secure in production.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    let https = state.config.public_base_url.starts_with("https://");
    let secure = if https || state.config.is_production() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")).ok()
}

/// The session-bound CSRF token: a keyed hash of the session, so nothing is stored.
fn session_csrf(state: &AppState, user: &AuthUser) -> String {
    state.data_keys.mac(Purpose::Csrf, &format!("console-csrf:{}", user.session_id))
}

fn session_csrf_ok(state: &AppState, user: &AuthUser, token: &str) -> bool {
    let input = format!("console-csrf:{}", user.session_id);
    state.data_keys.macs(Purpose::Csrf, &input).iter().any(|m| crypto::constant_time_eq(m.as_bytes(), token.as_bytes()))
}

/// Before sign-in, the double-submit token: the form's copy must match the cookie's.
fn login_csrf_ok(headers: &HeaderMap, token: &str) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|c| crypto::constant_time_eq(c.as_bytes(), token.as_bytes()))
}

/// Form bodies; a malformed one (or one holding NUL, which PostgreSQL text cannot) is None.
fn form<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Option<T> {
    let has_nul = form_urlencoded::parse(body).any(|(k, v)| k.contains('\0') || v.contains('\0'));
    if has_nul { None } else { serde_urlencoded::from_bytes(body).ok() }
}

/// The request's client, with the console's device cookie as its device fingerprint (a
/// header a page cannot set is ignored).
pub(crate) struct Browser(ClientContext);

impl FromRequestParts<AppState> for Browser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let mut client = ClientContext::from_request_parts(parts, state).await?;
        client.fingerprint = cookie(&parts.headers, DEVICE_COOKIE).map(|d| format!("console:{d}"));
        Ok(Browser(client))
    }
}

/// The signed-in user of a console page; a request without a live console session goes to
/// the sign-in page (and comes back after).
pub(crate) struct Signed(AuthUser);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let secret = cookie(&parts.headers, SESSION_COOKIE).unwrap_or_default();
        match service::console_user(state, secret).await {
            Ok(user) => {
                crate::core::request_id::record_user(user.user_id);
                Ok(Signed(user))
            }
            Err(AppError::Unauthenticated) => {
                let back = if parts.method == Method::GET { parts.uri.path() } else { "/account" };
                Err(Redirect::to(&format!("/account/login?next={}", next_param(back))).into_response())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// A `next` target: only a console path (never another site, never `//host`).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/account")
                && !n.contains("//")
                && !n.contains('\\')
                && n.len() <= 200
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/account",
    }
}

fn next_param(path: &str) -> String {
    form_urlencoded::byte_serialize(safe_next(Some(path)).as_bytes()).collect()
}

/// A signed-in page's context: `page`'s values with the CSRF token and the current section.
fn base(state: &AppState, user: &AuthUser, section: &str, page: Value) -> Value {
    context! { signed_in => true, csrf => session_csrf(state, user), section, ..page }
}

/// Whether `path` is one of the console's.
fn is_console(path: &str) -> bool {
    path == "/account" || path.starts_with("/account/") || path == "/magic-link"
}

/// Every request passes here (a path check for all but the console's): with
/// `ACCOUNT_CONSOLE` off the console's paths are 404; the browser's device cookie is made on
/// its first console request (and the request sees it at once); a cross-origin POST is
/// refused before any handler runs: the Origin header, when sent, must be this
/// deployment's (`null` only with `Sec-Fetch-Site: same-origin`), and a `Sec-Fetch-Site`
/// other than `same-origin` never is.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if !is_console(request.uri().path()) {
        return next.run(request).await;
    }
    if !state.config.account_console {
        return crate::core::handlers::not_found().await.into_response();
    }
    if request.method() == Method::POST && !same_origin(&state, request.headers()) {
        let ctx = context! { title => t("forbidden_title"), message => t("cross_origin") };
        return Page::new(StatusCode::FORBIDDEN, "notice.html", ctx).into_response();
    }
    let made = match cookie(request.headers(), DEVICE_COOKIE) {
        Some(_) => None,
        None => {
            let device = crypto::random_token();
            if let Ok(v) = HeaderValue::from_str(&format!("{DEVICE_COOKIE}={device}")) {
                request.headers_mut().append(header::COOKIE, v);
            }
            Some(device)
        }
    };
    let mut response = next.run(request).await;
    if let Some(device) = made
        && let Some(c) = set_cookie(&state, DEVICE_COOKIE, &device, DEVICE_COOKIE_DAYS * 86_400)
    {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// Pages are served with `Referrer-Policy: no-referrer`, under which a browser sends
/// `Origin: null` even for its own forms: then `Sec-Fetch-Site: same-origin` must vouch.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some("null") => site == Some("same-origin"),
        Some(origin) => origin.trim_end_matches('/') == public_origin(&state.config.public_base_url),
    }
}

/// `scheme://host[:port]` of PUBLIC_BASE_URL.
fn public_origin(base: &str) -> &str {
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base.trim_end_matches('/'),
    }
}

/// A refused action as the page shows it: the field it concerns (None: the whole form), the
/// message and the status. `MFA_REQUIRED` and a lost session are not refusals of the form:
/// the caller sends those to the step-up page or the sign-in page.
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub errors: std::collections::BTreeMap<String, String>,
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn of(e: &AppError) -> Option<Refusal> {
        let one = |status, field: &str, message: String| Refusal {
            status,
            errors: [(field.to_owned(), message)].into_iter().collect(),
            retry_after: None,
        };
        Some(match e {
            AppError::Validation(fields) => Refusal {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                errors: fields.iter().map(|(f, m)| (f.to_string(), m.join(" "))).collect(),
                retry_after: None,
            },
            AppError::PasswordIncorrect => one(StatusCode::FORBIDDEN, "password", t("password_incorrect")),
            AppError::InvalidCredentials => one(StatusCode::UNAUTHORIZED, "form", t("invalid_credentials")),
            AppError::AccountDisabled => one(StatusCode::FORBIDDEN, "form", t("account_disabled")),
            AppError::MfaCodeInvalid { .. } => one(StatusCode::UNAUTHORIZED, "code", t("code_invalid")),
            AppError::ChallengeExpired => one(StatusCode::UNAUTHORIZED, "form", t("challenge_expired")),
            AppError::TokenInvalid => one(StatusCode::BAD_REQUEST, "form", t("link_invalid")),
            AppError::PasswordReused => one(StatusCode::UNPROCESSABLE_ENTITY, "new_password", t("password_reused")),
            AppError::PasswordBreached => one(StatusCode::UNPROCESSABLE_ENTITY, "new_password", t("password_breached")),
            AppError::Conflict(c) => one(StatusCode::CONFLICT, "form", c.message().to_owned()),
            AppError::NotFound => one(StatusCode::NOT_FOUND, "form", t("not_found")),
            AppError::Forbidden => one(StatusCode::FORBIDDEN, "form", t("forbidden")),
            AppError::ForbiddenBecause(why) => one(StatusCode::FORBIDDEN, "form", (*why).to_owned()),
            AppError::RateLimited { retry_after_secs } => Refusal {
                retry_after: Some(*retry_after_secs),
                ..one(StatusCode::TOO_MANY_REQUESTS, "form", text::try_again(*retry_after_secs))
            },
            _ => return None,
        })
    }
}

/// An action's failure on a signed-in page: MFA_REQUIRED goes to the step-up page (which
/// returns to `back`), a lost session to the sign-in page, a refusal re-renders the page
/// through `render` with the errors, anything else is the house error.
async fn refused<F, Fut>(e: AppError, back: &str, render: F) -> Response
where
    F: FnOnce(Refusal) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match e {
        AppError::MfaRequired => Redirect::to(&format!("/account/step-up?next={}", next_param(back))).into_response(),
        AppError::Unauthenticated => Redirect::to("/account/login").into_response(),
        e => refused_form(e, render).await,
    }
}

/// A refused form's page again, with the errors at their fields and `Retry-After` on a 429;
/// what no field explains is the house error.
async fn refused_form<F, Fut>(e: AppError, render: F) -> Response
where
    F: FnOnce(Refusal) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match Refusal::of(&e) {
        Some(r) => {
            let retry = r.retry_after;
            with_retry(render(r).await, retry)
        }
        None => e.into_response(),
    }
}

fn with_retry(mut response: Response, retry_after: Option<u64>) -> Response {
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A POST whose CSRF token is missing or wrong: refused with a page that says so.
fn forged() -> Response {
    let ctx = context! { title => t("forbidden_title"), message => t("form_expired") };
    Page::new(StatusCode::FORBIDDEN, "notice.html", ctx).into_response()
}

/// The signed-in form `T`, once its `csrf_token` matches the session (None: the caller
/// answers `forged()`).
fn checked<T: for<'de> Deserialize<'de> + HasCsrf>(state: &AppState, user: &AuthUser, body: &Bytes) -> Option<T> {
    form::<T>(body).filter(|f| session_csrf_ok(state, user, f.csrf()))
}

/// Forms carry their CSRF token as `csrf_token`.
trait HasCsrf {
    fn csrf(&self) -> &str;
}

macro_rules! csrf_form {
    ($(#[$m:meta])* struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(serde::Deserialize)]
        struct $name {
            csrf_token: String,
            $($(#[$fm])* #[serde(default)] $field: $ty,)*
        }
        impl $crate::console::HasCsrf for $name {
            fn csrf(&self) -> &str {
                &self.csrf_token
            }
        }
    };
}
pub(crate) use csrf_form;

/// 303 to a console page after a successful POST (API.md: "a 303 to the next page").
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// GET /account/console.css and /account/console.js: the console's one stylesheet and
/// one script, allowed by its CSP (`'self'`).
pub async fn stylesheet() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")];
    (headers, include_str!("../../templates/console/console.css")).into_response()
}

pub async fn script() -> Response {
    let headers =
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")];
    (headers, include_str!("../../templates/console/console.js")).into_response()
}
