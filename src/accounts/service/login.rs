//! Password login, with lockout per identifier and per IP.

use secrecy::SecretString;

use super::{
    challenges::{FirstFactor, FirstStep, second_step},
    devices,
    lockout::{IP_WINDOW, LOCKOUT, lockout},
    session_event,
    sessions::NewSession,
};
use crate::{
    accounts::{
        credentials,
        models::{DeviceSeen, LoginIdentifier, LoginResponse},
        repo,
    },
    audit_log::{self, RiskLevel, SessionAction, SessionEvent},
    core::{AppError, AppResult, AppState, client::ClientContext, metrics::Metrics},
};

/// Password login. The same 401 body, and comparable work, whether or not the account
/// exists. Every attempt is written before its password is checked, so concurrent
/// guesses count against the lock as they happen; a refused attempt is removed again so
/// it does not extend the lock. An account with MFA on gets a challenge instead of
/// tokens (see `challenges`).
// A debug span: at the default level a span per login (made, entered at every poll) is
// work for nothing; the request id already ties the login's lines together.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn login(
    state: &AppState,
    client: &ClientContext,
    identifier: LoginIdentifier,
    password: SecretString,
) -> AppResult<LoginResponse> {
    let identifier = identifier.as_str();
    let attempt =
        repo::attempts::reserve_attempt(&state.db, identifier, client.ip_network(), client.user_agent.as_deref())
            .await?;

    let device = DeviceSeen::of(client);
    let mut facts = repo::attempts::login_facts(
        &state.db,
        identifier,
        attempt,
        client.ip_network(),
        LOCKOUT.num_seconds() as f64,
        IP_WINDOW.num_seconds() as f64,
        &device.fingerprint_hash,
        client.country.as_deref(),
    )
    .await?;
    if let Some(retry) = lockout(&facts) {
        repo::attempts::delete_attempt(&state.db, attempt).await?;
        if let Some(user) = &facts.user {
            let event = SessionEvent {
                risk_level: RiskLevel::High,
                ..session_event(user.id, SessionAction::LoginLocked, client)
            };
            audit_log::record_session(&state.db, &event).await?;
        }
        Metrics::count(&state.metrics.logins, "locked");
        return Err(AppError::RateLimited { retry_after_secs: retry });
    }

    let user = facts.user.take();
    let checked = async {
        let hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => credentials::dummy_hash(state).await?,
        };
        credentials::verify(state, password, hash).await
    };
    let password_ok = match checked.await {
        // Shed by a full hash queue: the guess was never checked, so it must not count.
        Err(shed @ AppError::Unavailable { .. }) => {
            repo::attempts::delete_attempt(&state.db, attempt).await?;
            Metrics::count(&state.metrics.logins, "shed");
            return Err(shed);
        }
        other => other?,
    };
    let user = match user {
        Some(u) if password_ok => u,
        other => {
            let mut tx = crate::core::db::begin(&state.db).await?;
            let user_id = other.as_ref().map(|u| u.id);
            let reason = if user_id.is_some() { "bad_password" } else { "unknown_user" };
            repo::attempts::finish_attempt(&mut *tx, attempt, user_id, "failure", Some(reason)).await?;
            if let Some(id) = user_id {
                let event = SessionEvent {
                    risk_level: RiskLevel::Medium,
                    ..session_event(id, SessionAction::LoginFailed, client)
                };
                audit_log::record_session(&mut *tx, &event).await?;
            }
            crate::core::db::commit(tx).await?;
            Metrics::count(&state.metrics.logins, "invalid_credentials");
            return Err(AppError::InvalidCredentials);
        }
    };
    if !user.is_active {
        let mut tx = crate::core::db::begin(&state.db).await?;
        repo::attempts::finish_attempt(&mut *tx, attempt, Some(user.id), "failure", Some("disabled")).await?;
        let event = SessionEvent {
            error_message: Some("account disabled".into()),
            ..session_event(user.id, SessionAction::LoginFailed, client)
        };
        audit_log::record_session(&mut *tx, &event).await?;
        crate::core::db::commit(tx).await?;
        Metrics::count(&state.metrics.logins, "disabled");
        return Err(AppError::AccountDisabled);
    }

    let risk = devices::assess(client, &device, &facts);
    if user.mfa_enabled {
        let step = FirstStep { attempt, device, risk, factor: FirstFactor::Password };
        return second_step(state, client, user, step, &facts.history).await;
    }
    let session = NewSession::password(user, client, attempt, device, risk);
    let authenticated = devices::open_and_alert(state, session, facts.history.device_known).await?;
    Metrics::count(&state.metrics.logins, "success");
    Ok(LoginResponse::Authenticated(authenticated))
}
