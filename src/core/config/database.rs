//! The database settings: all that `migrate` and `partitions` read, and the part of
//! [`Config`](super::Config) that opens pools.

use std::time::Duration;

use super::{ConfigError, err, parse, var};
use crate::core::redact::SecretUrl;

/// The DATABASE_URL used when none is set: the local server the Makefile starts.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/gatehouse";

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretUrl,
    /// The schema owner's URL: migrations and partition DDL (docs/operations.md).
    pub admin_url: Option<SecretUrl>,
    /// A streaming replica for reports (`core::replica`); None: reports read the primary.
    pub replica_url: Option<SecretUrl>,
    /// Past this lag behind the primary the replica serves no reports.
    pub replica_max_lag: Duration,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// `statement_timeout` of the connections that serve requests.
    pub statement_timeout: Duration,
    /// `statement_timeout` of the background jobs' connections.
    pub job_statement_timeout: Duration,
}

impl DatabaseConfig {
    /// Reads `DATABASE_*` and `REPLICA_MAX_LAG_SECONDS`, nothing else.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(DatabaseConfig {
            url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()).into(),
            admin_url: var("DATABASE_ADMIN_URL").map(Into::into),
            replica_url: var("DATABASE_REPLICA_URL").map(Into::into),
            replica_max_lag: Duration::from_secs(parse("REPLICA_MAX_LAG_SECONDS", 10)?),
            max_connections: parse("DATABASE_MAX_CONNECTIONS", 20)?,
            acquire_timeout: Duration::from_secs(parse("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 2)?),
            statement_timeout: Duration::from_secs(parse("DATABASE_STATEMENT_TIMEOUT_SECONDS", 5)?),
            job_statement_timeout: Duration::from_secs(parse("DATABASE_JOB_STATEMENT_TIMEOUT_SECONDS", 1800)?),
        })
    }

    /// For tests: the given database, the defaults otherwise.
    pub fn for_tests(url: &str) -> Self {
        DatabaseConfig {
            url: url.into(),
            admin_url: None,
            replica_url: None,
            replica_max_lag: Duration::from_secs(10),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            job_statement_timeout: Duration::from_secs(1800),
        }
    }

    /// These settings connecting as the schema's owner: `DATABASE_ADMIN_URL` when set, else
    /// `DATABASE_URL` (one role does everything).
    pub fn schema_owner(&self) -> DatabaseConfig {
        match &self.admin_url {
            Some(url) => DatabaseConfig { url: url.clone(), ..self.clone() },
            None => self.clone(),
        }
    }

    /// Seed 002, Database Security: every configured database is on loopback (or a Unix
    /// socket) or has its certificate verified, not just its traffic encrypted.
    pub fn check_tls(&self) -> Result<(), ConfigError> {
        let urls = [
            ("DATABASE_URL", Some(&self.url)),
            ("DATABASE_ADMIN_URL", self.admin_url.as_ref()),
            ("DATABASE_REPLICA_URL", self.replica_url.as_ref()),
        ];
        for (name, url) in urls {
            if let Some(url) = url {
                check_database_tls(name, url.expose())?;
            }
        }
        Ok(())
    }
}

/// A database URL production may use: on loopback or a Unix socket, or with
/// `sslmode=verify-full` (in the URL, or PGSSLMODE), so a server that cannot prove its name
/// is refused rather than trusted with every password hash.
fn check_database_tls(var: &'static str, url: &str) -> Result<(), ConfigError> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    let options: PgConnectOptions =
        url.parse().map_err(|_| err(var, format!("{} is not a PostgreSQL URL", crate::core::redact::origin(url))))?;
    let host = options.get_host();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if local || matches!(options.get_ssl_mode(), PgSslMode::VerifyFull) {
        Ok(())
    } else {
        Err(err(var, "production needs sslmode=verify-full for a database that is not on loopback"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_off_loopback_needs_its_certificate_verified() {
        let mut config = DatabaseConfig::for_tests("postgres://app@db.internal:5432/gatehouse");
        assert_eq!(config.check_tls().map_err(|e| e.var), Err("DATABASE_URL"));
        for refused in ["?sslmode=require", "?sslmode=verify-ca", "?sslmode=prefer"] {
            config.url = format!("postgres://app@db.internal:5432/gatehouse{refused}").into();
            assert_eq!(config.check_tls().map_err(|e| e.var), Err("DATABASE_URL"), "{refused}");
        }
        config.url = "postgres://app@db.internal:5432/gatehouse?sslmode=verify-full".into();
        assert!(config.check_tls().is_ok());
        for local in ["postgres://app@127.0.0.1/g", "postgres://app@localhost/g", "postgres://app@[::1]:5432/g"] {
            config.url = local.into();
            assert!(config.check_tls().is_ok(), "{local}");
        }
        config.admin_url = Some("postgres://owner@db.internal/g".into());
        assert_eq!(config.check_tls().map_err(|e| e.var), Err("DATABASE_ADMIN_URL"));
        config.admin_url = None;
        config.replica_url = Some("postgres://app@replica.internal/g?sslmode=require".into());
        assert_eq!(config.check_tls().map_err(|e| e.var), Err("DATABASE_REPLICA_URL"));
    }
}
