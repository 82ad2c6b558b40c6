//! `/admin`: a server-rendered page for staff, with no CDN, that works without JavaScript;
//! one small script of its own (`/admin/passkey.js`) adds passkey sign-in and registration.
//! Its own sign-in form (email, password, second-factor code, or a passkey) sets an HttpOnly, SameSite=Strict cookie
//! holding an access token of a normal session (so revocation works as everywhere); every
//! form carries a CSRF token (double-submit cookie before sign-in, an HMAC of the session
//! after). It shows the last 30 days as an inline SVG chart and a table, the top users by
//! high-risk events, the review queue with confirm/dismiss, users (search, lock state,
//! unlock, sign out everywhere) and the MFA change requests awaiting a second staff
//! member; each section and action needs the permission its API route needs.

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use minijinja::{Environment, context};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    accounts::{
        models::{Authenticated, LoginIdentifier, LoginResponse},
        service,
    },
    audit_log::{
        forms::{Review, ReviewStatus},
        models::events::AuditKind,
        review as audit_review,
    },
    core::{
        AppError, AppState,
        auth::{self, AuthUser},
        client::ClientContext,
        crypto,
        data_keys::Purpose,
    },
    otp::{MfaMethod, challenges::Response as Answer},
};

mod actions;
mod chart;
mod dashboard;
mod passkeys;
mod routes;

pub use actions::{mfa_decision, user_action};
use chart::chart;
use dashboard::dashboard;
pub use passkeys::{passkey_finish, passkey_sign_in, passkey_start, script};
pub use routes::router;

const SESSION_COOKIE: &str = "gh_admin";
const LOGIN_CSRF_COOKIE: &str = "gh_admin_csrf";

fn templates() -> Result<&'static Environment<'static>, AppError> {
    static ENV: std::sync::OnceLock<Result<Environment<'static>, String>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        let add = |env: &mut Environment<'static>, name: &'static str, body: &'static str| {
            env.add_template(name, body).map_err(|e| e.to_string())
        };
        add(&mut env, "admin/layout.html", include_str!("../../templates/admin/layout.html"))?;
        add(&mut env, "admin/login.html", include_str!("../../templates/admin/login.html"))?;
        add(&mut env, "admin/dashboard.html", include_str!("../../templates/admin/dashboard.html"))?;
        Ok(env)
    })
    .as_ref()
    .map_err(AppError::internal)
}

fn render(name: &str, ctx: minijinja::Value) -> Result<String, AppError> {
    templates()?.get_template(name).and_then(|t| t.render(ctx)).map_err(AppError::internal)
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
}

fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    // Secure in production whatever the base URL says (TLS may end at a proxy), and
    // whenever the site is served over https.
    let https = state.config.public_base_url.starts_with("https://");
    let secure = if https || state.config.is_production() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .ok()
}

/// The CSRF token of an admin session: a keyed hash of it under the CSRF data key, so
/// nothing is stored.
fn session_csrf(state: &AppState, session: Uuid) -> String {
    state.data_keys.mac(Purpose::Csrf, &format!("admin-csrf:{session}"))
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<AuthUser> {
    auth::authenticate(state, cookie(headers, SESSION_COOKIE)?).await.ok()
}

/// Form bodies; a malformed one is treated like a forged one.
fn form<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Option<T> {
    // PostgreSQL text cannot hold NUL: such a form is refused here, not by the database.
    let has_nul = form_urlencoded::parse(body).any(|(k, v)| k.contains('\0') || v.contains('\0'));
    if has_nul { None } else { serde_urlencoded::from_bytes(body).ok() }
}

fn login_page(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = crypto::random_token();
    let passkeys = state.relying_party.get().is_ok();
    match render("admin/login.html", context! { csrf, error, passkeys }) {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            if let Some(c) = set_cookie(state, LOGIN_CSRF_COOKIE, &csrf, 3600) {
                response.headers_mut().append(header::SET_COOKIE, c);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// `?q=` on /admin: the users section's search.
#[derive(Deserialize, Default)]
pub struct PageQuery {
    q: Option<String>,
}

/// GET /admin: the dashboard, or the sign-in form.
pub async fn page(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<PageQuery>) -> Response {
    let Some(user) = signed_in(&state, &headers).await else {
        return login_page(&state, StatusCode::OK, None);
    };
    if let Err(e) = auth::require_permission(&state, &user, "audit_log.view_auditlog").await {
        let message = if matches!(e, AppError::MfaRequired) { MFA_MESSAGE } else { "You may not administer." };
        return login_page(&state, StatusCode::FORBIDDEN, Some(message));
    }
    match dashboard(&state, &user, query.q.as_deref()).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => e.into_response(),
    }
}

const MFA_MESSAGE: &str = "Administration needs a session verified with a second factor, and changes need one \
    from the last 15 minutes: enrol MFA first (POST /api/v1/mfa/totp/setup, or `gatehouse mfa enroll --email E` at \
    the shell), then sign in again with its code.";

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    email: String,
    password: SecretString,
    #[serde(default)]
    code: SecretString,
}

/// The sign-in forms' double-submit token: the form's copy must match the cookie's.
fn login_csrf(headers: &HeaderMap, csrf: &str) -> bool {
    let expected = cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    !expected.is_empty() && crypto::constant_time_eq(expected.as_bytes(), csrf.as_bytes())
}

/// POST /admin/login.
pub async fn login(State(state): State<AppState>, client: ClientContext, headers: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form::<LoginForm>(&body) else {
        return login_page(&state, StatusCode::BAD_REQUEST, Some("The form could not be read."));
    };
    if !login_csrf(&headers, &f.csrf) {
        return login_page(&state, StatusCode::FORBIDDEN, Some("The form expired; please try again."));
    }
    let identifier = LoginIdentifier::from_submitted(&f.email);
    let outcome = match service::login(&state, &client, identifier, f.password).await {
        Ok(outcome) => outcome,
        Err(AppError::RateLimited { .. }) => {
            return login_page(&state, StatusCode::TOO_MANY_REQUESTS, Some("Too many attempts; try again later."));
        }
        Err(AppError::InvalidCredentials) | Err(AppError::AccountDisabled) => {
            return login_page(&state, StatusCode::UNAUTHORIZED, Some("Invalid email or password."));
        }
        Err(e) => return e.into_response(),
    };
    let authenticated = match outcome {
        LoginResponse::Authenticated(a) => a,
        // The code field answers the challenge: six digits are a TOTP code, anything
        // longer a backup code.
        LoginResponse::MfaRequired(challenge) => {
            let typed = f.code.expose_secret().trim();
            if typed.is_empty() {
                return login_page(&state, StatusCode::UNAUTHORIZED, Some("Enter the code from your authenticator."));
            }
            let method = if typed.len() == 6 && typed.bytes().all(|b| b.is_ascii_digit()) {
                MfaMethod::Totp
            } else {
                MfaMethod::BackupCode
            };
            let response = Answer::Code { method, code: f.code };
            match service::mfa_verify(&state, &client, challenge.challenge_id, response, false).await {
                Ok(a) => a,
                Err(AppError::RateLimited { .. }) => {
                    return login_page(
                        &state,
                        StatusCode::TOO_MANY_REQUESTS,
                        Some("Too many attempts; try again later."),
                    );
                }
                Err(AppError::MfaCodeInvalid { .. }) | Err(AppError::ChallengeExpired) => {
                    return login_page(&state, StatusCode::UNAUTHORIZED, Some("Invalid code."));
                }
                Err(e) => return e.into_response(),
            }
        }
    };
    admit(&state, &client, authenticated).await
}

/// A signed-in session becomes the console's cookie when it may administer; otherwise it
/// is ended at once and the sign-in page says why.
async fn admit(state: &AppState, client: &ClientContext, authenticated: Authenticated) -> Response {
    let user = match auth::authenticate(state, &authenticated.access_token).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = auth::require_permission(state, &user, "audit_log.view_auditlog").await {
        let _ = service::logout(state, client, &user).await;
        let message = if matches!(e, AppError::MfaRequired) { MFA_MESSAGE } else { "You may not administer." };
        return login_page(state, StatusCode::FORBIDDEN, Some(message));
    }
    let mut response = Redirect::to("/admin").into_response();
    let ttl = authenticated.expires_in;
    for c in [
        set_cookie(state, SESSION_COOKIE, &authenticated.access_token, ttl),
        set_cookie(state, LOGIN_CSRF_COOKIE, "", 0),
    ]
    .into_iter()
    .flatten()
    {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

#[derive(Deserialize)]
struct ReviewForm {
    csrf: String,
    kind: String,
    id: Uuid,
    status: String,
}

/// Checks the signed-in admin and the session-bound CSRF token of a form.
async fn admin_form(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<AuthUser, Response> {
    let Some(user) = signed_in(state, headers).await else { return Err(Redirect::to("/admin").into_response()) };
    let expected = session_csrf(state, user.session_id);
    if !crypto::constant_time_eq(expected.as_bytes(), csrf.as_bytes()) {
        return Err((StatusCode::FORBIDDEN, Html("Invalid form token.")).into_response());
    }
    Ok(user)
}

/// POST /admin/review: confirm or dismiss one event, then back to the page.
pub async fn review(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form::<ReviewForm>(&body) else {
        return AppError::MalformedRequest("bad form".into()).into_response();
    };
    let user = match admin_form(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let outcome = async {
        auth::require_admin_write(&state, &user, "audit_log.review_auditlog").await?;
        let kind = AuditKind::from_path(&f.kind)?;
        let status = ReviewStatus::parse(&f.status)
            .ok_or_else(|| AppError::validation("review_status", "must be confirmed or dismissed"))?;
        audit_review::review(&state, kind, f.id, Review { status, notes: None }, user.user_id).await
    }
    .await;
    match outcome {
        Ok(()) => Redirect::to("/admin").into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// POST /admin/logout: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, client: ClientContext, headers: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form::<CsrfForm>(&body) else { return AppError::MalformedRequest("bad form".into()).into_response() };
    let user = match admin_form(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = service::logout(&state, &client, &user).await {
        return e.into_response();
    }
    let mut response = Redirect::to("/admin").into_response();
    if let Some(c) = set_cookie(&state, SESSION_COOKIE, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}
