//! The rules of accounts: registration, login with lockout, sessions and refresh-token
//! rotation, passwords, the signed-in user. Each function owns its transaction; audit rows
//! and queued emails commit with the change, and the outbox is woken after commit.

use chrono::{DateTime, Datelike, Duration, Utc};
use minijinja::context;
use secrecy::ExposeSecret;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{
    models::{Authenticated, Email, Me, Problems, Profile, SessionView, UpdateMeRequest, User, UserRow, Username},
    passwords, repo,
    repo::{NewRefresh, NewSession},
};
use crate::{
    audit_log::{self, Flags, Origin, RiskLevel, SessionAction, SessionEvent},
    core::{
        AppError, AppResult, AppState,
        auth::{self, AuthUser, Claims},
        client::ClientContext,
        crypto,
        error::constraint,
        metrics::Metrics,
    },
    notifications::{self, NotificationType},
};

/// Seed 000: MAX_LOGIN_ATTEMPTS and LOCKOUT_DURATION_MINUTES.
pub const MAX_FAILURES: i64 = 5;
pub const LOCKOUT: Duration = Duration::minutes(30);
/// Per client IP: this many failures within the window block the IP for the window.
pub const MAX_IP_FAILURES: i64 = 50;
pub const IP_WINDOW: Duration = Duration::minutes(15);
/// Password history depth: a new password may not match any of these.
pub const PASSWORD_HISTORY: i64 = 5;
pub const VERIFY_TOKEN_TTL: Duration = Duration::hours(24);
pub const RESET_TOKEN_TTL: Duration = Duration::hours(1);

const PURPOSE_VERIFY: &str = "email_verification";
const PURPOSE_RESET: &str = "password_reset";

fn origin(client: &ClientContext) -> Origin {
    Origin { ip: client.ip_network(), country: client.country.clone(), city: client.city.clone() }
}

fn session_event(user: Uuid, action: SessionAction, client: &ClientContext) -> SessionEvent {
    SessionEvent { origin: origin(client), ..SessionEvent::new(user, action) }
}

async fn account_event(
    db: &mut PgConnection,
    user: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
    client: &ClientContext,
) -> sqlx::Result<()> {
    repo::insert_account_event(db, user, action, details, client.ip_network(), client.user_agent.as_deref()).await
}

fn link(state: &AppState, path: &str, token: &str) -> String {
    format!("{}/{path}?token={token}", state.config.public_base_url)
}

// Registration and email verification.

pub struct Registration {
    pub email: String,
    pub username: String,
    pub password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Checks every field at once, so the client sees all problems in one 422.
fn parse_registration(r: &Registration) -> AppResult<(Email, Username, String, String)> {
    let mut problems = Problems::default();
    let email = Email::parse(&r.email).map_err(|m| problems.add("email", m)).ok();
    let username = Username::parse(&r.username).map_err(|m| problems.add("username", m)).ok();
    let first = super::models::parse_name(r.first_name.as_deref().unwrap_or(""))
        .map_err(|m| problems.add("first_name", m))
        .ok();
    let last =
        super::models::parse_name(r.last_name.as_deref().unwrap_or("")).map_err(|m| problems.add("last_name", m)).ok();
    let mut context = vec![r.email.as_str(), r.username.as_str()];
    context.extend(r.first_name.as_deref());
    context.extend(r.last_name.as_deref());
    for p in passwords::policy_problems(&r.password, &context) {
        problems.add("password", p);
    }
    problems.into_result()?;
    match (email, username, first, last) {
        (Some(e), Some(u), Some(f), Some(l)) => Ok((e, u, f, l)),
        _ => Err(AppError::internal("registration parsed without problems but incomplete")),
    }
}

async fn create_user(
    tx: &mut PgConnection,
    email: &Email,
    username: &Username,
    hash: &str,
    first: &str,
    last: &str,
) -> AppResult<UserRow> {
    // The unique constraints decide, not a check-then-insert that two requests could race.
    let user =
        repo::insert_user(&mut *tx, email.as_str(), username.as_str(), hash, first, last).await.map_err(|e| {
            match constraint(&e) {
                Some("auth_user_email_key") => AppError::Conflict {
                    code: "EMAIL_TAKEN",
                    field: "email",
                    message: "An account with this email already exists.",
                },
                Some("auth_user_username_key") => {
                    AppError::Conflict { code: "USERNAME_TAKEN", field: "username", message: "This username is taken." }
                }
                _ => e.into(),
            }
        })?;
    repo::insert_profile(&mut *tx, user.id).await?;
    repo::insert_password_history(&mut *tx, user.id, hash, "user", "initial").await?;
    Ok(user)
}

pub async fn register(state: &AppState, client: &ClientContext, r: Registration) -> AppResult<User> {
    let (email, username, first, last) = parse_registration(&r)?;
    let hash = passwords::hash(state, r.password).await?;
    let mut tx = state.db.begin().await?;
    let user = create_user(&mut tx, &email, &username, &hash, &first, &last).await?;
    queue_verification(&mut tx, state, client, &user).await?;
    account_event(&mut tx, Some(user.id), "registered", serde_json::json!({}), client).await?;
    audit_log::record_session(&mut *tx, &session_event(user.id, SessionAction::Registered, client)).await?;
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    Ok(user.into())
}

async fn queue_verification(
    tx: &mut PgConnection,
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
) -> AppResult<()> {
    let token = crypto::random_token();
    let expires = Utc::now() + VERIFY_TOKEN_TTL;
    repo::revoke_one_time_tokens(&mut *tx, user.id, PURPOSE_VERIFY).await?;
    repo::insert_one_time_token(
        &mut *tx,
        user.id,
        PURPOSE_VERIFY,
        &crypto::sha256_hex(&token),
        expires,
        client.ip_network(),
        client.user_agent.as_deref(),
    )
    .await?;
    let link = link(state, "verify-email", &token);
    notifications::enqueue_email(
        tx,
        user.id,
        &user.email,
        NotificationType::EmailVerification,
        context! { username => user.username, link },
    )
    .await?;
    Ok(())
}

pub async fn verify_email(state: &AppState, client: &ClientContext, token: &str) -> AppResult<User> {
    let mut tx = state.db.begin().await?;
    let user_id = repo::consume_one_time_token(&mut *tx, &crypto::sha256_hex(token), PURPOSE_VERIFY)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    repo::set_email_verified(&mut *tx, user_id).await?;
    account_event(&mut tx, Some(user_id), "email_verified", serde_json::json!({}), client).await?;
    audit_log::record_session(&mut *tx, &session_event(user_id, SessionAction::EmailVerified, client)).await?;
    let user = repo::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    tx.commit().await?;
    Ok(user.into())
}

/// Sends a fresh verification link (older ones die); nothing to do once verified.
pub async fn resend_verification(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = repo::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    if user.email_verified {
        return Ok(());
    }
    queue_verification(&mut tx, state, client, &user).await?;
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

// Login, with lockout per identifier and per IP.

fn retry_after(until: DateTime<Utc>) -> u64 {
    (until - Utc::now()).num_seconds().max(1) as u64
}

/// The lockout in force for this attempt, if any: `Some(retry_after_secs)`.
fn lockout(facts: &repo::LoginFacts) -> Option<u64> {
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

/// Password login. The same 401 body, and comparable work, whether or not the account
/// exists. Every attempt is written before its password is checked, so concurrent
/// guesses count against the lock as they happen; a refused attempt is removed again so
/// it does not extend the lock.
pub async fn login(
    state: &AppState,
    client: &ClientContext,
    email: &str,
    password: String,
) -> AppResult<Authenticated> {
    let identifier: String = email.trim().to_lowercase().chars().take(255).collect();
    let attempt =
        repo::reserve_attempt(&state.db, &identifier, client.ip_network(), client.user_agent.as_deref()).await?;

    let facts = repo::login_facts(
        &state.db,
        &identifier,
        attempt,
        client.ip_network(),
        LOCKOUT.num_seconds() as f64,
        IP_WINDOW.num_seconds() as f64,
    )
    .await?;
    if let Some(retry) = lockout(&facts) {
        repo::delete_attempt(&state.db, attempt).await?;
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

    let user = facts.user;
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => passwords::dummy_hash(state).await?,
    };
    let password_ok = passwords::verify(state, password, hash).await?;
    let user = match user {
        Some(u) if password_ok => u,
        other => {
            let mut tx = state.db.begin().await?;
            let user_id = other.as_ref().map(|u| u.id);
            let reason = if user_id.is_some() { "bad_password" } else { "unknown_user" };
            repo::finish_attempt(&mut *tx, attempt, user_id, "failure", Some(reason)).await?;
            if let Some(id) = user_id {
                let event = SessionEvent {
                    risk_level: RiskLevel::Medium,
                    ..session_event(id, SessionAction::LoginFailed, client)
                };
                audit_log::record_session(&mut *tx, &event).await?;
            }
            tx.commit().await?;
            Metrics::count(&state.metrics.logins, "invalid_credentials");
            return Err(AppError::InvalidCredentials);
        }
    };
    if !user.is_active {
        let mut tx = state.db.begin().await?;
        repo::finish_attempt(&mut *tx, attempt, Some(user.id), "failure", Some("disabled")).await?;
        let event = SessionEvent {
            error_message: Some("account disabled".into()),
            ..session_event(user.id, SessionAction::LoginFailed, client)
        };
        audit_log::record_session(&mut *tx, &event).await?;
        tx.commit().await?;
        Metrics::count(&state.metrics.logins, "disabled");
        return Err(AppError::AccountDisabled);
    }

    // The second-factor step plugs in here: when the user has MFA on and the device is not
    // trusted to skip it, the otp app opens a challenge instead of a session, and the MFA
    // verification later calls `start_session` with aal 2.
    let authenticated =
        start_session(&state.db, state, client, user, Some(attempt), 1, vec!["pwd".to_owned()], None).await?;
    Metrics::count(&state.metrics.logins, "success");
    Ok(authenticated)
}

/// Opens a session with its first refresh token, records the login and signs the access
/// token; settles the password attempt when given. The writes are one statement, so `db`
/// is the pool for password login or the caller's transaction for MFA (aal 2), which
/// consumes its challenge in the same commit.
#[allow(clippy::too_many_arguments)]
pub async fn start_session(
    db: impl PgExecutor<'_>,
    state: &AppState,
    client: &ClientContext,
    user: UserRow,
    attempt: Option<Uuid>,
    aal: u8,
    amr: Vec<String>,
    mfa_method: Option<&str>,
) -> AppResult<Authenticated> {
    let now = Utc::now();
    let session_id = Uuid::now_v7();
    let access_jti = Uuid::new_v4().to_string();
    let refresh_token = crypto::random_token();
    let refresh_jti = crypto::sha256_hex(&refresh_token);
    let expires_at = now + refresh_ttl(state);
    let session = NewSession {
        id: session_id,
        user_id: user.id,
        device_id: None,
        access_jti: &access_jti,
        refresh_jti: &refresh_jti,
        ip: client.ip_network(),
        user_agent: client.user_agent.as_deref(),
        country: client.country.as_deref(),
        city: client.city.as_deref(),
        expires_at,
        aal: i16::from(aal),
        amr: &amr,
        mfa_method,
        created_at: now,
    };
    let first = NewRefresh {
        user_id: user.id,
        session_id,
        jti: &refresh_jti,
        family_id: Uuid::now_v7(),
        parent_jti: None,
        created_at: now,
        expires_at,
    };
    let event = SessionEvent {
        session_id: Some(session_id),
        session_type: Some("web".into()),
        mfa_verified: Some(aal == 2),
        mfa_method: mfa_method.map(str::to_owned),
        ..session_event(user.id, SessionAction::Login, client)
    };
    repo::open_session(db, &session, &first, attempt, &event).await?;
    let claims = Claims::new(user.id, session_id, access_jti, now, access_ttl(state), aal, amr);
    let mut user = user;
    user.last_login = Some(now);
    authenticated(state, &claims, refresh_token, user.into())
}

fn access_ttl(state: &AppState) -> i64 {
    state.config.access_token_ttl.as_secs() as i64
}

fn refresh_ttl(state: &AppState) -> Duration {
    Duration::seconds(state.config.refresh_token_ttl.as_secs() as i64)
}

fn authenticated(state: &AppState, claims: &Claims, refresh_token: String, user: User) -> AppResult<Authenticated> {
    Ok(Authenticated {
        status: "authenticated",
        access_token: auth::sign(&state.keys, claims)?,
        refresh_token,
        token_type: "Bearer",
        expires_in: claims.exp - claims.iat,
        session_id: claims.sid,
        user,
    })
}

/// The child of a refresh token: derived, not random, so a parallel double-submit within
/// the leeway can be answered with the very same pair without storing any token.
fn child_token(state: &AppState, parent: &str) -> String {
    crypto::keyed_token(state.config.encryption_key().expose_secret(), &format!("refresh-child:{parent}"))
}

// Refresh-token rotation with reuse detection.

pub async fn refresh(state: &AppState, client: &ClientContext, token: &str) -> AppResult<Authenticated> {
    let jti = crypto::sha256_hex(token);
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    // FOR UPDATE: concurrent refreshes of one token queue here; the first rotates it and
    // every later one finds it rotated.
    let record = repo::lock_refresh(&mut *tx, &jti).await?.ok_or(AppError::RefreshTokenInvalid)?;
    let user = repo::user_by_id(&mut *tx, record.user_id).await?.ok_or(AppError::RefreshTokenInvalid)?;

    if let Some(rotated_at) = record.rotated_at {
        let leeway = Duration::seconds(state.config.refresh_reuse_leeway.as_secs() as i64);
        let replay =
            !leeway.is_zero() && now - rotated_at <= leeway && record.revoked_at.is_none() && record.session_active;
        if replay {
            // The same pair as the rotation returned: same child token, same claims.
            let claims = Claims::new(
                user.id,
                record.session_id,
                record.session_access_jti.clone(),
                rotated_at,
                access_ttl(state),
                u8::try_from(record.aal).unwrap_or(1),
                record.amr.clone(),
            );
            tx.commit().await?;
            return authenticated(state, &claims, child_token(state, token), user.into());
        }
        // Reuse of a rotated token: someone else holds this family. Kill it and its session.
        repo::revoke_family(&mut *tx, record.family_id, "reuse_detected").await?;
        repo::revoke_sessions(&mut tx, user.id, Some(record.session_id), None, "token_reused").await?;
        let event = SessionEvent {
            session_id: Some(record.session_id),
            risk_level: RiskLevel::High,
            flags: Flags {
                is_anomalous: true,
                anomaly_reasons: vec!["refresh_token_reuse".into()],
                requires_review: true,
            },
            ..session_event(user.id, SessionAction::TokenReused, client)
        };
        audit_log::record_session(&mut *tx, &event).await?;
        notifications::enqueue_email(
            &mut tx,
            user.id,
            &user.email,
            NotificationType::TokenReused,
            context! { username => user.username },
        )
        .await?;
        tx.commit().await?;
        state.outbox_wakeup.notify_one();
        return Err(AppError::TokenReused);
    }
    if !record.is_valid || record.expires_at <= now || !record.session_active || !user.is_active {
        return Err(AppError::RefreshTokenInvalid);
    }

    let child = child_token(state, token);
    let child_jti = crypto::sha256_hex(&child);
    let access_jti = Uuid::new_v4().to_string();
    let expires_at = now + refresh_ttl(state);
    repo::mark_rotated(&mut *tx, &jti, now).await?;
    let child_record = NewRefresh {
        user_id: user.id,
        session_id: record.session_id,
        jti: &child_jti,
        family_id: record.family_id,
        parent_jti: Some(&jti),
        created_at: now,
        expires_at,
    };
    repo::insert_refresh(&mut *tx, &child_record).await?;
    repo::update_session_tokens(&mut *tx, record.session_id, &access_jti, &child_jti, expires_at).await?;
    let event =
        SessionEvent { session_id: Some(record.session_id), ..session_event(user.id, SessionAction::Refresh, client) };
    audit_log::record_session(&mut *tx, &event).await?;
    tx.commit().await?;
    let aal = u8::try_from(record.aal).unwrap_or(1);
    let claims = Claims::new(user.id, record.session_id, access_jti, now, access_ttl(state), aal, record.amr);
    authenticated(state, &claims, child, user.into())
}

// Sessions.

async fn revoke(
    state: &AppState,
    client: &ClientContext,
    user: Uuid,
    only: Option<Uuid>,
    except: Option<Uuid>,
    action: SessionAction,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let mut tx = state.db.begin().await?;
    let revoked = repo::revoke_sessions(&mut tx, user, only, except, reason).await?;
    for id in &revoked {
        let event = SessionEvent { session_id: Some(*id), ..session_event(user, action, client) };
        audit_log::record_session(&mut *tx, &event).await?;
    }
    tx.commit().await?;
    Ok(revoked)
}

pub async fn logout(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<()> {
    revoke(state, client, auth.user_id, Some(auth.session_id), None, SessionAction::Logout, "logout").await?;
    Ok(())
}

pub async fn logout_all(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<()> {
    revoke(state, client, auth.user_id, None, None, SessionAction::LogoutAll, "logout_all").await?;
    Ok(())
}

pub async fn sessions(state: &AppState, auth: &AuthUser) -> AppResult<Vec<SessionView>> {
    Ok(repo::active_sessions(&state.db, auth.user_id, auth.session_id).await?)
}

/// Revokes one of the caller's own sessions; anyone else's is "not found".
pub async fn revoke_session(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<()> {
    let revoked =
        revoke(state, client, auth.user_id, Some(id), None, SessionAction::SessionRevoked, "revoked_by_user").await?;
    if revoked.is_empty() { Err(AppError::NotFound) } else { Ok(()) }
}

// Passwords.

async fn check_not_reused(state: &AppState, tx: &mut PgConnection, user: Uuid, password: &str) -> AppResult<()> {
    let recent = repo::recent_password_hashes(&mut *tx, user, PASSWORD_HISTORY).await?;
    if passwords::matches_any(state, password.to_owned(), recent).await? {
        return Err(AppError::PasswordReused);
    }
    Ok(())
}

fn policy(password: &str, user: &UserRow) -> AppResult<()> {
    let context = [user.email.as_str(), user.username.as_str(), user.first_name.as_str(), user.last_name.as_str()];
    let mut problems = Problems::default();
    for p in passwords::policy_problems(password, &context) {
        problems.add("new_password", p);
    }
    problems.into_result()
}

/// Changes the password; every other session of the user is revoked.
pub async fn change_password(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    current: String,
    new: String,
) -> AppResult<()> {
    let user = repo::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    if !passwords::verify(state, current, user.password_hash.clone()).await? {
        return Err(AppError::PasswordIncorrect);
    }
    policy(&new, &user)?;
    let mut tx = state.db.begin().await?;
    check_not_reused(state, &mut tx, user.id, &new).await?;
    let hash = passwords::hash(state, new).await?;
    repo::set_password(&mut *tx, user.id, &hash).await?;
    repo::insert_password_history(&mut *tx, user.id, &hash, "user", "change").await?;
    repo::revoke_sessions(&mut tx, user.id, None, Some(auth.session_id), "password_changed").await?;
    account_event(&mut tx, Some(user.id), "password_changed", serde_json::json!({}), client).await?;
    let event = SessionEvent {
        session_id: Some(auth.session_id),
        ..session_event(user.id, SessionAction::PasswordChanged, client)
    };
    audit_log::record_session(&mut *tx, &event).await?;
    // An alert, not a security message: the user's preferences decide whether it goes.
    let username = user.username.clone();
    notifications::enqueue_email(
        &mut tx,
        user.id,
        &user.email,
        NotificationType::PasswordChanged,
        context! { username },
    )
    .await?;
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// Queues a reset link when an active account has this email; silent otherwise.
pub async fn request_password_reset(state: &AppState, client: &ClientContext, email: &str) -> AppResult<()> {
    let Ok(email) = Email::parse(email) else { return Ok(()) };
    let mut tx = state.db.begin().await?;
    let Some(user) = repo::user_by_email(&mut *tx, email.as_str()).await?.filter(|u| u.is_active) else {
        return Ok(());
    };
    let token = crypto::random_token();
    repo::revoke_one_time_tokens(&mut *tx, user.id, PURPOSE_RESET).await?;
    repo::insert_one_time_token(
        &mut *tx,
        user.id,
        PURPOSE_RESET,
        &crypto::sha256_hex(&token),
        Utc::now() + RESET_TOKEN_TTL,
        client.ip_network(),
        client.user_agent.as_deref(),
    )
    .await?;
    let link = link(state, "reset-password", &token);
    notifications::enqueue_email(
        &mut tx,
        user.id,
        &user.email,
        NotificationType::PasswordReset,
        context! { username => user.username, link },
    )
    .await?;
    account_event(&mut tx, Some(user.id), "password_reset_requested", serde_json::json!({}), client).await?;
    tx.commit().await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// Sets a new password from a reset token (single use); every session is revoked. The
/// token is consumed only if the whole change commits.
pub async fn confirm_password_reset(
    state: &AppState,
    client: &ClientContext,
    token: &str,
    new: String,
) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user_id = repo::consume_one_time_token(&mut *tx, &crypto::sha256_hex(token), PURPOSE_RESET)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    let user = repo::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::TokenInvalid)?;
    policy(&new, &user)?;
    check_not_reused(state, &mut tx, user.id, &new).await?;
    let hash = passwords::hash(state, new).await?;
    repo::set_password(&mut *tx, user.id, &hash).await?;
    repo::insert_password_history(&mut *tx, user.id, &hash, "user", "reset").await?;
    repo::revoke_sessions(&mut tx, user.id, None, None, "password_reset").await?;
    account_event(&mut tx, Some(user.id), "password_reset", serde_json::json!({}), client).await?;
    audit_log::record_session(&mut *tx, &session_event(user.id, SessionAction::PasswordReset, client)).await?;
    tx.commit().await?;
    Ok(())
}

// The signed-in user.

pub async fn me(state: &AppState, auth: &AuthUser) -> AppResult<Me> {
    let user = repo::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let profile = repo::profile(&state.db, auth.user_id).await?;
    Ok(Me { user: user.into(), profile })
}

fn valid_phone(p: &str) -> bool {
    p.len() <= 16
        && p.starts_with('+')
        && p[1..].bytes().all(|b| b.is_ascii_digit())
        && p.len() >= 3
        && !p[1..].starts_with('0')
}

/// BCP 47 shape: a 2-3 letter language, then subtags of 1-8 letters or digits.
fn valid_language(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let lang_ok =
        parts.next().is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic()));
    lang_ok
        && tag.len() <= 35
        && parts.all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn apply_profile(
    profile: &mut Profile,
    patch: super::models::ProfilePatch,
    problems: &mut Problems,
) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let text = |value: Option<Option<String>>, field: &'static str, max: usize, problems: &mut Problems| {
        value.map(|v| {
            let v = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
            if v.as_ref().is_some_and(|s| s.chars().count() > max) {
                problems.add(field, format!("must be at most {max} characters"));
            }
            v
        })
    };
    if let Some(v) = text(patch.phone_number, "phone_number", 16, problems) {
        if v.as_deref().is_some_and(|p| !valid_phone(p)) {
            problems.add("phone_number", "must be an E.164 number such as +15551234567");
        }
        profile.phone_number = v;
        changed.push("phone_number");
    }
    if let Some(v) = patch.date_of_birth {
        match v.as_deref().map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")) {
            None => profile.date_of_birth = None,
            Some(Ok(d)) if d <= Utc::now().date_naive() && d.year_ce().1 >= 1900 => profile.date_of_birth = Some(d),
            Some(_) => problems.add("date_of_birth", "must be a past date, YYYY-MM-DD"),
        }
        changed.push("date_of_birth");
    }
    for (value, field, max, slot) in [
        (patch.address, "address", 1000, &mut profile.address),
        (patch.city, "city", 100, &mut profile.city),
        (patch.state, "state", 100, &mut profile.state),
        (patch.country, "country", 100, &mut profile.country),
        (patch.postal_code, "postal_code", 20, &mut profile.postal_code),
    ] {
        if let Some(v) = text(value, field, max, problems) {
            *slot = v;
            changed.push(field);
        }
    }
    if let Some(tz) = patch.timezone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            problems.add("timezone", "must be an IANA time zone such as Europe/Paris");
        }
        profile.timezone = tz;
        changed.push("timezone");
    }
    if let Some(lang) = patch.language {
        if !valid_language(&lang) {
            problems.add("language", "must be a BCP 47 language tag such as en or pt-BR");
        }
        profile.language = lang;
        changed.push("language");
    }
    if let Some(m) = patch.preferred_mfa_method {
        if m.as_deref().is_some_and(|m| !["totp", "email", "sms"].contains(&m)) {
            problems.add("preferred_mfa_method", "must be totp, email or sms");
        }
        profile.preferred_mfa_method = m;
        changed.push("preferred_mfa_method");
    }
    changed
}

pub async fn update_me(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    req: UpdateMeRequest,
) -> AppResult<Me> {
    let mut tx = state.db.begin().await?;
    let user = repo::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let mut profile = repo::profile(&mut *tx, auth.user_id).await?;
    let mut problems = Problems::default();
    let mut changed: Vec<&str> = Vec::new();
    let mut first = user.first_name.clone();
    let mut last = user.last_name.clone();
    if let Some(f) = req.first_name {
        first = super::models::parse_name(&f).map_err(|m| problems.add("first_name", m)).unwrap_or_default();
        changed.push("first_name");
    }
    if let Some(l) = req.last_name {
        last = super::models::parse_name(&l).map_err(|m| problems.add("last_name", m)).unwrap_or_default();
        changed.push("last_name");
    }
    if let Some(p) = req.profile {
        changed.extend(apply_profile(&mut profile, p, &mut problems));
    }
    problems.into_result()?;
    repo::set_names(&mut *tx, user.id, &first, &last).await?;
    repo::save_profile(&mut *tx, user.id, &profile).await?;
    // Field names only: the audit trail holds no personal data.
    account_event(&mut tx, Some(user.id), "profile_updated", serde_json::json!({ "fields": changed }), client).await?;
    let user = repo::user_by_id(&mut *tx, user.id).await?.ok_or(AppError::Unauthenticated)?;
    tx.commit().await?;
    Ok(Me { user: user.into(), profile })
}

/// Deletes the account and, by cascade, everything of it. The record of the deletion
/// stays in accounts_auditlog (its user_id set to null).
pub async fn delete_me(state: &AppState, client: &ClientContext, auth: &AuthUser, password: String) -> AppResult<()> {
    let user = repo::user_by_id(&state.db, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    if !passwords::verify(state, password, user.password_hash.clone()).await? {
        return Err(AppError::PasswordIncorrect);
    }
    let mut tx = state.db.begin().await?;
    account_event(&mut tx, Some(user.id), "deleted", serde_json::json!({ "user_id": user.id }), client).await?;
    repo::delete_user(&mut *tx, user.id).await?;
    tx.commit().await?;
    Ok(())
}

/// `gatehouse createsuperuser`: a verified staff superuser.
pub async fn create_superuser(state: &AppState, email: &str, username: &str, password: String) -> AppResult<User> {
    let registration = Registration {
        email: email.to_owned(),
        username: username.to_owned(),
        password: password.clone(),
        first_name: None,
        last_name: None,
    };
    let (email, username, first, last) = parse_registration(&registration)?;
    let hash = passwords::hash(state, password).await?;
    let mut tx = state.db.begin().await?;
    let user = create_user(&mut tx, &email, &username, &hash, &first, &last).await?;
    repo::make_superuser(&mut *tx, user.id).await?;
    account_event(&mut tx, Some(user.id), "superuser_created", serde_json::json!({}), &ClientContext::default())
        .await?;
    let user = repo::user_by_id(&mut *tx, user.id).await?.ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(user.into())
}

// Administration of one user (API.md "Administration"); the caller's permission is checked
// by the handler.

/// Lifts a login lock: an `unlock` row restarts the identifier's failure count.
pub async fn admin_unlock(state: &AppState, client: &ClientContext, admin: &AuthUser, user_id: Uuid) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let user = repo::user_by_id(&mut *tx, user_id).await?.ok_or(AppError::NotFound)?;
    repo::insert_unlock(&mut *tx, &user.email, user.id).await?;
    let details = serde_json::json!({ "by": admin.user_id });
    account_event(&mut tx, Some(user.id), "unlocked", details.clone(), client).await?;
    let event =
        SessionEvent { metadata: Some(details), ..session_event(user.id, SessionAction::AccountUnlocked, client) };
    audit_log::record_session(&mut *tx, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes every session of a user.
pub async fn admin_logout_all(
    state: &AppState,
    client: &ClientContext,
    admin: &AuthUser,
    user_id: Uuid,
) -> AppResult<usize> {
    if repo::user_by_id(&state.db, user_id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let revoked = revoke(state, client, user_id, None, None, SessionAction::SessionRevoked, "revoked_by_admin").await?;
    let mut tx = state.db.begin().await?;
    account_event(
        &mut tx,
        Some(user_id),
        "sessions_revoked",
        serde_json::json!({ "by": admin.user_id, "count": revoked.len() }),
        client,
    )
    .await?;
    tx.commit().await?;
    Ok(revoked.len())
}
