//! Request bodies of the device API.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::core::{AppError, AppResult};

/// `PATCH /devices/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRename {
    /// 1 to 255 characters after trimming.
    pub device_name: String,
}

impl DeviceRename {
    pub fn parse(self) -> AppResult<String> {
        let name = self.device_name.trim();
        if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
            return Err(AppError::validation("device_name", "must be 1 to 255 characters, no control characters"));
        }
        Ok(name.to_owned())
    }
}

/// `POST /devices/{id}/trust`; the body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustRequest {
    /// 1..=90, default 30.
    pub days: Option<i64>,
}

impl TrustRequest {
    pub fn days(&self) -> i64 {
        self.days.unwrap_or(30)
    }
}
