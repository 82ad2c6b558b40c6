//! The daily summary equals counts computed here, independently, from the rows inserted.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use gatehouse::audit_log::{jobs::Trigger, summary};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone)]
struct Ev {
    src: &'static str,
    user: Uuid,
    action: &'static str,
    risk: &'static str,
    anomalous: bool,
    ip: Option<&'static str>,
    country: Option<&'static str>,
    device: Option<Uuid>,
    at: DateTime<Utc>,
}

async fn user(pool: &PgPool, name: &str) -> Uuid {
    sqlx::query_scalar("INSERT INTO auth_user (email, username, password_hash) VALUES ($1, $2, 'x') RETURNING id")
        .bind(format!("{name}@example.com"))
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn device(pool: &PgPool, user: Uuid, fp: &str, at: DateTime<Utc>) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO accounts_device (user_id, fingerprint_hash, is_verified, created_at)
         VALUES ($1, $2, true, $3) RETURNING id",
    )
    .bind(user)
    .bind(fp)
    .bind(at)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn session(pool: &PgPool, user: Uuid, at: DateTime<Utc>) {
    sqlx::query(
        "INSERT INTO accounts_session (user_id, access_jti, refresh_jti, expires_at, created_at)
         VALUES ($1, gen_random_uuid()::text, gen_random_uuid()::text, $2 + interval '7 days', $2)",
    )
    .bind(user)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
}

async fn insert(pool: &PgPool, e: &Ev) {
    let ip: Option<ipnetwork::IpNetwork> = e.ip.map(|i| i.parse().unwrap());
    let sql = match e.src {
        "s" => {
            "INSERT INTO audit_log_sessionauditlog (user_id, action, risk_level, is_anomalous, ip_address, country, device_id, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
        }
        "d" => {
            "INSERT INTO audit_log_deviceauditlog (user_id, action, risk_level, is_anomalous, ip_address, country, device_id, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
        }
        "m" => {
            "INSERT INTO audit_log_mfaauditlog (user_id, action, risk_level, is_anomalous, ip_address, device_id, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7)"
        }
        _ => {
            "INSERT INTO audit_log_sessiondevicelinkauditlog (user_id, link_action, risk_level, is_anomalous, ip_address, device_id, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7)"
        }
    };
    // The mfa and link tables have no country column, so no country is bound for them.
    let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(e.user).bind(e.action).bind(e.risk).bind(e.anomalous).bind(ip);
    let q = if e.src == "s" || e.src == "d" { q.bind(e.country) } else { q };
    q.bind(e.device).bind(e.at).execute(pool).await.unwrap();
}

/// Counters as docs/audit.md defines them, computed from the events in Rust.
fn expected(
    events: &[Ev],
    day: NaiveDate,
    sessions: &BTreeMap<Uuid, i32>,
    devices: &BTreeMap<Uuid, i32>,
) -> BTreeMap<Uuid, Vec<i32>> {
    let mut users: HashSet<Uuid> = sessions.keys().chain(devices.keys()).copied().collect();
    let today: Vec<&Ev> = events.iter().filter(|e| e.at.date_naive() == day).collect();
    users.extend(today.iter().map(|e| e.user));
    users
        .into_iter()
        .map(|u| {
            let mine: Vec<&&Ev> = today.iter().filter(|e| e.user == u).collect();
            let count = |f: &dyn Fn(&Ev) -> bool| mine.iter().filter(|e| f(e)).count() as i32;
            let distinct = |f: &dyn Fn(&Ev) -> Option<String>| {
                mine.iter().filter_map(|e| f(e)).collect::<HashSet<_>>().len() as i32
            };
            let row = vec![
                *sessions.get(&u).unwrap_or(&0),
                *devices.get(&u).unwrap_or(&0),
                count(&|e| e.src == "s" && e.action == "login_failed"),
                count(&|e| e.src == "m" && e.action == "challenge_created"),
                mine.len() as i32,
                count(&|e| e.risk == "low"),
                count(&|e| e.risk == "medium"),
                count(&|e| e.risk == "high"),
                count(&|e| e.risk == "critical"),
                distinct(&|e| e.country.map(str::to_owned)),
                distinct(&|e| e.ip.map(str::to_owned)),
                distinct(&|e| e.device.map(|d| d.to_string())),
                count(&|e| e.src == "m" && e.action == "enabled"),
                count(&|e| e.src == "m" && e.action == "disabled"),
                count(&|e| e.src == "m" && e.action == "codes_regenerated"),
                count(&|e| {
                    (e.src == "m" && e.action == "rate_limited") || (e.src == "s" && e.action == "login_locked")
                }),
                count(&|e| e.anomalous),
                count(&|e| e.src == "m" && e.action == "change_requested"),
                count(&|e| e.src == "m" && (e.action == "change_approved" || e.action == "change_rejected")),
            ];
            (u, row)
        })
        .collect()
}

async fn actual(pool: &PgPool, day: NaiveDate) -> BTreeMap<Uuid, Vec<i32>> {
    let rows: Vec<(Uuid, Vec<i32>)> = sqlx::query_as(
        "SELECT user_id, ARRAY[total_sessions, total_devices, total_failed_logins, total_mfa_challenges,
                total_events, low_risk_events, medium_risk_events, high_risk_events, critical_risk_events,
                countries_accessed, unique_ips, unique_devices, mfa_enabled_count, mfa_disabled_count,
                backup_codes_generated, rate_limit_exceeded, anomalies_detected, approvals_required,
                approvals_completed]
           FROM audit_log_auditlogsummary WHERE date = $1",
    )
    .bind(day)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

const SRCS: [&str; 4] = ["s", "d", "m", "l"];
const ACTIONS: [(&str, &[&str]); 4] = [
    ("s", &["login", "login_failed", "login_locked", "logout", "refresh", "token_reused"]),
    ("d", &["registered", "trusted", "compromised", "risk_changed"]),
    (
        "m",
        &[
            "challenge_created",
            "enabled",
            "disabled",
            "codes_regenerated",
            "rate_limited",
            "change_requested",
            "change_approved",
            "change_rejected",
            "verified",
        ],
    ),
    ("l", &["linked", "switched", "revoked"]),
];
const RISKS: [&str; 4] = ["low", "medium", "high", "critical"];
const IPS: [&str; 3] = ["10.0.0.1", "192.0.2.7", "2001:db8::1"];
const COUNTRIES: [&str; 3] = ["FR", "DE", "US"];

/// Two days around a month boundary: the 30th of November and the 1st of December.
async fn seed(pool: &PgPool) -> (Vec<Ev>, NaiveDate, NaiveDate, Vec<Uuid>) {
    let d1 = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let d2 = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let midnight = Utc.from_utc_datetime(&d2.and_time(NaiveTime::MIN));
    // Their months' partitions, as a deployment running then has them (there is no DEFAULT one).
    for table in gatehouse::audit_log::models::events::AuditKind::ALL.iter().map(|k| k.table()) {
        for month in [d1, d2] {
            gatehouse::audit_log::repo::partitions::create_partition(pool, table, month).await.unwrap();
        }
    }
    let users = vec![user(pool, "ann").await, user(pool, "bob").await, user(pool, "cyd").await];
    let mut devices = Vec::new();
    for (i, u) in users.iter().enumerate() {
        devices.push(device(pool, *u, &format!("fp{i}"), midnight - Duration::hours(3)).await);
    }
    let mut events = Vec::new();
    let mut n = 0usize;
    for (ui, u) in users.iter().enumerate() {
        for k in 0..(40 + ui * 7) {
            n += 1;
            let src = SRCS[n % 4];
            let actions = ACTIONS.iter().find(|(s, _)| *s == src).unwrap().1;
            // Spread around midnight, including its exact edges.
            let offset = match k % 5 {
                0 => Duration::milliseconds(-1),
                1 => Duration::zero(),
                2 => Duration::minutes(-(k as i64) * 13),
                3 => Duration::minutes(k as i64 * 17),
                _ => Duration::hours(-20),
            };
            events.push(Ev {
                src,
                user: *u,
                action: actions[n % actions.len()],
                risk: RISKS[(n / 3) % 4],
                anomalous: n.is_multiple_of(7),
                ip: if n.is_multiple_of(5) { None } else { Some(IPS[n % 3]) },
                country: if src == "s" || src == "d" { Some(COUNTRIES[(n / 2) % 3]) } else { None },
                device: if n.is_multiple_of(4) { None } else { Some(devices[ui]) },
                at: midnight + offset,
            });
        }
    }
    for e in &events {
        insert(pool, e).await;
    }
    session(pool, users[0], midnight - Duration::hours(1)).await;
    session(pool, users[0], midnight - Duration::hours(2)).await;
    session(pool, users[1], midnight + Duration::hours(1)).await;
    (events, d1, d2, users)
}

#[sqlx::test]
async fn summary_equals_independent_counts_across_a_month_boundary(pool: PgPool) {
    let (events, d1, d2, users) = seed(&pool).await;
    summary::run_range(&pool, d1, d2, Trigger::Cli).await.unwrap();

    let sessions_d1 = BTreeMap::from([(users[0], 2)]);
    let sessions_d2 = BTreeMap::from([(users[1], 1)]);
    let devices_d1: BTreeMap<Uuid, i32> = users.iter().map(|u| (*u, 1)).collect();
    assert_eq!(actual(&pool, d1).await, expected(&events, d1, &sessions_d1, &devices_d1));
    assert_eq!(actual(&pool, d2).await, expected(&events, d2, &sessions_d2, &BTreeMap::new()));
    assert_eq!(actual(&pool, d1).await.len(), 3);
}

#[sqlx::test]
async fn rerunning_a_day_changes_nothing(pool: PgPool) {
    let (_, d1, _, _) = seed(&pool).await;
    let first = summary::run_day(&pool, d1, Trigger::Cli).await.unwrap();
    assert_eq!((first.status.as_str(), first.rows_affected), ("succeeded", 3));
    let snapshot = || async {
        sqlx::query_as::<_, (Uuid, DateTime<Utc>, i32)>(
            "SELECT id, updated_at, total_events FROM audit_log_auditlogsummary ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = snapshot().await;
    let again = summary::run_day(&pool, d1, Trigger::Admin).await.unwrap();
    assert_eq!((again.status.as_str(), again.rows_affected), ("succeeded", 0));
    assert_eq!(snapshot().await, before);
}

#[sqlx::test]
async fn two_concurrent_runs_do_the_work_once(pool: PgPool) {
    let (_, d1, _, _) = seed(&pool).await;
    let (a, b) =
        tokio::join!(summary::run_day(&pool, d1, Trigger::Scheduler), summary::run_day(&pool, d1, Trigger::Scheduler));
    let mut statuses = vec![a.unwrap().status, b.unwrap().status];
    statuses.sort();
    assert_eq!(statuses, ["skipped", "succeeded"]);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log_jobrun WHERE kind = 'audit_summary'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 2);
}

#[sqlx::test]
async fn missed_days_are_caught_up(pool: PgPool) {
    let now = Utc.with_ymd_and_hms(2026, 12, 10, 6, 0, 0).unwrap();
    let run_at = NaiveTime::from_hms_opt(0, 30, 0).unwrap();
    // Nothing ever ran: only yesterday is owed.
    assert_eq!(summary::due_days(&pool, now, run_at).await.unwrap(), [NaiveDate::from_ymd_opt(2026, 12, 9).unwrap()]);

    summary::run_day(&pool, NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(), Trigger::Scheduler).await.unwrap();
    let runs = summary::run_due(&pool, now, run_at).await.unwrap();
    let days: Vec<_> = runs.iter().map(|r| r.target_date.unwrap().to_string()).collect();
    assert_eq!(days, ["2026-12-06", "2026-12-07", "2026-12-08", "2026-12-09"]);
    assert!(runs.iter().all(|r| r.status == "succeeded"));
    assert!(summary::run_due(&pool, now, run_at).await.unwrap().is_empty());

    // Before run_at, yesterday is not owed yet.
    let early = Utc.with_ymd_and_hms(2026, 12, 11, 0, 10, 0).unwrap();
    assert!(summary::due_days(&pool, early, run_at).await.unwrap().is_empty());
}
