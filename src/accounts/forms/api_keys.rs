//! The body of `POST /api-keys`.

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
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
    /// RFC 3339, in the future and at most 365 days ahead; null or absent: 90 days ahead.
    pub expires_at: Option<DateTime<Utc>>,
    /// The owner's password: a stolen access token alone makes no key.
    #[schema(value_type = String)]
    pub password: Option<SecretString>,
}

/// A checked key request.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// A key's life when its creator names none.
pub const DEFAULT_KEY_DAYS: i64 = 90;
/// The longest life a key may have.
pub const MAX_KEY_DAYS: i64 = 365;

impl ApiKeyCreate {
    /// The checked request and the password (missing: a 422 with the other problems).
    pub fn parse(self) -> AppResult<(NewApiKey, SecretString)> {
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
        let now = Utc::now();
        let expires_at = self.expires_at.unwrap_or(now + Duration::days(DEFAULT_KEY_DAYS));
        if expires_at <= now || expires_at > now + Duration::days(MAX_KEY_DAYS) {
            problems.add("expires_at", "must be in the future and at most 365 days ahead");
        }
        if self.password.is_none() {
            problems.add("password", "is required");
        }
        let password = self.password.unwrap_or_else(|| SecretString::from(String::new()));
        problems.finish((NewApiKey { name, scopes, expires_at }, password))
    }
}
