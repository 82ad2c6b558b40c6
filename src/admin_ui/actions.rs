//! The users section's and the MFA approval queue's forms: each checks the admin's
//! session-bound CSRF token and the permission its API route needs.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use uuid::Uuid;

use super::{MFA_MESSAGE, admin_form, form};
use crate::{
    accounts::service,
    core::{AppError, AppState, auth, client::ClientContext},
};

/// An admin form's refusal as a page, not JSON: what was refused and a way back.
fn refused(e: AppError) -> Response {
    let (status, message) = match &e {
        AppError::Forbidden => (
            StatusCode::FORBIDDEN,
            "Refused: you lack the permission, or the change is about you or was asked for by you (a second staff \
             member decides).",
        ),
        AppError::ForbiddenBecause(why) => (StatusCode::FORBIDDEN, *why),
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
        auth::require_admin_write(&state, &user, "accounts.change_user").await?;
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
        auth::require_admin_write(&state, &user, "accounts.approve_mfachangelog").await?;
        match f.decision.as_str() {
            "approve" => service::approve_mfa_change(&state, &client, f.id, Some(&user)).await,
            "reject" => service::reject_mfa_change(&state, &client, f.id, &user, None).await,
            _ => Err(AppError::MalformedRequest("unknown decision".into())),
        }
    }
    .await;
    match outcome {
        Ok(()) => Redirect::to("/admin#mfa-requests").into_response(),
        Err(e) => refused(e),
    }
}
