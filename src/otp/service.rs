//! The rules of second factors. Every function works inside the caller's transaction
//! (accounts opens it, since a factor's outcome opens or raises a session, enables MFA or
//! settles a login), so a code used, a challenge failed and its audit row commit together.
//! Secrets never leave here in clear except the ones shown once (a TOTP setup, new backup
//! codes) and the code inside the outgoing message.

use chrono::{DateTime, Duration, Utc};
use ipnetwork::IpNetwork;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    factors,
    models::{ChallengeType, Factors, MfaMethod, TotpSetup},
    policy::{self, Policy},
    repo,
};
use crate::{
    core::{
        AppError, AppResult,
        data_keys::{DataKeys, Purpose},
        error::Conflict,
        types::{Email, Phone},
    },
    notifications::{self, MfaCode, Recipient},
};

// The length and life of emailed and texted codes, the codes sent per hour and the wrong
// guesses a code survives are the user's policy (`policy::Policy`; built-in 6 digits,
// 5 minutes, 10 per hour, 3 guesses).
/// How long a challenge waits for its second factor.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);

pub async fn factors(db: &mut PgConnection, user: Uuid) -> AppResult<Factors> {
    Ok(repo::factors(db, user).await?)
}

/// The factors proven after `since`.
pub async fn factors_added_since(db: &mut PgConnection, user: Uuid, since: DateTime<Utc>) -> AppResult<Vec<MfaMethod>> {
    Ok(repo::factors_added_since(db, user, since).await?.iter().filter_map(|m| MfaMethod::parse(m)).collect())
}

// TOTP.

/// Makes a new secret for `user` (not active until confirmed) and returns it with its
/// otpauth URI and QR code. A confirmed device must be removed first: 409.
pub async fn begin_totp(tx: &mut PgConnection, keys: &DataKeys, user: Uuid, email: &Email) -> AppResult<TotpSetup> {
    let secret = factors::new_totp_secret();
    let totp = factors::totp(secret.clone(), email.as_str()).map_err(AppError::internal)?;
    let uri = totp.to_url().map_err(AppError::internal)?;
    let qr_svg = factors::qr_svg(&uri).map_err(AppError::internal)?;
    let sealed = keys.seal(Purpose::TotpSecret, &secret);
    if !repo::totp::put_pending_totp(&mut *tx, user, &sealed).await? {
        return Err(AppError::Conflict(Conflict::MfaMethodExists));
    }
    Ok(TotpSetup {
        secret: SecretString::from(totp.secret().to_base32()),
        otpauth_uri: SecretString::from(uri),
        qr_svg,
    })
}

/// Checks a TOTP code: `confirm` for the pending device at setup, otherwise the confirmed
/// one. A code's time step is accepted once; any code of that step or an earlier one is
/// refused afterwards.
pub async fn check_totp(
    tx: &mut PgConnection,
    keys: &DataKeys,
    user: Uuid,
    email: &Email,
    code: &SecretString,
    confirm: bool,
) -> AppResult<bool> {
    let Some((sealed, verified)) = repo::totp::totp_secret(&mut *tx, user).await? else { return Ok(false) };
    if verified == confirm {
        return Ok(false);
    }
    let secret = keys.open(Purpose::TotpSecret, &sealed).map_err(AppError::internal)?;
    let totp = factors::totp(secret, email.as_str()).map_err(AppError::internal)?;
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
    let Some(step) = factors::totp_step(&totp, code.expose_secret(), now) else { return Ok(false) };
    Ok(repo::totp::accept_totp_step(&mut *tx, user, step, confirm).await?)
}

async fn remove_totp(tx: &mut PgConnection, user: Uuid) -> AppResult<bool> {
    Ok(repo::totp::delete_totp(tx, user).await?)
}

// Backup codes.

/// A new set of backup codes, shown once; the old set dies.
pub async fn new_backup_codes(tx: &mut PgConnection, keys: &DataKeys, user: Uuid) -> AppResult<Vec<String>> {
    let codes: Vec<String> = (0..factors::BACKUP_CODES).map(|_| factors::new_backup_code()).collect();
    let hashes: Vec<String> =
        codes.iter().map(|c| keys.mac(Purpose::CodeHash, &factors::normalise_backup_code(c))).collect();
    repo::backup::replace_backup_codes(tx, user, &hashes).await?;
    Ok(codes)
}

/// Uses a backup code; on success records the recovery and returns the codes left.
pub async fn use_backup_code(
    tx: &mut PgConnection,
    keys: &DataKeys,
    user: Uuid,
    code: &SecretString,
    ip: Option<IpNetwork>,
) -> AppResult<Option<i64>> {
    let typed = factors::normalise_backup_code(code.expose_secret());
    if typed.len() != 8 {
        return Ok(None);
    }
    let hashes = keys.macs(Purpose::CodeHash, &typed);
    if !repo::backup::use_backup_code(&mut *tx, user, &hashes, ip).await? {
        return Ok(None);
    }
    repo::backup::insert_recovery(&mut *tx, user, MfaMethod::BackupCode.as_str(), ip, true).await?;
    Ok(Some(repo::factors(&mut *tx, user).await?.backup_codes_remaining))
}

/// Records an admin MFA reset in otp_mfarecovery (the account regains access without any
/// of its factors).
pub async fn record_admin_reset(tx: &mut PgConnection, user: Uuid, ip: Option<IpNetwork>) -> AppResult<()> {
    Ok(repo::backup::insert_recovery(tx, user, "admin_reset", ip, true).await?)
}

pub async fn remove_backup_codes(tx: &mut PgConnection, user: Uuid) -> AppResult<()> {
    Ok(repo::backup::delete_backup_codes(tx, user).await?)
}

// Emailed and texted codes.

/// What a code is for, as otp_otp records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    Login,
    Setup,
    StepUp,
}

impl CodePurpose {
    fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Login => "login",
            CodePurpose::Setup => "setup",
            CodePurpose::StepUp => "step_up",
        }
    }

    pub fn for_challenge(kind: Option<ChallengeType>) -> CodePurpose {
        match kind {
            Some(ChallengeType::StepUp) => CodePurpose::StepUp,
            _ => CodePurpose::Login,
        }
    }
}

/// Sends a fresh code by email or SMS (a security message: always delivered), of the
/// length and life the user's policy sets, storing only its keyed hash; the message is
/// queued in this transaction. Past the method's `rate_limit_per_hour` sends for this user:
/// 429 and nothing sent. Returns the sends counted in the last hour, this one included.
#[allow(clippy::too_many_arguments)]
pub async fn send_code(
    tx: &mut PgConnection,
    keys: &DataKeys,
    user: Uuid,
    to: Recipient<'_>,
    purpose: CodePurpose,
    challenge: Option<Uuid>,
    policy: &Policy,
) -> AppResult<i64> {
    let channel = to.channel();
    let method = channel.as_str();
    let limits = policy.limits(MfaMethod::parse(method).unwrap_or(MfaMethod::Email));
    let sent = repo::codes::lock_and_count_sends(&mut *tx, user, method).await?;
    if sent >= i64::from(limits.rate_limit_per_hour) {
        return Err(AppError::RateLimited { retry_after_secs: 3600 });
    }
    let digits = u32::try_from(policy.code_length).unwrap_or(6);
    let code = SecretString::from(factors::new_delivery_code(digits));
    let hash = keys.mac(Purpose::CodeHash, code.expose_secret());
    let expires_at = Utc::now() + policy.code_ttl();
    let attempts = limits.max_attempts;
    repo::codes::insert_code(&mut *tx, user, challenge, method, purpose.as_str(), &hash, expires_at, attempts).await?;
    repo::codes::note_sent(&mut *tx, user, method).await?;
    let message = MfaCode { user_id: user, to, code: &code, code_hash: &hash, mfa_type: purpose.as_str(), expires_at };
    notifications::enqueue_mfa_code(&mut *tx, keys, &message).await?;
    Ok(sent + 1)
}

/// The outcome of a code check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Accepted,
    /// Wrong; the live code has this many attempts left (0: it is dead, or none was live).
    Rejected {
        attempts_left: i32,
    },
}

/// Checks an emailed or texted code; a wrong one costs the live code an attempt.
#[allow(clippy::too_many_arguments)]
pub async fn check_code(
    tx: &mut PgConnection,
    keys: &DataKeys,
    user: Uuid,
    method: MfaMethod,
    purpose: CodePurpose,
    challenge: Option<Uuid>,
    code: &SecretString,
    ip: Option<IpNetwork>,
) -> AppResult<CodeCheck> {
    let typed = code.expose_secret().trim();
    let purpose = purpose.as_str();
    let method = method.as_str();
    // Any length a policy allows: a code sent before the policy changed still works.
    if policy::CODE_LENGTHS.contains(&(typed.len() as i32)) && typed.bytes().all(|b| b.is_ascii_digit()) {
        let hashes = keys.macs(Purpose::CodeHash, typed);
        if repo::codes::use_code(&mut *tx, user, challenge, method, purpose, &hashes, ip).await? {
            return Ok(CodeCheck::Accepted);
        }
    }
    let attempts_left = repo::codes::miss_code(&mut *tx, user, challenge, method, purpose).await?;
    Ok(CodeCheck::Rejected { attempts_left })
}

/// Registers the account's email as a method (unproven until its code comes back).
pub async fn begin_email_method(tx: &mut PgConnection, user: Uuid, email: &Email) -> AppResult<()> {
    Ok(repo::codes::put_pending_email_method(tx, user, email.as_str()).await?)
}

/// Registers a phone as a method (unproven until its code comes back).
pub async fn begin_sms_method(tx: &mut PgConnection, user: Uuid, phone: &Phone) -> AppResult<()> {
    Ok(repo::codes::put_pending_sms_method(tx, user, phone.as_str()).await?)
}

/// Marks an email or SMS method proven.
pub async fn confirm_method(tx: &mut PgConnection, user: Uuid, method: MfaMethod) -> AppResult<()> {
    Ok(repo::codes::verify_method(tx, user, method.as_str()).await?)
}

pub async fn remove_method(tx: &mut PgConnection, user: Uuid, method: MfaMethod) -> AppResult<bool> {
    match method {
        MfaMethod::Totp => remove_totp(tx, user).await,
        MfaMethod::Email | MfaMethod::Sms => Ok(repo::codes::delete_method(tx, user, method.as_str()).await?),
        MfaMethod::BackupCode => remove_backup_codes(tx, user).await.map(|()| true),
        MfaMethod::Passkey => Ok(!super::passkeys::remove_since(tx, user, None).await?.is_empty()),
    }
}

/// What one cleanup did in otp (the job run's `details`).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Cleaned {
    pub mfa_challenges: u64,
    pub mfa_codes: u64,
    pub passkey_ceremonies: u64,
}

impl Cleaned {
    pub fn rows(&self) -> u64 {
        self.mfa_challenges + self.mfa_codes + self.passkey_ceremonies
    }
}

/// Deletes challenges and codes expired over an hour ago and passkey ceremonies past their
/// five minutes, in the cleanup job's transaction.
pub async fn cleanup(tx: &mut PgConnection) -> AppResult<Cleaned> {
    let (mfa_challenges, mfa_codes) = repo::delete_expired(tx).await?;
    let passkey_ceremonies = super::passkeys::delete_expired(tx).await?;
    Ok(Cleaned { mfa_challenges, mfa_codes, passkey_ceremonies })
}

/// Cuts the client addresses of otp's rows dated in `[from, to)` to their network.
pub async fn truncate_ips(tx: &mut PgConnection, from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> AppResult<u64> {
    let mut rows = 0;
    for column in repo::IP_COLUMNS {
        rows += crate::core::db::truncate_ips(&mut *tx, *column, from, to).await?;
    }
    Ok(rows)
}
