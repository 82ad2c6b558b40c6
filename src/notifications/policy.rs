//! The one place that decides whether, and when, a message goes: security messages always;
//! otherwise the blocklist, consent, the global switches, the per-type preference
//! (channel, daily cap, delay) and quiet hours in the user's timezone, in that order.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    models::{Channel, Decision, NotificationType, Priority, Window},
    repo,
};

/// The window covering the local time `at`, with its local end.
pub fn quiet_window(windows: &[Window], at: NaiveDateTime) -> Option<(Window, NaiveDateTime)> {
    let today = at.date();
    let weekday = today.weekday().num_days_from_monday() as i32;
    windows.iter().find_map(|w| {
        // The window that started today, and one that started yesterday and crosses midnight.
        [(today, weekday), (today.pred_opt()?, (weekday + 6) % 7)].into_iter().find_map(|(day, dow)| {
            if w.day_of_week != dow {
                return None;
            }
            let start = day.and_time(w.start);
            let end = if w.end > w.start { day.and_time(w.end) } else { day.succ_opt()?.and_time(w.end) };
            (start <= at && at < end).then_some((*w, end))
        })
    })
}

/// The UTC instant of a local time in `tz`; in a DST gap, the first instant after it.
fn to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    (0..3)
        .find_map(|h| tz.from_local_datetime(&(local + Duration::hours(h))).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

/// The sender class a blocklist `sender` entry names.
pub fn sender(kind: NotificationType) -> &'static str {
    match kind {
        NotificationType::Marketing => "news",
        k if k.is_security() => "security",
        _ => "alerts",
    }
}

/// Decides for one message to `user` of `kind` over `channel` at `now`.
pub async fn decide(
    tx: &mut PgConnection,
    user: Uuid,
    kind: NotificationType,
    channel: Channel,
    now: DateTime<Utc>,
) -> sqlx::Result<Decision> {
    // The in-app and push channels are extras the user switches: even a security message
    // goes there only while they are on (email carries the guarantee).
    let extra = matches!(channel, Channel::InApp | Channel::Push);
    if kind.is_security() && !extra {
        return Ok(Decision::Now { reason: Some("security"), priority: kind.priority() });
    }
    let facts = repo::policy::policy_facts(&mut *tx, user, kind.as_str(), channel.as_str(), sender(kind)).await?;
    if extra {
        let on = match channel {
            Channel::InApp => facts.in_app_enabled,
            _ => facts.push_global && facts.push_enabled,
        };
        if !on {
            return Ok(Decision::Suppress { reason: "channel_disabled" });
        }
        if kind.is_security() {
            return Ok(Decision::Now { reason: Some("security"), priority: kind.priority() });
        }
    }
    if facts.blocked {
        return Ok(Decision::Suppress { reason: "blocked" });
    }
    if kind.needs_consent().is_some() && !facts.consented {
        return Ok(Decision::Suppress { reason: "no_consent" });
    }
    let global = match (kind, channel) {
        (NotificationType::Marketing, Channel::Email) => facts.email_marketing,
        (NotificationType::Marketing, _) => false,
        (_, Channel::Email) => facts.email_alerts,
        (_, Channel::Sms) => facts.sms_alerts,
        // Switched above.
        (_, Channel::InApp | Channel::Push) => true,
    };
    if !global {
        return Ok(Decision::Suppress { reason: "preference_off" });
    }
    let channel_on = match channel {
        Channel::Email => facts.email_enabled,
        Channel::Sms => facts.sms_enabled,
        Channel::InApp | Channel::Push => true,
    };
    if !channel_on {
        return Ok(Decision::Suppress { reason: "channel_disabled" });
    }
    if facts.sent_last_day >= i64::from(facts.max_per_day) {
        return Ok(Decision::Suppress { reason: "daily_cap" });
    }
    // The user's priority for the type, where they set one, orders the outbox.
    let priority = facts.priority.as_deref().and_then(Priority::parse).unwrap_or(kind.priority());
    // A digest user's emails wait for the digest (quiet hours then apply to the digest).
    if channel == Channel::Email && facts.digest_frequency != "real-time" {
        return Ok(Decision::Held { priority });
    }
    let mut due = now + Duration::minutes(i64::from(facts.delay_minutes));
    let mut reason = (facts.delay_minutes > 0).then_some("delayed");
    if facts.respect_quiet_hours {
        let tz: Tz = facts.timezone.parse().unwrap_or(Tz::UTC);
        let mut windows = repo::policy::quiet_windows(&mut *tx, user).await?;
        // The global window (every day), next to the per-weekday ones.
        if let (true, Some(start), Some(end)) = (facts.quiet_hours_enabled, facts.quiet_start, facts.quiet_end)
            && start != end
        {
            windows.extend((0..7).map(|day| Window { day_of_week: day, start, end, allow_critical_only: false }));
        }
        // Windows may touch or overlap: hold until the local time is in none of them.
        for _ in 0..windows.len() {
            let local = due.with_timezone(&tz).naive_local();
            match quiet_window(&windows, local) {
                Some((window, end)) if !(window.allow_critical_only && priority == Priority::Critical) => {
                    due = to_utc(tz, end);
                    reason = Some("quiet_hours");
                }
                _ => break,
            }
        }
    }
    Ok(match reason {
        Some(reason) if due > now => Decision::At { due, reason, priority },
        _ => Decision::Now { reason: None, priority },
    })
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, NaiveTime};

    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_time(t(h, m))
    }

    #[test]
    fn a_window_crossing_midnight_covers_the_next_morning() {
        // Monday 22:00 -> Tuesday 07:00. 2026-11-23 is a Monday.
        let w = [Window { day_of_week: 0, start: t(22, 0), end: t(7, 0), allow_critical_only: true }];
        assert_eq!(quiet_window(&w, at(2026, 11, 23, 23, 0)).map(|x| x.1), Some(at(2026, 11, 24, 7, 0)));
        assert_eq!(quiet_window(&w, at(2026, 11, 24, 6, 59)).map(|x| x.1), Some(at(2026, 11, 24, 7, 0)));
        assert!(quiet_window(&w, at(2026, 11, 24, 7, 0)).is_none());
        assert!(quiet_window(&w, at(2026, 11, 23, 21, 59)).is_none());
        assert!(quiet_window(&w, at(2026, 11, 24, 23, 0)).is_none(), "Tuesday night has no window");
    }

    #[test]
    fn a_same_day_window() {
        let w = [Window { day_of_week: 6, start: t(9, 0), end: t(12, 0), allow_critical_only: false }];
        assert!(quiet_window(&w, at(2026, 11, 29, 10, 0)).is_some(), "Sunday");
        assert!(quiet_window(&w, at(2026, 11, 28, 10, 0)).is_none(), "Saturday");
    }

    #[test]
    fn local_ends_convert_through_the_zone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(to_utc(paris, at(2026, 11, 24, 7, 0)), Utc.with_ymd_and_hms(2026, 11, 24, 6, 0, 0).unwrap());
        // 02:30 does not exist on 2027-03-28 in Paris: the first instant after the gap.
        assert_eq!(to_utc(paris, at(2027, 3, 28, 2, 30)), Utc.with_ymd_and_hms(2027, 3, 28, 1, 30, 0).unwrap());
    }
}
