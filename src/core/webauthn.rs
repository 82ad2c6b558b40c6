//! The WebAuthn relying party (passkeys): who this deployment is to an authenticator. Built
//! once from the settings; held by `AppState` so otp and accounts use the same one.
//!
//! The RP id is a domain that every allowed origin's host equals or ends with: browsers
//! and webauthn-rs refuse an IP address, so a deployment reached by IP runs with passkeys
//! off (the passkey routes answer 503 `UNAVAILABLE`) rather than failing to start.

use std::sync::Arc;

use url::Url;
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::{AppError, AppResult, config::Config};

#[derive(Clone)]
pub struct RelyingParty {
    webauthn: Result<Arc<Webauthn>, &'static str>,
}

impl RelyingParty {
    /// The relying party of `config`; `Err` for settings that contradict each other
    /// (an RP id that is not the domain of an allowed origin), which `serve` refuses.
    pub fn from_config(config: &Config) -> Result<RelyingParty, String> {
        let public = Url::parse(&config.public_base_url).map_err(|e| format!("PUBLIC_BASE_URL: {e}"))?;
        let rp_id = match &config.webauthn_rp_id {
            Some(id) => id.clone(),
            None => public.host_str().unwrap_or_default().to_owned(),
        };
        if rp_id.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok() || rp_id.is_empty() {
            return Ok(RelyingParty::off(
                "passkeys are off: the WebAuthn RP id must be a domain name, not an IP address (set \
                 PUBLIC_BASE_URL to a name such as http://localhost:8080, or WEBAUTHN_RP_ID)",
            ));
        }
        let origins: Vec<Url> = if config.webauthn_origins.is_empty() {
            vec![public]
        } else {
            config
                .webauthn_origins
                .iter()
                .map(|o| Url::parse(o).map_err(|e| format!("WEBAUTHN_ORIGINS {o:?}: {e}")))
                .collect::<Result<_, _>>()?
        };
        let mut builder = WebauthnBuilder::new(&rp_id, &origins[0])
            .map_err(|_| format!("WEBAUTHN_RP_ID {rp_id:?} is not the domain of the origin {}", origins[0]))?
            .rp_name(&config.webauthn_rp_name);
        for origin in &origins[1..] {
            let host = origin.host_str().unwrap_or_default();
            if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
                return Err(format!("WEBAUTHN_RP_ID {rp_id:?} is not the domain of the origin {origin}"));
            }
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder.build().map_err(|e| format!("WebAuthn relying party: {e}"))?;
        Ok(RelyingParty { webauthn: Ok(Arc::new(webauthn)) })
    }

    /// Passkeys off, for `reason` (logged once at start).
    pub fn off(reason: &'static str) -> RelyingParty {
        RelyingParty { webauthn: Err(reason) }
    }

    /// Why passkeys are off, if they are.
    pub fn off_reason(&self) -> Option<&'static str> {
        self.webauthn.as_ref().err().copied()
    }

    /// The relying party, or 503 `UNAVAILABLE` while passkeys are off.
    pub fn get(&self) -> AppResult<&Webauthn> {
        match &self.webauthn {
            Ok(webauthn) => Ok(webauthn),
            Err(_) => Err(AppError::Unavailable { retry_after_secs: 3600 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(public: &str, rp_id: Option<&str>, origins: &[&str]) -> Result<RelyingParty, String> {
        let mut config = Config::for_tests("postgres://localhost/g");
        config.public_base_url = public.to_owned();
        config.webauthn_rp_id = rp_id.map(str::to_owned);
        config.webauthn_origins = origins.iter().map(|o| (*o).to_owned()).collect();
        RelyingParty::from_config(&config)
    }

    #[test]
    fn the_rp_id_is_a_domain_of_every_origin() {
        assert!(with("http://localhost:8080", None, &[]).unwrap().get().is_ok());
        assert!(with("https://auth.example.com", Some("example.com"), &[]).unwrap().get().is_ok());
        let both = ["https://auth.example.com", "https://app.example.com"];
        assert!(with("https://auth.example.com", Some("example.com"), &both).unwrap().get().is_ok());
        assert!(with("https://auth.example.com", Some("other.com"), &[]).is_err());
        assert!(with("https://auth.example.com", Some("example.com"), &["https://evil.test"]).is_err());
        // An address cannot be an RP id: the service runs with passkeys off.
        let off = with("http://127.0.0.1:8080", None, &[]).unwrap();
        assert!(off.off_reason().is_some());
        assert!(matches!(off.get(), Err(AppError::Unavailable { .. })));
        assert!(with("http://[::1]:8080", None, &[]).unwrap().off_reason().is_some());
    }
}
