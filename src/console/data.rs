//! The account's data and its end: the data export (request, status, download to this
//! session: the API's download stays bearer-only), API keys (the secret shown once), the
//! email change (a link to the new address), and deleting the account.

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use minijinja::context;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{Browser, Page, SESSION_COOKIE, Signed, base, checked, csrf_form, refused, see_other, set_cookie, t};
use crate::{
    accounts::{forms::api_keys::ApiKeyCreate, service},
    core::{AppError, AppState, auth::AuthUser, types::Email},
};

#[derive(Deserialize, Default)]
pub struct ExportQuery {
    id: Option<Uuid>,
}

async fn export_page(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    id: Option<Uuid>,
    errors: BTreeMap<String, String>,
) -> Response {
    let export = match id {
        Some(id) => match service::export_status(state, user, id).await {
            Ok(s) => Some(s),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let ctx = base(state, user, "export", context! { title => t("export"), export, errors });
    Page::new(status, "export.html", ctx).into_response()
}

/// GET /account/export (`?id=` shows that export's status).
pub async fn export(State(state): State<AppState>, Signed(user): Signed, Query(q): Query<ExportQuery>) -> Response {
    export_page(&state, &user, StatusCode::OK, q.id, BTreeMap::new()).await
}

csrf_form!(
    struct PasswordOnly {
        password: String,
    }
);

/// POST /account/export: needs the password; built in the background.
pub async fn request_export(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<PasswordOnly>(&state, &user, &body) else {
        return super::forged();
    };
    match service::request_export(&state, &client, &user, Some(SecretString::from(f.password))).await {
        Ok(export) => see_other(&format!("/account/export?id={}", export.id)),
        Err(e) => refused(e, "/account/export", |r| export_page(&state, &user, r.status, None, r.errors)).await,
    }
}

/// GET /account/export/{id}/download: the file, to the session of its owner.
pub async fn download(State(state): State<AppState>, Signed(user): Signed, Path(id): Path<Uuid>) -> Response {
    match service::export_file(&state, &user, id).await {
        Ok(bytes) => {
            let headers = [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"gatehouse-export.json\""),
            ];
            (headers, bytes).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn keys_page(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    created: Option<String>,
    errors: BTreeMap<String, String>,
) -> Response {
    match service::api_keys(state, user).await {
        Ok(keys) => {
            let staff = user.is_staff;
            let ctx = base(state, user, "api_keys", context! { title => t("api_keys"), keys, created, staff, errors });
            Page::new(status, "api_keys.html", ctx).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// GET /account/api-keys.
pub async fn api_keys(State(state): State<AppState>, Signed(user): Signed) -> Response {
    keys_page(&state, &user, StatusCode::OK, None, BTreeMap::new()).await
}

csrf_form!(
    struct KeyForm {
        name: String,
        password: String,
    }
);

/// POST /account/api-keys: a new key, its secret shown once on the page this answers with.
pub async fn create_key(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<KeyForm>(&state, &user, &body) else {
        return super::forged();
    };
    // Checkboxes repeat their name, which the form struct cannot hold.
    let scopes = form_urlencoded::parse(&body).filter(|(k, _)| k == "scopes").map(|(_, v)| v.into_owned()).collect();
    let request =
        ApiKeyCreate { name: f.name, scopes, expires_at: None, password: Some(SecretString::from(f.password)) };
    let outcome = async {
        let (new, password) = request.parse()?;
        service::create_api_key(&state, &client, &user, new, password).await
    }
    .await;
    match outcome {
        Ok(created) => keys_page(&state, &user, StatusCode::OK, Some(created.secret), BTreeMap::new()).await,
        Err(e) => refused(e, "/account/api-keys", |r| keys_page(&state, &user, r.status, None, r.errors)).await,
    }
}

csrf_form!(
    struct IdForm {
        id: Option<Uuid>,
    }
);

/// POST /account/api-keys/revoke.
pub async fn revoke_key(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<IdForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = match f.id {
        Some(id) => service::revoke_api_key(&state, &client, &user, id).await,
        None => Err(AppError::NotFound),
    };
    match outcome {
        Ok(()) => see_other("/account/api-keys"),
        Err(e) => refused(e, "/account/api-keys", |r| keys_page(&state, &user, r.status, None, r.errors)).await,
    }
}

fn account_form(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    form: &str,
    errors: BTreeMap<String, String>,
) -> Response {
    account_form_sent(state, user, status, form, errors, false)
}

fn account_form_sent(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    form: &str,
    errors: BTreeMap<String, String>,
    sent: bool,
) -> Response {
    let title = if form == "email" { t("change_email") } else { t("delete_account") };
    let done = sent.then(|| t("email_change_sent"));
    let ctx = base(state, user, "security", context! { title, form, errors, done });
    Page::new(status, "form.html", ctx).into_response()
}

#[derive(Deserialize, Default)]
pub struct SentQuery {
    sent: Option<String>,
}

/// GET /account/email (`?sent=1` after a request: the link is on its way).
pub async fn email_form(State(state): State<AppState>, Signed(user): Signed, Query(q): Query<SentQuery>) -> Response {
    account_form_sent(&state, &user, StatusCode::OK, "email", BTreeMap::new(), q.sent.is_some())
}

/// GET /account/deleted: said once the account is gone.
pub async fn deleted() -> Response {
    let ctx = context! { title => t("delete_account"), message => t("account_deleted"), link => "/account/signup", link_text => t("sign_up") };
    Page::new(StatusCode::OK, "notice.html", ctx).into_response()
}

csrf_form!(
    struct EmailForm {
        password: String,
        new_email: String,
    }
);

/// POST /account/email: a link to the new address (the change happens when it is opened),
/// a notice with an undo link to the old one.
pub async fn change_email(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<EmailForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = async {
        let new_email = Email::parse(&f.new_email).map_err(|m| AppError::validation("new_email", m))?;
        service::request_email_change(&state, &client, &user, SecretString::from(f.password), new_email).await
    }
    .await;
    match outcome {
        Ok(()) => see_other("/account/email?sent=1"),
        Err(e) => {
            refused(e, "/account/email", |r| async move { account_form(&state, &user, r.status, "email", r.errors) })
                .await
        }
    }
}

/// GET /account/delete.
pub async fn delete_form(State(state): State<AppState>, Signed(user): Signed) -> Response {
    account_form(&state, &user, StatusCode::OK, "delete", BTreeMap::new())
}

/// POST /account/delete: the account and everything of it goes; the cookie with it.
pub async fn delete(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<PasswordOnly>(&state, &user, &body) else {
        return super::forged();
    };
    match service::delete_me(&state, &client, &user, SecretString::from(f.password)).await {
        Ok(()) => {
            let mut response = see_other("/account/deleted");
            if let Some(c) = set_cookie(&state, SESSION_COOKIE, "", 0) {
                response.headers_mut().append(header::SET_COOKIE, c);
            }
            response
        }
        Err(e) => {
            refused(e, "/account/delete", |r| async move { account_form(&state, &user, r.status, "delete", r.errors) })
                .await
        }
    }
}
