//! The typed values single settings parse into.

use secrecy::{CloneableSecret, zeroize::Zeroize};

use super::{ConfigError, err, var};

/// Where the service runs; production refuses unsafe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Production,
}

impl AppEnv {
    /// `APP_ENV`, when set.
    pub(super) fn from_env() -> Result<Option<AppEnv>, ConfigError> {
        Ok(match var("APP_ENV").as_deref() {
            None => None,
            Some("development" | "dev") => Some(AppEnv::Development),
            Some("test") => Some(AppEnv::Test),
            Some("production" | "prod") => Some(AppEnv::Production),
            Some(other) => return Err(err("APP_ENV", format!("{other:?} is not development, test or production"))),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `LOG_FORMAT`; unset, JSON in production and pretty elsewhere.
    pub fn from_env(production: bool) -> Result<LogFormat, ConfigError> {
        match var("LOG_FORMAT").as_deref() {
            None if production => Ok(LogFormat::Json),
            None => Ok(LogFormat::Pretty),
            Some("json") => Ok(LogFormat::Json),
            Some("pretty") => Ok(LogFormat::Pretty),
            Some(other) => Err(err("LOG_FORMAT", format!("{other:?} is not json or pretty"))),
        }
    }
}

/// A 32-byte root of the data keys: zeroed when dropped, `[REDACTED]` when printed.
#[derive(Clone)]
pub struct RootKey(pub [u8; 32]);

impl Zeroize for RootKey {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl CloneableSecret for RootKey {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsProviderKind {
    Log,
    Webhook,
}

/// Argon2id cost parameters (OWASP defaults: 19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// Requests per client address (IPv6: per /64) and hour, counted per instance; 0 turns a
/// limit off. Each is a bucket that refills evenly over the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub register: u32,
    pub password_reset: u32,
    pub email_resend: u32,
    pub mfa_send: u32,
    /// Passwordless sign-in options (each keeps a ceremony row for five minutes).
    pub passkey_options: u32,
    /// Social sign-in flows started per address (each keeps a row for ten minutes).
    pub oidc_start: u32,
    /// Per API key, per minute (not per hour: keys serve machines).
    pub api_key_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            register: 30,
            password_reset: 30,
            email_resend: 30,
            mfa_send: 60,
            passkey_options: 300,
            oidc_start: 300,
            api_key_per_minute: 600,
        }
    }
}
