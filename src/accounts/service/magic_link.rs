//! Magic links (seed 000's MAGIC_LINK_EXPIRE_MINUTES): a sign-in link emailed to the
//! account's address, single use, five minutes, stored hashed like every one-time token.
//! Redeeming it is a login under the password login's rules (lockout, disabled accounts,
//! risk, new-device notice) with `amr` `["email"]`; an account with MFA on still answers
//! its second factor. Off unless `MAGIC_LINK_ENABLED`.

use chrono::Duration;
use secrecy::{ExposeSecret, SecretString};

use super::{
    challenges::{FirstFactor, FirstStep, second_step},
    devices,
    lockout::{Admitted, admit_known},
    mail_link,
    sessions::NewSession,
    token_hash,
};
use crate::{
    accounts::{models::LoginResponse, repo},
    core::{AppError, AppResult, AppState, client::ClientContext, metrics::Metrics, ratelimit::Action, types::Email},
    notifications::Message,
};

/// Seed 000: MAGIC_LINK_EXPIRE_MINUTES.
pub const MAGIC_LINK_TTL: Duration = Duration::minutes(5);
/// Links to one account: at most one a minute and this many an hour (as reset links).
pub const MAGIC_LINKS_PER_HOUR: i64 = 3;
pub(super) const PURPOSE_MAGIC: &str = "magic_link";

fn enabled(state: &AppState) -> AppResult<()> {
    if state.config.magic_link_enabled { Ok(()) } else { Err(AppError::NotFound) }
}

/// `POST /auth/magic-link`: answers at once and the same for every address (202); the
/// lookup, the per-account caps and the mail happen after the answer, as for a reset.
pub async fn request_magic_link(state: &AppState, client: &ClientContext, email: Email) -> AppResult<()> {
    enabled(state)?;
    state.limits.check(Action::PasswordReset, client.ip)?;
    let (state2, client) = (state.clone(), client.clone());
    state.spawn_bounded(async move {
        if let Err(e) = issue(&state2, &client, &email).await {
            tracing::warn!(error = %e, "magic link not issued");
        }
    })
}

/// The emailed link: `MAGIC_LINK_URL` with the token in place of `{token}`, or the
/// service's own page.
fn magic_link(state: &AppState, token: &SecretString) -> String {
    match &state.config.magic_link_url {
        Some(template) => template.replace("{token}", token.expose_secret()),
        None => super::link(state, "magic-link", token),
    }
}

async fn issue(state: &AppState, client: &ClientContext, email: &Email) -> AppResult<()> {
    let url = |token: &SecretString| magic_link(state, token);
    let message = |username, link| Message::MagicLink { username, link };
    mail_link(state, client, email, (PURPOSE_MAGIC, MAGIC_LINK_TTL, MAGIC_LINKS_PER_HOUR), url, message).await
}

/// `POST /auth/magic-link/confirm`: uses the token (one UPDATE: of concurrent uses exactly
/// one wins; unknown, used, revoked or expired: 400 `TOKEN_INVALID`) and signs in.
#[tracing::instrument(skip_all)]
pub async fn confirm_magic_link(
    state: &AppState,
    client: &ClientContext,
    token: SecretString,
) -> AppResult<LoginResponse> {
    enabled(state)?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user_id = repo::one_time_tokens::consume_one_time_token(&mut *tx, &token_hash(&token), PURPOSE_MAGIC)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    let user = repo::users::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    let admitted = admit_known(&mut tx, client, &user, Some(serde_json::json!({ "via": "magic_link" }))).await?;
    // Committed either way: the token is spent, with the reserved attempt or the refusal's
    // audit row.
    crate::core::db::commit(tx).await?;
    let Admitted { attempt, device, facts } = admitted?;
    let risk = devices::assess(client, &device, &facts);
    if user.mfa_enabled {
        let step = FirstStep { attempt, device, risk, factor: FirstFactor::Email };
        return second_step(state, client, user, step, &facts.history).await;
    }
    let session = NewSession {
        amr: vec![FirstFactor::Email.amr().to_owned()],
        audit_note: Some(serde_json::json!({ "via": "magic_link" })),
        ..NewSession::password(user, client, attempt, device, risk)
    };
    let authenticated = devices::open_and_alert(state, session, facts.history.device_known).await?;
    Metrics::count(&state.metrics.logins, "success_magic_link");
    Ok(LoginResponse::Authenticated(authenticated))
}
