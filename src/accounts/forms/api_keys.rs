//! The body of `POST /api-keys`.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::core::{AppResult, auth::SCOPES, error::Problems};

/// `POST /api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// 1 to 100 characters, e.g. `SIEM export`.
    pub name: String,
    /// At least one of `me:read`, `audit:read` (staff), `introspect` (staff).
    pub scopes: Vec<String>,
    /// RFC 3339, in the future and at most a year ahead; null or absent: never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A checked key request.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiKeyCreate {
    pub fn parse(self) -> AppResult<NewApiKey> {
        let mut problems = Problems::new();
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            problems.add("name", "must be 1 to 100 characters, no control characters");
        }
        let mut scopes = self.scopes;
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            problems.add("scopes", "give at least one scope");
        }
        if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            problems.add("scopes", format!("unknown scope {bad:?}; known: {}", SCOPES.join(", ")));
        }
        if let Some(at) = self.expires_at {
            let now = Utc::now();
            if at <= now || at > now + Duration::days(366) {
                problems.add("expires_at", "must be in the future and at most a year ahead");
            }
        }
        problems.finish(NewApiKey { name, scopes, expires_at: self.expires_at })
    }
}
