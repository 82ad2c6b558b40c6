//! What ends an attacker's hold (API.md "Recovery"). An action that says "someone else may
//! have my account" ends, in its own transaction, every grant a past sign-in could have
//! left behind: sessions with their refresh tokens, API keys, pending one-time links,
//! device trust, pending exports and recent passkeys, each as the table of API.md says for
//! that action.
//! One function owns the table, so every remediation ends the same things the same way.

use sqlx::PgConnection;
use uuid::Uuid;

use super::{exports::remove_export_files, origin, sessions::revoke_in};
use crate::{
    accounts::repo::{
        self,
        api_keys::{KeyNote, KeySelection},
    },
    audit_log::{self, DeviceAction, DeviceEvent, MfaAction, MfaEvent, RiskLevel, SessionAction},
    core::{AppResult, AppState, client::ClientContext},
    notifications::message::{Grants, KeyLine},
    otp::{self, Factors, MfaMethod},
};

/// The remediations, as the rows of API.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// `POST /auth/password/reset/confirm`, and the undo of an email change.
    PasswordReset,
    /// `POST /auth/password/change` from `session`: the other sessions (all with
    /// `everywhere`), the trust of the other devices, pending links; keys only with
    /// `revoke_keys`.
    PasswordChange { session: Uuid, everywhere: bool, revoke_keys: bool },
    /// `POST /auth/logout-all` and the admin's sign-out-everywhere.
    SignOutEverywhere,
    /// An approved staff reset of every factor.
    MfaReset,
    /// `is_active: false`.
    Deactivation,
}

/// What a remediation ended, and the keys it left working.
#[derive(Debug, Default)]
pub struct Ended {
    /// Logins that were waiting for their second factor.
    pub challenges: u64,
    pub sessions: Vec<Uuid>,
    pub keys_revoked: Vec<KeyNote>,
    pub keys_kept: Vec<KeyNote>,
    pub links: u64,
    pub untrusted: Vec<Uuid>,
    pub exports: Vec<(Uuid, Option<String>)>,
    pub passkeys_removed: Vec<Uuid>,
    /// Social sign-ins in flight (a login code not yet redeemed, a link not yet done).
    pub social_flows: u64,
    /// Identities unlinked (linked since the last password sign-in, on a reset) or revoked
    /// (deactivation).
    pub identities_removed: Vec<Uuid>,
}

impl Remedy {
    fn keys(self) -> Option<KeySelection> {
        match self {
            Remedy::PasswordReset => Some(KeySelection::AllButIntrospectOnly),
            Remedy::PasswordChange { revoke_keys: true, .. } | Remedy::Deactivation => Some(KeySelection::All),
            Remedy::MfaReset => Some(KeySelection::AdminScoped),
            Remedy::PasswordChange { revoke_keys: false, .. } | Remedy::SignOutEverywhere => None,
        }
    }

    /// The session whose sign-in this action keeps.
    fn kept_session(self) -> Option<Uuid> {
        match self {
            Remedy::PasswordChange { session, everywhere: false, .. } => Some(session),
            _ => None,
        }
    }

    /// The session whose device keeps its trust: a password change ends the other
    /// devices' trust, with or without `sign_out_everywhere`.
    fn kept_device_of(self) -> Option<Uuid> {
        match self {
            Remedy::PasswordChange { session, .. } => Some(session),
            _ => None,
        }
    }

    /// A reset removes the passkeys registered since the last sign-in that checked the
    /// password: whoever reset it may have added one to keep a way in.
    fn drops_recent_passkeys(self) -> bool {
        matches!(self, Remedy::PasswordReset)
    }

    fn cancels_exports(self) -> bool {
        matches!(self, Remedy::PasswordReset | Remedy::SignOutEverywhere | Remedy::Deactivation)
    }
}

/// Ends, in the caller's transaction, what `remedy` ends for `user`, with an audit row for
/// each session and each device whose trust ended; `action` and `reason` say why on them.
/// Call `Ended::settle` after the commit.
pub async fn end_grants(
    tx: &mut PgConnection,
    client: &ClientContext,
    user: Uuid,
    remedy: Remedy,
    action: SessionAction,
    reason: &str,
) -> AppResult<Ended> {
    // First the logins half done (password given, second factor owed): a challenge opened
    // before the remediation must not open a session after it. This waits for a
    // verification in flight, so the session it opens is revoked just below.
    let challenges = otp::challenges::end_open(&mut *tx, user).await?;
    let sessions = revoke_in(&mut *tx, client, user, None, remedy.kept_session(), action, reason).await?;
    let keys_revoked = match remedy.keys() {
        Some(which) => repo::api_keys::revoke_keys(&mut *tx, user, which).await?,
        None => Vec::new(),
    };
    let keys_kept = repo::api_keys::live_keys(&mut *tx, user).await?;
    let links = repo::one_time_tokens::revoke_links(&mut *tx, user).await?;
    let untrusted = end_trust(&mut *tx, client, user, remedy.kept_device_of(), reason).await?;
    let exports =
        if remedy.cancels_exports() { repo::exports::cancel_exports(&mut *tx, user).await? } else { Vec::new() };
    let passkeys_removed =
        if remedy.drops_recent_passkeys() { drop_recent_passkeys(tx, client, user, reason).await? } else { Vec::new() };
    // A login code or a link in flight is a login half done, as a challenge is.
    let social_flows = repo::social::delete_user_flows(&mut *tx, user).await?;
    let identities_removed = match remedy {
        // Whoever reset it may have linked their own identity to keep a way in; the one the
        // account was made with stays.
        _ if remedy.drops_recent_passkeys() => {
            let since = repo::sessions::last_password_sign_in(&mut *tx, user).await?;
            repo::social::delete_connections_since(&mut *tx, user, since).await?
        }
        Remedy::Deactivation => repo::social::revoke_connections(&mut *tx, user).await?,
        _ => Vec::new(),
    };
    Ok(Ended {
        challenges,
        sessions,
        keys_revoked,
        keys_kept,
        links,
        untrusted,
        exports,
        passkeys_removed,
        social_flows,
        identities_removed,
    })
}

/// Removes the passkeys registered after the last sign-in that checked the password (all
/// of them when there was none), audited; with no factor left MFA goes off and the backup
/// codes die, as when the last factor is removed by hand. The action's own notice lists
/// the factors that remain.
async fn drop_recent_passkeys(
    tx: &mut PgConnection,
    client: &ClientContext,
    user: Uuid,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let since = repo::sessions::last_password_sign_in(&mut *tx, user).await?;
    // A reset proves only the mailbox: it must never leave an account that had MFA
    // without a factor (whoever holds the mailbox would then need nothing else). When the
    // recent passkeys are all there is, they stay, audited, and the notice lists them.
    let mut trial = sqlx::Connection::begin(&mut *tx).await?;
    let removed = otp::passkeys::remove_since(&mut trial, user, since).await?;
    if removed.is_empty() {
        return Ok(removed);
    }
    if !otp::service::factors(&mut trial, user).await?.any() {
        trial.rollback().await?;
        let mut kept = MfaEvent {
            origin: origin(client),
            mfa_method: Some(MfaMethod::Passkey.as_str().into()),
            risk_level: RiskLevel::High,
            metadata: Some(serde_json::json!({
                "reason": reason, "passkeys_kept": removed, "registered_after": since, "why": "last_factor"
            })),
            ..MfaEvent::new(user, MfaAction::MethodRemoved)
        };
        // Staff decide whether it was the owner's: the row waits in the review queue.
        kept.flags.requires_review = true;
        audit_log::record_mfa(&mut *tx, &kept).await?;
        return Ok(Vec::new());
    }
    trial.commit().await?;
    let event = MfaEvent {
        origin: origin(client),
        mfa_method: Some(MfaMethod::Passkey.as_str().into()),
        risk_level: RiskLevel::High,
        old_value: Some(serde_json::json!({ "passkeys": removed, "registered_after": since })),
        metadata: Some(serde_json::json!({ "reason": reason })),
        ..MfaEvent::new(user, MfaAction::MethodRemoved)
    };
    audit_log::record_mfa(&mut *tx, &event).await?;
    let left = otp::service::factors(tx, user).await?;
    if left.passkeys == 0 {
        repo::mfa::set_method_state(&mut *tx, user, MfaMethod::Passkey.as_str(), false, false).await?;
    }
    let settings = repo::mfa::mfa_settings(&mut *tx, user).await?;
    if settings.is_enabled && !left.any() {
        otp::service::remove_backup_codes(tx, user).await?;
        repo::mfa::set_method_state(&mut *tx, user, MfaMethod::BackupCode.as_str(), false, false).await?;
        repo::mfa::set_mfa_enabled(&mut *tx, user, false, None).await?;
        let off = MfaEvent {
            origin: origin(client),
            risk_level: RiskLevel::High,
            metadata: Some(serde_json::json!({ "reason": reason, "last_factor": "passkey" })),
            ..MfaEvent::new(user, MfaAction::Disabled)
        };
        audit_log::record_mfa(&mut *tx, &off).await?;
    } else if settings.primary_method == MfaMethod::Passkey.as_str()
        && left.passkeys == 0
        && let Some(next) = left.usable().into_iter().find(|m| *m != MfaMethod::BackupCode)
    {
        repo::mfa::set_mfa_enabled(&mut *tx, user, settings.is_enabled, Some(next.as_str())).await?;
    }
    Ok(removed)
}

/// Ends the trust of the user's devices (but the device of session `keep`), each with its
/// device audit row; returns the devices.
pub async fn end_trust(
    tx: &mut PgConnection,
    client: &ClientContext,
    user: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let untrusted = repo::devices::end_trust(&mut *tx, user, keep).await?;
    for device in &untrusted {
        let event = DeviceEvent {
            device_id: Some(*device),
            origin: origin(client),
            trust_state_change: Some(format!("trust ended: {reason}")),
            ..DeviceEvent::new(user, DeviceAction::Untrusted)
        };
        audit_log::record_device(&mut *tx, &event).await?;
    }
    Ok(untrusted)
}

/// Keys as a notice lists them.
fn listed(keys: &[KeyNote]) -> Vec<KeyLine> {
    keys.iter()
        .map(|k| KeyLine {
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.join(", "),
            expires: k.expires_at.format("%Y-%m-%d").to_string(),
        })
        .collect()
}

impl Ended {
    /// Counts for the action's audit row.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "challenges_ended": self.challenges,
            "sessions_revoked": self.sessions.len(),
            "api_keys_revoked": self.keys_revoked.iter().map(|k| k.id).collect::<Vec<_>>(),
            "api_keys_kept": self.keys_kept.iter().map(|k| k.id).collect::<Vec<_>>(),
            "links_revoked": self.links,
            "device_trust_ended": self.untrusted.len(),
            "exports_cancelled": self.exports.len(),
            "passkeys_removed": self.passkeys_removed,
            "social_flows_ended": self.social_flows,
            "identities_removed": self.identities_removed,
        })
    }

    /// What the notice lists (templates/email/_grants): the sessions ended, the keys
    /// revoked and kept, and the factors that remain.
    pub fn notice(&self, factors: &Factors) -> Grants {
        Grants {
            sessions_ended: self.sessions.len(),
            keys_revoked: listed(&self.keys_revoked),
            keys_kept: listed(&self.keys_kept),
            factors: factors.labels(),
        }
    }

    /// After the commit: this instance forgets the revoked sessions and keys at once (the
    /// others hear it from the triggers' NOTIFY), the cancelled exports' files are deleted,
    /// and the outbox is woken for the notice.
    pub async fn settle(self, state: &AppState) {
        for id in self.sessions.iter().chain(self.keys_revoked.iter().map(|k| &k.id)) {
            state.auth_cache.evict(*id);
        }
        remove_export_files(state, &self.exports).await;
        state.outbox_wakeup.notify_one();
    }
}
