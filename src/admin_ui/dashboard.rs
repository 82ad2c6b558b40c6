//! The dashboard's data: daily totals and top users, the review queue, users with their
//! lock state and the MFA change requests, each shown only with its permission.

use std::collections::HashMap;

use chrono::{Days, Utc};
use minijinja::context;
use serde::Serialize;
use uuid::Uuid;

use super::{chart, render, session_csrf};
use crate::{
    accounts::service,
    audit_log::{
        models::{events::AuditKind, review::EventFilter},
        review as audit_review,
    },
    core::{
        AppError, AppState,
        auth::{self, AuthUser},
        extract::Page,
    },
};

#[derive(Serialize)]
struct TopUser {
    name: String,
    high: i32,
    critical: i32,
    failed: i32,
    events: i32,
}

#[derive(Serialize)]
struct QueueItem {
    id: Uuid,
    kind: String,
    action: String,
    risk_level: String,
    user: String,
    reasons: String,
    created_at: String,
}

#[derive(Serialize)]
struct UserRowView {
    id: Uuid,
    username: String,
    email: String,
    is_active: bool,
    is_staff: bool,
    mfa_enabled: bool,
    locked_minutes: Option<u64>,
}

#[derive(Serialize)]
struct PasskeyView {
    name: String,
    created_at: String,
    last_used_at: Option<String>,
}

#[derive(Serialize)]
struct ChangeRequestView {
    id: Uuid,
    user: String,
    action: String,
    method: String,
    reason: String,
    requested_by: String,
    requested_at: String,
}

const MINUTE: &str = "%Y-%m-%d %H:%M UTC";

/// Whether `user` holds `permission`; other failures (the database) are errors.
pub(super) async fn holds(state: &AppState, user: &AuthUser, permission: &str) -> Result<bool, AppError> {
    match auth::require_permission(state, user, permission).await {
        Ok(()) => Ok(true),
        Err(AppError::Forbidden) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The users section: matches of `search` (or the newest) with their lock state.
async fn users_section(state: &AppState, search: Option<&str>) -> Result<Vec<UserRowView>, AppError> {
    let search = search.map(str::trim).filter(|s| !s.is_empty() && s.chars().count() <= 254);
    let filter = crate::accounts::forms::admin::UserSearch { search: search.map(str::to_owned), ..Default::default() };
    let (users, _) = service::list_users(state, &filter, Page { page: 1, limit: 20 }).await?;
    let mut rows = Vec::with_capacity(users.len());
    for u in users {
        let locked = service::lock_of(state, &u.email).await?;
        rows.push(UserRowView {
            id: u.id,
            username: u.username,
            email: u.email,
            is_active: u.is_active,
            is_staff: u.is_staff,
            mfa_enabled: u.mfa_enabled,
            locked_minutes: locked.map(|secs| secs.div_ceil(60)),
        });
    }
    Ok(rows)
}

pub(super) async fn dashboard(state: &AppState, user: &AuthUser, search: Option<&str>) -> Result<String, AppError> {
    let today = Utc::now().date_naive();
    // Summaries need the permission the API asks for them: without it the page shows the
    // review queue only.
    let summaries = match auth::require_permission(state, user, "audit_log.view_auditlogsummary").await {
        Ok(()) => true,
        Err(AppError::Forbidden) => false,
        Err(e) => return Err(e),
    };
    let days = if summaries { audit_review::daily(state, today - Days::new(29), today).await? } else { Vec::new() };
    let mut top_date = None;
    let mut top_rows = Vec::new();
    for day in [today, today - Days::new(1)].into_iter().filter(|_| summaries) {
        let (rows, _) = audit_review::summaries(state, day, day, None, Page { page: 1, limit: 10 }).await?;
        if !rows.is_empty() {
            top_date = Some(day);
            top_rows = rows;
            break;
        }
    }
    let review_filter = EventFilter { requires_review: Some(true), ..EventFilter::default() };
    let mut queue = Vec::new();
    for kind in AuditKind::ALL {
        let rows = audit_review::list(state, *kind, &review_filter, Page { page: 1, limit: 50 }).await?.items;
        queue.extend(rows.into_iter().filter(|e| e.review_status.is_none()));
    }
    queue.sort_by_key(|e| std::cmp::Reverse(e.created_at));
    queue.truncate(50);
    let users =
        if holds(state, user, "accounts.view_user").await? { Some(users_section(state, search).await?) } else { None };
    let can_change_users = holds(state, user, "accounts.change_user").await?;
    let requests = if holds(state, user, "accounts.view_mfachangelog").await? {
        Some(service::change_requests(state, Some("pending"), Page { page: 1, limit: 50 }).await?.0)
    } else {
        None
    };
    // The staff member's own passkeys, while passkeys are on.
    let passkeys = if state.relying_party.get().is_ok() {
        let list = service::passkeys(state, user).await?;
        Some(
            list.into_iter()
                .map(|p| PasskeyView {
                    name: p.name,
                    created_at: p.created_at.format(MINUTE).to_string(),
                    last_used_at: p.last_used_at.map(|t| t.format(MINUTE).to_string()),
                })
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let mut ids: Vec<Uuid> = top_rows.iter().map(|r| r.user_id).chain(queue.iter().map(|e| e.user_id)).collect();
    ids.extend(requests.iter().flatten().filter_map(|c| c.requested_by_id));
    ids.push(user.user_id);
    let names: HashMap<Uuid, String> = service::usernames(state, &ids).await?.into_iter().collect();
    let name = |id: &Uuid| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let top: Vec<TopUser> = top_rows
        .iter()
        .map(|r| TopUser {
            name: name(&r.user_id),
            high: r.high_risk_events,
            critical: r.critical_risk_events,
            failed: r.total_failed_logins,
            events: r.total_events,
        })
        .collect();
    let queue: Vec<QueueItem> = queue
        .iter()
        .map(|e| QueueItem {
            id: e.id,
            kind: e.kind.clone(),
            action: e.action.clone(),
            risk_level: e.risk_level.clone(),
            user: name(&e.user_id),
            reasons: e.anomaly_reasons.clone().unwrap_or_default().join(", "),
            created_at: e.created_at.format(MINUTE).to_string(),
        })
        .collect();
    let requests: Option<Vec<ChangeRequestView>> = requests.map(|list| {
        list.into_iter()
            .map(|c| ChangeRequestView {
                id: c.id,
                user: c.username,
                action: c.action,
                method: c.mfa_method.unwrap_or_else(|| "every factor".into()),
                reason: c.change_reason.unwrap_or_default(),
                requested_by: c.requested_by_id.map(|id| name(&id)).unwrap_or_default(),
                requested_at: c.requested_at.format(MINUTE).to_string(),
            })
            .collect()
    });
    render(
        "admin/dashboard.html",
        context! {
            users => users,
            search => search.unwrap_or_default(),
            can_change_users => can_change_users,
            requests => requests,
            passkeys => passkeys,
            csrf => session_csrf(state, user.session_id),
            username => name(&user.user_id),
            chart => chart(&days),
            days => days,
            top_date => top_date.map(|d| d.to_string()),
            top => top,
            queue => queue,
        },
    )
}
