//! Social login and connected accounts in the console: the API's OpenID Connect flow with
//! the console as its client. The PKCE verifier waits in an HttpOnly cookie while the
//! browser is at the provider; the provider's answer comes back to `/account/social/done`
//! (always an allowed return address while the console is on), which redeems the login
//! code like `POST /api/v1/auth/oidc/exchange`.

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use minijinja::context;
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{
    Browser, Page, Signed, base, checked, cookie, csrf_form, form, login_csrf_ok, refused, see_other, set_cookie,
    sign_in, t,
};
use crate::{
    accounts::{models::LoginResponse, service},
    core::{AppError, AppState, auth::AuthUser, crypto, extract::Page as Paging},
};

const VERIFIER_COOKIE: &str = "gh_account_oidc";

/// Starts a flow: a fresh PKCE verifier in its cookie, then off to the provider.
async fn begin(
    state: &AppState,
    client: &crate::core::client::ClientContext,
    auth: Option<&AuthUser>,
    provider: &str,
    intent: service::OidcIntent,
    password: Option<SecretString>,
) -> Result<Response, AppError> {
    let verifier = crypto::random_token();
    let code_challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let start =
        service::OidcStart { redirect_uri: service::oidc_console_return(state), intent, code_challenge, password };
    let started = service::oidc_start(state, client, auth, provider, start).await?;
    // A page with the link, not a redirect: the console's CSP (`form-action 'self'`) stops a
    // form's submission from being redirected to another origin.
    let ctx = context! {
        title => t("social_continue_title"), message => t("social_continue"),
        link => started.authorization_url, link_text => t("social_continue_link"),
    };
    Ok(Page::new(StatusCode::OK, "notice.html", ctx)
        .cookie(set_cookie(state, VERIFIER_COOKIE, &verifier, 600))
        .into_response())
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    provider: String,
}

/// POST /account/social/start: sign in with a provider (from the sign-in page).
pub async fn start(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = form::<StartForm>(&body).filter(|f| login_csrf_ok(&headers, &f.csrf_token)) else {
        return super::forged();
    };
    match begin(&state, &client, None, &f.provider, service::OidcIntent::Login, None).await {
        Ok(r) => r,
        Err(e) => sign_in::refused_sign_in(&state, e).await,
    }
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    login_code: Option<String>,
    linked: Option<String>,
    error: Option<String>,
}

/// GET /account/social/done: the provider's answer, back through Gatehouse's callback.
pub async fn done(
    State(state): State<AppState>,
    Browser(client): Browser,
    headers: HeaderMap,
    Query(q): Query<DoneQuery>,
) -> Response {
    let clear = set_cookie(&state, VERIFIER_COOKIE, "", 0);
    let mut response = if q.linked.as_deref() == Some("true") {
        see_other("/account/connections?linked=1")
    } else if let Some(code) = q.login_code.filter(|c| !c.is_empty() && c.len() <= 256) {
        // Only the browser that started the flow holds its verifier: a login code arriving
        // anywhere else (a link someone sent) signs nobody in.
        let Some(verifier) = cookie(&headers, VERIFIER_COOKIE).map(|v| SecretString::from(v.to_owned())) else {
            return sign_in::login_page_saying(&state, StatusCode::BAD_REQUEST, t("social_failed")).await;
        };
        match service::oidc_exchange(&state, &client, &SecretString::from(code), &verifier).await {
            Ok(LoginResponse::Authenticated(a)) => sign_in::admit(&state, a, "/account").await,
            Ok(LoginResponse::MfaRequired(challenge)) => sign_in::second_step(&state, &challenge, "/account"),
            // A login code without this browser's verifier, spent or expired.
            Err(AppError::TokenInvalid) => {
                sign_in::login_page_saying(&state, StatusCode::BAD_REQUEST, t("social_failed")).await
            }
            Err(e) => sign_in::refused_sign_in(&state, e).await,
        }
    } else {
        // The return address's error codes (docs/social.md).
        let said = match q.error.as_deref() {
            Some("access_denied") => t("social_denied"),
            Some("identity_taken") => t("social_in_use"),
            Some("account_exists") => t("social_account_exists"),
            Some("email_unverified") => t("social_email_unverified"),
            _ => t("social_failed"),
        };
        sign_in::login_page_saying(&state, StatusCode::BAD_REQUEST, said).await
    };
    if let Some(c) = clear {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

#[derive(Deserialize, Default)]
pub struct ConnectionsQuery {
    linked: Option<String>,
}

async fn connections_page(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    linked: bool,
    errors: BTreeMap<String, String>,
) -> Response {
    let outcome = service::connections(state, user, Paging { page: 1, limit: 100 }).await;
    let providers = service::oidc_providers(state).await;
    match outcome {
        Ok(connections) => {
            let done = linked.then(|| t("social_linked"));
            let ctx = context! {
                title => t("connections"), connections => connections.items, providers => providers.items, done, errors
            };
            Page::new(status, "connections.html", base(state, user, "connections", ctx)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// GET /account/connections.
pub async fn connections(
    State(state): State<AppState>,
    Signed(user): Signed,
    Query(q): Query<ConnectionsQuery>,
) -> Response {
    connections_page(&state, &user, StatusCode::OK, q.linked.is_some(), BTreeMap::new()).await
}

csrf_form!(
    struct LinkForm {
        provider: String,
        password: String,
    }
);

/// POST /account/connections/link: needs the password (a linked identity is a way in).
pub async fn link(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<LinkForm>(&state, &user, &body) else {
        return super::forged();
    };
    let password = Some(SecretString::from(f.password));
    match begin(&state, &client, Some(&user), &f.provider, service::OidcIntent::Link, password).await {
        Ok(r) => r,
        Err(e) => {
            refused(e, "/account/connections", |r| connections_page(&state, &user, r.status, false, r.errors)).await
        }
    }
}

csrf_form!(
    struct UnlinkForm {
        id: Option<Uuid>,
    }
);

/// POST /account/connections/unlink: refused while it is the only way in.
pub async fn unlink(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<UnlinkForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = match f.id {
        Some(id) => service::unlink_connection(&state, &client, &user, id).await,
        None => Err(AppError::NotFound),
    };
    match outcome {
        Ok(()) => see_other("/account/connections"),
        Err(e) => {
            refused(e, "/account/connections", |r| connections_page(&state, &user, r.status, false, r.errors)).await
        }
    }
}
