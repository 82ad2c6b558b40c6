//! Access and refresh tokens: refresh-token rotation with reuse detection, and logout.

use chrono::{Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{
    access_ttl, account_event, authenticated,
    recovery::{Remedy, end_grants},
    refresh_ttl, session_event, session_max_age,
    sessions::revoke,
    token_hash,
};
use crate::{
    accounts::{
        models::{Authenticated, Email},
        repo::{self, sessions::NewRefreshRow},
    },
    audit_log::{self, Flags, RiskLevel, SessionAction, SessionEvent},
    core::{
        AppError, AppResult, AppState,
        auth::{AuthUser, Claims},
        client::ClientContext,
        crypto,
        data_keys::Purpose,
    },
    notifications::{self, Message},
    otp,
};

/// Rotates a refresh token: the presented one dies and a child takes its place. A token
/// presented again after its rotation (outside the leeway) means two parties hold the
/// family: the family and its session are revoked and the user is told.
// A debug span, as login's (a span per refresh at the default level costs for nothing).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn refresh(state: &AppState, client: &ClientContext, token: SecretString) -> AppResult<Authenticated> {
    let jti = token_hash(&token);
    let now = Utc::now();
    // The common case, a live token presented once: one statement, one round trip.
    let child = SecretString::from(crypto::random_token());
    let child_jti = token_hash(&child);
    let access_jti = Uuid::new_v4().to_string();
    // Only a sent fingerprint names a device (a user agent alone is never a switch).
    let fingerprint = client.fingerprint.as_deref().map(crypto::sha256_hex);
    let kept = (!state.config.refresh_reuse_leeway.is_zero())
        .then(|| state.data_keys.seal(Purpose::RefreshChild, child.expose_secret().as_bytes()));
    let rotation = repo::refresh::Rotation {
        jti: &jti,
        child_jti: &child_jti,
        access_jti: &access_jti,
        child_sealed: kept.as_deref(),
        now,
        refresh_ttl_secs: refresh_ttl(state).num_seconds() as f64,
        session_max_age_secs: session_max_age(state).num_seconds() as f64,
        synchronous_commit: state.config.refresh_synchronous_commit,
        fingerprint_hash: fingerprint.as_deref(),
    };
    let event = session_event(Uuid::nil(), SessionAction::Refresh, client);
    if let Some(rotated) = repo::refresh::rotate_refresh(&state.db, &rotation, &event).await? {
        let aal = u8::try_from(rotated.aal).unwrap_or(1);
        let claims =
            Claims::new(rotated.user.id, rotated.session_id, access_jti, now, access_ttl(state), aal, rotated.amr);
        return authenticated(state, &claims, child, rotated.user.into());
    }
    // Not live and unrotated: unknown, expired or revoked (401), or rotated already (a
    // replay within the leeway gets the same pair; otherwise a reuse kills the family).
    // Decided under the row locks, in a transaction.
    let mut tx = crate::core::db::begin(&state.db).await?;
    // FOR UPDATE: concurrent refreshes of one token queue here; the first rotates it and
    // every later one finds it rotated.
    let record = repo::refresh::lock_refresh(&mut *tx, &jti).await?.ok_or(AppError::RefreshTokenInvalid)?;
    let user = repo::users::user_by_id(&mut *tx, record.user_id).await?.ok_or(AppError::RefreshTokenInvalid)?;

    if let Some(rotated_at) = record.rotated_at {
        let leeway = Duration::seconds(state.config.refresh_reuse_leeway.as_secs() as i64);
        let replay =
            !leeway.is_zero() && now - rotated_at <= leeway && record.revoked_at.is_none() && record.session_active;
        let kept_child = record
            .child_sealed
            .as_deref()
            .and_then(|sealed| state.data_keys.open(Purpose::RefreshChild, sealed).ok())
            .and_then(|child| String::from_utf8(child).ok());
        if let (true, Some(child)) = (replay, kept_child) {
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
            crate::core::db::commit(tx).await?;
            return authenticated(state, &claims, SecretString::from(child), user.into());
        }
        // Reuse of a rotated token: someone else holds this family. Kill it and its session.
        repo::refresh::revoke_family(&mut *tx, record.session_id, record.family_id, "reuse_detected").await?;
        repo::sessions::revoke_sessions(&mut tx, user.id, Some(record.session_id), None, "token_reused").await?;
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
            &state.data_keys,
            user.id,
            &Email::from_stored(&user.email),
            Message::TokenReused { username: user.username.clone() },
        )
        .await?;
        crate::core::db::commit(tx).await?;
        state.outbox_wakeup.notify_one();
        return Err(AppError::TokenReused);
    }
    // A session lives at most SESSION_MAX_AGE_SECONDS from its start, however often it is
    // refreshed: a stolen refresh token does not live for ever.
    let end_of_session = record.session_created_at + session_max_age(state);
    if !record.is_valid
        || record.expires_at <= now
        || !record.session_active
        || !user.is_active
        || end_of_session <= now
    {
        return Err(AppError::RefreshTokenInvalid);
    }

    // Random, never derived: no key and no old token lets anyone compute the live one.
    let child = SecretString::from(crypto::random_token());
    let child_jti = token_hash(&child);
    let access_jti = Uuid::new_v4().to_string();
    let expires_at = (now + refresh_ttl(state)).min(end_of_session);
    let kept = (!state.config.refresh_reuse_leeway.is_zero())
        .then(|| state.data_keys.seal(Purpose::RefreshChild, child.expose_secret().as_bytes()));
    repo::refresh::mark_rotated(&mut *tx, &jti, now, kept.as_deref()).await?;
    let child_record = NewRefreshRow {
        user_id: user.id,
        session_id: record.session_id,
        jti: &child_jti,
        family_id: record.family_id,
        parent_jti: Some(&jti),
        created_at: now,
        expires_at,
    };
    repo::refresh::insert_refresh(&mut *tx, &child_record).await?;
    repo::refresh::update_session_tokens(&mut *tx, record.session_id, &access_jti, &child_jti, expires_at).await?;
    let event =
        SessionEvent { session_id: Some(record.session_id), ..session_event(user.id, SessionAction::Refresh, client) };
    audit_log::record_session(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    let aal = u8::try_from(record.aal).unwrap_or(1);
    let claims = Claims::new(user.id, record.session_id, access_jti, now, access_ttl(state), aal, record.amr);
    authenticated(state, &claims, child, user.into())
}

pub async fn logout(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<()> {
    revoke(state, client, auth.user_id, Some(auth.session_id), None, SessionAction::Logout, "logout").await?;
    Ok(())
}

/// `POST /auth/logout-all`: signs the caller out everywhere (`sign_out_everywhere`).
pub async fn logout_all(state: &AppState, client: &ClientContext, auth: &AuthUser) -> AppResult<()> {
    sign_out_everywhere(state, client, auth.user_id, None).await?;
    Ok(())
}

/// Ends every session of `user` and what else `recovery::Remedy::SignOutEverywhere` ends
/// (pending links, device trust, pending exports), in one transaction with the audit rows
/// and the notice that lists the API keys still working (a key needs the password to make,
/// so it stays) and the factors. `by`: the admin who did it. Returns the sessions ended.
pub(super) async fn sign_out_everywhere(
    state: &AppState,
    client: &ClientContext,
    user: Uuid,
    by: Option<Uuid>,
) -> AppResult<usize> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let owner = repo::users::user_by_id(&mut *tx, user).await?.ok_or(AppError::NotFound)?;
    let (action, reason) = match by {
        Some(_) => (SessionAction::SessionRevoked, "revoked_by_admin"),
        None => (SessionAction::LogoutAll, "logout_all"),
    };
    let ended = end_grants(&mut tx, client, user, Remedy::SignOutEverywhere, action, reason).await?;
    let mut details = ended.details();
    details["by"] = serde_json::json!(by);
    account_event(&mut tx, Some(user), "signed_out_everywhere", details, client).await?;
    let factors = otp::service::factors(&mut tx, user).await?;
    let message = Message::SignedOutEverywhere {
        username: owner.username.clone(),
        by_admin: by.is_some(),
        grants: ended.notice(&factors),
    };
    let to = Email::from_stored(&owner.email);
    notifications::enqueue_email(&mut tx, &state.data_keys, user, &to, message).await?;
    crate::core::db::commit(tx).await?;
    let count = ended.sessions.len();
    ended.settle(state).await;
    Ok(count)
}
