//! What administrators read: partitions, job runs, events as listed, summaries, retention.

use chrono::{DateTime, NaiveDate, Utc};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::events::{AuditKind, RiskLevel};

/// One monthly (or the DEFAULT) partition, as `partitions list` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartitionInfo {
    pub parent: String,
    pub name: String,
    /// `FOR VALUES FROM (...) TO (...)` or `DEFAULT`.
    pub bounds: String,
    pub rows: i64,
    pub size_bytes: i64,
}

/// One background job run (audit_log_jobrun).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct JobRun {
    pub id: Uuid,
    /// `audit_summary`, `partitions`, `cleanup`, `ip_retention`, `data_export`.
    pub kind: String,
    pub target_date: Option<NaiveDate>,
    /// `succeeded`, `failed`, `skipped` (another run held or had done the day), `running`.
    pub status: String,
    pub rows_affected: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// `scheduler`, `cli` or `admin`.
    pub triggered_by: String,
    /// Rows by kind, where the job reports them (cleanup).
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// A job run about to be recorded.
#[derive(Debug, Clone)]
pub struct NewJobRun {
    pub kind: crate::audit_log::jobs::JobKind,
    pub target_date: Option<NaiveDate>,
    pub status: crate::audit_log::jobs::RunStatus,
    pub rows_affected: i64,
    pub started_at: DateTime<Utc>,
    pub error: Option<String>,
    pub triggered_by: crate::audit_log::jobs::Trigger,
    pub details: Option<serde_json::Value>,
}

/// One audit row as the admin API and a user's own history show it, whatever its table.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: Uuid,
    /// `session`, `device`, `mfa` or `link`.
    pub kind: String,
    pub user_id: Uuid,
    pub session_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub action: String,
    pub risk_level: String,
    /// Device events' 0-100 score; for the others, the floor of their level.
    pub risk_score: Option<i32>,
    pub is_anomalous: bool,
    pub anomaly_reasons: Option<Vec<String>>,
    pub requires_review: bool,
    /// `confirmed` or `dismissed` once reviewed.
    pub review_status: Option<String>,
    pub reviewed_by_id: Option<Uuid>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub review_notes: Option<String>,
    #[schema(value_type = Option<String>)]
    pub ip_address: Option<IpNetwork>,
    pub country: Option<String>,
    pub city: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub total: i64,
}

/// Filters of the admin audit lists, parsed and checked.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub user_id: Option<Uuid>,
    pub action: Option<String>,
    pub risk_level: Option<RiskLevel>,
    pub min_risk_score: Option<i32>,
    pub is_anomalous: Option<bool>,
    pub requires_review: Option<bool>,
    /// Rows whose anomaly_reasons hold this reason.
    pub anomaly: Option<String>,
    /// Device events only: the riskiest first (`order=risk`) instead of the newest.
    pub by_risk: bool,
    /// Keyset paging: only rows after this one in the list's order.
    pub after: Option<Cursor>,
}

/// Where a keyset page ends: the last row's sort key. Sent to clients as an opaque
/// base64url token (`v1:<risk>:<micros>:<id>`; risk only for the device list by risk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub risk_score: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        use base64::Engine;
        let risk = self.risk_score.map(|r| r.to_string()).unwrap_or_default();
        let text = format!("v1:{risk}:{}:{}", self.created_at.timestamp_micros(), self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// A token from `encode`; None for anything else.
    pub fn decode(token: &str) -> Option<Cursor> {
        use base64::Engine;
        if token.len() > 200 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split(':');
        if parts.next()? != "v1" {
            return None;
        }
        let risk = match parts.next()? {
            "" => None,
            r => Some(r.parse::<i32>().ok().filter(|r| (0..=100).contains(r))?),
        };
        // 1970..=9999: every row's time is in it, and PostgreSQL takes every value of it (a
        // forged cursor outside would reach the query as an out-of-range error).
        let micros = parts.next()?.parse::<i64>().ok().filter(|m| (0..=253_402_300_799_999_999).contains(m))?;
        let created_at = DateTime::from_timestamp_micros(micros)?;
        let id = Uuid::parse_str(parts.next()?).ok()?;
        parts.next().is_none().then_some(Cursor { risk_score: risk, created_at, id })
    }
}

/// One keyset page of an admin audit list.
#[derive(Debug)]
pub struct EventPage {
    pub items: Vec<AuditEvent>,
    /// Rows matching the filters, counted up to `COUNT_CAP`.
    pub total: i64,
    /// False when the count stopped at `COUNT_CAP` (there are more).
    pub total_exact: bool,
    /// The cursor of the next page, when there is one.
    pub next: Option<Cursor>,
}

/// The admin lists count matching rows up to this many (a month's partition may hold tens
/// of millions: an exact count would cost more than the page).
pub const COUNT_CAP: i64 = 1_000;

/// A row of audit_log_auditlogsummary.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Summary {
    pub user_id: Uuid,
    pub date: NaiveDate,
    pub total_sessions: i32,
    pub total_devices: i32,
    pub total_failed_logins: i32,
    pub total_mfa_challenges: i32,
    pub total_api_calls: i32,
    pub total_events: i32,
    pub low_risk_events: i32,
    pub medium_risk_events: i32,
    pub high_risk_events: i32,
    pub critical_risk_events: i32,
    pub countries_accessed: i32,
    pub unique_ips: i32,
    pub unique_devices: i32,
    pub mfa_enabled_count: i32,
    pub mfa_disabled_count: i32,
    pub backup_codes_generated: i32,
    pub rate_limit_exceeded: i32,
    pub anomalies_detected: i32,
    pub approvals_required: i32,
    pub approvals_completed: i32,
    pub updated_at: DateTime<Utc>,
}

/// One day's totals over every user (days without rows are zeros).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct DailyTotals {
    pub date: NaiveDate,
    pub users: i64,
    pub total_sessions: i64,
    pub total_failed_logins: i64,
    pub total_mfa_challenges: i64,
    pub total_events: i64,
    pub low_risk_events: i64,
    pub medium_risk_events: i64,
    pub high_risk_events: i64,
    pub critical_risk_events: i64,
    pub rate_limit_exceeded: i64,
    pub anomalies_detected: i64,
}

/// Months kept for one audit table.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Retention {
    /// `session`, `device`, `mfa` or `link`.
    pub kind: AuditKind,
    pub table_name: String,
    pub months_kept: i32,
    /// True when no policy row exists and AUDIT_RETENTION_MONTHS applies.
    pub is_default: bool,
}
