//! The breached-password check (as Kratos ships it): the k-anonymity range API of Pwned
//! Passwords. Only the first five hex digits of the password's SHA-1 leave the process;
//! the range that comes back is searched here. Off unless BREACHED_PASSWORD_API_URL is
//! set (production's default is the public endpoint); an API that does not answer within
//! a second does not block anyone (fail open: a log line and a metric).

use std::{sync::OnceLock, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};

use crate::core::{AppError, AppResult, AppState, metrics::Metrics};

const BUDGET: Duration = Duration::from_secs(1);

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(BUDGET)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// 422 `PASSWORD_BREACHED` when the range API counts the password more often than
/// BREACHED_PASSWORD_MAX_COUNT.
pub async fn check(state: &AppState, password: &SecretString) -> AppResult<()> {
    let Some(base) = state.config.breached_password_api_url.as_deref() else { return Ok(()) };
    let digest = Sha1::digest(password.expose_secret().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
    let (prefix, suffix) = hex.split_at(5);
    let url = format!("{}/range/{prefix}", base.trim_end_matches('/'));
    // Padding makes every answer about the same size, whatever the prefix.
    let answer = tokio::time::timeout(BUDGET, async {
        let r = client().get(&url).header("Add-Padding", "true").send().await?.error_for_status()?;
        r.text().await
    })
    .await;
    let body = match answer {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return unavailable(state, &e.without_url().to_string()),
        Err(_) => return unavailable(state, "no answer within 1 s"),
    };
    let count = body
        .lines()
        .filter_map(|line| line.trim().split_once(':'))
        .find(|(s, _)| s.eq_ignore_ascii_case(suffix))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if count > state.config.breached_password_max_count {
        Metrics::count(&state.metrics.breached_checks, "breached");
        return Err(AppError::PasswordBreached);
    }
    Metrics::count(&state.metrics.breached_checks, "ok");
    Ok(())
}

fn unavailable(state: &AppState, why: &str) -> AppResult<()> {
    tracing::warn!(why, "breached-password check skipped: the range API did not answer");
    Metrics::count(&state.metrics.breached_checks, "unavailable");
    Ok(())
}
