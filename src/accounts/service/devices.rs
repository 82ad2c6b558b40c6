//! Devices: what a login learns about its device and its risk, the new-device alert, and
//! the user's device API (list, rename, trust, untrust, mark compromised, delete).

use chrono::{Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    origin,
    sessions::{NewSession, start_session},
};
use crate::{
    accounts::{
        models::{Authenticated, DeviceSeen, DeviceView, Email, NearDevice, UserRow},
        repo::{self, attempts::LoginFacts},
        risk::{self, Assessment, Signals, Travel},
    },
    audit_log::{self, DeviceAction, DeviceEvent, LinkAction, LinkEvent},
    core::{AppError, AppResult, AppState, auth::AuthUser, client::ClientContext, error::Conflict},
    notifications::{self, Message, message::DeviceLine},
};

/// The risk of a login whose password was right, from its facts and the client.
pub(super) fn assess(client: &ClientContext, device: &DeviceSeen, facts: &LoginFacts) -> Assessment {
    let h = &facts.history;
    let signals = Signals {
        new_device: !h.device_known,
        // Without a history there is nothing to be new against.
        new_country: h.any_session && client.country.is_some() && !h.seen_country,
        new_ip_range: h.any_session && client.ip.is_some() && !h.seen_ip_range,
        travel: h.last_place.zip(device.coordinates).map(|((from, from_at), to)| Travel {
            from,
            from_at,
            to,
            to_at: Utc::now(),
        }),
        // The count includes this attempt, which has not failed.
        recent_failures: (facts.identifier_failures - 1).max(0),
        compromised_device: h.device_compromised,
        bot: device.agent.is_bot(),
        trusted_device_new_country: h.device_new_country,
    };
    risk::assess(&signals)
}

/// Opens the session; when the device is new to the user, in a transaction with the
/// security email that tells them (only the statement that created the device sends it,
/// so two first logins at once send one).
pub(super) async fn open_and_alert(
    state: &AppState,
    session: NewSession<'_>,
    device_known: bool,
) -> AppResult<Authenticated> {
    if device_known {
        let mut conn = state.db.acquire().await?;
        return Ok(start_session(&mut conn, state, session).await?.authenticated);
    }
    let (user, client, device) = (session.user.clone(), session.client, session.device.clone());
    let mut tx = crate::core::db::begin(&state.db).await?;
    let opened = start_session(&mut tx, state, session).await?;
    if opened.new_device {
        alert_new_device(&mut tx, state, &user, &device, client).await?;
    }
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(opened.authenticated)
}

/// The new-device security email: what, where, when, and what to do if it was not them.
pub(super) async fn alert_new_device(
    tx: &mut PgConnection,
    state: &AppState,
    user: &UserRow,
    device: &DeviceSeen,
    client: &ClientContext,
) -> AppResult<()> {
    let agent = &device.agent;
    let place = match (&client.city, &client.country) {
        (Some(city), Some(country)) => Some(format!("{city}, {country}")),
        (None, Some(country)) => Some(country.clone()),
        _ => None,
    };
    let device = DeviceLine {
        device_type: agent.device_type.to_owned(),
        browser: agent.browser.clone(),
        os: agent.os.clone(),
        place,
        ip: client.ip.map(|ip| ip.to_string()),
    };
    let to = Email::from_stored(&user.email);
    let message = Message::NewDevice { username: user.username.clone(), device };
    notifications::enqueue_email(tx, &state.data_keys, user.id, &to, message).await?;
    Ok(())
}

/// A device audit event about `user`'s `device`, from where the request came.
fn device_event(user: Uuid, device: Uuid, action: DeviceAction, client: &ClientContext) -> DeviceEvent {
    DeviceEvent { device_id: Some(device), origin: origin(client), ..DeviceEvent::new(user, action) }
}

// The device API.

pub async fn devices(state: &AppState, auth: &AuthUser) -> AppResult<Vec<DeviceView>> {
    Ok(repo::devices::devices(&state.db, auth.user_id, auth.session_id, None).await?)
}

/// One own device; anyone else's is "not found".
pub async fn device(state: &AppState, auth: &AuthUser, id: Uuid) -> AppResult<DeviceView> {
    let mut found = repo::devices::devices(&state.db, auth.user_id, auth.session_id, Some(id)).await?;
    found.pop().ok_or(AppError::NotFound)
}

pub async fn rename_device(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    id: Uuid,
    name: String,
) -> AppResult<DeviceView> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let old = repo::devices::rename_device(&mut *tx, auth.user_id, id, &name).await?.ok_or(AppError::NotFound)?;
    let event = DeviceEvent {
        // That the name changed, not the names: a device name often holds a person's name.
        metadata: Some(serde_json::json!({ "fields": ["device_name"], "had_name": old.is_some() })),
        ..device_event(auth.user_id, id, DeviceAction::Renamed, client)
    };
    audit_log::record_device(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    device(state, auth, id).await
}

/// Trust for `days` (1..=90): the device skips MFA until then. Only a device known by its
/// fingerprint (409 `DEVICE_NOT_VERIFIED`), only from a session opened on it (403), with MFA
/// on only with a second factor within `STEP_UP_MAX_AGE_SECONDS` (403 `MFA_REQUIRED`); a
/// compromised device cannot be trusted. The owner gets a security notice.
pub async fn trust_device(
    state: &AppState,
    client: &ClientContext,
    auth: &AuthUser,
    id: Uuid,
    days: i64,
) -> AppResult<DeviceView> {
    if !(1..=90).contains(&days) {
        return Err(AppError::validation("days", "must be 1 to 90"));
    }
    let mut tx = crate::core::db::begin(&state.db).await?;
    // The session stays active until this commits: a sign-out racing the trust waits.
    super::hold(&mut tx, auth, None).await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let facts =
        repo::devices::lock_for_trust(&mut *tx, auth.user_id, id, auth.session_id).await?.ok_or(AppError::NotFound)?;
    if facts.compromised {
        return Err(AppError::Conflict(Conflict::DeviceCompromised));
    }
    if !facts.verified {
        return Err(AppError::Conflict(Conflict::DeviceNotVerified));
    }
    if !facts.current {
        return Err(AppError::ForbiddenBecause("A device can be trusted only from a session opened on it."));
    }
    if user.mfa_enabled && !auth.has_recent_mfa(state.config.step_up_max_age) {
        return Err(AppError::MfaRequired);
    }
    let until = Utc::now() + Duration::days(days);
    repo::devices::trust_device_by_id(&mut tx, auth.user_id, id, until).await?;
    let event = DeviceEvent {
        trust_state_change: Some(format!("trusted for {days} days")),
        metadata: Some(serde_json::json!({ "trust_expires_at": until })),
        ..device_event(auth.user_id, id, DeviceAction::Trusted, client)
    };
    audit_log::record_device(&mut *tx, &event).await?;
    let link = LinkEvent {
        session_id: Some(auth.session_id),
        device_id: Some(id),
        origin: origin(client),
        metadata: Some(serde_json::json!({ "trust_expires_at": until })),
        ..LinkEvent::new(auth.user_id, LinkAction::Trusted)
    };
    audit_log::record_link(&mut *tx, &link).await?;
    let view = repo::devices::devices(&mut *tx, auth.user_id, auth.session_id, Some(id))
        .await?
        .pop()
        .ok_or(AppError::NotFound)?;
    trusted_notice(&mut tx, state, &user, &view.browser, &view.os, until, client).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(view)
}

/// The security notice that a device may now skip MFA: which, until when, from where.
pub(super) async fn trusted_notice(
    tx: &mut PgConnection,
    state: &AppState,
    user: &UserRow,
    browser: &Option<String>,
    os: &Option<String>,
    until: chrono::DateTime<Utc>,
    client: &ClientContext,
) -> AppResult<()> {
    let device = DeviceLine {
        browser: browser.clone(),
        os: os.clone(),
        ip: client.ip.map(|ip| ip.to_string()),
        ..DeviceLine::default()
    };
    let until = until.format("%Y-%m-%d %H:%M UTC").to_string();
    let message = Message::DeviceTrusted { username: user.username.clone(), device, until };
    let to = Email::from_stored(&user.email);
    notifications::enqueue_email(tx, &state.data_keys, user.id, &to, message).await?;
    Ok(())
}

pub async fn untrust_device(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    if !repo::devices::untrust_device(&mut tx, auth.user_id, id).await? {
        return Err(AppError::NotFound);
    }
    let event = DeviceEvent {
        trust_state_change: Some("untrusted".into()),
        ..device_event(auth.user_id, id, DeviceAction::Untrusted, client)
    };
    audit_log::record_device(&mut *tx, &event).await?;
    crate::core::db::commit(tx).await?;
    Ok(())
}

/// Marks the device compromised: its trust and its sessions are revoked (their access
/// tokens stop working at once), the owner is told, and the audit row is critical.
pub async fn mark_compromised(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    if !repo::devices::mark_device_compromised(&mut tx, auth.user_id, id).await? {
        return Err(AppError::NotFound);
    }
    let revoked = repo::devices::revoke_device_sessions(&mut tx, auth.user_id, id, "device_compromised").await?;
    let user = repo::users::user_by_id(&mut *tx, auth.user_id).await?.ok_or(AppError::Unauthenticated)?;
    let event = DeviceEvent {
        // Critical: the owner says someone else holds this device.
        risk_score: 100,
        trust_state_change: Some("compromised".into()),
        metadata: Some(serde_json::json!({ "sessions_revoked": revoked.len() })),
        ..device_event(auth.user_id, id, DeviceAction::Compromised, client)
    };
    audit_log::record_device(&mut *tx, &event).await?;
    let to = Email::from_stored(&user.email);
    let message = Message::DeviceCompromised { username: user.username.clone(), sessions: revoked.len() };
    notifications::enqueue_email(&mut tx, &state.data_keys, user.id, &to, message).await?;
    crate::core::db::commit(tx).await?;
    state.outbox_wakeup.notify_one();
    Ok(())
}

/// Forgets the device; its sessions are revoked first.
pub async fn delete_device(state: &AppState, client: &ClientContext, auth: &AuthUser, id: Uuid) -> AppResult<()> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    // Locked and owned first: the audit row below refers to the device.
    if !repo::devices::lock_own_device(&mut *tx, auth.user_id, id).await? {
        return Err(AppError::NotFound);
    }
    let revoked = repo::devices::revoke_device_sessions(&mut tx, auth.user_id, id, "device_deleted").await?;
    let event = DeviceEvent {
        metadata: Some(serde_json::json!({ "sessions_revoked": revoked.len() })),
        ..device_event(auth.user_id, id, DeviceAction::Deleted, client)
    };
    // The audit row is written while the device still exists (its id is a reference).
    audit_log::record_device(&mut *tx, &event).await?;
    if !repo::devices::delete_device(&mut *tx, auth.user_id, id).await? {
        return Err(AppError::NotFound);
    }
    crate::core::db::commit(tx).await?;
    Ok(())
}

/// Devices within `km` of a point (the handler admits staff with `accounts.view_device`).
pub async fn devices_near(state: &AppState, (lat, lon): (f64, f64), km: f64, limit: i64) -> AppResult<Vec<NearDevice>> {
    Ok(repo::devices::devices_near(&state.db, lat, lon, km, limit).await?)
}
