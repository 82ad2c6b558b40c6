//! The OpenID Connect relying party (social login): each configured provider, discovered
//! once (`/.well-known/openid-configuration` with its JWKS) and again when an ID token
//! names a key the JWKS lacks (the provider rotated). The protocol is `openidconnect`'s:
//! the authorization URL with PKCE (S256), state and nonce; the code exchange; the ID
//! token's signature, `iss`, `aud`, `exp`, `nonce` and `azp`. The rules (which account,
//! link or sign-up) are accounts' (`accounts::service::social`).

use std::time::{Duration, Instant};

use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
    core::{CoreClient, CoreProviderMetadata, CoreResponseType},
};
use secrecy::ExposeSecret;
use tokio::sync::RwLock;

use super::config::{Config, OidcProviderConfig};

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// A provider that failed discovery is tried again after this long (on the next request
/// that needs it), so one that was down at start joins later.
const RETRY_DISCOVERY: Duration = Duration::from_secs(60);
/// A provider's endpoints must answer within this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

struct Provider {
    config: OidcProviderConfig,
    /// The discovered client, or when discovery last failed.
    client: RwLock<Result<Client, Instant>>,
}

/// Every configured provider; `Default` has none.
#[derive(Default)]
pub struct OidcProviders {
    providers: Vec<Provider>,
    http: reqwest::Client,
    callback_base: String,
}

/// The start of a flow: where to send the browser, and what the callback checks.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// What a verified ID token says about the person.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    /// `email_verified` as the provider asserts it; absent counts as false.
    pub email_verified: bool,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    pub access_token: String,
}

/// Why a callback's code did not yield an identity.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider is unknown or could not be discovered")]
    UnknownProvider,
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    /// The token response or its ID token failed a check (signature, iss, aud, exp,
    /// nonce, azp) or the code was refused.
    #[error("the provider's answer failed verification: {0}")]
    Rejected(String),
}

impl OidcProviders {
    pub fn from_config(config: &Config) -> OidcProviders {
        // No redirects: discovery and token requests go where configured, nowhere else.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .unwrap_or_default();
        let stale = Instant::now().checked_sub(RETRY_DISCOVERY).unwrap_or_else(Instant::now);
        OidcProviders {
            providers: config
                .oidc
                .providers
                .iter()
                .map(|c| Provider { config: c.clone(), client: RwLock::new(Err(stale)) })
                .collect(),
            http,
            callback_base: format!("{}/api/v1/auth/oidc", config.public_base_url),
        }
    }

    /// Discovers every provider not yet discovered (due for a retry); `serve` calls it at
    /// start and logs the ones that fail, which stay out of the list until they answer.
    pub async fn discover_all(&self) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        for provider in &self.providers {
            if let Err(e) = self.client(provider, false).await {
                failures.push((provider.config.name.clone(), e.to_string()));
            }
        }
        failures
    }

    /// `(name, display_name)` of the providers that are discovered.
    pub async fn available(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for provider in &self.providers {
            if self.client(provider, false).await.is_ok() {
                out.push((provider.config.name.clone(), provider.config.display_name.clone()));
            }
        }
        out
    }

    fn provider(&self, name: &str) -> Result<&Provider, OidcError> {
        self.providers.iter().find(|p| p.config.name == name).ok_or(OidcError::UnknownProvider)
    }

    /// The provider's client: the discovered one, or a fresh discovery when `refresh` is
    /// asked (a key miss) or the last attempt failed long enough ago.
    async fn client(&self, provider: &Provider, refresh: bool) -> Result<Client, OidcError> {
        match &*provider.client.read().await {
            Ok(client) if !refresh => return Ok(client.clone()),
            Err(failed) if failed.elapsed() < RETRY_DISCOVERY => return Err(OidcError::UnknownProvider),
            _ => {}
        }
        let mut slot = provider.client.write().await;
        let discovered = self.discover(&provider.config).await;
        match discovered {
            Ok(client) => {
                *slot = Ok(client.clone());
                Ok(client)
            }
            Err(e) => {
                // A failed refresh keeps the client it had.
                if slot.is_err() {
                    *slot = Err(Instant::now());
                }
                Err(e)
            }
        }
    }

    async fn discover(&self, config: &OidcProviderConfig) -> Result<Client, OidcError> {
        let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let redirect = RedirectUrl::new(format!("{}/{}/callback", self.callback_base, config.name))
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(config.client_secret.expose_secret().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// The authorization URL of a new flow with `provider`, with fresh state, nonce and
    /// PKCE verifier (S256).
    pub async fn authorize(&self, name: &str) -> Result<Authorization, OidcError> {
        let provider = self.provider(name)?;
        let client = self.client(provider, false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(provider.config.scopes.iter().filter(|s| *s != "openid").cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the callback's code and verifies the ID token against `nonce`; a key the
    /// JWKS lacks triggers one rediscovery of the provider's keys.
    pub async fn redeem(
        &self,
        name: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        let provider = self.provider(name)?;
        let client = self.client(provider, false).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Unreachable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => OidcError::Rejected(r.to_string()),
                other => OidcError::Unreachable(other.to_string()),
            })?;
        let id_token = response.id_token().ok_or_else(|| OidcError::Rejected("no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                let fresh = self.client(provider, true).await?;
                id_token
                    .claims(&fresh.id_token_verifier(), &nonce)
                    .map_err(|e| OidcError::Rejected(e.to_string()))?
                    .clone()
            }
            Err(e) => return Err(OidcError::Rejected(e.to_string())),
        };
        Ok(Identity {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified().unwrap_or(false),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()),
            access_token: response.access_token().secret().clone(),
        })
    }
}
