//! `Config`'s `Debug`, with the keys and tokens left out and every configured URL shown as
//! `scheme://host:port` only, so a logged configuration never carries a secret.

use super::Config;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.data_encryption_key.map(|_| REDACTED);
        f.debug_struct("Config")
            .field("app_env", &self.app_env)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_admin_url", &self.database_admin_url.as_deref().map(redact_url))
            .field("database_replica_url", &self.database_replica_url.as_deref().map(redact_url))
            .field("replica_max_lag", &self.replica_max_lag)
            .field("database_max_connections", &self.database_max_connections)
            .field("database_acquire_timeout", &self.database_acquire_timeout)
            .field("database_statement_timeout", &self.database_statement_timeout)
            .field("database_job_statement_timeout", &self.database_job_statement_timeout)
            .field("bind_addr", &self.bind_addr)
            .field("public_base_url", &self.public_base_url)
            .field("jwt_signing_key_file", &self.jwt_signing_key_file)
            .field("jwt_verify_key_files", &self.jwt_verify_key_files)
            .field("data_encryption_key", &key)
            .field("data_encryption_keys_old", &self.data_encryption_keys_old.len())
            .field("step_up_max_age", &self.step_up_max_age)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("email_from", &self.email_from)
            .field("sms_provider", &self.sms_provider)
            .field("sms_webhook_url", &self.sms_webhook_url.as_deref().map(redact_url))
            .field("trusted_proxies", &self.trusted_proxies)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("refresh_reuse_leeway", &self.refresh_reuse_leeway)
            .field("refresh_synchronous_commit", &self.refresh_synchronous_commit)
            .field("session_max_age", &self.session_max_age)
            .field("argon2", &self.argon2)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("hash_queue_depth", &self.hash_queue_depth)
            .field("rate_limits", &self.rate_limits)
            .field("audit_retention_months", &self.audit_retention_months)
            .field("audit_retention_min_months", &self.audit_retention_min_months)
            .field("ip_retention_days", &self.ip_retention_days)
            .field("export_dir", &self.export_dir)
            .field("summary_run_at", &self.summary_run_at)
            .field("log_format", &self.log_format)
            .field("run_jobs", &self.run_jobs)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

const REDACTED: &str = "[REDACTED]";

/// A configured URL as `scheme://host:port` (`core::redact::origin`).
fn redact_url(url: &str) -> String {
    crate::core::redact::origin(url)
}
