//! The account lockout (seed 000) that failed logins, failed second factors and wrong
//! current passwords all count against, and the per-IP limit.

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::session_event;
use crate::{
    accounts::{
        credentials,
        models::{DeviceSeen, UserRow},
        repo,
    },
    audit_log::{self, RiskLevel, SessionAction, SessionEvent},
    core::{AppError, AppResult, AppState, client::ClientContext},
};

/// Seed 000: MAX_LOGIN_ATTEMPTS and LOCKOUT_DURATION_MINUTES.
pub const MAX_FAILURES: i64 = 5;
pub const LOCKOUT: Duration = Duration::minutes(30);
/// Per client IP: this many failures within the window block the IP for the window.
pub const MAX_IP_FAILURES: i64 = 50;
pub const IP_WINDOW: Duration = Duration::minutes(15);

fn retry_after(until: DateTime<Utc>) -> u64 {
    (until - Utc::now()).num_seconds().max(1) as u64
}

/// The lockout in force for this attempt, if any: `Some(retry_after_secs)`.
pub(super) fn lockout(facts: &repo::attempts::LoginFacts) -> Option<u64> {
    let now = Utc::now();
    // The caller's own attempt is still pending, so it is not among these failures.
    if facts.ip_failures >= MAX_IP_FAILURES
        && let Some(last) = facts.ip_last
    {
        return Some(retry_after(last + IP_WINDOW));
    }
    match facts.identifier_last {
        Some(last) if facts.identifier_failures > MAX_FAILURES && last + LOCKOUT > now => {
            Some(retry_after(last + LOCKOUT))
        }
        _ => None,
    }
}

/// Whether `email`'s account is locked for an attempt made now (this one counted, as a
/// login's own pending attempt is): `Some(retry_after_secs)`. Takes the caller's executor,
/// so a request inside a transaction does not ask the pool for a second connection.
pub(super) async fn account_lock(db: impl PgExecutor<'_>, email: &str) -> AppResult<Option<u64>> {
    let (lockout_secs, ip_secs) = (LOCKOUT.num_seconds() as f64, IP_WINDOW.num_seconds() as f64);
    let mut facts = repo::attempts::login_facts(db, email, Uuid::nil(), None, lockout_secs, ip_secs, "", None).await?;
    facts.identifier_failures += 1;
    Ok(lockout(&facts))
}

/// Checks the current password of a signed-in action (change password, delete the
/// account, change MFA factors). A wrong one counts against the account's lockout like a
/// failed login, and a locked account is refused (429) before any hash is spent.
pub(super) async fn confirm_password(
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
    password: SecretString,
) -> AppResult<()> {
    if let Some(retry_after_secs) = account_lock(&state.db, &user.email).await? {
        return Err(AppError::RateLimited { retry_after_secs });
    }
    if credentials::verify(state, password, user.password_hash.clone()).await? {
        return Ok(());
    }
    let (ip, agent) = (client.ip_network(), client.user_agent.as_deref());
    repo::attempts::insert_failed_attempt(&state.db, &user.email, user.id, "wrong_current_password", ip, agent).await?;
    Err(AppError::PasswordIncorrect)
}

/// A known user whose first factor was not a password (a passkey, an identity provider),
/// admitted under the password login's rules: the attempt is reserved, then a locked
/// account or address (429) and a disabled account (403) are refused, each audited.
pub(super) struct Admitted {
    pub attempt: Uuid,
    pub device: DeviceSeen,
    pub facts: repo::attempts::LoginFacts,
}

/// `Ok(Err(refusal))` is a refusal whose writes (audit row, attempt) the caller commits
/// before returning it; `disabled_note` goes on a disabled account's audit row.
pub(super) async fn admit_known(
    tx: &mut PgConnection,
    client: &ClientContext,
    user: &UserRow,
    disabled_note: Option<serde_json::Value>,
) -> AppResult<Result<Admitted, AppError>> {
    let (ip, agent) = (client.ip_network(), client.user_agent.as_deref());
    let attempt = repo::attempts::reserve_attempt(&mut *tx, &user.email, ip, agent).await?;
    let device = DeviceSeen::of(client);
    let facts = repo::attempts::login_facts(
        &mut *tx,
        &user.email,
        attempt,
        ip,
        LOCKOUT.num_seconds() as f64,
        IP_WINDOW.num_seconds() as f64,
        &device.fingerprint_hash,
        client.country.as_deref(),
    )
    .await?;
    if let Some(retry) = lockout(&facts) {
        repo::attempts::delete_attempt(&mut *tx, attempt).await?;
        let event =
            SessionEvent { risk_level: RiskLevel::High, ..session_event(user.id, SessionAction::LoginLocked, client) };
        audit_log::record_session(&mut *tx, &event).await?;
        return Ok(Err(AppError::RateLimited { retry_after_secs: retry }));
    }
    if !user.is_active {
        repo::attempts::finish_attempt(&mut *tx, attempt, Some(user.id), "failure", Some("disabled")).await?;
        let event = SessionEvent {
            error_message: Some("account disabled".into()),
            metadata: disabled_note,
            ..session_event(user.id, SessionAction::LoginFailed, client)
        };
        audit_log::record_session(&mut *tx, &event).await?;
        return Ok(Err(AppError::AccountDisabled));
    }
    Ok(Ok(Admitted { attempt, device, facts }))
}
