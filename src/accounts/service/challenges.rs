//! The second step: a login (or a step-up) of an account with MFA on opens a challenge,
//! which otp answers (`otp::challenges::answer`: how each factor is checked is otp's). A
//! right answer opens the session (aal 2) or raises it, in the challenge's transaction; a
//! wrong one costs the challenge an attempt (otp) and counts against the account's lockout
//! (here), so fresh challenges cannot be farmed for guesses.

use chrono::{Duration, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    access_ttl, authenticated, devices,
    lockout::account_lock,
    origin, refresh_ttl,
    sessions::{NewSession, start_session},
    token_hash,
};
use crate::{
    accounts::{
        models::{Authenticated, DeviceSeen, Email, LoginResponse, MfaRequired, UserRow},
        repo::{self, attempts::History, sessions::NewRefreshRow},
        risk::{self, Assessment},
    },
    audit_log::{self, LinkAction, LinkEvent, MfaAction, MfaEvent, RiskLevel},
    core::{
        AppError, AppResult, AppState,
        auth::{AuthUser, Claims},
        client::ClientContext,
        crypto,
        error::Conflict,
        metrics::Metrics,
        ratelimit::Action,
        types::Phone,
    },
    notifications::Recipient,
    otp::{
        self, Challenge, ChallengeType, MfaMethod,
        challenges::{self, Answer, Response},
        service::{CHALLENGE_TTL, CodePurpose},
    },
};

/// How long `trust_device: true` lets a device skip MFA.
pub const TRUST_DAYS: i64 = 30;

/// An MFA audit event about `user`, from where the request came.
pub(super) fn mfa_event(user: Uuid, action: MfaAction, client: &ClientContext) -> MfaEvent {
    MfaEvent { origin: origin(client), ..MfaEvent::new(user, action) }
}

/// A login's first step, passed: its attempt row, the device, the risk found, and how.
pub(super) struct FirstStep {
    pub attempt: Uuid,
    pub device: DeviceSeen,
    pub risk: Assessment,
    pub factor: FirstFactor,
}

/// The first step passed and the account has MFA on: a device trusted to skip MFA gets
/// an aal 1 session (recorded as skipped) unless the login's risk is high; any other gets
/// a challenge, and the attempt stays `mfa_pending`, neither a success nor a failure for
/// the lockout. The challenge carries the risk and the first factor to the session it opens.
pub(super) async fn second_step(
    state: &AppState,
    client: &ClientContext,
    user: UserRow,
    step: FirstStep,
    history: &History,
) -> AppResult<LoginResponse> {
    let FirstStep { attempt, device, risk, factor: first } = step;
    // A magic link proves a mailbox, not the person: with MFA on it always asks for the
    // factor, trusted device or not (API.md "MFA still applies").
    if history.device_may_skip_mfa && !risk.is_high() && first != FirstFactor::Email {
        let session = NewSession {
            amr: vec![first.amr().to_owned()],
            audit_note: Some(serde_json::json!({ "mfa": "skipped", "reason": "trusted_device", "first": first.amr() })),
            ..NewSession::password(user, client, attempt, device, risk)
        };
        let authenticated = devices::open_and_alert(state, session, true).await?;
        Metrics::count(&state.metrics.logins, "success_mfa_skipped");
        return Ok(LoginResponse::Authenticated(authenticated));
    }
    let mut tx = crate::core::db::begin(&state.db).await?;
    let metadata = serde_json::json!({
        "attempt_id": attempt, "risk_score": risk.score, "risk_reasons": risk.reasons, "first_factor": first.amr()
    });
    let challenge = challenges::open(&mut tx, user.id, ChallengeType::Login, None, metadata).await?;
    repo::attempts::finish_attempt(&mut *tx, attempt, Some(user.id), "mfa_pending", None).await?;
    let factors = otp::service::factors(&mut tx, user.id).await?;
    let event = MfaEvent {
        challenge_id: Some(challenge.challenge_id),
        ..mfa_event(user.id, MfaAction::ChallengeCreated, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    Metrics::count(&state.metrics.logins, "mfa_required");
    Ok(LoginResponse::MfaRequired(mfa_required(&challenge, factors.usable())))
}

/// How the login's first step was made, carried on its challenge into the session's `amr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FirstFactor {
    Password,
    /// An identity provider vouched for the person (social login); `fed` as some
    /// providers write it (RFC 8176 has no value for it).
    Federated,
    /// A magic link proved the mailbox (`email`, API.md).
    Email,
}

impl FirstFactor {
    pub(super) fn amr(self) -> &'static str {
        match self {
            FirstFactor::Password => "pwd",
            FirstFactor::Federated => "fed",
            FirstFactor::Email => "email",
        }
    }

    fn of(challenge: &Challenge) -> FirstFactor {
        let recorded = challenge.metadata.as_ref().and_then(|m| m.get("first_factor")?.as_str().map(str::to_owned));
        match recorded.as_deref() {
            Some("fed") => FirstFactor::Federated,
            Some("email") => FirstFactor::Email,
            _ => FirstFactor::Password,
        }
    }
}

/// A stepped-up session's methods: those it was opened with, the new one, and `mfa`.
fn stepped_up_amr(challenge: &Challenge, method: MfaMethod) -> Vec<String> {
    let recorded: Vec<String> = challenge
        .metadata
        .as_ref()
        .and_then(|m| serde_json::from_value(m.get("session_amr")?.clone()).ok())
        .unwrap_or_else(|| vec!["pwd".to_owned()]);
    let mut amr: Vec<String> = recorded.into_iter().filter(|m| m != "mfa").collect();
    if !amr.iter().any(|m| m == method.amr()) {
        amr.push(method.amr().to_owned());
    }
    amr.push("mfa".to_owned());
    amr
}

/// The risk the password step found, carried on the challenge to the session it opens.
fn challenge_risk(challenge: &Challenge) -> Assessment {
    let meta = challenge.metadata.as_ref();
    let score = meta.and_then(|m| m.get("risk_score")?.as_i64()).unwrap_or(0) as i32;
    let reasons: Vec<String> =
        meta.and_then(|m| serde_json::from_value(m.get("risk_reasons")?.clone()).ok()).unwrap_or_default();
    risk::Assessment::recorded(score, &reasons)
}

fn mfa_required(challenge: &Challenge, methods: Vec<MfaMethod>) -> MfaRequired {
    MfaRequired {
        status: "mfa_required",
        challenge_id: challenge.challenge_id,
        methods,
        expires_in: CHALLENGE_TTL.num_seconds(),
    }
}

/// `POST /auth/mfa/step-up`: a challenge that, answered, raises the caller's session to
/// aal 2 with a fresh second factor.
pub async fn step_up(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<MfaRequired> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    if !user.mfa_enabled {
        return Err(AppError::Conflict(Conflict::MfaNotEnabled));
    }
    // The session's own methods: a step-up adds a factor, it does not claim a password
    // that a passkey or social sign-in never checked.
    let metadata = serde_json::json!({ "session_amr": auth.amr });
    let challenge = challenges::open(&mut tx, user.id, ChallengeType::StepUp, Some(auth.session_id), metadata).await?;
    let factors = otp::service::factors(&mut tx, user.id).await?;
    let event = MfaEvent {
        challenge_id: Some(challenge.challenge_id),
        session_id: Some(auth.session_id),
        metadata: Some(serde_json::json!({ "challenge_type": "step_up" })),
        ..mfa_event(user.id, MfaAction::ChallengeCreated, client)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    Ok(mfa_required(&challenge, factors.usable()))
}

/// `POST /auth/mfa/passkey/options`: what `navigator.credentials.get()` needs to answer a
/// live challenge with one of the account's passkeys (asking again replaces the last).
pub async fn passkey_options(state: &AppState, challenge_id: Uuid) -> AppResult<otp::passkeys::AssertionOptions> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let challenge = challenges::live(&mut tx, challenge_id).await?;
    let rp = &state.relying_party;
    let options =
        otp::passkeys::challenge_options(&mut tx, rp, challenge.user_id, challenge.id, challenge.expires_at).await?;
    crate::core::db::commit(tx).await?;
    Ok(options)
}

/// `POST /auth/mfa/send`: an emailed or texted code for a live challenge, at most the
/// method's `rate_limit_per_hour` per user (the user's policy; built-in 10).
pub async fn send(state: &AppState, client: &ClientContext, challenge_id: Uuid, method: MfaMethod) -> AppResult<()> {
    if !matches!(method, MfaMethod::Email | MfaMethod::Sms) {
        return Err(AppError::validation("method", "codes are sent by email or sms"));
    }
    state.limits.check(Action::MfaSend, client.ip)?;
    let mut tx = crate::core::db::begin(&state.db).await?;
    let challenge = challenges::live(&mut tx, challenge_id).await?;
    let user = challenge.user_id;
    let factors = otp::service::factors(&mut tx, user).await?;
    let email = factors.email_address.clone().filter(|_| factors.email).map(Email::from_stored);
    let phone = factors.phone.as_deref().filter(|_| factors.sms).and_then(|p| Phone::parse(p).ok());
    let to = match (method, &email, &phone) {
        (MfaMethod::Email, Some(e), _) => Recipient::Email(e),
        (MfaMethod::Sms, _, Some(p)) => Recipient::Sms(p),
        _ => return Err(AppError::validation("method", "is not set up for this account")),
    };
    let purpose = CodePurpose::for_challenge(challenge.kind());
    let policy = repo::mfa::policy(&mut tx, user).await?;
    match otp::service::send_code(&mut tx, &state.data_keys, user, to, purpose, Some(challenge.id), &policy).await {
        Ok(sent) => {
            let event = MfaEvent {
                mfa_method: Some(method.as_str().into()),
                challenge_id: Some(challenge.challenge_id),
                request_count_last_hour: i32::try_from(sent).ok(),
                ..mfa_event(user, MfaAction::CodeSent, client)
            };
            audit_log::record_mfa(&mut *tx, &event).await?;
            crate::core::db::commit(tx).await?;
            state.outbox_wakeup.notify_one();
            state.metrics.mfa(method.as_str(), "code_sent");
            Ok(())
        }
        Err(AppError::RateLimited { retry_after_secs }) => {
            drop(tx);
            let event = MfaEvent {
                mfa_method: Some(method.as_str().into()),
                challenge_id: Some(challenge.challenge_id),
                rate_limit_status: "exceeded",
                risk_level: RiskLevel::Medium,
                ..mfa_event(user, MfaAction::RateLimited, client)
            };
            audit_log::record_mfa(&state.db, &event).await?;
            state.metrics.mfa(method.as_str(), "rate_limited");
            Err(AppError::RateLimited { retry_after_secs })
        }
        Err(e) => Err(e),
    }
}

/// `POST /auth/mfa/verify`: answers a challenge. Right: the login's session opens (aal 2)
/// or the step-up's session is raised, with new tokens, in this transaction. Wrong: 401
/// `MFA_CODE_INVALID` with the attempts left, and a failure on the account's lockout.
#[tracing::instrument(skip_all, fields(method = response.method().as_str()))]
pub async fn verify(
    state: &AppState,
    client: &ClientContext,
    challenge_id: Uuid,
    response: Response,
    trust_device: bool,
) -> AppResult<Authenticated> {
    let method = response.method();
    let mut tx = crate::core::db::begin(&state.db).await?;
    let challenge = challenges::live(&mut tx, challenge_id).await?;
    let user = repo::users::user_by_id(&mut *tx, challenge.user_id).await?.ok_or(AppError::ChallengeExpired)?;
    if !user.is_active {
        return Err(AppError::ChallengeExpired);
    }
    if let Some(retry) = account_lock(&mut *tx, &user.email).await? {
        drop(tx);
        let event = MfaEvent {
            challenge_id: Some(challenge.challenge_id),
            rate_limit_status: "exceeded",
            risk_level: RiskLevel::High,
            metadata: Some(serde_json::json!({ "reason": "account_locked" })),
            ..mfa_event(user.id, MfaAction::RateLimited, client)
        };
        audit_log::record_mfa(&state.db, &event).await?;
        state.metrics.mfa(method.as_str(), "locked");
        return Err(AppError::RateLimited { retry_after_secs: retry });
    }

    let email = Email::from_stored(&user.email);
    let account = challenges::Account { id: user.id, email: &email, username: &user.username };
    let (keys, rp) = (&state.data_keys, &state.relying_party);
    let policy = repo::mfa::policy(&mut tx, user.id).await?;
    let answer = challenges::answer(&mut tx, keys, rp, &challenge, account, response, &origin(client), &policy).await?;
    let backup_left = match answer {
        Answer::Right { backup_codes_left } => backup_codes_left,
        Answer::Wrong { attempts_left } => return failed(tx, state, client, &user, method, attempts_left).await,
        Answer::Locked { retry_after_secs } => {
            crate::core::db::commit(tx).await?;
            state.metrics.mfa(method.as_str(), "locked");
            return Err(AppError::RateLimited { retry_after_secs });
        }
    };

    let seen = DeviceSeen::of(client);
    // Trust goes only to a device known by its fingerprint (never one known only by its
    // user agent), and only to the device the session runs on: the one a login opens on,
    // or for a step-up the one its session was opened on.
    let trustable = trust_device
        && seen.verified
        && match (challenge.kind(), challenge.session_id) {
            (Some(ChallengeType::StepUp), Some(session)) => {
                repo::devices::session_on_device(&mut *tx, session, &seen.fingerprint_hash).await?
            }
            _ => true,
        };
    let device = if trustable {
        let until = Utc::now() + Duration::days(TRUST_DAYS);
        let (ua, fp) = (client.user_agent.as_deref(), seen.fingerprint_hash.as_str());
        // A device marked compromised cannot be trusted again.
        let device = repo::devices::trust_device(&mut tx, user.id, fp, ua, client.ip_network(), until)
            .await?
            .ok_or(AppError::Forbidden)?;
        devices::trusted_notice(&mut tx, state, &user, &seen.agent.browser, &seen.agent.os, until, client).await?;
        // A login's session is opened below (its link rows are `linked` and `verified`);
        // a step-up's is the challenge's.
        let link = LinkEvent {
            session_id: challenge.session_id,
            device_id: Some(device),
            origin: origin(client),
            metadata: Some(serde_json::json!({ "trust_expires_at": until })),
            ..LinkEvent::new(user.id, LinkAction::Trusted)
        };
        audit_log::record_link(&mut *tx, &link).await?;
        Some(device)
    } else {
        None
    };
    challenges::close(&mut tx, &challenge, device).await?;
    let event = MfaEvent {
        mfa_method: Some(method.as_str().into()),
        challenge_id: Some(challenge.challenge_id),
        device_id: device,
        verification_attempts: Some(challenge.failed_attempts + 1),
        metadata: device.map(|d| serde_json::json!({ "trusted_device": d, "trust_days": TRUST_DAYS })),
        ..mfa_event(user.id, MfaAction::Verified, client)
    };
    let amr = match challenge.kind() {
        Some(ChallengeType::StepUp) => stepped_up_amr(&challenge, method),
        _ => vec![FirstFactor::of(&challenge).amr().to_owned(), method.amr().to_owned(), "mfa".to_owned()],
    };
    let authenticated = match (challenge.kind(), challenge.session_id) {
        (Some(ChallengeType::StepUp), Some(session)) => {
            let event = MfaEvent { session_id: Some(session), ..event };
            audit_log::record_mfa(&mut *tx, &event).await?;
            raise(&mut tx, state, user, session, amr, method).await?
        }
        _ => {
            audit_log::record_mfa(&mut *tx, &event).await?;
            let owner = user.clone();
            let session = NewSession {
                user,
                client,
                attempt: challenge.attempt_id(),
                aal: 2,
                amr,
                mfa_method: Some(method.as_str()),
                device: seen.clone(),
                risk: challenge_risk(&challenge),
                audit_note: None,
            };
            let opened = start_session(&mut tx, state, session).await?;
            if opened.new_device {
                devices::alert_new_device(&mut tx, state, &owner, &seen, client).await?;
            }
            opened.authenticated
        }
    };
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    state.metrics.mfa(method.as_str(), "verified");
    Ok(Authenticated { backup_codes_remaining: backup_left, ..authenticated })
}

/// A wrong answer: otp took the challenge's attempt and audited it; the account's lockout
/// gains a failure too, committed before the 401.
async fn failed(
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    state: &AppState,
    client: &ClientContext,
    user: &UserRow,
    method: MfaMethod,
    attempts_left: i32,
) -> AppResult<Authenticated> {
    repo::attempts::insert_failed_attempt(
        &mut *tx,
        &user.email,
        user.id,
        "mfa_failed",
        client.ip_network(),
        client.user_agent.as_deref(),
    )
    .await?;
    crate::core::db::commit(tx).await?;
    state.metrics.mfa(method.as_str(), "failed");
    Err(AppError::MfaCodeInvalid { attempts_remaining: attempts_left })
}

/// Raises a live session to aal 2 and hands out a new pair: the session's older refresh
/// tokens retire, a new family starts.
async fn raise(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    user: UserRow,
    session: Uuid,
    amr: Vec<String>,
    method: MfaMethod,
) -> AppResult<Authenticated> {
    let now = Utc::now();
    let access_jti = Uuid::new_v4().to_string();
    let refresh_token = SecretString::from(crypto::random_token());
    let refresh_jti = token_hash(&refresh_token);
    if !repo::sessions::raise_session(&mut *tx, session, &amr, method.as_str(), &access_jti, &refresh_jti).await? {
        return Err(AppError::ChallengeExpired);
    }
    repo::sessions::retire_session_refresh(&mut *tx, session, "step_up").await?;
    // The session's tie to its device is now proven by a second factor.
    repo::sessions::link_verified(&mut *tx, session).await?;
    let record = NewRefreshRow {
        user_id: user.id,
        session_id: session,
        jti: &refresh_jti,
        family_id: Uuid::now_v7(),
        parent_jti: None,
        created_at: now,
        expires_at: now + refresh_ttl(state),
    };
    repo::refresh::insert_refresh(&mut *tx, &record).await?;
    let claims = Claims::new(user.id, session, access_jti, now, access_ttl(state), 2, amr);
    authenticated(state, &claims, refresh_token, user.into())
}
