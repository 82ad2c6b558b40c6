//! The user's notification settings: global switches, per-type preferences, quiet hours,
//! blocklist and consent (API.md "Notification settings"), and the delivery history. The
//! rules (validation, defaults, merging partial updates) are here; the queries in repo.rs.

use chrono::{DateTime, NaiveTime, Utc};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    models::{BlockType, Channel, ConsentType, NotificationType, Priority},
    repo,
};
use crate::{
    audit_log::{self, Origin, SessionAction, SessionEvent},
    core::{AppError, AppResult, error::FieldErrors},
};

fn problem(errors: &mut FieldErrors, field: &str, message: &str) {
    errors.entry(field.to_owned()).or_default().push(message.to_owned());
}

fn into_result(errors: FieldErrors) -> AppResult<()> {
    if errors.is_empty() { Ok(()) } else { Err(AppError::Validation(errors)) }
}

/// `HH:MM`, 24-hour.
pub fn parse_hhmm(raw: &str) -> Option<NaiveTime> {
    (raw.len() == 5).then(|| NaiveTime::parse_from_str(raw, "%H:%M").ok()).flatten()
}

fn hhmm(t: NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

/// Global switches (notifications_notificationpreference).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Preferences {
    pub email_otp: bool,
    pub email_alerts: bool,
    pub email_marketing: bool,
    pub sms_otp: bool,
    pub sms_alerts: bool,
    pub push_enabled: bool,
    pub quiet_hours_enabled: bool,
    /// `HH:MM` or null.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    /// `real-time`, `hourly`, `daily` or `weekly`.
    pub digest_frequency: String,
}

/// `PUT /notifications/preferences`: any subset of the fields; absent ones stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesPatch {
    pub email_otp: Option<bool>,
    pub email_alerts: Option<bool>,
    pub email_marketing: Option<bool>,
    pub sms_otp: Option<bool>,
    pub sms_alerts: Option<bool>,
    pub push_enabled: Option<bool>,
    pub quiet_hours_enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub quiet_start: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub quiet_end: Option<Option<String>>,
    pub digest_frequency: Option<String>,
}

fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub async fn preferences(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Preferences> {
    let row = repo::preference_row(&mut *db, user).await?;
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

pub async fn update_preferences(db: &mut PgConnection, user: Uuid, patch: PreferencesPatch) -> AppResult<Preferences> {
    let mut p = preferences(&mut *db, user).await?;
    let mut errors = FieldErrors::new();
    let mut time = |value: Option<Option<String>>, field: &str, slot: &mut Option<String>| {
        if let Some(v) = value {
            match v.as_deref().map(parse_hhmm) {
                Some(None) => problem(&mut errors, field, "must be HH:MM"),
                _ => *slot = v,
            }
        }
    };
    time(patch.quiet_start, "quiet_start", &mut p.quiet_start);
    time(patch.quiet_end, "quiet_end", &mut p.quiet_end);
    if let Some(f) = patch.digest_frequency {
        if !["real-time", "hourly", "daily", "weekly"].contains(&f.as_str()) {
            problem(&mut errors, "digest_frequency", "must be real-time, hourly, daily or weekly");
        }
        p.digest_frequency = f;
    }
    into_result(errors)?;
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
    let row = repo::PreferenceRow {
        email_otp: p.email_otp,
        email_alerts: p.email_alerts,
        email_marketing: p.email_marketing,
        sms_otp: p.sms_otp,
        sms_alerts: p.sms_alerts,
        push_enabled: p.push_enabled,
        quiet_hours_enabled: p.quiet_hours_enabled,
        quiet_start: p.quiet_start.as_deref().and_then(parse_hhmm),
        quiet_end: p.quiet_end.as_deref().and_then(parse_hhmm),
        digest_frequency: p.digest_frequency.clone(),
    };
    repo::save_preferences(&mut *db, user, &row).await?;
    Ok(p)
}

/// One type's preference (notifications_detailednotificationpreference).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TypePreference {
    pub notification_type: NotificationType,
    /// Security messages (codes, resets, token reuse) go whatever this says.
    pub security: bool,
    pub email_enabled: bool,
    pub sms_enabled: bool,
    pub in_app_enabled: bool,
    pub push_enabled: bool,
    pub priority: Priority,
    pub respect_quiet_hours: bool,
    /// 0..=1440.
    pub delay_minutes: i32,
    /// 0..=10000 messages of this type per rolling 24 hours.
    pub max_per_day: i32,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypePreferencePatch {
    pub email_enabled: Option<bool>,
    pub sms_enabled: Option<bool>,
    pub in_app_enabled: Option<bool>,
    pub push_enabled: Option<bool>,
    pub priority: Option<Priority>,
    pub respect_quiet_hours: Option<bool>,
    pub delay_minutes: Option<i32>,
    pub max_per_day: Option<i32>,
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

pub async fn type_preferences(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<TypePreference>> {
    let rows = repo::type_preference_rows(&mut *db, user).await?;
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
    db: &mut PgConnection,
    user: Uuid,
    kind: NotificationType,
    patch: TypePreferencePatch,
) -> AppResult<TypePreference> {
    let mut errors = FieldErrors::new();
    if patch.delay_minutes.is_some_and(|d| !(0..=1440).contains(&d)) {
        problem(&mut errors, "delay_minutes", "must be between 0 and 1440");
    }
    if patch.max_per_day.is_some_and(|m| !(0..=10_000).contains(&m)) {
        problem(&mut errors, "max_per_day", "must be between 0 and 10000");
    }
    into_result(errors)?;
    let current = type_preferences(&mut *db, user).await?;
    let mut p = current.into_iter().find(|p| p.notification_type == kind).unwrap_or_else(|| default_type(kind));
    p.email_enabled = patch.email_enabled.unwrap_or(p.email_enabled);
    p.sms_enabled = patch.sms_enabled.unwrap_or(p.sms_enabled);
    p.in_app_enabled = patch.in_app_enabled.unwrap_or(p.in_app_enabled);
    p.push_enabled = patch.push_enabled.unwrap_or(p.push_enabled);
    p.priority = patch.priority.unwrap_or(p.priority);
    p.respect_quiet_hours = patch.respect_quiet_hours.unwrap_or(p.respect_quiet_hours);
    p.delay_minutes = patch.delay_minutes.unwrap_or(p.delay_minutes);
    p.max_per_day = patch.max_per_day.unwrap_or(p.max_per_day);
    let row = repo::TypePreferenceRow {
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
    repo::save_type_preference(&mut *db, user, &row).await?;
    Ok(p)
}

/// A quiet-hours window; times are `HH:MM` in the user's profile timezone, and a window
/// whose end is not after its start runs past midnight into the next day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuietHours {
    pub id: Uuid,
    /// 0 = Monday .. 6 = Sunday.
    pub day_of_week: i32,
    pub start_time: String,
    pub end_time: String,
    pub is_enabled: bool,
    /// Critical messages still go during the window.
    pub allow_critical_only: bool,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewQuietHours {
    pub day_of_week: i32,
    pub start_time: String,
    pub end_time: String,
    pub is_enabled: Option<bool>,
    pub allow_critical_only: Option<bool>,
    pub description: Option<String>,
}

pub async fn quiet_hours(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<QuietHours>> {
    let rows = repo::quiet_hour_rows(&mut *db, user).await?;
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

pub async fn add_quiet_hours(db: &mut PgConnection, user: Uuid, new: NewQuietHours) -> AppResult<QuietHours> {
    let mut errors = FieldErrors::new();
    if !(0..=6).contains(&new.day_of_week) {
        problem(&mut errors, "day_of_week", "must be 0 (Monday) to 6 (Sunday)");
    }
    let start = parse_hhmm(&new.start_time);
    let end = parse_hhmm(&new.end_time);
    if start.is_none() {
        problem(&mut errors, "start_time", "must be HH:MM");
    }
    if end.is_none() {
        problem(&mut errors, "end_time", "must be HH:MM");
    }
    if start.is_some() && start == end {
        problem(&mut errors, "end_time", "must differ from start_time");
    }
    if new.description.as_deref().is_some_and(|d| d.chars().count() > 100) {
        problem(&mut errors, "description", "must be at most 100 characters");
    }
    into_result(errors)?;
    let (Some(start), Some(end)) = (start, end) else { return Err(AppError::internal("times checked above")) };
    let id = repo::insert_quiet_hours(
        &mut *db,
        user,
        new.day_of_week,
        start,
        end,
        new.is_enabled.unwrap_or(true),
        new.allow_critical_only.unwrap_or(true),
        new.description.as_deref(),
    )
    .await
    .map_err(|e| match crate::core::error::constraint(&e) {
        Some("notifications_quiethours_user_day_start_key") => AppError::Conflict {
            code: "QUIET_HOURS_EXIST",
            field: "start_time",
            message: "A window already starts at this time on this day.",
        },
        _ => e.into(),
    })?;
    quiet_hours(&mut *db, user).await?.into_iter().find(|q| q.id == id).ok_or(AppError::NotFound)
}

pub async fn delete_quiet_hours(db: &mut PgConnection, user: Uuid, id: Uuid) -> AppResult<()> {
    let done = repo::delete_quiet_hours(&mut *db, user, id).await?;
    if done { Ok(()) } else { Err(AppError::NotFound) }
}

/// An active blocklist entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Block {
    pub id: Uuid,
    pub block_type: BlockType,
    /// A notification type, a channel (`email`, `sms`, `in_app`, `push`), or a sender
    /// class (`alerts`, `news`).
    pub blocked_value: String,
    pub reason: Option<String>,
    pub blocked_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    pub block_type: BlockType,
    pub blocked_value: String,
    pub reason: Option<String>,
}

pub async fn blocks(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<Block>> {
    let rows = repo::block_rows(&mut *db, user).await?;
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

/// Blocks a type, channel or sender (re-activating an earlier entry for the same value).
/// Security messages cannot be blocked: asking to is a 422, not a silent no-op.
pub async fn add_block(db: &mut PgConnection, user: Uuid, new: NewBlock) -> AppResult<Block> {
    let mut errors = FieldErrors::new();
    let value = new.blocked_value.trim().to_owned();
    match new.block_type {
        BlockType::NotificationType => match NotificationType::parse(&value) {
            None => problem(&mut errors, "blocked_value", "must be a known notification type"),
            Some(k) if k.is_security() => {
                problem(&mut errors, "blocked_value", "security notifications cannot be blocked")
            }
            Some(_) => {}
        },
        BlockType::Channel => {
            if Channel::parse(&value).is_none() {
                problem(&mut errors, "blocked_value", "must be email, sms, in_app or push");
            }
        }
        BlockType::Sender => match value.as_str() {
            "alerts" | "news" => {}
            "security" => problem(&mut errors, "blocked_value", "security notifications cannot be blocked"),
            _ => problem(&mut errors, "blocked_value", "must be a sender class: alerts or news"),
        },
    }
    if new.reason.as_deref().is_some_and(|r| r.chars().count() > 255) {
        problem(&mut errors, "reason", "must be at most 255 characters");
    }
    into_result(errors)?;
    let id = repo::upsert_block(&mut *db, user, new.block_type.as_str(), &value, new.reason.as_deref()).await?;
    blocks(&mut *db, user).await?.into_iter().find(|b| b.id == id).ok_or(AppError::NotFound)
}

pub async fn remove_block(db: &mut PgConnection, user: Uuid, id: Uuid) -> AppResult<()> {
    let done = repo::deactivate_block(&mut *db, user, id).await?;
    if done { Ok(()) } else { Err(AppError::NotFound) }
}

/// A consent record (GDPR): what, when, from where.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consent {
    pub consent_type: ConsentType,
    pub is_consented: bool,
    pub consented_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    pub source: Option<String>,
    #[schema(value_type = Option<String>)]
    pub ip_address: Option<IpNetwork>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    pub is_consented: bool,
    /// Where the consent was given, e.g. `settings_page` (at most 50 characters).
    pub source: Option<String>,
}

pub async fn consents(db: &mut PgConnection, user: Uuid) -> sqlx::Result<Vec<Consent>> {
    let rows = repo::consent_rows(&mut *db, user).await?;
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
    tx: &mut PgConnection,
    user: Uuid,
    kind: ConsentType,
    change: ConsentChange,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> AppResult<Consent> {
    if change.source.as_deref().is_some_and(|s| s.chars().count() > 50) {
        return Err(AppError::validation("source", "must be at most 50 characters"));
    }
    repo::save_consent(&mut *tx, user, kind.as_str(), change.is_consented, change.source.as_deref(), ip, user_agent)
        .await?;
    let event = SessionEvent {
        origin: Origin { ip, ..Origin::default() },
        metadata: Some(serde_json::json!({ "consent_type": kind.as_str(), "is_consented": change.is_consented })),
        ..SessionEvent::new(user, SessionAction::ConsentChanged)
    };
    audit_log::record_session(&mut *tx, &event).await?;
    consents(&mut *tx, user).await?.into_iter().find(|c| c.consent_type == kind).ok_or(AppError::NotFound)
}

/// One message of the user's delivery history.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    /// `email` or `sms`.
    pub channel: String,
    pub notification_type: String,
    pub recipient: String,
    pub subject: Option<String>,
    /// `pending`, `sending`, `sent`, `delivered`, `opened`, `failed`, `cancelled`.
    pub status: String,
    pub retry_count: i32,
    /// When it is (or was) due: later than `created_at` for a deferred message.
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The user's emails and texts, newest first, with the total.
pub async fn deliveries(
    db: &mut PgConnection,
    user: Uuid,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Delivery>, i64)> {
    let items = repo::deliveries(&mut *db, user, limit, offset).await?;
    let total = repo::delivery_count(&mut *db, user).await?;
    Ok((items, total))
}
