//! Social login (OpenID Connect): the rules of the account. `core::oidc` speaks the
//! protocol; here a verified identity finds its account (by the connection of provider and
//! subject, never by address alone), links to a signed-in one, or makes a new one, and the
//! callback hands the client a one-time login code that only its own PKCE verifier redeems
//! (so a code read from a URL is useless). The redeemed code is a login like a password's:
//! lockout, risk, devices, MFA and audit apply.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    account_event,
    challenges::{FirstFactor, FirstStep, second_step},
    devices,
    lockout::{Admitted, admit_known},
    session_event,
    sessions::NewSession,
};
use crate::{
    accounts::{
        credentials::UNUSABLE_PASSWORD,
        models::{
            LoginResponse, UserRow,
            social::{AuthorizationStarted, FlowRow, NewFlow, ProviderInfo, Providers},
        },
        repo,
    },
    audit_log::{self, SessionAction, SessionEvent},
    core::{
        AppError, AppResult, AppState,
        auth::AuthUser,
        client::ClientContext,
        crypto::{self, constant_time_eq, sha256_hex},
        data_keys::Purpose,
        error::Conflict,
        metrics::Metrics,
        oidc::{Identity, OidcError},
        ratelimit::Action,
        types::Email,
    },
    notifications::{self, Message},
};

/// What a flow is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Login,
    Link,
}

impl Intent {
    fn as_str(self) -> &'static str {
        match self {
            Intent::Login => "login",
            Intent::Link => "link",
        }
    }
}

/// A start request, checked by its form.
pub struct Start {
    pub redirect_uri: String,
    pub intent: Intent,
    /// The client's S256 challenge (base64url of a SHA-256, 43 characters).
    pub code_challenge: String,
    pub password: Option<SecretString>,
}

/// The account console's own return page (`/account/social/done`): allowed as a
/// `redirect_uri` without being on OIDC_REDIRECT_ALLOWLIST while the console is on.
pub fn console_return(state: &AppState) -> String {
    format!("{}/account/social/done", state.config.public_base_url.trim_end_matches('/'))
}

/// `GET /auth/oidc/providers`: the providers discovered (one that failed is left out and
/// tried again a minute later).
pub async fn providers(state: &AppState) -> Providers {
    let items = state.oidc.available().await;
    Providers { items: items.into_iter().map(|(name, display_name)| ProviderInfo { name, display_name }).collect() }
}

fn unavailable(e: OidcError) -> AppError {
    match e {
        OidcError::UnknownProvider => AppError::NotFound,
        other => {
            tracing::warn!(error = %other, "social login: provider unavailable");
            AppError::Unavailable { retry_after_secs: 60 }
        }
    }
}

/// `POST /auth/oidc/{provider}/start`: the provider's authorization URL. Linking needs the
/// signed-in user's password (and a recent second factor with MFA on), as adding a factor does.
pub async fn start(
    state: &AppState,
    client: &ClientContext,
    auth: Option<&AuthUser>,
    provider: &str,
    s: Start,
) -> AppResult<AuthorizationStarted> {
    let console = state.config.account_console && s.redirect_uri == console_return(state);
    if !console && !state.config.oidc.redirect_allowlist.contains(&s.redirect_uri) {
        return Err(AppError::validation("redirect_uri", "is not on OIDC_REDIRECT_ALLOWLIST"));
    }
    let linking = match s.intent {
        Intent::Login => None,
        Intent::Link => {
            let auth = auth.ok_or(AppError::Unauthenticated)?;
            super::reauthenticate(state, client, auth, s.password).await?;
            Some(auth)
        }
    };
    state.limits.check(Action::OidcStart, client.ip)?;
    let authorization = state.oidc.authorize(provider).await.map_err(unavailable)?;
    let sealed = state.data_keys.seal(Purpose::ProviderToken, authorization.pkce_verifier.as_bytes());
    let state_hash = sha256_hex(&authorization.state);
    let flow = NewFlow {
        state_hash: &state_hash,
        provider,
        intent: s.intent.as_str(),
        user_id: linking.map(|a| a.user_id),
        session_id: linking.map(|a| a.session_id),
        nonce: &authorization.nonce,
        pkce_verifier: &sealed,
        redirect_uri: &s.redirect_uri,
        code_challenge: &s.code_challenge,
    };
    repo::social::insert_flow(&state.db, &flow).await?;
    Ok(AuthorizationStarted { authorization_url: authorization.url })
}

/// The provider's redirect to the callback.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// `redirect_uri` with one more query parameter.
fn with_param(redirect_uri: &str, key: &str, value: &str) -> String {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return redirect_uri.to_owned(),
    };
    url.query_pairs_mut().append_pair(key, value);
    url.to_string()
}

/// `GET /auth/oidc/{provider}/callback`: where the browser goes next (the client's return
/// URL with `login_code`, `linked=true` or `error`). A state this service never issued has
/// no return URL: 400 `TOKEN_INVALID`.
pub async fn callback(state: &AppState, client: &ClientContext, provider: &str, c: Callback) -> AppResult<String> {
    let raw_state = c.state.filter(|s| !s.is_empty() && s.len() <= 512).ok_or(AppError::TokenInvalid)?;
    let state_hash = sha256_hex(&raw_state);
    let Some(flow) = repo::social::take_state(&state.db, &state_hash, provider).await? else {
        // Issued but used, expired or for another provider: the client hears why.
        return match repo::social::flow_return(&state.db, &state_hash).await? {
            Some(uri) => Ok(with_param(&uri, "error", "invalid_state")),
            None => Err(AppError::TokenInvalid),
        };
    };
    let fail = |error: &str| with_param(&flow.redirect_uri, "error", error);
    let code = match (c.error.as_deref(), c.code) {
        (None, Some(code)) if !code.is_empty() && code.len() <= 2048 => code,
        (error, _) => {
            repo::social::delete_flow(&state.db, flow.id).await?;
            let said = if error.is_some() { "access_denied" } else { "invalid_state" };
            return Ok(fail(said));
        }
    };
    let verifier = state.data_keys.open(Purpose::ProviderToken, &flow.pkce_verifier).map_err(AppError::internal)?;
    let verifier = String::from_utf8(verifier).map_err(AppError::internal)?;
    let identity = match state.oidc.redeem(provider, &code, &verifier, &flow.nonce).await {
        Ok(identity) => identity,
        Err(e) => {
            repo::social::delete_flow(&state.db, flow.id).await?;
            tracing::warn!(provider, error = %e, "social login: the provider's answer was refused");
            let said = if matches!(e, OidcError::Rejected(_)) { "invalid_state" } else { "temporarily_unavailable" };
            return Ok(fail(said));
        }
    };
    let mut tx = crate::core::db::begin(&state.db).await?;
    let outcome = match flow.intent.as_str() {
        "link" => link(&mut tx, state, client, provider, &flow, &identity).await?,
        _ => sign_in(&mut tx, state, client, provider, &flow, &identity).await?,
    };
    let location = match outcome {
        Outcome::Linked => {
            repo::social::delete_flow(&mut *tx, flow.id).await?;
            with_param(&flow.redirect_uri, "linked", "true")
        }
        Outcome::SignIn { user, connection } => {
            let code = crypto::random_token();
            repo::social::set_login_code(&mut *tx, flow.id, &sha256_hex(&code), user, connection).await?;
            with_param(&flow.redirect_uri, "login_code", &code)
        }
        Outcome::Refused(error) => {
            repo::social::delete_flow(&mut *tx, flow.id).await?;
            fail(error)
        }
    };
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(location)
}

enum Outcome {
    Linked,
    SignIn { user: Uuid, connection: Uuid },
    Refused(&'static str),
}

fn seal(state: &AppState, identity: &Identity) -> Vec<u8> {
    state.data_keys.seal(Purpose::ProviderToken, identity.access_token.as_bytes())
}

pub(super) fn display_name(state: &AppState, provider: &str) -> String {
    let found = state.config.oidc.providers.iter().find(|p| p.name == provider);
    found.map_or_else(|| provider.to_owned(), |p| p.display_name.clone())
}

/// Intent `link`: the identity joins the account that started the flow, if that session
/// is still live and no other account holds the identity.
async fn link(
    tx: &mut PgConnection,
    state: &AppState,
    client: &ClientContext,
    provider: &str,
    flow: &FlowRow,
    identity: &Identity,
) -> AppResult<Outcome> {
    let (Some(user_id), Some(session_id)) = (flow.user_id, flow.session_id) else {
        return Ok(Outcome::Refused("invalid_state"));
    };
    // Signed out (or remediated) since the start: the link dies with the session.
    if !repo::sessions::hold_session(&mut *tx, session_id, user_id, None).await? {
        return Ok(Outcome::Refused("access_denied"));
    }
    let sealed = seal(state, identity);
    let email = identity.email.as_deref();
    match repo::social::connection_by_subject(&mut *tx, provider, &identity.subject).await? {
        Some(c) if c.user_id == user_id => {
            repo::social::sync_connection(&mut *tx, c.id, email, &sealed).await?;
            return Ok(Outcome::Linked);
        }
        Some(_) => return Ok(Outcome::Refused("identity_taken")),
        None => {}
    }
    let Some(connection) =
        repo::social::insert_connection(&mut *tx, user_id, provider, &identity.subject, email, &sealed).await?
    else {
        return Ok(Outcome::Refused("identity_taken"));
    };
    let owner = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    let details = serde_json::json!({ "provider": provider, "connection_id": connection });
    account_event(&mut *tx, Some(user_id), "identity_linked", details, client).await?;
    let message = Message::IdentityLinked {
        username: owner.username.clone(),
        provider: display_name(state, provider),
        email: identity.email.clone(),
    };
    notifications::enqueue_email(&mut *tx, &state.data_keys, user_id, &Email::from_stored(&owner.email), message)
        .await?;
    Ok(Outcome::Linked)
}

/// Intent `login`: the connection's account, or a new account for a new identity with a
/// verified address nobody here has. An address that is an account's is never linked on
/// its own word (a provider may let people claim addresses): that user links from a
/// signed-in session.
async fn sign_in(
    tx: &mut PgConnection,
    state: &AppState,
    client: &ClientContext,
    provider: &str,
    _flow: &FlowRow,
    identity: &Identity,
) -> AppResult<Outcome> {
    let sealed = seal(state, identity);
    let email = identity.email.as_deref();
    if let Some(c) = repo::social::connection_by_subject(&mut *tx, provider, &identity.subject).await? {
        if c.status != "active" {
            return Ok(Outcome::Refused("access_denied"));
        }
        repo::social::sync_connection(&mut *tx, c.id, email, &sealed).await?;
        return Ok(Outcome::SignIn { user: c.user_id, connection: c.id });
    }
    let address = email.and_then(|e| Email::parse(e).ok());
    if let Some(address) = &address
        && repo::users::user_by_email(&mut *tx, address.as_str()).await?.is_some()
    {
        return Ok(Outcome::Refused("account_exists"));
    }
    let Some(address) = address.filter(|_| identity.email_verified) else {
        return Ok(Outcome::Refused("email_unverified"));
    };
    let Some(user) = create_account(tx, identity, &address).await? else {
        // The address was registered meanwhile.
        return Ok(Outcome::Refused("account_exists"));
    };
    let Some(connection) =
        repo::social::insert_connection(&mut *tx, user.id, provider, &identity.subject, email, &sealed).await?
    else {
        return Ok(Outcome::Refused("identity_taken"));
    };
    let details = serde_json::json!({ "provider": provider, "connection_id": connection });
    account_event(&mut *tx, Some(user.id), "registered", details, client).await?;
    let event = SessionEvent {
        metadata: Some(serde_json::json!({ "provider": provider })),
        ..session_event(user.id, SessionAction::Registered, client)
    };
    audit_log::record_session(&mut *tx, &event).await?;
    Ok(Outcome::SignIn { user: user.id, connection })
}

/// A username from the claims (preferred_username, the address's local part), made valid
/// and unique with a numbered suffix.
fn username_base(identity: &Identity, address: &Email) -> String {
    let local = address.as_str().split('@').next().unwrap_or_default();
    let wanted = identity.preferred_username.as_deref().unwrap_or(local);
    let mut base: String = wanted
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '_' })
        .take(40)
        .collect();
    while base.chars().count() < 3 {
        base.push('_');
    }
    base
}

/// The new account: verified address, unusable password (a reset sets one), a profile.
/// None when the address was taken meanwhile.
async fn create_account(tx: &mut PgConnection, identity: &Identity, address: &Email) -> AppResult<Option<UserRow>> {
    let base = username_base(identity, address);
    let name = identity.name.clone().unwrap_or_default();
    let first: String = name.chars().take(150).collect();
    for n in 0..20u32 {
        let username = if n == 0 { base.clone() } else { format!("{base}{}", n + 1) };
        // A savepoint per try: a taken name or address must not abort the transaction.
        let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
        match repo::users::insert_user(&mut *attempt, address.as_str(), &username, UNUSABLE_PASSWORD, &first, "").await
        {
            Ok(user) => {
                repo::users::insert_profile(&mut *attempt, user.id).await?;
                repo::users::set_email_verified(&mut *attempt, user.id).await?;
                attempt.commit().await?;
                return Ok(Some(UserRow { email_verified: true, ..user }));
            }
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("auth_user_username_key") => continue,
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("auth_user_email_key") => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Conflict(Conflict::UsernameTaken))
}

/// `POST /auth/oidc/exchange`: the login code, redeemed once by the client that holds the
/// verifier of its challenge, is a login of the connection's account under the password
/// login's rules (lockout, disabled accounts, risk, new-device notice, MFA).
#[tracing::instrument(skip_all)]
pub async fn exchange(
    state: &AppState,
    client: &ClientContext,
    login_code: &SecretString,
    code_verifier: &SecretString,
) -> AppResult<LoginResponse> {
    // RFC 7636: a verifier is 43 to 128 characters (an empty one would match a challenge
    // computed from nothing).
    if !(43..=128).contains(&code_verifier.expose_secret().len()) {
        return Err(AppError::TokenInvalid);
    }
    let redeemed = repo::social::take_login_code(&state.db, &sha256_hex(login_code.expose_secret()))
        .await?
        .ok_or(AppError::TokenInvalid)?;
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.expose_secret().as_bytes()));
    if !constant_time_eq(computed.as_bytes(), redeemed.code_challenge.as_bytes()) {
        return Err(AppError::TokenInvalid);
    }
    let user = repo::users::user_by_id(&state.db, redeemed.user_id).await?.ok_or(AppError::TokenInvalid)?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    let note = Some(serde_json::json!({ "provider": redeemed.provider }));
    let admitted = admit_known(&mut tx, client, &user, note).await?;
    // Committed either way: the reserved attempt, or the refusal's audit row.
    crate::core::db::commit(tx).await?;
    let Admitted { attempt, device, facts } = admitted?;
    let risk = devices::assess(client, &device, &facts);
    if user.mfa_enabled {
        let step = FirstStep { attempt, device, risk, factor: FirstFactor::Federated };
        return second_step(state, client, user, step, &facts.history).await;
    }
    let session = NewSession {
        amr: vec![FirstFactor::Federated.amr().to_owned()],
        audit_note: Some(serde_json::json!({ "provider": redeemed.provider, "connection_id": redeemed.connection_id })),
        ..NewSession::password(user, client, attempt, device, risk)
    };
    let authenticated = devices::open_and_alert(state, session, facts.history.device_known).await?;
    Metrics::count(&state.metrics.logins, "success_oidc");
    Ok(LoginResponse::Authenticated(authenticated))
}
