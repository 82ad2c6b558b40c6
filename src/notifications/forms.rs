//! The front door of notifications: the settings API's bodies parsed into checked values
//! (`HH:MM` times, digest frequencies, blockable values, consent sources), every problem
//! reported at once under its field, so the settings service never sees raw text.

use chrono::NaiveTime;
use serde::Deserialize;
use utoipa::ToSchema;

use super::models::{BlockType, Channel, NotificationType, Priority};
use crate::core::{AppResult, error::Problems};

/// A time of day as the API spells it: `HH:MM`, 24-hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hhmm(pub NaiveTime);

impl Hhmm {
    pub fn parse(raw: &str) -> Result<Hhmm, &'static str> {
        (raw.len() == 5)
            .then(|| NaiveTime::parse_from_str(raw, "%H:%M").ok())
            .flatten()
            .map(Hhmm)
            .ok_or("must be HH:MM")
    }
}

impl std::fmt::Display for Hhmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

/// How often held (non-security) messages go out as one digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestFrequency {
    RealTime,
    Hourly,
    Daily,
    Weekly,
}

impl DigestFrequency {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestFrequency::RealTime => "real-time",
            DigestFrequency::Hourly => "hourly",
            DigestFrequency::Daily => "daily",
            DigestFrequency::Weekly => "weekly",
        }
    }

    pub fn parse(raw: &str) -> Result<DigestFrequency, &'static str> {
        match raw {
            "real-time" => Ok(DigestFrequency::RealTime),
            "hourly" => Ok(DigestFrequency::Hourly),
            "daily" => Ok(DigestFrequency::Daily),
            "weekly" => Ok(DigestFrequency::Weekly),
            _ => Err("must be real-time, hourly, daily or weekly"),
        }
    }
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

/// A checked preferences change; None leaves a field as it is, `Some(None)` clears a time.
#[derive(Debug, Default, Clone)]
pub struct PreferenceChanges {
    pub email_otp: Option<bool>,
    pub email_alerts: Option<bool>,
    pub email_marketing: Option<bool>,
    pub sms_otp: Option<bool>,
    pub sms_alerts: Option<bool>,
    pub push_enabled: Option<bool>,
    pub quiet_hours_enabled: Option<bool>,
    pub quiet_start: Option<Option<Hhmm>>,
    pub quiet_end: Option<Option<Hhmm>>,
    pub digest_frequency: Option<DigestFrequency>,
}

impl PreferencesPatch {
    pub fn parse(self) -> AppResult<PreferenceChanges> {
        let mut problems = Problems::new();
        let mut time = |value: Option<Option<String>>, field: &str| match value {
            None => None,
            Some(None) => Some(None),
            Some(Some(raw)) => problems.check(field, Hhmm::parse(&raw)).map(Some),
        };
        let quiet_start = time(self.quiet_start, "quiet_start");
        let quiet_end = time(self.quiet_end, "quiet_end");
        let digest_frequency =
            self.digest_frequency.and_then(|f| problems.check("digest_frequency", DigestFrequency::parse(&f)));
        problems.finish(PreferenceChanges {
            email_otp: self.email_otp,
            email_alerts: self.email_alerts,
            email_marketing: self.email_marketing,
            sms_otp: self.sms_otp,
            sms_alerts: self.sms_alerts,
            push_enabled: self.push_enabled,
            quiet_hours_enabled: self.quiet_hours_enabled,
            quiet_start,
            quiet_end,
            digest_frequency,
        })
    }
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

impl TypePreferencePatch {
    /// The same change, its numbers in range: a delay of 0..1440 minutes, 0..10000 a day.
    pub fn parse(self) -> AppResult<TypePreferencePatch> {
        let mut problems = Problems::new();
        if self.delay_minutes.is_some_and(|d| !(0..=1440).contains(&d)) {
            problems.add("delay_minutes", "must be between 0 and 1440");
        }
        if self.max_per_day.is_some_and(|m| !(0..=10_000).contains(&m)) {
            problems.add("max_per_day", "must be between 0 and 10000");
        }
        problems.finish(self)
    }
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

/// A checked quiet-hours window: a weekday, two different times, a short description.
#[derive(Debug, Clone)]
pub struct QuietWindow {
    /// 0 = Monday .. 6 = Sunday.
    pub day_of_week: i32,
    pub start: Hhmm,
    pub end: Hhmm,
    pub is_enabled: bool,
    pub allow_critical_only: bool,
    pub description: Option<String>,
}

impl NewQuietHours {
    pub fn parse(self) -> AppResult<QuietWindow> {
        let mut problems = Problems::new();
        if !(0..=6).contains(&self.day_of_week) {
            problems.add("day_of_week", "must be 0 (Monday) to 6 (Sunday)");
        }
        let start = problems.check("start_time", Hhmm::parse(&self.start_time));
        let end = problems.check("end_time", Hhmm::parse(&self.end_time));
        if start.is_some() && start == end {
            problems.add("end_time", "must differ from start_time");
        }
        if self.description.as_deref().is_some_and(|d| d.chars().count() > 100) {
            problems.add("description", "must be at most 100 characters");
        }
        let window = start.zip(end).map(|(start, end)| QuietWindow {
            day_of_week: self.day_of_week,
            start,
            end,
            is_enabled: self.is_enabled.unwrap_or(true),
            allow_critical_only: self.allow_critical_only.unwrap_or(true),
            description: self.description,
        });
        problems.into_result()?;
        window.ok_or_else(|| crate::core::AppError::validation("start_time", "must be HH:MM"))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    pub block_type: BlockType,
    pub blocked_value: String,
    pub reason: Option<String>,
}

/// A checked blocklist entry: a known value of its kind that is not a security one.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    pub block_type: BlockType,
    pub value: String,
    pub reason: Option<String>,
}

impl NewBlock {
    /// Security messages cannot be blocked: asking to is a 422, not a silent no-op.
    pub fn parse(self) -> AppResult<BlockEntry> {
        let mut problems = Problems::new();
        let value = self.blocked_value.trim().to_owned();
        match self.block_type {
            BlockType::NotificationType => match NotificationType::parse(&value) {
                None => problems.add("blocked_value", "must be a known notification type"),
                Some(k) if k.is_security() => problems.add("blocked_value", "security notifications cannot be blocked"),
                Some(_) => {}
            },
            BlockType::Channel => {
                if Channel::parse(&value).is_none() {
                    problems.add("blocked_value", "must be email, sms, in_app or push");
                }
            }
            BlockType::Sender => match value.as_str() {
                "alerts" | "news" => {}
                "security" => problems.add("blocked_value", "security notifications cannot be blocked"),
                _ => problems.add("blocked_value", "must be a sender class: alerts or news"),
            },
        }
        if self.reason.as_deref().is_some_and(|r| r.chars().count() > 255) {
            problems.add("reason", "must be at most 255 characters");
        }
        problems.finish(BlockEntry { block_type: self.block_type, value, reason: self.reason })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    pub is_consented: bool,
    /// Where the consent was given, e.g. `settings_page` (at most 50 characters).
    pub source: Option<String>,
}

/// Where a consent was given: at most 50 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentSource(String);

impl ConsentSource {
    pub fn parse(raw: String) -> Result<ConsentSource, &'static str> {
        if raw.chars().count() > 50 { Err("must be at most 50 characters") } else { Ok(ConsentSource(raw)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked consent decision.
#[derive(Debug, Clone)]
pub struct ConsentDecision {
    pub is_consented: bool,
    pub source: Option<ConsentSource>,
}

impl ConsentChange {
    pub fn parse(self) -> AppResult<ConsentDecision> {
        let mut problems = Problems::new();
        let source = self.source.and_then(|s| problems.check("source", ConsentSource::parse(s)));
        problems.finish(ConsentDecision { is_consented: self.is_consented, source })
    }
}

/// Absent -> None (leave), null -> Some(None) (clear), value -> Some(Some(v)).
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}
