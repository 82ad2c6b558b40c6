//! Request bodies and query strings of the admin users and MFA-approval routes. Query
//! values arrive as text and a bad one is a 422 naming the field, never a silent default.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::{
    core::{
        AppError, AppResult,
        error::Problems,
        extract::{self, Page, PageParams},
    },
    otp::policy,
};

/// `GET /admin/users`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserSearchQuery {
    /// Part of the email or username, case-insensitive.
    pub search: Option<String>,
    /// `true` or `false`.
    pub is_active: Option<String>,
    /// `true` or `false`.
    pub is_staff: Option<String>,
    pub page: Option<String>,
    /// 1..=100, default 20.
    pub limit: Option<String>,
}

/// The checked filters of a user search.
#[derive(Debug, Clone, Default)]
pub struct UserSearch {
    pub search: Option<String>,
    pub is_active: Option<bool>,
    pub is_staff: Option<bool>,
}

fn flag(problems: &mut Problems, field: &str, raw: Option<&str>) -> Option<bool> {
    raw.and_then(|r| problems.check(field, extract::flag(r).ok_or("must be true or false")))
}

impl UserSearchQuery {
    pub fn parse(&self) -> AppResult<(UserSearch, Page)> {
        let mut problems = Problems::new();
        let search = self.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
        if search.is_some_and(|s| s.chars().count() > 254) {
            problems.add("search", "must be at most 254 characters");
        }
        let filters = UserSearch {
            search: search.map(str::to_owned),
            is_active: flag(&mut problems, "is_active", self.is_active.as_deref()),
            is_staff: flag(&mut problems, "is_staff", self.is_staff.as_deref()),
        };
        let page = PageParams::from_text(self.page.as_deref(), self.limit.as_deref(), &mut problems);
        problems.finish((filters, page))
    }
}

/// `PATCH /admin/users/{id}`: any of the four; `is_staff`, `groups` and `mfa_settings`
/// need a superuser.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// false signs the user out everywhere and refuses their logins.
    pub is_active: Option<bool>,
    /// true starts the account's MFA grace period (`mfa_settings.grace_period_days`).
    pub is_staff: Option<bool>,
    /// The complete list of the user's group names, e.g. `["auditors"]`.
    pub groups: Option<Vec<String>>,
    pub mfa_settings: Option<MfaSettingsPatch>,
}

/// The user's MFA policy; fields left out keep their value. The per-method limits may only
/// tighten the built-in ones (422 otherwise): `rate_limit_per_hour` 1..=10 (codes sent per
/// hour, and wrong answers per hour before the method locks), `max_attempts` 1..=3 (wrong
/// answers a challenge or code survives), `lockout_minutes` 30..=1440 (how long the method
/// stays locked). `code_length` and `code_validity_seconds` stay within safe bounds.
#[derive(Debug, Default, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaSettingsPatch {
    /// 0..=90: days a newly made staff account may use the admin read routes (never the
    /// writes) before it enrols MFA.
    pub grace_period_days: Option<i32>,
    /// 6..=8 digits of emailed and texted codes (built-in 6).
    pub code_length: Option<i32>,
    /// 60..=900 seconds an emailed or texted code lives (built-in 300).
    pub code_validity_seconds: Option<i32>,
    /// On (the default): turning MFA off revokes the user's API keys, with a notice.
    pub enforce_for_api: Option<bool>,
    /// Keyed by `totp`, `backup_code`, `email` or `sms`; fields left out keep their value.
    #[schema(value_type = Option<Object>)]
    pub methods: Option<std::collections::BTreeMap<String, MethodLimitsPatch>>,
}

/// One method's limits in `mfa_settings.methods`; each may only tighten the built-in one.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodLimitsPatch {
    /// 1..=10 (built-in 10).
    pub rate_limit_per_hour: Option<i32>,
    /// 1..=3 (built-in 3).
    pub max_attempts: Option<i32>,
    /// 30..=1440 (built-in 30).
    pub lockout_minutes: Option<i32>,
}

/// The methods a policy can name (seed 002's accounts_mfamethodpreference).
pub const POLICY_METHODS: [&str; 4] = ["totp", "backup_code", "email", "sms"];

impl MfaSettingsPatch {
    fn check(&self, problems: &mut Problems) {
        let range = |problems: &mut Problems, field: &str, v: Option<i32>, r: std::ops::RangeInclusive<i32>| {
            if v.is_some_and(|v| !r.contains(&v)) {
                problems.add(field, format!("must be {} to {}", r.start(), r.end()));
            }
        };
        range(problems, "mfa_settings.grace_period_days", self.grace_period_days, policy::GRACE_PERIOD_DAYS);
        range(problems, "mfa_settings.code_length", self.code_length, policy::CODE_LENGTHS);
        range(
            problems,
            "mfa_settings.code_validity_seconds",
            self.code_validity_seconds,
            policy::CODE_VALIDITY_SECONDS,
        );
        for (method, limits) in self.methods.iter().flatten() {
            if !POLICY_METHODS.contains(&method.as_str()) {
                problems.add("mfa_settings.methods", "methods are totp, backup_code, email or sms");
            } else {
                for (field, value) in [
                    ("rate_limit_per_hour", limits.rate_limit_per_hour),
                    ("max_attempts", limits.max_attempts),
                    ("lockout_minutes", limits.lockout_minutes),
                ] {
                    if let Some(why) = policy::loosens(field, value) {
                        problems.add(&format!("mfa_settings.methods.{method}.{field}"), why);
                    }
                }
            }
        }
    }
}

impl UserPatch {
    pub fn parse(self) -> AppResult<UserPatch> {
        let mut problems = Problems::new();
        if self.is_active.is_none() && self.is_staff.is_none() && self.groups.is_none() && self.mfa_settings.is_none() {
            problems.add("body", "give at least one of is_active, is_staff, groups, mfa_settings");
        }
        if let Some(settings) = &self.mfa_settings {
            settings.check(&mut problems);
        }
        if let Some(groups) = &self.groups {
            if groups.len() > 50 {
                problems.add("groups", "at most 50 groups");
            }
            if groups.iter().any(|g| g.trim().is_empty() || g.chars().count() > 150) {
                problems.add("groups", "each name is 1 to 150 characters");
            }
        }
        problems.finish(self)
    }
}

/// `GET /admin/mfa/change-requests`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangeRequestQuery {
    /// `pending` (the default), `approved`, `rejected` or `all`.
    pub status: Option<String>,
    pub page: Option<String>,
    /// 1..=100, default 20.
    pub limit: Option<String>,
}

impl ChangeRequestQuery {
    /// The status filter (None for all) and the page.
    pub fn parse(&self) -> AppResult<(Option<&'static str>, Page)> {
        let mut problems = Problems::new();
        let status = match self.status.as_deref().unwrap_or("pending") {
            "pending" => Some("pending"),
            "approved" => Some("approved"),
            "rejected" => Some("rejected"),
            "all" => None,
            _ => {
                problems.add("status", "must be pending, approved, rejected or all");
                None
            }
        };
        let page = PageParams::from_text(self.page.as_deref(), self.limit.as_deref(), &mut problems);
        problems.finish((status, page))
    }
}

/// `POST /admin/users/{id}/mfa/reset` and `.../reject`: why, for the record.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeReason {
    /// Up to 255 characters, e.g. how the user's identity was checked.
    pub reason: Option<String>,
}

impl ChangeReason {
    pub fn parse(self) -> AppResult<Option<String>> {
        let reason = self.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.chars().count() > 255 || r.chars().any(char::is_control)) {
            return Err(AppError::validation("reason", "must be at most 255 characters, no control characters"));
        }
        Ok(reason)
    }
}
