//! Social login's request bodies (API.md "Social login").

use secrecy::SecretString;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::{
    accounts::service::{OidcCallback, OidcIntent, OidcStart},
    core::{AppResult, error::Problems},
};

/// `POST /auth/oidc/{provider}/start`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcStartRequest {
    /// Where the callback sends the browser back: exactly one of OIDC_REDIRECT_ALLOWLIST.
    pub redirect_uri: String,
    /// `login` (default) or `link` (a bearer token and the password: the identity joins
    /// the signed-in account).
    pub intent: Option<String>,
    /// The client's PKCE challenge: base64url(SHA-256(code_verifier)), 43 characters. The
    /// login code the callback returns is redeemed only with that verifier.
    pub code_challenge: String,
    /// For `intent: link`.
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretString>,
}

fn base64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl OidcStartRequest {
    pub fn parse(self) -> AppResult<OidcStart> {
        let mut problems = Problems::new();
        let intent = match self.intent.as_deref().unwrap_or("login") {
            "login" => OidcIntent::Login,
            "link" => OidcIntent::Link,
            _ => {
                problems.add("intent", "must be login or link");
                OidcIntent::Login
            }
        };
        if self.code_challenge.len() != 43 || !base64url(&self.code_challenge) {
            problems.add("code_challenge", "must be an S256 challenge: 43 base64url characters");
        }
        if self.redirect_uri.is_empty() || self.redirect_uri.len() > 2048 {
            problems.add("redirect_uri", "is required (at most 2048 characters)");
        }
        problems.finish(OidcStart {
            redirect_uri: self.redirect_uri,
            intent,
            code_challenge: self.code_challenge,
            password: self.password,
        })
    }
}

/// The provider's redirect (`GET .../callback`); providers add parameters of their own
/// (`iss`, `scope`, `session_state`), which are ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OidcCallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The provider's refusal (e.g. `access_denied`).
    pub error: Option<String>,
}

impl From<OidcCallbackQuery> for OidcCallback {
    fn from(q: OidcCallbackQuery) -> Self {
        OidcCallback { code: q.code, state: q.state, error: q.error }
    }
}

/// `POST /auth/oidc/exchange`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcExchangeRequest {
    /// From the return URL, single use, 60 seconds.
    #[schema(value_type = String)]
    pub login_code: SecretString,
    /// The PKCE verifier whose S256 challenge the start was sent with (43 to 128 characters).
    #[schema(value_type = String)]
    pub code_verifier: SecretString,
}
