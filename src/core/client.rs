//! Who is calling: client IP (X-Forwarded-For only from a trusted proxy), user agent,
//! device fingerprint and, from a trusted proxy only, geo headers.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};
use ipnetwork::IpNetwork;

use super::{error::AppError, state::AppState};

/// The fingerprint header: opaque, at most 255 characters, stored only hashed.
pub const FINGERPRINT_HEADER: &str = "x-device-fingerprint";

#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub fingerprint: Option<String>,
    pub country: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

impl ClientContext {
    pub fn ip_network(&self) -> Option<IpNetwork> {
        self.ip.map(IpNetwork::from)
    }

    /// The user agent as browser, OS and device type (parsed on demand: only logins ask).
    pub fn agent(&self) -> Agent {
        self.user_agent.as_deref().map(Agent::parse).unwrap_or_default()
    }

    /// Coordinates, when a trusted proxy sent both.
    pub fn coordinates(&self) -> Option<(f64, f64)> {
        self.latitude.zip(self.longitude)
    }
}

/// What a user agent says about the device, by woothee (its patterns are compiled once
/// per process, on first use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    /// `desktop`, `mobile`, `tablet`, `bot` or `unknown`.
    pub device_type: &'static str,
    pub os: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
}

impl Agent {
    pub fn parse(ua: &str) -> Agent {
        let Some(r) = woothee::parser::Parser::new().parse(ua) else {
            return Agent { device_type: "unknown", ..Agent::default() };
        };
        let known = |v: &str| (!v.is_empty() && v != woothee::woothee::VALUE_UNKNOWN).then(|| v.to_owned());
        let tablet = ua.contains("iPad") || ua.contains("Tablet") || (ua.contains("Android") && !ua.contains("Mobile"));
        let device_type = match r.category {
            // Crawlers, and HTTP libraries (curl, python-requests...) no person browses with.
            "crawler" => "bot",
            "misc" if r.name == "HTTP Library" => "bot",
            "smartphone" | "mobilephone" if tablet => "tablet",
            "smartphone" | "mobilephone" => "mobile",
            "pc" => "desktop",
            _ => "unknown",
        };
        Agent { device_type, os: known(r.os), browser: known(r.name), browser_version: known(r.version) }
    }

    /// A crawler, or a command-line client no person browses with.
    pub fn is_bot(&self) -> bool {
        self.device_type == "bot"
    }
}

fn header(headers: &HeaderMap, name: &str, max: usize) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(max).collect())
}

/// One `X-Forwarded-For` entry as proxies write it: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the
/// nearest `X-Forwarded-For` hop that is not one, read from the right. The walk stops at
/// the first entry that does not parse: what lies left of it cannot be trusted, so the
/// last proxy seen stands for the client.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNetwork]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(*ip));
    let mut current = peer?;
    let entries: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    for entry in entries.into_iter().rev() {
        if !is_trusted(&current) {
            break;
        }
        match forwarded_ip(entry) {
            Some(ip) => current = ip,
            None => break,
        }
    }
    Some(current)
}

impl FromRequestParts<AppState> for ClientContext {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let trusted = &state.config.trusted_proxies;
        let from_proxy = peer.is_some_and(|p| trusted.iter().any(|n| n.contains(p)));
        let headers = &parts.headers;
        let fingerprint = match headers.get(FINGERPRINT_HEADER) {
            None => None,
            Some(v) => {
                let v =
                    v.to_str().map_err(|_| AppError::validation("X-Device-Fingerprint", "must be visible ASCII"))?;
                if v.len() > 255 {
                    return Err(AppError::validation("X-Device-Fingerprint", "must be at most 255 characters"));
                }
                Some(v.to_owned()).filter(|v| !v.is_empty())
            }
        };
        let geo = |name: &str, max: usize| if from_proxy { header(headers, name, max) } else { None };
        let coordinate = |name: &str, limit: f64| {
            geo(name, 32).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && v.abs() <= limit)
        };
        Ok(ClientContext {
            ip: client_ip(peer, headers, trusted),
            user_agent: header(headers, "user-agent", 1000),
            fingerprint,
            country: geo("x-geo-country", 100),
            city: geo("x-geo-city", 100),
            latitude: coordinate("x-geo-lat", 90.0),
            longitude: coordinate("x-geo-lon", 180.0),
        })
    }
}

#[cfg(test)]
mod agent_tests {
    use super::Agent;

    #[test]
    fn user_agents_become_device_type_os_and_browser() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                "desktop",
                Some("Windows 10"),
                Some("Chrome"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                "mobile",
                Some("iPhone"),
                Some("Safari"),
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                "tablet",
                Some("iPad"),
                Some("Safari"),
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "bot",
                None,
                Some("Googlebot"),
            ),
            ("curl/8.5.0", "bot", None, Some("HTTP Library")),
        ];
        for (ua, device_type, os, browser) in cases {
            let a = Agent::parse(ua);
            assert_eq!((a.device_type, a.os.as_deref(), a.browser.as_deref()), (device_type, os, browser), "{ua}");
        }
        assert_eq!(Agent::parse("").device_type, "unknown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let trusted: Vec<IpNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(Some(proxy), &headers, &trusted), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(client_ip(Some(stranger), &headers, &trusted), Some(stranger));
        assert_eq!(client_ip(Some(proxy), &headers, &[]), Some(proxy));
    }

    #[test]
    fn forwarded_for_takes_ports_and_stops_at_garbage() {
        let trusted: Vec<IpNetwork> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = |xff: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", xff.parse().unwrap());
            client_ip(Some(proxy), &headers, &trusted).map(|ip| ip.to_string())
        };
        assert_eq!(ip("203.0.113.7:4711").as_deref(), Some("203.0.113.7"));
        assert_eq!(ip("[2001:db8::7]:443, 10.0.0.2").as_deref(), Some("2001:db8::7"));
        assert_eq!(ip("[2001:db8::8]").as_deref(), Some("2001:db8::8"));
        // A client may write anything left of the proxies; a spoofed entry past an
        // unparseable one is not believed.
        assert_eq!(ip("198.51.100.9, not-an-ip, 10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(ip("198.51.100.9, 203.0.113.7").as_deref(), Some("203.0.113.7"));
    }
}
