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
