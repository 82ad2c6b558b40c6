//! The account console's sessions. Signing in on a console page opens an ordinary Gatehouse
//! session (same rules, audit rows and revocation); the browser holds a random secret that
//! refers to it, stored only as its hash. Every console request reads the session row, so
//! a sign-out, a remediation or the session's expiry (`SESSION_MAX_AGE_SECONDS` caps it)
//! ends the console at once, on every instance. The console keeps a pending challenge's
//! id in a cookie, so it answers one only after checking it is the kind it expects.

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{lockout, token_hash};
use crate::{
    accounts::{models::Authenticated, repo},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, crypto},
    otp::{
        ChallengeType,
        challenges::{self, Response},
    },
};

/// Binds a new console secret to the session `session` (just opened by a sign-in) and
/// returns the secret for the cookie.
pub async fn open_console_session(state: &AppState, session: Uuid) -> AppResult<SecretString> {
    let secret = SecretString::from(crypto::random_token());
    if !repo::console::set_console_secret(&state.db, session, &token_hash(&secret)).await? {
        return Err(AppError::Unauthenticated);
    }
    Ok(secret)
}

/// The signed-in user of a console request: the live session whose secret is `secret`.
pub async fn console_user(state: &AppState, secret: &str) -> AppResult<AuthUser> {
    if secret.is_empty() || secret.len() > 128 {
        return Err(AppError::Unauthenticated);
    }
    let hash = token_hash(&SecretString::from(secret.to_owned()));
    let s = repo::console::console_session(&state.db, &hash).await?.ok_or(AppError::Unauthenticated)?;
    Ok(AuthUser {
        user_id: s.user_id,
        session_id: s.session_id,
        aal: u8::try_from(s.aal).unwrap_or(1),
        amr: s.amr,
        is_staff: s.is_staff,
        is_superuser: s.is_superuser,
        mfa_verified_at: s.mfa_verified_at,
        api_key: None,
    })
}

/// The console's step-up page asks for the password before the fresh factor: a wrong one
/// counts against the lockout like a failed sign-in (403 `PASSWORD_INCORRECT`).
pub async fn confirm_session_password(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    password: SecretString,
) -> AppResult<()> {
    if password.expose_secret().is_empty() {
        return Err(AppError::validation("password", "is required"));
    }
    let user = repo::users::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    lockout::confirm_password(state, client, &user, password).await
}

/// Which challenge a caller that keeps the id itself (the account console, in a cookie) may
/// answer: a login's (no session yet), or a step-up of the caller's own session.
#[derive(Debug, Clone, Copy)]
pub enum Expected<'a> {
    Login,
    StepUp(&'a AuthUser),
}

/// `verify`, once the challenge is the kind the caller expects (else 401
/// `CHALLENGE_EXPIRED`, the same answer as an unknown id): a console cannot be made to
/// answer another session's challenge, or a step-up as a login.
pub async fn verify_expected(
    state: &AppState,
    client: &ClientContext,
    challenge_id: Uuid,
    expected: Expected<'_>,
    response: Response,
    trust_device: bool,
) -> AppResult<Authenticated> {
    let mut conn = state.db.acquire().await?;
    let challenge = challenges::live(&mut conn, challenge_id).await?;
    drop(conn);
    let fits = match expected {
        Expected::Login => challenge.kind() == Some(ChallengeType::Login) && challenge.session_id.is_none(),
        Expected::StepUp(auth) => {
            challenge.kind() == Some(ChallengeType::StepUp)
                && challenge.user_id == auth.user_id
                && challenge.session_id == Some(auth.session_id)
        }
    };
    if !fits {
        return Err(AppError::ChallengeExpired);
    }
    super::challenges::verify(state, client, challenge_id, response, trust_device).await
}
