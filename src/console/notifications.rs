//! The notifications page: the global switches and the digest, per-type channels, quiet
//! hours, the blocklist and consents; each form parsed by the API's own forms, so the same
//! rules hold (security messages cannot be blocked or switched off).

use axum::{
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use minijinja::context;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{Browser, Page, Signed, base, checked, csrf_form, refused, see_other, t};
use crate::{
    core::{AppError, AppState, auth::AuthUser},
    notifications::{
        NotificationType,
        forms::{ConsentChange, NewBlock, NewQuietHours, PreferencesPatch, TypePreferencePatch},
        models::{BlockType, ConsentType},
        settings,
    },
};

async fn notifications_page(
    state: &AppState,
    user: &AuthUser,
    status: StatusCode,
    errors: BTreeMap<String, String>,
) -> Response {
    let outcome = async {
        let preferences = settings::preferences(state, user.user_id).await?;
        let types = settings::type_preferences(state, user.user_id).await?;
        let quiet = settings::quiet_hours(state, user.user_id).await?;
        let blocks = settings::blocks(state, user.user_id).await?;
        let consents = settings::consents(state, user.user_id).await?;
        Ok::<_, AppError>(context! { preferences, types, quiet, blocks, consents })
    }
    .await;
    match outcome {
        Ok(ctx) => {
            let ctx = base(state, user, "notifications", context! { title => t("notifications"), errors, ..ctx });
            Page::new(status, "notifications.html", ctx).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// GET /account/notifications.
pub async fn notifications(State(state): State<AppState>, Signed(user): Signed) -> Response {
    notifications_page(&state, &user, StatusCode::OK, BTreeMap::new()).await
}

/// Every POST of the page comes back to it, or shows it with the errors.
async fn answer(state: &AppState, user: &AuthUser, outcome: Result<(), AppError>) -> Response {
    match outcome {
        Ok(()) => see_other("/account/notifications"),
        Err(e) => refused(e, "/account/notifications", |r| notifications_page(state, user, r.status, r.errors)).await,
    }
}

/// A checkbox: present (any value) is on.
fn on(value: &Option<String>) -> Option<bool> {
    Some(value.is_some())
}

csrf_form!(
    struct PreferencesForm {
        email_otp: Option<String>,
        email_alerts: Option<String>,
        email_marketing: Option<String>,
        sms_otp: Option<String>,
        sms_alerts: Option<String>,
        push_enabled: Option<String>,
        quiet_hours_enabled: Option<String>,
        quiet_start: String,
        quiet_end: String,
        digest_frequency: String,
    }
);

/// POST /account/notifications/preferences.
pub async fn preferences(State(state): State<AppState>, Signed(user): Signed, body: Bytes) -> Response {
    let Some(f) = checked::<PreferencesForm>(&state, &user, &body) else {
        return super::forged();
    };
    let time = |v: &str| Some(Some(v.trim().to_owned()).filter(|v| !v.is_empty()));
    let patch = PreferencesPatch {
        email_otp: on(&f.email_otp),
        email_alerts: on(&f.email_alerts),
        email_marketing: on(&f.email_marketing),
        sms_otp: on(&f.sms_otp),
        sms_alerts: on(&f.sms_alerts),
        push_enabled: on(&f.push_enabled),
        quiet_hours_enabled: on(&f.quiet_hours_enabled),
        quiet_start: time(&f.quiet_start),
        quiet_end: time(&f.quiet_end),
        digest_frequency: Some(f.digest_frequency),
    };
    let outcome = async { settings::update_preferences(&state, user.user_id, patch.parse()?).await.map(drop) }.await;
    answer(&state, &user, outcome).await
}

csrf_form!(
    struct TypeForm {
        notification_type: String,
        email_enabled: Option<String>,
        sms_enabled: Option<String>,
        in_app_enabled: Option<String>,
        push_enabled: Option<String>,
        max_per_day: Option<i32>,
    }
);

/// POST /account/notifications/types: one type's channels and daily cap.
pub async fn type_preference(State(state): State<AppState>, Signed(user): Signed, body: Bytes) -> Response {
    let Some(f) = checked::<TypeForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = async {
        let kind = NotificationType::parse(&f.notification_type)
            .ok_or_else(|| AppError::validation("notification_type", t("method_unknown")))?;
        let patch = TypePreferencePatch {
            email_enabled: on(&f.email_enabled),
            sms_enabled: on(&f.sms_enabled),
            in_app_enabled: on(&f.in_app_enabled),
            push_enabled: on(&f.push_enabled),
            max_per_day: f.max_per_day,
            ..TypePreferencePatch::default()
        };
        settings::update_type_preference(&state, user.user_id, kind, patch.parse()?).await.map(drop)
    }
    .await;
    answer(&state, &user, outcome).await
}

csrf_form!(
    struct QuietForm {
        day_of_week: Option<i32>,
        start_time: String,
        end_time: String,
        description: String,
    }
);

/// POST /account/notifications/quiet-hours: a window on one weekday.
pub async fn add_quiet_hours(State(state): State<AppState>, Signed(user): Signed, body: Bytes) -> Response {
    let Some(f) = checked::<QuietForm>(&state, &user, &body) else {
        return super::forged();
    };
    let new = NewQuietHours {
        day_of_week: f.day_of_week.unwrap_or(-1),
        start_time: f.start_time,
        end_time: f.end_time,
        is_enabled: Some(true),
        allow_critical_only: Some(true),
        description: Some(f.description).filter(|d| !d.trim().is_empty()),
    };
    let outcome = async { settings::add_quiet_hours(&state, user.user_id, new.parse()?).await.map(drop) }.await;
    answer(&state, &user, outcome).await
}

csrf_form!(
    struct BlockForm {
        block_type: String,
        blocked_value: String,
        reason: String,
    }
);

/// POST /account/notifications/blocklist.
pub async fn add_block(State(state): State<AppState>, Signed(user): Signed, body: Bytes) -> Response {
    let Some(f) = checked::<BlockForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = async {
        let block_type =
            BlockType::parse(&f.block_type).ok_or_else(|| AppError::validation("block_type", t("method_unknown")))?;
        let reason = Some(f.reason).filter(|r| !r.trim().is_empty());
        let new = NewBlock { block_type, blocked_value: f.blocked_value, reason };
        settings::add_block(&state, user.user_id, new.parse()?).await.map(drop)
    }
    .await;
    answer(&state, &user, outcome).await
}

csrf_form!(
    struct RemoveForm {
        id: Option<Uuid>,
        what: String,
    }
);

/// POST /account/notifications/remove: a quiet-hours window or a blocklist entry.
pub async fn remove(State(state): State<AppState>, Signed(user): Signed, body: Bytes) -> Response {
    let Some(f) = checked::<RemoveForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = match (f.id, f.what.as_str()) {
        (Some(id), "quiet_hours") => settings::delete_quiet_hours(&state, user.user_id, id).await,
        (Some(id), "block") => settings::remove_block(&state, user.user_id, id).await,
        _ => Err(AppError::NotFound),
    };
    answer(&state, &user, outcome).await
}

csrf_form!(
    struct ConsentForm {
        consent_type: String,
        is_consented: Option<String>,
    }
);

/// POST /account/notifications/consents: recorded with this page as its source, the
/// address and the user agent.
pub async fn consent(
    State(state): State<AppState>,
    Browser(client): Browser,
    Signed(user): Signed,
    body: Bytes,
) -> Response {
    let Some(f) = checked::<ConsentForm>(&state, &user, &body) else {
        return super::forged();
    };
    let outcome = async {
        let kind = ConsentType::parse(&f.consent_type)
            .ok_or_else(|| AppError::validation("consent_type", t("method_unknown")))?;
        let change = ConsentChange { is_consented: f.is_consented.is_some(), source: Some("account_console".into()) };
        let (ip, agent) = (client.ip_network(), client.user_agent.as_deref());
        settings::set_consent(&state, user.user_id, kind, change.parse()?, ip, agent).await.map(drop)
    }
    .await;
    answer(&state, &user, outcome).await
}
