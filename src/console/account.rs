//! The signed-in pages about the account itself: the overview, sessions, activity, and the
//! step-up page that renews the second factor for an action that needs a recent one.

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
use uuid::Uuid;

use super::{
    Browser, MFA_COOKIE, Page, Signed, base, checked, cookie, csrf_form, refused, refused_form, safe_next, see_other,
    set_cookie, sign_in::answer, t,
};
use crate::{
    accounts::service,
    audit_log::{models::review::EventFilter, review},
    core::{AppError, AppState, auth::AuthUser, extract::Page as Paging},
    otp::MfaMethod,
};

/// GET /account: who, whether the email is verified, MFA, the last sign-ins.
pub async fn overview(State(state): State<AppState>, Signed(user): Signed) -> Response {
    let outcome = async {
        let me = service::me(&state, &user).await?;
        let mfa = service::mfa_status(&state, &user).await?;
        let filter = EventFilter { action: Some("login".into()), ..EventFilter::default() };
        let (sign_ins, _) = review::own_events(&state, user.user_id, &filter, Paging { page: 1, limit: 5 }).await?;
        Ok::<_, AppError>(context! { me, mfa, sign_ins })
    }
    .await;
    match outcome {
        Ok(ctx) => {
            let ctx = base(&state, &user, "overview", context! { title => t("overview"), ..ctx });
            Page::new(StatusCode::OK, "overview.html", ctx).into_response()
        }
        Err(e) => e.into_response(),
    }
}

csrf_form!(
    struct PlainForm {}
);

/// POST /account/verify-email/resend: another verification link.
pub async fn resend_verification(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    if checked::<PlainForm>(&state, &user, &body).is_none() {
        return super::forged();
    }
    match service::resend_verification(&state, &client, &user).await {
        Ok(()) => see_other("/account?resent=1"),
        Err(e) => e.into_response(),
    }
}

async fn sessions_page(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
) -> Response {
    match service::sessions(state, user).await {
        Ok(sessions) => {
            let ctx = base(state, user, "sessions", context! { title => t("sessions"), sessions, errors });
            Page::new(status, "sessions.html", ctx).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// GET /account/sessions.
pub async fn sessions(State(state): State<AppState>, Signed(user): Signed) -> Response {
    sessions_page(&state, &user, StatusCode::OK, BTreeMap::new()).await
}

csrf_form!(
    struct IdForm {
        id: Option<Uuid>,
    }
);

/// POST /account/sessions/revoke: signs one other session out.
pub async fn revoke_session(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<IdForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = match f.id {
        Some(id) => service::revoke_session(&state, &client, &user, id).await,
        None => Err(AppError::NotFound),
    };
    match outcome {
        Ok(()) if f.id == Some(user.session_id) => see_other("/account/login"),
        Ok(()) => see_other("/account/sessions"),
        Err(e) => refused(e, "/account/sessions", |r| sessions_page(&state, &user, r.status, r.errors)).await,
    }
}

/// POST /account/sessions/revoke-all: signs out everywhere, this browser included (API.md
/// "Recovery": every session and refresh token, pending links, device trust).
pub async fn revoke_all(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    if checked::<PlainForm>(&state, &user, &body).is_none() {
        return super::forged();
    }
    match service::logout_all(&state, &client, &user).await {
        Ok(()) => see_other("/account/login"),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct ActivityQuery {
    page: Option<i64>,
}

/// GET /account/activity: the account's own security events, newest first, 20 a page.
pub async fn activity(State(state): State<AppState>, Signed(user): Signed, Query(q): Query<ActivityQuery>) -> Response {
    let page = Paging { page: q.page.unwrap_or(1).clamp(1, 10_000), limit: 20 };
    match review::own_events(&state, user.user_id, &EventFilter::default(), page).await {
        Ok((events, total)) => {
            let pages = (total + 19) / 20;
            let ctx = base(
                &state,
                &user,
                "activity",
                context! {
                title => t("activity"), events, page => page.page, pages },
            );
            Page::new(StatusCode::OK, "activity.html", ctx).into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct StepUpQuery {
    next: Option<String>,
    sent: Option<String>,
}

async fn step_up_page(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    next: &str,
    sent: Option<&str>,
    errors: BTreeMap<String, String>,
) -> Response {
    match service::mfa_status(state, user).await {
        Ok(mfa) => {
            let ctx = base(
                state,
                user,
                "security",
                context! {
                title => t("step_up"), next => safe_next(Some(next)), mfa, sent, errors },
            );
            Page::new(status, "form.html", context! { form => "step_up", ..ctx }).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// GET /account/step-up?next=: the password and a fresh second factor, then back to `next`.
pub async fn step_up_form(
    State(state): State<AppState>,
    Signed(user): Signed,
    Query(q): Query<StepUpQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref()).to_owned();
    let sent = q.sent.as_deref().filter(|s| matches!(*s, "email" | "sms"));
    step_up_page(&state, &user, StatusCode::OK, &next, sent, BTreeMap::new()).await
}

csrf_form!(
    struct StepUpForm {
        password: String,
        method: String,
        code: String,
        credential: String,
        next: Option<String>,
    }
);

/// POST /account/step-up: checks the password, then answers a step-up challenge (a new one
/// for an authenticator or backup code; the one a code was sent for by email or SMS).
pub async fn step_up(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<StepUpForm>(&state, &user, &body) else {
        return super::forged();
    };
    let next = safe_next(f.next.as_deref()).to_owned();
    let outcome = async {
        service::confirm_session_password(&state, &client, &user, SecretString::from(f.password)).await?;
        let answer = answer(&f.method, f.code, &f.credential)?;
        let sent = cookie(&headers, MFA_COOKIE).and_then(|c| Uuid::parse_str(c.split(':').next()?).ok());
        let challenge = match (answer.method(), sent) {
            (MfaMethod::Email | MfaMethod::Sms, Some(sent)) => sent,
            _ => service::step_up(&state, &client, &user).await?.challenge_id,
        };
        // Only a step-up of this very session (the cookie's id is the browser's word).
        let expected = service::ChallengeExpected::StepUp(&user);
        service::mfa_verify_expected(&state, &client, challenge, expected, answer, false).await
    }
    .await;
    match outcome {
        Ok(_) => {
            let mut response = see_other(&next);
            if let Some(c) = set_cookie(&state, MFA_COOKIE, "", 0) {
                response.headers_mut().append(axum::http::header::SET_COOKIE, c);
            }
            response
        }
        Err(e) => {
            refused_form(e, |r| async move { step_up_page(&state, &user, r.status, &next, None, r.errors).await }).await
        }
    }
}

csrf_form!(
    struct SendForm {
        method: String,
        next: Option<String>,
    }
);

/// POST /account/step-up/send: a step-up challenge answered by an emailed or texted code.
pub async fn step_up_send(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<SendForm>(&state, &user, &body) else {
        return super::forged();
    };
    let next = safe_next(f.next.as_deref()).to_owned();
    let outcome = async {
        let method = MfaMethod::parse(&f.method).ok_or_else(|| AppError::validation("method", "is unknown"))?;
        let challenge = service::step_up(&state, &client, &user).await?;
        service::mfa_send(&state, &client, challenge.challenge_id, method).await?;
        Ok::<_, AppError>((challenge, method))
    }
    .await;
    match outcome {
        Ok((challenge, method)) => {
            let to = format!("/account/step-up?sent={}&next={}", method.as_str(), super::next_param(&next));
            let mut response = see_other(&to);
            let value = format!("{}:{}", challenge.challenge_id, method.as_str());
            if let Some(c) = set_cookie(&state, MFA_COOKIE, &value, challenge.expires_in) {
                response.headers_mut().append(axum::http::header::SET_COOKIE, c);
            }
            response
        }
        Err(e) => {
            refused_form(e, |r| async move { step_up_page(&state, &user, r.status, &next, None, r.errors).await }).await
        }
    }
}
