//! MFA challenges: a login (or a step-up) with MFA on opens one, and `answer` is otp's one
//! entry point for answering it, whatever the method: it knows how each factor is checked
//! and used up, what a wrong answer costs the challenge, and what is audited on each side.
//! The caller (accounts) owns the transaction, the account's lockout and the session the
//! right answer opens or raises; it passes ids and parsed values, never its own rows.

use chrono::Utc;
use ipnetwork::IpNetwork;
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use webauthn_rs::prelude::PublicKeyCredential;

use super::{
    models::{Challenge, ChallengeType, MfaMethod},
    passkeys::{self, Assertion},
    policy::{self, Policy},
    repo,
    service::{self, CHALLENGE_TTL, CodeCheck, CodePurpose},
};
use crate::{
    audit_log::{self, MfaAction, MfaEvent, Origin, RiskLevel},
    core::{AppError, AppResult, data_keys::DataKeys, types::Email, webauthn::RelyingParty},
    notifications::{self, Message},
};

/// At or below this many unused backup codes, using one emails a warning.
pub const LOW_BACKUP_CODES: i64 = 2;

/// Whose challenge it is, as the messages and the TOTP label need them.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    pub id: Uuid,
    pub email: &'a Email,
    pub username: &'a str,
}

/// What the client answered with.
#[derive(Debug)]
pub enum Response {
    /// A TOTP code, a backup code, or an emailed or texted code.
    Code { method: MfaMethod, code: SecretString },
    /// A passkey's assertion (`navigator.credentials.get()`), for the options asked for
    /// this challenge.
    Passkey { credential: Box<PublicKeyCredential> },
}

impl Response {
    pub fn method(&self) -> MfaMethod {
        match self {
            Response::Code { method, .. } => *method,
            Response::Passkey { .. } => MfaMethod::Passkey,
        }
    }
}

/// How the answer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Right, and the factor used up; for a backup code, the codes left. The challenge is
    /// still open: the caller closes it with the session's device (`close`).
    Right { backup_codes_left: Option<i64> },
    /// Wrong: the challenge lost an attempt (audited); this many are left.
    Wrong { attempts_left: i32 },
    /// The method is locked by the user's policy (audited, nothing checked): 429 after the
    /// caller commits the audit row.
    Locked { retry_after_secs: u64 },
}

/// Opens a challenge for `user`; `metadata` carries what its verification needs (the
/// login attempt it settles, the login's risk).
pub async fn open(
    tx: &mut PgConnection,
    user: Uuid,
    kind: ChallengeType,
    session: Option<Uuid>,
    metadata: serde_json::Value,
) -> AppResult<Challenge> {
    let expires_at = Utc::now() + CHALLENGE_TTL;
    Ok(repo::challenges::insert_challenge(tx, user, session, kind.as_str(), expires_at, metadata).await?)
}

/// The live challenge `challenge_id`, locked for this transaction; an unknown, expired,
/// used or exhausted one is 401 `CHALLENGE_EXPIRED`.
pub async fn live(tx: &mut PgConnection, challenge_id: Uuid) -> AppResult<Challenge> {
    let challenge = repo::challenges::lock_challenge(tx, challenge_id).await?.ok_or(AppError::ChallengeExpired)?;
    if challenge.is_live(Utc::now()) { Ok(challenge) } else { Err(AppError::ChallengeExpired) }
}

/// Until when `method` is locked for `user` under `policy` (its wrong answers within an
/// hour reached `rate_limit_per_hour`), if it is.
pub async fn method_locked_until(
    db: &mut PgConnection,
    user: Uuid,
    method: MfaMethod,
    policy: &Policy,
) -> AppResult<Option<chrono::DateTime<Utc>>> {
    let limits = policy.limits(method);
    // Answers of one user and method wait for each other until their transaction ends, so
    // concurrent wrong answers (across challenges) each see the failures before them.
    repo::challenges::lock_answers(&mut *db, user, method.as_str()).await?;
    let now = Utc::now();
    let since = now - chrono::Duration::minutes(60 + i64::from(limits.lockout_minutes));
    let failures = audit_log::service::mfa_failures_since(&mut *db, user, method.as_str(), since).await?;
    Ok(policy::locked_until(&failures, limits, now))
}

/// Answers `challenge`, in the caller's transaction, under the user's `policy`. A locked
/// method is refused before anything is checked (`Locked`). A right answer uses the factor up
/// (a backup code is audited, and when few are left the owner is warned); a wrong one costs
/// the challenge an attempt and writes the `failed` audit row (high risk on the last); a
/// challenge that dies of it writes `challenge_expired`.
#[allow(clippy::too_many_arguments)]
pub async fn answer(
    tx: &mut PgConnection,
    keys: &DataKeys,
    rp: &RelyingParty,
    challenge: &Challenge,
    account: Account<'_>,
    response: Response,
    origin: &Origin,
    policy: &Policy,
) -> AppResult<Answer> {
    let method = response.method();
    let event = |action| MfaEvent {
        origin: origin.clone(),
        mfa_method: Some(method.as_str().into()),
        challenge_id: Some(challenge.challenge_id),
        ..MfaEvent::new(account.id, action)
    };
    if let Some(until) = method_locked_until(tx, account.id, method, policy).await? {
        let locked = MfaEvent {
            rate_limit_status: "exceeded",
            risk_level: RiskLevel::High,
            metadata: Some(serde_json::json!({ "reason": "method_locked", "until": until })),
            ..event(MfaAction::RateLimited)
        };
        audit_log::record_mfa(&mut *tx, &locked).await?;
        let retry_after_secs = u64::try_from((until - Utc::now()).num_seconds().max(1)).unwrap_or(1);
        return Ok(Answer::Locked { retry_after_secs });
    }
    let right = match response {
        Response::Code { method, code } => check(tx, keys, challenge, account, method, &code, origin.ip).await?,
        Response::Passkey { credential } => {
            let verdict =
                passkeys::check_challenge_assertion(tx, rp, account.id, challenge.id, &credential, origin).await?;
            matches!(verdict, Assertion::Right { .. }).then_some(None)
        }
    };
    if let Some(backup_codes_left) = right {
        if let Some(left) = backup_codes_left {
            let used = MfaEvent {
                risk_level: if left <= LOW_BACKUP_CODES { RiskLevel::Medium } else { RiskLevel::Low },
                metadata: Some(serde_json::json!({ "backup_codes_remaining": left })),
                ..event(MfaAction::BackupCodeUsed)
            };
            audit_log::record_mfa(&mut *tx, &used).await?;
            // otp_mfarecovery has the use's row (`use_backup_code`); this is its audit.
            let recovered = MfaEvent { recovery_method: Some("backup_code"), ..event(MfaAction::RecoveryUsed) };
            audit_log::record_mfa(&mut *tx, &recovered).await?;
            if left <= LOW_BACKUP_CODES {
                let message = Message::BackupCodesLow { username: account.username.to_owned(), remaining: left };
                notifications::enqueue_email(tx, keys, account.id, account.email, message).await?;
            }
        }
        return Ok(Answer::Right { backup_codes_left });
    }
    let mut attempts_left = repo::challenges::fail_challenge(&mut *tx, challenge.id).await?;
    let failures = challenge.failed_attempts + 1;
    // A method may allow fewer wrong answers than the challenge was opened with.
    let method_left = policy.limits(method).max_attempts - failures;
    if method_left < attempts_left {
        attempts_left = method_left.max(0);
        if attempts_left == 0 {
            repo::challenges::exhaust_challenge(&mut *tx, challenge.id).await?;
        }
    }
    let failed = MfaEvent {
        verification_attempts: Some(failures),
        risk_level: if attempts_left <= 0 { RiskLevel::High } else { RiskLevel::Medium },
        ..event(MfaAction::Failed)
    };
    audit_log::record_mfa(&mut *tx, &failed).await?;
    if attempts_left <= 0 {
        let expired = MfaEvent {
            verification_attempts: Some(failures),
            risk_level: RiskLevel::High,
            metadata: Some(serde_json::json!({ "reason": "attempts" })),
            ..event(MfaAction::ChallengeExpired)
        };
        audit_log::record_mfa(&mut *tx, &expired).await?;
    }
    Ok(Answer::Wrong { attempts_left: attempts_left.max(0) })
}

/// Checks a code for `method`; a right one is used up. None: wrong. Some(left): right, with
/// the backup codes left when it was one.
async fn check(
    tx: &mut PgConnection,
    keys: &DataKeys,
    challenge: &Challenge,
    account: Account<'_>,
    method: MfaMethod,
    code: &SecretString,
    ip: Option<IpNetwork>,
) -> AppResult<Option<Option<i64>>> {
    let user = account.id;
    Ok(match method {
        MfaMethod::Totp => service::check_totp(tx, keys, user, account.email, code, false).await?.then_some(None),
        MfaMethod::BackupCode => service::use_backup_code(tx, keys, user, code, ip).await?.map(Some),
        MfaMethod::Email | MfaMethod::Sms => {
            let purpose = CodePurpose::for_challenge(challenge.kind());
            let checked = service::check_code(tx, keys, user, method, purpose, Some(challenge.id), code, ip).await?;
            (checked == CodeCheck::Accepted).then_some(None)
        }
        // A passkey answers with an assertion, never a code.
        MfaMethod::Passkey => None,
    })
}

/// Marks the challenge answered, with the device the session runs on: it cannot be used
/// again.
pub async fn close(tx: &mut PgConnection, challenge: &Challenge, device: Option<Uuid>) -> AppResult<()> {
    Ok(repo::challenges::close_challenge(tx, challenge.id, device).await?)
}

/// Ends the user's challenges still waiting for a second factor (a login half done before a
/// remediation must not be finished after it); returns how many.
pub async fn end_open(tx: &mut PgConnection, user: Uuid) -> AppResult<u64> {
    Ok(repo::challenges::end_open_challenges(tx, user).await?)
}
