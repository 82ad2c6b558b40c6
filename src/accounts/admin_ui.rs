//! `/admin`: a server-rendered page for staff, with no JavaScript and no CDN. Its own sign-in
//! form (email, password, second-factor code) sets an HttpOnly, SameSite=Strict cookie
//! holding an access token of a normal session (so revocation works as everywhere); every
//! form carries a CSRF token (double-submit cookie before sign-in, an HMAC of the session
//! after). It shows the last 30 days as an inline SVG chart and a table, the top users by
//! high-risk events, the review queue with confirm/dismiss, users (search, lock state,
//! unlock, sign out everywhere) and the MFA change requests awaiting a second staff
//! member; each section and action needs the permission its API route needs.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use chrono::{Days, Utc};
use minijinja::{Environment, context};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    models::{LoginIdentifier, LoginResponse},
    service,
};
use crate::otp::MfaMethod;
use crate::{
    audit_log::{
        admin as audit_admin,
        models::{AuditKind, DailyTotals, EventFilter},
    },
    core::{
        AppError, AppState,
        auth::{self, AuthUser},
        client::ClientContext,
        crypto,
        extract::Page,
        keys::Purpose,
    },
};

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
    match render("admin/login.html", context! { csrf, error }) {
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

const MFA_MESSAGE: &str = "Administration needs a session verified with a second factor: enrol MFA first \
    (POST /api/v1/mfa/totp/setup, or `gatehouse mfa enroll --email E` at the shell), then sign in with its code.";

#[derive(Serialize)]
struct TopUser {
    name: String,
    high: i32,
    critical: i32,
    failed: i32,
    events: i32,
}

#[derive(Serialize)]
struct QueueItem {
    id: Uuid,
    kind: String,
    action: String,
    risk_level: String,
    user: String,
    reasons: String,
    created_at: String,
}

#[derive(Serialize)]
struct UserRowView {
    id: Uuid,
    username: String,
    email: String,
    is_active: bool,
    is_staff: bool,
    mfa_enabled: bool,
    locked_minutes: Option<u64>,
}

#[derive(Serialize)]
struct ChangeRequestView {
    id: Uuid,
    user: String,
    action: String,
    method: String,
    reason: String,
    requested_by: String,
    requested_at: String,
}

/// Whether `user` holds `permission`; other failures (the database) are errors.
async fn holds(state: &AppState, user: &AuthUser, permission: &str) -> Result<bool, AppError> {
    match auth::require_permission(state, user, permission).await {
        Ok(()) => Ok(true),
        Err(AppError::Forbidden) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The users section: matches of `search` (or the newest) with their lock state.
async fn users_section(state: &AppState, search: Option<&str>) -> Result<Vec<UserRowView>, AppError> {
    let search = search.map(str::trim).filter(|s| !s.is_empty() && s.chars().count() <= 254);
    let filter = super::forms::UserSearch { search: search.map(str::to_owned), ..Default::default() };
    let (users, _) = service::list_users(state, &filter, Page { page: 1, limit: 20 }).await?;
    let mut rows = Vec::with_capacity(users.len());
    for u in users {
        let locked = service::lock_of(state, &u.email).await?;
        rows.push(UserRowView {
            id: u.id,
            username: u.username,
            email: u.email,
            is_active: u.is_active,
            is_staff: u.is_staff,
            mfa_enabled: u.mfa_enabled,
            locked_minutes: locked.map(|secs| secs.div_ceil(60)),
        });
    }
    Ok(rows)
}

async fn dashboard(state: &AppState, user: &AuthUser, search: Option<&str>) -> Result<String, AppError> {
    let today = Utc::now().date_naive();
    // Summaries need the permission the API asks for them: without it the page shows the
    // review queue only.
    let summaries = match auth::require_permission(state, user, "audit_log.view_auditlogsummary").await {
        Ok(()) => true,
        Err(AppError::Forbidden) => false,
        Err(e) => return Err(e),
    };
    let days = if summaries { audit_admin::daily(state, today - Days::new(29), today).await? } else { Vec::new() };
    let mut top_date = None;
    let mut top_rows = Vec::new();
    for day in [today, today - Days::new(1)].into_iter().filter(|_| summaries) {
        let (rows, _) = audit_admin::summaries(state, day, day, None, Page { page: 1, limit: 10 }).await?;
        if !rows.is_empty() {
            top_date = Some(day);
            top_rows = rows;
            break;
        }
    }
    let review_filter = EventFilter { requires_review: Some(true), ..EventFilter::default() };
    let mut queue = Vec::new();
    for kind in AuditKind::ALL {
        let (rows, _) = audit_admin::list(state, *kind, &review_filter, Page { page: 1, limit: 50 }).await?;
        queue.extend(rows.into_iter().filter(|e| e.review_status.is_none()));
    }
    queue.sort_by_key(|e| std::cmp::Reverse(e.created_at));
    queue.truncate(50);
    let users =
        if holds(state, user, "accounts.view_user").await? { Some(users_section(state, search).await?) } else { None };
    let can_change_users = holds(state, user, "accounts.change_user").await?;
    let requests = if holds(state, user, "accounts.view_mfachangelog").await? {
        Some(service::change_requests(state, Some("pending"), Page { page: 1, limit: 50 }).await?.0)
    } else {
        None
    };
    let mut ids: Vec<Uuid> = top_rows.iter().map(|r| r.user_id).chain(queue.iter().map(|e| e.user_id)).collect();
    ids.extend(requests.iter().flatten().filter_map(|c| c.requested_by_id));
    ids.push(user.user_id);
    let names: HashMap<Uuid, String> = service::usernames(state, &ids).await?.into_iter().collect();
    let name = |id: &Uuid| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let top: Vec<TopUser> = top_rows
        .iter()
        .map(|r| TopUser {
            name: name(&r.user_id),
            high: r.high_risk_events,
            critical: r.critical_risk_events,
            failed: r.total_failed_logins,
            events: r.total_events,
        })
        .collect();
    let queue: Vec<QueueItem> = queue
        .iter()
        .map(|e| QueueItem {
            id: e.id,
            kind: e.kind.clone(),
            action: e.action.clone(),
            risk_level: e.risk_level.clone(),
            user: name(&e.user_id),
            reasons: e.anomaly_reasons.clone().unwrap_or_default().join(", "),
            created_at: e.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        })
        .collect();
    let requests: Option<Vec<ChangeRequestView>> = requests.map(|list| {
        list.into_iter()
            .map(|c| ChangeRequestView {
                id: c.id,
                user: c.username,
                action: c.action,
                method: c.mfa_method.unwrap_or_else(|| "every factor".into()),
                reason: c.change_reason.unwrap_or_default(),
                requested_by: c.requested_by_id.map(|id| name(&id)).unwrap_or_default(),
                requested_at: c.requested_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            })
            .collect()
    });
    render(
        "admin/dashboard.html",
        context! {
            users => users,
            search => search.unwrap_or_default(),
            can_change_users => can_change_users,
            requests => requests,
            csrf => session_csrf(state, user.session_id),
            username => name(&user.user_id),
            chart => chart(&days),
            days => days,
            top_date => top_date.map(|d| d.to_string()),
            top => top,
            queue => queue,
        },
    )
}

/// Stacked bars (events by risk level) with lines for failed logins and anomalies.
fn chart(days: &[DailyTotals]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const PAD: f64 = 28.0;
    let max = days
        .iter()
        .map(|d| {
            (d.low_risk_events + d.medium_risk_events + d.high_risk_events + d.critical_risk_events)
                .max(d.total_failed_logins)
        })
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let step = (W - 2.0 * PAD) / days.len().max(1) as f64;
    let y = |v: i64| H - PAD - (v as f64 / max) * (H - 2.0 * PAD);
    let mut svg = format!(
        r#"<svg id="chart" role="img" aria-label="Events by risk level, failed logins and anomalies, last {} days" viewBox="0 0 {W} {H}" width="100%" xmlns="http://www.w3.org/2000/svg">"#,
        days.len()
    );
    svg.push_str(&format!(
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><text x="{PAD}" y="14" font-size="11" fill="#555">max {max}</text>"##,
        b = H - PAD,
        r = W - PAD
    ));
    for (i, d) in days.iter().enumerate() {
        let x = PAD + i as f64 * step + step * 0.15;
        let mut base = 0i64;
        for (value, colour, label) in [
            (d.low_risk_events, "#6cbf84", "low"),
            (d.medium_risk_events, "#e9c46a", "medium"),
            (d.high_risk_events, "#f08a4b", "high"),
            (d.critical_risk_events, "#d64545", "critical"),
        ] {
            if value > 0 {
                let top = y(base + value);
                svg.push_str(&format!(
                    r#"<rect class="bar" x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" fill="{colour}"><title>{} {label}: {value}</title></rect>"#,
                    d.date,
                    w = step * 0.7,
                    h = y(base) - top,
                ));
            }
            base += value;
        }
    }
    for (series, colour, class) in [
        (days.iter().map(|d| d.total_failed_logins).collect::<Vec<_>>(), "#2f6fde", "failed-logins"),
        (days.iter().map(|d| d.anomalies_detected).collect::<Vec<_>>(), "#8e44ad", "anomalies"),
    ] {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", PAD + i as f64 * step + step / 2.0, y(*v)))
            .collect();
        svg.push_str(&format!(
            r#"<polyline class="{class}" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        ));
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        svg.push_str(&format!(
            r##"<text x="{PAD}" y="{t}" font-size="11" fill="#555">{}</text><text x="{r}" y="{t}" font-size="11" fill="#555" text-anchor="end">{}</text>"##,
            first.date,
            last.date,
            t = H - 8.0,
            r = W - PAD
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    email: String,
    password: SecretString,
    #[serde(default)]
    code: SecretString,
}

/// POST /admin/login.
pub async fn login(State(state): State<AppState>, client: ClientContext, headers: HeaderMap, body: Bytes) -> Response {
    let Some(f) = form::<LoginForm>(&body) else {
        return login_page(&state, StatusCode::BAD_REQUEST, Some("The form could not be read."));
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crypto::constant_time_eq(expected.as_bytes(), f.csrf.as_bytes()) {
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
            match service::mfa_verify(&state, &client, challenge.challenge_id, method, f.code, false).await {
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
    let user = match auth::authenticate(&state, &authenticated.access_token).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = auth::require_permission(&state, &user, "audit_log.view_auditlog").await {
        let _ = service::logout(&state, &client, &user).await;
        let message = if matches!(e, AppError::MfaRequired) { MFA_MESSAGE } else { "You may not administer." };
        return login_page(&state, StatusCode::FORBIDDEN, Some(message));
    }
    let mut response = Redirect::to("/admin").into_response();
    let ttl = authenticated.expires_in;
    for c in [
        set_cookie(&state, SESSION_COOKIE, &authenticated.access_token, ttl),
        set_cookie(&state, LOGIN_CSRF_COOKIE, "", 0),
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
        auth::require_permission(&state, &user, "audit_log.review_auditlog").await?;
        let kind = AuditKind::from_path(&f.kind)?;
        audit_admin::review(&state, kind, f.id, &f.status, None, user.user_id).await
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

/// An admin form's refusal as a page, not JSON: what was refused and a way back.
fn refused(e: AppError) -> Response {
    let (status, message) = match &e {
        AppError::Forbidden => (
            StatusCode::FORBIDDEN,
            "Refused: you lack the permission, or the change is about you or was asked for by you (a second staff \
             member decides).",
        ),
        AppError::MfaRequired => (StatusCode::FORBIDDEN, MFA_MESSAGE),
        AppError::NotFound => (StatusCode::NOT_FOUND, "Not found: it is gone or was decided already."),
        _ => return e.into_response(),
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gatehouse admin</title></head>\
         <body><p class=\"error\" role=\"alert\" id=\"refused\">{message}</p><p><a href=\"/admin\">Back</a></p></body></html>"
    );
    (status, Html(body)).into_response()
}

#[derive(Deserialize)]
struct UserActionForm {
    csrf: String,
    user_id: Uuid,
    /// `unlock` or `logout_all`.
    action: String,
    #[serde(default)]
    q: String,
}

/// POST /admin/users: unlock a user, or sign them out everywhere; back to the search.
pub async fn user_action(
    State(state): State<AppState>,
    client: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<UserActionForm>(&body) else {
        return AppError::MalformedRequest("bad form".into()).into_response();
    };
    let user = match admin_form(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let outcome = async {
        auth::require_permission(&state, &user, "accounts.change_user").await?;
        match f.action.as_str() {
            "unlock" => service::admin_unlock(&state, &client, &user, f.user_id).await,
            "logout_all" => service::admin_logout_all(&state, &client, &user, f.user_id).await.map(|_| ()),
            _ => Err(AppError::MalformedRequest("unknown action".into())),
        }
    }
    .await;
    match outcome {
        Ok(()) => {
            let q: String = form_urlencoded::byte_serialize(f.q.as_bytes()).collect();
            Redirect::to(&format!("/admin?q={q}#users")).into_response()
        }
        Err(e) => refused(e),
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    csrf: String,
    id: Uuid,
    /// `approve` or `reject`.
    decision: String,
}

/// POST /admin/mfa: approve or reject a pending MFA change request.
pub async fn mfa_decision(
    State(state): State<AppState>,
    client: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<DecisionForm>(&body) else {
        return AppError::MalformedRequest("bad form".into()).into_response();
    };
    let user = match admin_form(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let outcome = async {
        auth::require_permission(&state, &user, "accounts.approve_mfachangelog").await?;
        match f.decision.as_str() {
            "approve" => service::approve_mfa_change(&state, &client, f.id, Some(user.user_id)).await,
            "reject" => service::reject_mfa_change(&state, &client, f.id, user.user_id, None).await,
            _ => Err(AppError::MalformedRequest("unknown decision".into())),
        }
    }
    .await;
    match outcome {
        Ok(()) => Redirect::to("/admin#mfa-requests").into_response(),
        Err(e) => refused(e),
    }
}
