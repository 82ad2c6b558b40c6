//! The front door of audit_log: query strings and bodies parsed into checked values (every
//! bad parameter reported at once, each under its own name), so the review service takes
//! filters, days, kinds and statuses, never raw text.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    jobs::JobKind,
    models::{
        events::{AuditKind, DeviceAction, LinkAction, MfaAction, RiskLevel, SessionAction},
        review::{Cursor, EventFilter},
    },
};
use crate::core::{
    AppResult,
    error::Problems,
    extract::{Page, PageParams, flag},
    text_enum,
};

text_enum!(
    /// An administrator's verdict on an audit event.
    ReviewStatus { Confirmed => "confirmed", Dismissed => "dismissed" }
);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// `confirmed` or `dismissed`.
    pub review_status: String,
    pub review_notes: Option<String>,
}

/// A checked review: the verdict and notes of at most 5000 characters.
#[derive(Debug, Clone)]
pub struct Review {
    pub status: ReviewStatus,
    pub notes: Option<String>,
}

impl ReviewRequest {
    pub fn parse(self) -> AppResult<Review> {
        let mut problems = Problems::new();
        let status = problems
            .check("review_status", ReviewStatus::parse(&self.review_status).ok_or("must be confirmed or dismissed"));
        if self.review_notes.as_ref().is_some_and(|n| n.chars().count() > 5000) {
            problems.add("review_notes", "must be at most 5000 characters");
        }
        let review = status.map(|status| Review { status, notes: self.review_notes });
        problems.into_result()?;
        review.ok_or_else(|| crate::core::AppError::validation("review_status", "must be confirmed or dismissed"))
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// One day, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// First day (default: 29 days before `to`).
    pub from: Option<String>,
    /// Last day, inclusive (default: today).
    pub to: Option<String>,
    pub user_id: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

impl SummaryQuery {
    /// The days `from..=to`, the user, and the page.
    pub fn parse(&self) -> AppResult<(NaiveDate, NaiveDate, Option<Uuid>, Page)> {
        let mut problems = Problems::new();
        let (from, to) = date_range(self.date.as_deref(), self.from.as_deref(), self.to.as_deref(), &mut problems);
        let page = PageParams::from_text(self.page.as_deref(), self.limit.as_deref(), &mut problems);
        let user = self
            .user_id
            .as_deref()
            .and_then(|u| problems.check("user_id", Uuid::parse_str(u).map_err(|_| "must be a UUID")));
        problems.finish((from, to, user, page))
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

impl RangeQuery {
    /// The days `from..=to` (default: the last 30 days).
    pub fn parse(&self) -> AppResult<(NaiveDate, NaiveDate)> {
        let mut problems = Problems::new();
        let range = date_range(None, self.from.as_deref(), self.to.as_deref(), &mut problems);
        problems.finish(range)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The day to (re)compute, `YYYY-MM-DD`, not in the future.
    #[schema(value_type = String, format = Date)]
    pub date: chrono::NaiveDate,
}

impl RunRequest {
    /// The day, not in the future.
    pub fn parse(&self) -> AppResult<NaiveDate> {
        if self.date > Utc::now().date_naive() {
            return Err(crate::core::AppError::validation("date", "must not be in the future"));
        }
        Ok(self.date)
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// `audit_summary`, `partitions`, `cleanup`, `ip_retention` or `data_export`.
    pub kind: Option<String>,
    /// `true`: only the newest run of each kind (what ran last, kind by kind).
    pub latest: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

impl JobsQuery {
    /// The kind, whether only the newest run of each kind, and the page.
    pub fn parse(&self) -> AppResult<(Option<JobKind>, bool, Page)> {
        let mut problems = Problems::new();
        let page = PageParams::from_text(self.page.as_deref(), self.limit.as_deref(), &mut problems);
        let kind =
            self.kind.as_deref().and_then(|k| problems.check("kind", JobKind::parse(k).ok_or("is not a job kind")));
        let latest = match self.latest.as_deref() {
            None => false,
            Some(raw) => problems.check("latest", flag(raw).ok_or("must be true or false")).unwrap_or(false),
        };
        problems.finish((kind, latest, page))
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OwnEventsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
}

impl OwnEventsQuery {
    /// The filter (dates only) and page of a user's own events.
    pub fn parse(&self) -> AppResult<(EventFilter, Page)> {
        let query = EventQuery {
            from: self.from.clone(),
            to: self.to.clone(),
            page: self.page.clone(),
            limit: self.limit.clone(),
            ..EventQuery::default()
        };
        parse_query(None, &query)
    }
}

// Query strings into filters: every value is text, so every bad parameter is reported at
// once, each under its own name.

/// Query of the admin lists; every value is checked and a bad one is a 422 naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    pub user_id: Option<String>,
    /// RFC 3339 instant, or a date (`YYYY-MM-DD`, from its start, UTC).
    pub from: Option<String>,
    /// RFC 3339 instant (exclusive), or a date (`YYYY-MM-DD`, inclusive, UTC).
    pub to: Option<String>,
    pub action: Option<String>,
    /// `low`, `medium`, `high` or `critical`.
    pub risk_level: Option<String>,
    /// 0-100.
    pub min_risk_score: Option<String>,
    pub is_anomalous: Option<String>,
    pub requires_review: Option<String>,
    /// One anomaly reason the rows must carry, e.g. `new_country` (docs/risk.md).
    pub anomaly: Option<String>,
    /// `newest` (the default) or, for device events only, `risk`: the highest
    /// `risk_score` first, the newest first among equals.
    pub order: Option<String>,
    pub page: Option<String>,
    pub limit: Option<String>,
    /// The admin lists' keyset cursor: `pagination.cursor` of the page before (opaque).
    pub cursor: Option<String>,
}

/// Parses `from` (start of a date) or `to` (end of a date, exclusive).
fn instant(raw: &str, end: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    let day = if end { day.checked_add_days(Days::new(1))? } else { day };
    Some(day.and_time(NaiveTime::MIN).and_utc())
}

impl EventQuery {
    /// The filter and page, checked against `kind`'s action names (None: a user's own
    /// events, across the tables).
    pub fn parse(&self, kind: Option<AuditKind>) -> AppResult<(EventFilter, Page)> {
        parse_query(kind, self)
    }
}

fn parse_query(kind: Option<AuditKind>, q: &EventQuery) -> AppResult<(EventFilter, Page)> {
    let mut problems = Problems::new();
    let mut f = EventFilter::default();
    if let Some(u) = &q.user_id {
        f.user_id = problems.check("user_id", Uuid::parse_str(u).map_err(|_| "must be a UUID"));
    }
    if let Some(v) = &q.from {
        f.from = instant(v, false).or_else(|| {
            problems.add("from", "must be an RFC 3339 time or YYYY-MM-DD");
            None
        });
    }
    if let Some(v) = &q.to {
        f.to = instant(v, true).or_else(|| {
            problems.add("to", "must be an RFC 3339 time or YYYY-MM-DD");
            None
        });
    }
    if let (Some(from), Some(to)) = (f.from, f.to)
        && from >= to
    {
        problems.add("to", "must be after from");
    }
    if let (Some(a), Some(kind)) = (&q.action, kind) {
        let known = match kind {
            AuditKind::Session => SessionAction::parse(a).is_some(),
            AuditKind::Device => DeviceAction::parse(a).is_some(),
            AuditKind::Mfa => MfaAction::parse(a).is_some(),
            AuditKind::Link => LinkAction::parse(a).is_some(),
        };
        if known {
            f.action = Some(a.clone());
        } else {
            problems.add("action", "is not an action of this audit table (docs/audit.md)");
        }
    }
    if let Some(r) = &q.risk_level {
        f.risk_level = RiskLevel::parse(r).or_else(|| {
            problems.add("risk_level", "must be low, medium, high or critical");
            None
        });
    }
    if let Some(s) = &q.min_risk_score {
        f.min_risk_score = s.parse::<i32>().ok().filter(|s| (0..=100).contains(s)).or_else(|| {
            problems.add("min_risk_score", "must be a whole number from 0 to 100");
            None
        });
    }
    for (raw, field, slot) in [
        (&q.is_anomalous, "is_anomalous", &mut f.is_anomalous),
        (&q.requires_review, "requires_review", &mut f.requires_review),
    ] {
        if let Some(v) = raw {
            *slot = flag(v).or_else(|| {
                problems.add(field, "must be true or false");
                None
            });
        }
    }
    if let Some(a) = &q.anomaly {
        // Reasons are named by the app that scores them; any well-formed name may be asked for.
        if (1..=50).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            f.anomaly = Some(a.clone());
        } else {
            problems.add("anomaly", "must be an anomaly reason such as new_country (docs/risk.md)");
        }
    }
    match (q.order.as_deref(), kind) {
        (None | Some("newest"), _) => {}
        (Some("risk"), Some(AuditKind::Device)) => f.by_risk = true,
        _ => problems.add("order", "must be newest, or risk for device events"),
    }
    if let Some(token) = &q.cursor {
        // A cursor belongs to the list order it came from: by risk it carries a score.
        match Cursor::decode(token) {
            Some(c) if c.risk_score.is_some() == f.by_risk => f.after = Some(c),
            _ => problems.add("cursor", "is not a cursor of this list (use pagination.cursor of the page before)"),
        }
    }
    let page = PageParams::from_text(q.page.as_deref(), q.limit.as_deref(), &mut problems);
    problems.finish((f, page))
}

/// The date range of a summaries query: `date`, or `from`..=`to` (default: the last 30 days).
fn date_range(
    date: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    problems: &mut Problems,
) -> (NaiveDate, NaiveDate) {
    let mut day = |raw: Option<&str>, field: &str| {
        raw.and_then(|r| {
            problems.check(field, NaiveDate::parse_from_str(r, "%Y-%m-%d").map_err(|_| "must be YYYY-MM-DD"))
        })
    };
    let (d, f, t) = (day(date, "date"), day(from, "from"), day(to, "to"));
    let today = Utc::now().date_naive();
    let (from, to) = match (d, f, t) {
        (Some(d), _, _) => (d, d),
        (None, f, t) => {
            let to = t.unwrap_or(today);
            (f.unwrap_or(to - Days::new(29)), to)
        }
    };
    if from > to {
        problems.add("to", "must not be before from");
    }
    if (to - from).num_days() > 366 {
        problems.add("from", "a range may span at most 367 days");
    }
    (from, to)
}
