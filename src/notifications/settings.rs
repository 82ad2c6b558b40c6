//! The user's notification settings: global switches, per-type preferences, quiet hours,
//! blocklist and consent (API.md "Notification settings"), and the delivery history. The
//! rules (defaults, merging partial updates) are here, each public function owns its
//! transaction; bodies are checked in forms.rs, the shapes are in models.rs, the queries in
//! repo.

use chrono::NaiveTime;
use ipnetwork::IpNetwork;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    forms::{BlockEntry, ConsentDecision, ConsentSource, Hhmm, PreferenceChanges, QuietWindow, TypePreferencePatch},
    models::{
        Block, BlockType, Consent, ConsentType, Delivery, NotificationType, Preferences, Priority, QuietHours,
        TypePreference,
    },
    repo,
};
use crate::{
    audit_log::{self, Origin, SessionAction, SessionEvent},
    core::{
        AppError, AppResult, AppState,
        error::{Conflict, ResultExt},
        extract::Page,
    },
};

fn hhmm(t: NaiveTime) -> String {
    Hhmm(t).to_string()
}

pub async fn preferences(state: &AppState, user: Uuid) -> AppResult<Preferences> {
    let mut conn = state.db.acquire().await?;
    Ok(load_preferences(&mut conn, user).await?)
}

async fn load_preferences(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Preferences> {
    let row = repo::settings::preference_row(&mut *db, user).await?;
    Ok(match row {
        Some(r) => Preferences {
            email_otp: r.email_otp,
            email_alerts: r.email_alerts,
            email_marketing: r.email_marketing,
            sms_otp: r.sms_otp,
            sms_alerts: r.sms_alerts,
            push_enabled: r.push_enabled,
            quiet_hours_enabled: r.quiet_hours_enabled,
            quiet_start: r.quiet_start.map(hhmm),
            quiet_end: r.quiet_end.map(hhmm),
            digest_frequency: r.digest_frequency,
        },
        None => Preferences {
            email_otp: true,
            email_alerts: true,
            email_marketing: false,
            sms_otp: true,
            sms_alerts: true,
            push_enabled: false,
            quiet_hours_enabled: false,
            quiet_start: None,
            quiet_end: None,
            digest_frequency: "real-time".into(),
        },
    })
}

/// Applies a checked change (`forms::PreferencesPatch::parse`) to the stored preferences.
pub async fn update_preferences(state: &AppState, user: Uuid, patch: PreferenceChanges) -> AppResult<Preferences> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let mut p = load_preferences(&mut tx, user).await?;
    if let Some(t) = patch.quiet_start {
        p.quiet_start = t.map(|t| t.to_string());
    }
    if let Some(t) = patch.quiet_end {
        p.quiet_end = t.map(|t| t.to_string());
    }
    if let Some(f) = patch.digest_frequency {
        p.digest_frequency = f.as_str().to_owned();
    }
    for (value, slot) in [
        (patch.email_otp, &mut p.email_otp),
        (patch.email_alerts, &mut p.email_alerts),
        (patch.email_marketing, &mut p.email_marketing),
        (patch.sms_otp, &mut p.sms_otp),
        (patch.sms_alerts, &mut p.sms_alerts),
        (patch.push_enabled, &mut p.push_enabled),
        (patch.quiet_hours_enabled, &mut p.quiet_hours_enabled),
    ] {
        if let Some(v) = value {
            *slot = v;
        }
    }
    let row = repo::settings::PreferenceRow {
        email_otp: p.email_otp,
        email_alerts: p.email_alerts,
        email_marketing: p.email_marketing,
        sms_otp: p.sms_otp,
        sms_alerts: p.sms_alerts,
        push_enabled: p.push_enabled,
        quiet_hours_enabled: p.quiet_hours_enabled,
        quiet_start: p.quiet_start.as_deref().and_then(|t| Hhmm::parse(t).ok()).map(|t| t.0),
        quiet_end: p.quiet_end.as_deref().and_then(|t| Hhmm::parse(t).ok()).map(|t| t.0),
        digest_frequency: p.digest_frequency.clone(),
    };
    repo::settings::save_preferences(&mut *tx, user, &row).await?;
    crate::core::db::commit(tx).await?;
    Ok(p)
}

fn default_type(kind: NotificationType) -> TypePreference {
    TypePreference {
        notification_type: kind,
        security: kind.is_security(),
        email_enabled: true,
        sms_enabled: true,
        in_app_enabled: true,
        push_enabled: true,
        priority: kind.priority(),
        respect_quiet_hours: true,
        delay_minutes: 0,
        max_per_day: 100,
    }
}

pub async fn type_preferences(state: &AppState, user: Uuid) -> AppResult<Vec<TypePreference>> {
    let mut conn = state.db.acquire().await?;
    Ok(load_type_preferences(&mut conn, user).await?)
}

async fn load_type_preferences(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<TypePreference>> {
    let rows = repo::settings::type_preference_rows(&mut *db, user).await?;
    Ok(NotificationType::ALL
        .iter()
        .map(|kind| match rows.iter().find(|r| r.notification_type == kind.as_str()) {
            Some(r) => TypePreference {
                email_enabled: r.email_enabled,
                sms_enabled: r.sms_enabled,
                in_app_enabled: r.in_app_enabled,
                push_enabled: r.push_enabled,
                priority: Priority::parse(&r.priority).unwrap_or(kind.priority()),
                respect_quiet_hours: r.respect_quiet_hours,
                delay_minutes: r.delay_minutes,
                max_per_day: r.max_per_day,
                ..default_type(*kind)
            },
            None => default_type(*kind),
        })
        .collect())
}

pub async fn update_type_preference(
    state: &AppState,
    user: Uuid,
    kind: NotificationType,
    patch: TypePreferencePatch,
) -> AppResult<TypePreference> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let current = load_type_preferences(&mut tx, user).await?;
    let mut p = current.into_iter().find(|p| p.notification_type == kind).unwrap_or_else(|| default_type(kind));
    p.email_enabled = patch.email_enabled.unwrap_or(p.email_enabled);
    p.sms_enabled = patch.sms_enabled.unwrap_or(p.sms_enabled);
    p.in_app_enabled = patch.in_app_enabled.unwrap_or(p.in_app_enabled);
    p.push_enabled = patch.push_enabled.unwrap_or(p.push_enabled);
    p.priority = patch.priority.unwrap_or(p.priority);
    p.respect_quiet_hours = patch.respect_quiet_hours.unwrap_or(p.respect_quiet_hours);
    p.delay_minutes = patch.delay_minutes.unwrap_or(p.delay_minutes);
    p.max_per_day = patch.max_per_day.unwrap_or(p.max_per_day);
    let row = repo::settings::TypePreferenceRow {
        notification_type: kind.as_str().to_owned(),
        email_enabled: p.email_enabled,
        sms_enabled: p.sms_enabled,
        in_app_enabled: p.in_app_enabled,
        push_enabled: p.push_enabled,
        priority: p.priority.as_str().to_owned(),
        respect_quiet_hours: p.respect_quiet_hours,
        delay_minutes: p.delay_minutes,
        max_per_day: p.max_per_day,
    };
    repo::settings::save_type_preference(&mut *tx, user, &row).await?;
    crate::core::db::commit(tx).await?;
    Ok(p)
}

pub async fn quiet_hours(state: &AppState, user: Uuid) -> AppResult<Vec<QuietHours>> {
    let mut conn = state.db.acquire().await?;
    Ok(load_quiet_hours(&mut conn, user).await?)
}

async fn load_quiet_hours(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<QuietHours>> {
    let rows = repo::settings::quiet_hour_rows(&mut *db, user).await?;
    Ok(rows
        .into_iter()
        .map(|r| QuietHours {
            id: r.id,
            day_of_week: r.day_of_week,
            start_time: hhmm(r.start_time),
            end_time: hhmm(r.end_time),
            is_enabled: r.is_enabled,
            allow_critical_only: r.allow_critical_only,
            description: r.description,
            created_at: r.created_at,
        })
        .collect())
}

pub async fn add_quiet_hours(state: &AppState, user: Uuid, new: QuietWindow) -> AppResult<QuietHours> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let id = repo::settings::insert_quiet_hours(
        &mut *tx,
        user,
        new.day_of_week,
        new.start.0,
        new.end.0,
        new.is_enabled,
        new.allow_critical_only,
        new.description.as_deref(),
    )
    .await
    .on_constraint(&[("notifications_quiethours_user_day_start_key", Conflict::QuietHoursExist)])?;
    let window = load_quiet_hours(&mut tx, user).await?.into_iter().find(|q| q.id == id).ok_or(AppError::NotFound)?;
    crate::core::db::commit(tx).await?;
    Ok(window)
}

pub async fn delete_quiet_hours(state: &AppState, user: Uuid, id: Uuid) -> AppResult<()> {
    let done = repo::settings::delete_quiet_hours(&state.db, user, id).await?;
    if done { Ok(()) } else { Err(AppError::NotFound) }
}

pub async fn blocks(state: &AppState, user: Uuid) -> AppResult<Vec<Block>> {
    let mut conn = state.db.acquire().await?;
    Ok(load_blocks(&mut conn, user).await?)
}

async fn load_blocks(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<Block>> {
    let rows = repo::settings::block_rows(&mut *db, user).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Block {
                id: r.id,
                block_type: BlockType::parse(&r.block_type)?,
                blocked_value: r.blocked_value,
                reason: r.reason,
                blocked_at: r.blocked_at,
                created_at: r.created_at,
            })
        })
        .collect())
}

/// Blocks a type, channel or sender (re-activating an earlier entry for the same value);
/// `forms::NewBlock::parse` has refused security messages.
pub async fn add_block(state: &AppState, user: Uuid, new: BlockEntry) -> AppResult<Block> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let id = repo::settings::upsert_block(&mut *tx, user, new.block_type.as_str(), &new.value, new.reason.as_deref())
        .await?;
    let block = load_blocks(&mut tx, user).await?.into_iter().find(|b| b.id == id).ok_or(AppError::NotFound)?;
    crate::core::db::commit(tx).await?;
    Ok(block)
}

pub async fn remove_block(state: &AppState, user: Uuid, id: Uuid) -> AppResult<()> {
    let done = repo::settings::deactivate_block(&state.db, user, id).await?;
    if done { Ok(()) } else { Err(AppError::NotFound) }
}

pub async fn consents(state: &AppState, user: Uuid) -> AppResult<Vec<Consent>> {
    let mut conn = state.db.acquire().await?;
    Ok(load_consents(&mut conn, user).await?)
}

async fn load_consents(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<Consent>> {
    let rows = repo::settings::consent_rows(&mut *db, user).await?;
    Ok(ConsentType::ALL
        .iter()
        .map(|t| match rows.iter().find(|r| r.consent_type == t.as_str()) {
            Some(r) => Consent {
                consent_type: *t,
                is_consented: r.is_consented,
                consented_at: r.consented_at,
                withdrawn_at: r.withdrawn_at,
                source: r.source.clone(),
                ip_address: r.ip_address,
                updated_at: Some(r.updated_at),
            },
            None => Consent {
                consent_type: *t,
                is_consented: false,
                consented_at: None,
                withdrawn_at: None,
                source: None,
                ip_address: None,
                updated_at: None,
            },
        })
        .collect())
}

/// Records a consent change with its source, IP and user agent, and audits it in the same
/// transaction (`consent_changed`).
pub async fn set_consent(
    state: &AppState,
    user: Uuid,
    kind: ConsentType,
    change: ConsentDecision,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> AppResult<Consent> {
    let mut tx = crate::core::db::begin(&state.db).await?;
    let source = change.source.as_ref().map(ConsentSource::as_str);
    repo::settings::save_consent(&mut *tx, user, kind.as_str(), change.is_consented, source, ip, user_agent).await?;
    let event = SessionEvent {
        origin: Origin { ip, ..Origin::default() },
        metadata: Some(serde_json::json!({ "consent_type": kind.as_str(), "is_consented": change.is_consented })),
        ..SessionEvent::new(user, SessionAction::ConsentChanged)
    };
    audit_log::record_session(&mut *tx, &event).await?;
    let consent =
        load_consents(&mut tx, user).await?.into_iter().find(|c| c.consent_type == kind).ok_or(AppError::NotFound)?;
    crate::core::db::commit(tx).await?;
    Ok(consent)
}

/// The user's emails and texts, newest first, with the total.
pub async fn deliveries(state: &AppState, user: Uuid, page: Page) -> AppResult<(Vec<Delivery>, i64)> {
    let items = repo::settings::deliveries(&state.db, user, page.limit, page.offset()).await?;
    let total = repo::settings::delivery_count(&state.db, user).await?;
    Ok((items, total))
}
