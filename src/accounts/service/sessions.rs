//! Opening sessions (the seam password login and MFA share), listing and revoking them.

use chrono::Utc;
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{access_ttl, authenticated, refresh_ttl, session_event, session_max_age, token_hash};
use crate::{
    accounts::{
        models::{Authenticated, DeviceSeen, SessionView, UserRow},
        repo::{
            self,
            sessions::{NewRefreshRow, NewSessionRow},
        },
        risk::Assessment,
    },
    audit_log::{self, SessionAction, SessionEvent},
    core::{
        AppError, AppResult, AppState,
        auth::{AuthUser, Claims},
        client::ClientContext,
        crypto,
    },
};

/// A session about to open: who, from where, and how they proved it.
pub struct NewSession<'a> {
    pub user: UserRow,
    pub client: &'a ClientContext,
    /// The password attempt this session settles, if it came from one.
    pub attempt: Option<Uuid>,
    /// 1 (password) or 2 (second factor).
    pub aal: u8,
    /// RFC 8176 methods, e.g. `["pwd"]` or `["pwd", "otp", "mfa"]`.
    pub amr: Vec<String>,
    /// The second factor used, when aal is 2.
    pub mfa_method: Option<&'a str>,
    /// The device the session runs on (found or created as the session opens).
    pub device: DeviceSeen,
    /// The login's risk: recorded on the device, the session and the audit rows.
    pub risk: Assessment,
    /// Extra facts for the login's audit row (e.g. that MFA was skipped, and why).
    pub audit_note: Option<serde_json::Value>,
}

impl<'a> NewSession<'a> {
    /// A password-only (aal 1) session settling `attempt`.
    pub fn password(
        user: UserRow,
        client: &'a ClientContext,
        attempt: Uuid,
        device: DeviceSeen,
        risk: Assessment,
    ) -> Self {
        NewSession {
            user,
            client,
            attempt: Some(attempt),
            aal: 1,
            amr: vec!["pwd".to_owned()],
            mfa_method: None,
            device,
            risk,
            audit_note: None,
        }
    }
}

/// A session just opened: the tokens, and its device (the caller alerts the user when the
/// device is new to them).
pub struct Opened {
    pub authenticated: Authenticated,
    pub device_id: Uuid,
    pub new_device: bool,
}

/// Opens a session with its first refresh token, records the login and signs the access
/// token; settles the password attempt when given. The writes are one statement, so `db`
/// is a pooled connection for password login (autocommit) or the caller's transaction for
/// MFA (aal 2), which consumes its challenge in the same commit.
pub async fn start_session(db: &mut PgConnection, state: &AppState, s: NewSession<'_>) -> AppResult<Opened> {
    let now = Utc::now();
    let session_id = Uuid::now_v7();
    let access_jti = Uuid::new_v4().to_string();
    let refresh_token = SecretString::from(crypto::random_token());
    let refresh_jti = token_hash(&refresh_token);
    let expires_at = now + refresh_ttl(state).min(session_max_age(state));
    let client = s.client;
    let risk = &s.risk;
    let row = NewSessionRow {
        id: session_id,
        user_id: s.user.id,
        device: &s.device,
        risk_score: risk.score,
        suspicious_reason: risk.is_high().then(|| risk.reasons.join(",")),
        access_jti: &access_jti,
        refresh_jti: &refresh_jti,
        ip: client.ip_network(),
        user_agent: client.user_agent.as_deref(),
        country: client.country.as_deref(),
        city: client.city.as_deref(),
        expires_at,
        aal: i16::from(s.aal),
        amr: &s.amr,
        mfa_method: s.mfa_method,
        created_at: now,
    };
    let first = NewRefreshRow {
        user_id: s.user.id,
        session_id,
        jti: &refresh_jti,
        family_id: Uuid::now_v7(),
        parent_jti: None,
        created_at: now,
        expires_at,
    };
    let mut event = SessionEvent {
        session_id: Some(session_id),
        session_type: Some("web".into()),
        mfa_verified: Some(s.aal == 2),
        mfa_method: s.mfa_method.map(str::to_owned),
        risk_level: risk.level,
        metadata: s.audit_note,
        ..session_event(s.user.id, SessionAction::Login, client)
    };
    event.flags.is_anomalous = risk.is_anomalous();
    event.flags.anomaly_reasons = risk.reasons.iter().map(|r| (*r).to_owned()).collect();
    event.flags.requires_review = risk.is_high();
    let opened = repo::sessions::open_session(db, &row, &first, s.attempt, &event).await?;
    let claims = Claims::new(s.user.id, session_id, access_jti, now, access_ttl(state), s.aal, s.amr);
    let mut user = s.user;
    user.last_login = Some(now);
    Ok(Opened {
        authenticated: authenticated(state, &claims, refresh_token, user.into())?,
        device_id: opened.device_id,
        new_device: opened.new_device,
    })
}

/// Revokes sessions of `user` (one, all, or all but one) with their refresh tokens, and
/// audits each; returns the ids revoked.
pub(super) async fn revoke(
    state: &AppState,
    client: &ClientContext,
    user: Uuid,
    only: Option<Uuid>,
    except: Option<Uuid>,
    action: SessionAction,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let revoked = revoke_in(&mut tx, client, user, only, except, action, reason).await?;
    crate::core::db::commit(tx).await?;
    // Every instance hears of it from the trigger's NOTIFY; this one needs not wait.
    for id in &revoked {
        state.auth_cache.evict(*id);
    }
    Ok(revoked)
}

/// `revoke` inside the caller's transaction, for changes that sign the user out as part
/// of something else (deactivation, an approved MFA reset).
pub(super) async fn revoke_in(
    tx: &mut PgConnection,
    client: &ClientContext,
    user: Uuid,
    only: Option<Uuid>,
    except: Option<Uuid>,
    action: SessionAction,
    reason: &str,
) -> AppResult<Vec<Uuid>> {
    let revoked = repo::sessions::revoke_sessions(&mut *tx, user, only, except, reason).await?;
    for id in &revoked {
        let event = SessionEvent { session_id: Some(*id), ..session_event(user, action, client) };
        audit_log::record_session(&mut *tx, &event).await?;
    }
    Ok(revoked)
}

pub async fn sessions(state: &AppState, auth: &AuthUser) -> AppResult<Vec<SessionView>> {
    Ok(repo::sessions::active_sessions(&state.db, auth.user_id, auth.session_id).await?)
}

/// Revokes one of the caller's own sessions; anyone else's is "not found".
pub async fn revoke_session(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<()> {
    let revoked =
        revoke(state, client, auth.user_id, Some(id), None, SessionAction::SessionRevoked, "revoked_by_user").await?;
    if revoked.is_empty() { Err(AppError::NotFound) } else { Ok(()) }
}
