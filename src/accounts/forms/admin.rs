//! Request bodies and query strings of the admin users and MFA-approval routes. Query
//! values arrive as text and a bad one is a 422 naming the field, never a silent default.

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::core::{
    AppError, AppResult,
    error::Problems,
    extract::{self, Page, PageParams},
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

/// `PATCH /admin/users/{id}`: any of the three; `is_staff` and `groups` need a superuser.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// false signs the user out everywhere and refuses their logins.
    pub is_active: Option<bool>,
    pub is_staff: Option<bool>,
    /// The complete list of the user's group names, e.g. `["auditors"]`.
    pub groups: Option<Vec<String>>,
}

impl UserPatch {
    pub fn parse(self) -> AppResult<UserPatch> {
        let mut problems = Problems::new();
        if self.is_active.is_none() && self.is_staff.is_none() && self.groups.is_none() {
            problems.add("body", "give at least one of is_active, is_staff, groups");
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
