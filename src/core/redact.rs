//! The one redaction of configured URLs (database, SMTP, SMS webhook). A URL's userinfo,
//! path, query and fragment may all hold a secret (a webhook's token often sits in its path,
//! as Slack's does), so logs, stored rows and exports show a configured URL only as
//! `scheme://host:port`, and an error that quotes one (reqwest's, lettre's) is scrubbed of
//! every part of it but that.

use secrecy::{ExposeSecret, SecretString};
use url::Url;

const REDACTED: &str = "[REDACTED]";

/// A configured URL (database, SMTP, SMS webhook): a secret whose `Debug` is its origin, so
/// a logged configuration shows where it connects and nothing that lets one in.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url.into())
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        SecretUrl(url.into())
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&origin(self.expose()))
    }
}

/// `scheme://host:port` of `url` (the port the scheme implies when none is written), or
/// `[REDACTED]` when it does not parse: nothing else of a configured URL is ever shown.
pub fn origin(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else { return REDACTED.to_owned() };
    match (parsed.host_str(), parsed.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", parsed.scheme()),
        (Some(host), None) => format!("{}://{host}", parsed.scheme()),
        _ => format!("{}://{REDACTED}", parsed.scheme()),
    }
}

/// `text` with every part of `url` that may hold a secret replaced: the whole URL, its
/// userinfo, user, password, path, query and fragment, as written and percent-decoded.
pub fn scrub(text: &str, url: &str) -> String {
    let mut secrets: Vec<String> = vec![url.to_owned()];
    if let Ok(parsed) = Url::parse(url) {
        secrets.push(parsed.as_str().to_owned());
        let user = parsed.username();
        if let Some(password) = parsed.password() {
            secrets.push(format!("{user}:{password}"));
            secrets.push(password.to_owned());
        }
        secrets.push(user.to_owned());
        if parsed.path() != "/" {
            secrets.push(parsed.path().to_owned());
        }
        secrets.extend(parsed.query().map(str::to_owned));
        secrets.extend(parsed.fragment().map(str::to_owned));
    }
    let decoded: Vec<String> =
        secrets.iter().filter_map(|s| percent_decode(s)).filter(|d| !secrets.contains(d)).collect();
    secrets.extend(decoded);
    // Short parts (a one-letter user, a bare "/") would blank out ordinary words; longest
    // first, so a part is not half-replaced by a shorter one inside it.
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for secret in &secrets {
        out = out.replace(secret.as_str(), REDACTED);
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let decoded: String = form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    (decoded != s).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str =
        "https://hook-user:hook-pass-1@sms.example:8443/services/T0/B1/path-secret-2?token=query-secret-3#frag-4";

    #[test]
    fn a_configured_url_shows_only_its_origin() {
        assert_eq!(origin(HOOK), "https://sms.example:8443");
        assert_eq!(origin("smtp://mailer:smtp-pass@mail.internal:587/?tls=required"), "smtp://mail.internal:587");
        assert_eq!(
            origin("smtp://mailer:smtp-pass@mail.internal"),
            "smtp://mail.internal",
            "no port written, none shown"
        );
        assert_eq!(
            origin("postgres://app:pw@db.internal:5432/gatehouse?sslmode=verify-full"),
            "postgres://db.internal:5432"
        );
        assert_eq!(origin("not a url"), "[REDACTED]");
    }

    #[test]
    fn errors_lose_every_part_of_the_url() {
        let error = format!("error sending request for url ({HOOK}): connection refused; user hook-user%3A");
        let scrubbed = scrub(&error, HOOK);
        for secret in ["hook-pass-1", "path-secret-2", "query-secret-3", "frag-4", "hook-user"] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        assert!(scrubbed.contains("connection refused"), "{scrubbed}");
        let encoded = "https://u:p%40ss-word-5@h.example/x";
        assert!(!scrub("auth failed for p@ss-word-5", encoded).contains("ss-word-5"));
    }
}
