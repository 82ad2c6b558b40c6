//! Social login's settings: the OpenID providers (`OIDC_PROVIDERS` and `OIDC_<NAME>_*`) and
//! the client return URLs a flow may end on (`OIDC_REDIRECT_ALLOWLIST`).

use secrecy::SecretString;

use super::{ConfigError, err, var};

/// One configured OpenID provider.
#[derive(Debug, Clone)]
pub struct OidcProviderConfig {
    /// `[a-z0-9_]+`: in paths, in `accounts_socialconnection.provider`, and upper-cased in
    /// the variable names.
    pub name: String,
    /// Discovered at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    pub display_name: String,
}

#[derive(Debug, Clone, Default)]
pub struct OidcConfig {
    pub providers: Vec<OidcProviderConfig>,
    /// Matched exactly: no prefix, no pattern (no open redirect).
    pub redirect_allowlist: Vec<String>,
}

fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl OidcConfig {
    pub fn from_env() -> Result<OidcConfig, ConfigError> {
        let mut providers = Vec::new();
        for name in list(&var("OIDC_PROVIDERS").unwrap_or_default()) {
            if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') || name.len() > 64 {
                return Err(err("OIDC_PROVIDERS", format!("{name:?} is not a name of [a-z0-9_] (at most 64)")));
            }
            let upper = name.to_ascii_uppercase();
            let required = |suffix: &str| {
                let key = format!("OIDC_{upper}_{suffix}");
                var(&key).ok_or_else(|| err("OIDC_PROVIDERS", format!("{key} is required for provider {name}")))
            };
            let issuer = required("ISSUER")?.trim_end_matches('/').to_owned();
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(err("OIDC_PROVIDERS", format!("OIDC_{upper}_ISSUER is not an http(s) URL")));
            }
            let scopes = var(&format!("OIDC_{upper}_SCOPES")).unwrap_or_else(|| "openid email profile".to_owned());
            providers.push(OidcProviderConfig {
                name: name.to_owned(),
                issuer,
                client_id: required("CLIENT_ID")?,
                client_secret: required("CLIENT_SECRET")?.into(),
                scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                display_name: var(&format!("OIDC_{upper}_DISPLAY_NAME")).unwrap_or_else(|| name.to_owned()),
            });
        }
        let redirect_allowlist =
            list(&var("OIDC_REDIRECT_ALLOWLIST").unwrap_or_default()).map(str::to_owned).collect::<Vec<_>>();
        if !providers.is_empty() && redirect_allowlist.is_empty() {
            return Err(err("OIDC_REDIRECT_ALLOWLIST", "is required when OIDC_PROVIDERS names a provider"));
        }
        Ok(OidcConfig { providers, redirect_allowlist })
    }
}
