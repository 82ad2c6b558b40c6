//! Typed configuration read once from the environment (and `.env` via dotenvy).

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use base64::Engine;
use chrono::NaiveTime;
use ipnetwork::IpNetwork;
use secrecy::{ExposeSecret, SecretBox, SecretString};

mod database;
mod oidc;
mod values;

use crate::core::redact::SecretUrl;
pub use database::{DEFAULT_DATABASE_URL, DatabaseConfig};
pub use oidc::{OidcConfig, OidcProviderConfig};
pub use values::{AppEnv, Argon2Params, LogFormat, RateLimits, RootKey, SmsProviderKind};

/// Every secret is a `secrecy` type (URLs show their origin only), so `Debug` prints none.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub database: DatabaseConfig,
    pub bind_addr: SocketAddr,
    pub public_base_url: String,
    pub jwt_signing_key_file: Option<PathBuf>,
    /// Extra PEM files (public or private) whose keys still verify tokens during rotation.
    pub jwt_verify_key_files: Vec<PathBuf>,
    /// The root of the per-purpose data keys (core::keys): secrets at rest, code hashes.
    pub data_encryption_key: Option<SecretBox<RootKey>>,
    /// Earlier roots, still able to decrypt and verify what they made (key rotation).
    pub data_encryption_keys_old: Vec<SecretBox<RootKey>>,
    /// A second factor older than this does not count for actions that need aal 2.
    pub step_up_max_age: Duration,
    pub smtp_url: Option<SecretUrl>,
    pub email_from: String,
    pub sms_provider: SmsProviderKind,
    pub sms_webhook_url: Option<SecretUrl>,
    pub trusted_proxies: Vec<IpNetwork>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_reuse_leeway: Duration,
    /// Whether a refresh's commit waits for its WAL flush (docs/performance.md).
    pub refresh_synchronous_commit: bool,
    /// A session's absolute lifetime: refreshes never extend it past this from its start.
    pub session_max_age: Duration,
    pub argon2: Argon2Params,
    /// Password hashes allowed to run at once (the CPU pool's threads).
    pub hash_concurrency: usize,
    /// Hashes allowed to wait for a thread; beyond it requests get 503 at once.
    pub hash_queue_depth: usize,
    /// Per-address limits on unauthenticated work that costs a hash or sends a message.
    pub rate_limits: RateLimits,
    pub audit_retention_months: i32,
    /// No audit table may keep fewer months than this, whoever asks.
    pub audit_retention_min_months: i32,
    /// Raw client addresses are kept this many days, then cut to /24 or /48.
    pub ip_retention_days: u32,
    /// Where data exports are written (`EXPORT_DIR`; shared storage when several
    /// instances run, so any of them can serve a file another wrote).
    pub export_dir: std::path::PathBuf,
    pub summary_run_at: NaiveTime,
    pub log_format: LogFormat,
    /// Run background jobs inside `serve`.
    pub run_jobs: bool,
    /// When set, `/metrics` answers only a request bearing it (`Authorization: Bearer`).
    pub metrics_token: Option<SecretString>,
    /// The WebAuthn relying party's id, a domain (`WEBAUTHN_RP_ID`; None: the host of
    /// PUBLIC_BASE_URL). An IP address cannot be one: passkeys are then off.
    pub webauthn_rp_id: Option<String>,
    pub webauthn_rp_name: String,
    /// The origins passkey ceremonies may come from (`WEBAUTHN_ORIGINS`, comma-separated;
    /// empty: PUBLIC_BASE_URL).
    pub webauthn_origins: Vec<String>,
    /// Social login: the OpenID providers and the allowed client return URLs.
    pub oidc: OidcConfig,
    /// PUSH_PROVIDER (`log` or `webhook`) and PUSH_WEBHOOK_URL.
    pub push_provider: SmsProviderKind,
    pub push_webhook_url: Option<SecretUrl>,
    /// The Pwned Passwords range API (`{url}/range/{5 hex}`); None: the check is off.
    pub breached_password_api_url: Option<String>,
    /// A password counted more often than this is refused (0: any appearance).
    pub breached_password_max_count: u64,
    /// MAGIC_LINK_ENABLED (default false): `POST /auth/magic-link` and its confirm route.
    pub magic_link_enabled: bool,
    /// MAGIC_LINK_URL: where the emailed link points, a template with `{token}` (e.g. an
    /// app's deep link); default `{PUBLIC_BASE_URL}/magic-link?token={token}`.
    pub magic_link_url: Option<String>,
    /// ACCOUNT_CONSOLE (default true): the self-service pages under `/account`.
    pub account_console: bool,
    /// AUTH_CACHE_ENTRIES (default 100,000): the auth cache's capacity per kind of entry.
    pub auth_cache_entries: u64,
}

/// A configuration value that could not be used, named by its variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `AUDIT_RETENTION_MONTHS` and `AUDIT_RETENTION_MIN_MONTHS`, checked against each other:
/// `partitions prune` reads them and nothing else of the service's settings.
pub fn audit_retention_from_env() -> Result<(i32, i32), ConfigError> {
    let months = parse("AUDIT_RETENTION_MONTHS", 13)?;
    let min_months = parse("AUDIT_RETENTION_MIN_MONTHS", 12)?;
    check_audit_retention(months, min_months)?;
    Ok((months, min_months))
}

fn check_audit_retention(months: i32, min_months: i32) -> Result<(), ConfigError> {
    if !(1..=120).contains(&min_months) {
        return Err(err("AUDIT_RETENTION_MIN_MONTHS", "must be 1..=120"));
    }
    if !(min_months..=120).contains(&months) {
        return Err(err("AUDIT_RETENTION_MONTHS", "must be between AUDIT_RETENTION_MIN_MONTHS and 120"));
    }
    Ok(())
}

/// The settings of a command that only works on the schema (`migrate`, `partitions`): the
/// database's, without keys or APP_ENV, as a deployment's migration job is handed them. The
/// TLS rule holds unless APP_ENV names development or test: a job that does not say where
/// it runs is held to production's.
pub fn database_command_from_env() -> Result<(DatabaseConfig, LogFormat), ConfigError> {
    let app_env = AppEnv::from_env()?;
    let database = DatabaseConfig::from_env()?;
    let relaxed = matches!(app_env, Some(AppEnv::Development | AppEnv::Test));
    if !relaxed {
        database.check_tls()?;
    }
    Ok((database, LogFormat::from_env(app_env == Some(AppEnv::Production))?))
}

fn parse<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| err(name, format!("{raw:?}: {e}"))),
    }
}

impl Config {
    /// Reads every variable; missing ones take the defaults listed in `.env.example`.
    pub fn from_env() -> Result<Self, ConfigError> {
        // Development keys are in the source: running on them must be asked for by name.
        if var("APP_ENV").is_none() && (var("DATA_ENCRYPTION_KEY").is_none() || var("JWT_SIGNING_KEY_FILE").is_none()) {
            return Err(err(
                "APP_ENV",
                "is not set and DATA_ENCRYPTION_KEY or JWT_SIGNING_KEY_FILE is missing: set APP_ENV=development to \
                 run on development keys (make run does), or give both keys",
            ));
        }
        let app_env = AppEnv::from_env()?.unwrap_or(AppEnv::Development);
        let log_format = LogFormat::from_env(app_env == AppEnv::Production)?;
        let sms_provider = match var("SMS_PROVIDER").as_deref().unwrap_or("log") {
            "log" => SmsProviderKind::Log,
            "webhook" => SmsProviderKind::Webhook,
            other => return Err(err("SMS_PROVIDER", format!("{other:?} is not log or webhook"))),
        };
        let data_encryption_key = var("DATA_ENCRYPTION_KEY").map(|raw| parse_key(&raw)).transpose()?;
        let (audit_retention_months, audit_retention_min_months) = audit_retention_from_env()?;
        let data_encryption_keys_old = var("DATA_ENCRYPTION_KEYS_OLD")
            .map(|raw| raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_key).collect())
            .transpose()?
            .unwrap_or_default();
        let trusted_proxies = var("TRUSTED_PROXIES")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<IpNetwork>().map_err(|e| err("TRUSTED_PROXIES", format!("{s:?}: {e}"))))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let summary_run_at = match var("SUMMARY_RUN_AT") {
            None => NaiveTime::from_hms_opt(0, 30, 0).unwrap_or_default(),
            Some(raw) => NaiveTime::parse_from_str(&raw, "%H:%M")
                .map_err(|_| err("SUMMARY_RUN_AT", format!("{raw:?} is not HH:MM")))?,
        };
        let limits = RateLimits::default();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

        let config = Config {
            app_env,
            database: DatabaseConfig::from_env()?,
            bind_addr: parse("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            public_base_url: var("PUBLIC_BASE_URL")
                .unwrap_or_else(|| "http://localhost:8080".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            jwt_signing_key_file: var("JWT_SIGNING_KEY_FILE").map(PathBuf::from),
            jwt_verify_key_files: var("JWT_VERIFY_KEY_FILES")
                .map(|raw| raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect())
                .unwrap_or_default(),
            data_encryption_key,
            data_encryption_keys_old,
            step_up_max_age: Duration::from_secs(parse("STEP_UP_MAX_AGE_SECONDS", 900)?),
            smtp_url: var("SMTP_URL").map(Into::into),
            email_from: var("EMAIL_FROM").unwrap_or_else(|| "Gatehouse <no-reply@gatehouse.local>".to_owned()),
            sms_provider,
            sms_webhook_url: var("SMS_WEBHOOK_URL").map(Into::into),
            trusted_proxies,
            access_token_ttl: Duration::from_secs(parse("ACCESS_TOKEN_TTL_SECONDS", 900)?),
            refresh_token_ttl: Duration::from_secs(parse("REFRESH_TOKEN_TTL_SECONDS", 7 * 24 * 3600)?),
            refresh_reuse_leeway: Duration::from_secs(parse("REFRESH_REUSE_LEEWAY_SECONDS", 0)?),
            refresh_synchronous_commit: parse("REFRESH_SYNCHRONOUS_COMMIT", false)?,
            session_max_age: Duration::from_secs(parse("SESSION_MAX_AGE_SECONDS", 30 * 24 * 3600)?),
            argon2: Argon2Params {
                memory_kib: parse("ARGON2_MEMORY_KIB", 19_456)?,
                iterations: parse("ARGON2_ITERATIONS", 2)?,
                parallelism: parse("ARGON2_PARALLELISM", 1)?,
            },
            hash_concurrency: parse("HASH_CONCURRENCY", cores)?.max(1),
            hash_queue_depth: parse("HASH_QUEUE_DEPTH", 32 * cores)?,
            rate_limits: RateLimits {
                register: parse("RATE_LIMIT_REGISTER_PER_HOUR", limits.register)?,
                password_reset: parse("RATE_LIMIT_PASSWORD_RESET_PER_HOUR", limits.password_reset)?,
                email_resend: parse("RATE_LIMIT_EMAIL_RESEND_PER_HOUR", limits.email_resend)?,
                mfa_send: parse("RATE_LIMIT_MFA_SEND_PER_HOUR", limits.mfa_send)?,
                passkey_options: parse("RATE_LIMIT_PASSKEY_OPTIONS_PER_HOUR", limits.passkey_options)?,
                oidc_start: parse("RATE_LIMIT_OIDC_START_PER_HOUR", limits.oidc_start)?,
                api_key_per_minute: parse("RATE_LIMIT_API_KEY_PER_MINUTE", limits.api_key_per_minute)?,
            },
            audit_retention_months,
            audit_retention_min_months,
            ip_retention_days: parse("IP_RETENTION_DAYS", 90)?,
            export_dir: std::env::var("EXPORT_DIR").map_or_else(|_| std::path::PathBuf::from("exports"), Into::into),
            summary_run_at,
            log_format,
            run_jobs: parse("RUN_JOBS", true)?,
            metrics_token: var("METRICS_TOKEN").map(Into::into),
            webauthn_rp_id: var("WEBAUTHN_RP_ID"),
            webauthn_rp_name: var("WEBAUTHN_RP_NAME").unwrap_or_else(|| "Gatehouse".to_owned()),
            webauthn_origins: var("WEBAUTHN_ORIGINS")
                .map(|raw| {
                    raw.split(',')
                        .map(|s| s.trim().trim_end_matches('/').to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            oidc: OidcConfig::from_env()?,
            push_provider: match var("PUSH_PROVIDER").as_deref().unwrap_or("log") {
                "log" => SmsProviderKind::Log,
                "webhook" => SmsProviderKind::Webhook,
                other => return Err(err("PUSH_PROVIDER", format!("{other:?} is not log or webhook"))),
            },
            push_webhook_url: var("PUSH_WEBHOOK_URL").map(Into::into),
            // On by default in production only: development and CI never wait on it.
            breached_password_api_url: match std::env::var("BREACHED_PASSWORD_API_URL") {
                Ok(url) if url.trim().is_empty() => None,
                Ok(url) => Some(url.trim().trim_end_matches('/').to_owned()),
                Err(_) if app_env == AppEnv::Production => Some("https://api.pwnedpasswords.com".to_owned()),
                Err(_) => None,
            },
            breached_password_max_count: parse("BREACHED_PASSWORD_MAX_COUNT", 0)?,
            magic_link_enabled: parse("MAGIC_LINK_ENABLED", false)?,
            account_console: parse("ACCOUNT_CONSOLE", true)?,
            auth_cache_entries: parse("AUTH_CACHE_ENTRIES", crate::core::auth_cache::DEFAULT_ENTRIES)?,
            magic_link_url: match std::env::var("MAGIC_LINK_URL") {
                Ok(url) if url.trim().is_empty() => None,
                Ok(url) if !url.contains("{token}") => {
                    return Err(err("MAGIC_LINK_URL", "must contain {token}".to_owned()));
                }
                Ok(url) => Some(url.trim().to_owned()),
                Err(_) => None,
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Refuses combinations that are unsafe or cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3650).contains(&self.ip_retention_days) {
            return Err(err("IP_RETENTION_DAYS", "must be 1..=3650"));
        }
        check_audit_retention(self.audit_retention_months, self.audit_retention_min_months)?;
        if self.access_token_ttl.is_zero() || self.refresh_token_ttl.is_zero() || self.session_max_age.is_zero() {
            return Err(err("ACCESS_TOKEN_TTL_SECONDS", "token lifetimes must be positive"));
        }
        if self.push_provider == SmsProviderKind::Webhook && self.push_webhook_url.is_none() {
            return Err(err("PUSH_WEBHOOK_URL", "required when PUSH_PROVIDER=webhook"));
        }
        if self.sms_provider == SmsProviderKind::Webhook && self.sms_webhook_url.is_none() {
            return Err(err("SMS_WEBHOOK_URL", "required when SMS_PROVIDER=webhook"));
        }
        if self.app_env == AppEnv::Production {
            if self.jwt_signing_key_file.is_none() {
                return Err(err(
                    "JWT_SIGNING_KEY_FILE",
                    "production needs a real signing key (gatehouse keys generate)",
                ));
            }
            if self.data_encryption_key.is_none() {
                return Err(err("DATA_ENCRYPTION_KEY", "production needs a real 32-byte key"));
            }
            if self.smtp_url.is_none() {
                return Err(err("SMTP_URL", "production needs an SMTP server"));
            }
            // OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
            if self.argon2.memory_kib < 19_456 || self.argon2.iterations < 2 || self.argon2.parallelism < 1 {
                return Err(err("ARGON2_MEMORY_KIB", "production needs at least m=19456 KiB, t=2, p=1 (OWASP)"));
            }
            if self.sms_provider == SmsProviderKind::Log {
                return Err(err("SMS_PROVIDER", "production needs a real SMS provider (webhook), not the log"));
            }
            self.database.check_tls()?;
        }
        Ok(())
    }

    pub fn is_production(&self) -> bool {
        self.app_env == AppEnv::Production
    }

    /// The DATA_ENCRYPTION_KEY, or in development a fixed, loudly-logged fallback.
    pub fn encryption_key(&self) -> &[u8; 32] {
        self.data_encryption_key.as_ref().map_or(&DEV_ENCRYPTION_KEY, |key| &key.expose_secret().0)
    }

    /// DATA_ENCRYPTION_KEYS_OLD, newest first.
    pub fn old_encryption_keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.data_encryption_keys_old.iter().map(|key| &key.expose_secret().0)
    }

    /// A configuration for tests: fast hashing, no jobs, the given database.
    pub fn for_tests(database_url: &str) -> Self {
        Config {
            app_env: AppEnv::Test,
            database: DatabaseConfig::for_tests(database_url),
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_base_url: "http://gatehouse.test".to_owned(),
            jwt_signing_key_file: None,
            jwt_verify_key_files: Vec::new(),
            data_encryption_key: Some(SecretBox::new(Box::new(RootKey([7u8; 32])))),
            data_encryption_keys_old: Vec::new(),
            step_up_max_age: Duration::from_secs(900),
            smtp_url: None,
            email_from: "Gatehouse <no-reply@gatehouse.test>".to_owned(),
            sms_provider: SmsProviderKind::Log,
            sms_webhook_url: None,
            trusted_proxies: Vec::new(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
            refresh_reuse_leeway: Duration::ZERO,
            refresh_synchronous_commit: false,
            session_max_age: Duration::from_secs(30 * 24 * 3600),
            argon2: Argon2Params { memory_kib: 1024, iterations: 1, parallelism: 1 },
            hash_concurrency: 2,
            hash_queue_depth: 64,
            rate_limits: RateLimits::default(),
            audit_retention_months: 13,
            audit_retention_min_months: 12,
            ip_retention_days: 90,
            export_dir: std::env::temp_dir().join(format!("gatehouse-exports-{}", uuid::Uuid::now_v7())),
            summary_run_at: NaiveTime::from_hms_opt(0, 30, 0).unwrap_or_default(),
            log_format: LogFormat::Pretty,
            run_jobs: false,
            metrics_token: None,
            webauthn_rp_id: None,
            webauthn_rp_name: "Gatehouse".to_owned(),
            webauthn_origins: Vec::new(),
            oidc: OidcConfig::default(),
            push_provider: SmsProviderKind::Log,
            push_webhook_url: None,
            breached_password_api_url: None,
            breached_password_max_count: 0,
            magic_link_enabled: false,
            magic_link_url: None,
            account_console: true,
            auth_cache_entries: crate::core::auth_cache::DEFAULT_ENTRIES,
        }
    }
}

/// Development-only key: data encrypted with it is readable by anyone with the source.
const DEV_ENCRYPTION_KEY: [u8; 32] = *b"gatehouse-development-only-key!!";

fn parse_key(raw: &str) -> Result<SecretBox<RootKey>, ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| err("DATA_ENCRYPTION_KEY", "not valid base64"))?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| err("DATA_ENCRYPTION_KEY", "must decode to exactly 32 bytes"))?;
    Ok(SecretBox::new(Box::new(RootKey(key))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_keys_and_url_credentials() {
        let mut config =
            Config::for_tests("postgres://app:db-pass-123@db.internal:5432/gatehouse?sslpassword=tls-pass-9");
        config.data_encryption_key = Some(SecretBox::new(Box::new(RootKey(*b"0123456789abcdef0123456789abcdef"))));
        config.metrics_token = Some("scrape-token-321".into());
        config.smtp_url = Some("smtp://mailer:smtp-pass-456@mail.internal:587".into());
        config.sms_webhook_url = Some("https://sms.example/send?token=hook-token-789".into());
        let debug = format!("{config:?}");
        let secrets = [
            "db-pass-123",
            "tls-pass-9",
            "0123456789abcdef",
            "48, 49, 50",
            "smtp-pass-456",
            "hook-token-789",
            "scrape",
        ];
        for secret in secrets {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        assert!(debug.contains("postgres://db.internal:5432"), "the origin stays readable: {debug}");
        assert!(!debug.contains("db.internal:5432/gatehouse"), "no path either: {debug}");
    }

    #[test]
    fn production_refuses_unsafe_settings() {
        let mut config = Config::for_tests("postgres://localhost/gatehouse");
        config.app_env = AppEnv::Production;
        config.jwt_signing_key_file = Some("key.pem".into());
        config.smtp_url = Some("smtp://127.0.0.1:25".into());
        config.argon2 = Argon2Params { memory_kib: 19_456, iterations: 2, parallelism: 1 };
        config.sms_provider = SmsProviderKind::Log;
        assert_eq!(config.validate().map_err(|e| e.var), Err("SMS_PROVIDER"));
        config.sms_provider = SmsProviderKind::Webhook;
        config.sms_webhook_url = Some("https://sms.example/send".into());
        assert!(config.validate().is_ok());
        // The tests' cheap hashing is below OWASP's minimum: production refuses it.
        config.argon2 = Argon2Params { memory_kib: 1024, iterations: 1, parallelism: 1 };
        assert_eq!(config.validate().map_err(|e| e.var), Err("ARGON2_MEMORY_KIB"));
        // The database's TLS rule (core::config::database) is part of production's.
        config.argon2 = Argon2Params { memory_kib: 19_456, iterations: 2, parallelism: 1 };
        config.database.url = "postgres://app@db.internal:5432/gatehouse?sslmode=require".into();
        assert_eq!(config.validate().map_err(|e| e.var), Err("DATABASE_URL"));
    }
}
