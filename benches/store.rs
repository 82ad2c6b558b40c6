//! Database-side benchmarks against DATABASE_URL (a scratch database; `make bench` makes one):
//! the daily audit summary over SUMMARY_EVENTS (1,000,000) events of SUMMARY_USERS (10,000)
//! users next to a bare grouped count over the same partitions, with their plans (temp
//! spill, partitions scanned, peak hash memory); and outbox delivery throughput to a local
//! SMTP capture server.

#[path = "../tests/api/smtp.rs"]
#[allow(dead_code)]
mod smtp;

use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use gatehouse::{
    audit_log::{jobs::Trigger, summary},
    core::{db, types::Email},
    notifications::{
        self,
        delivery::{self, DeliveryConfig},
        mailer::Mailer,
    },
};
use sqlx::PgPool;

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (make bench sets it)");
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.expect("connect");
    db::migrate(&pool).await.expect("migrate");
    // `cargo bench` passes `--bench`; any other argument picks one benchmark.
    let which = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_default();
    if which.is_empty() || which == "summary" {
        summary_bench(&pool).await;
    }
    if which.is_empty() || which == "outbox" {
        outbox_bench(&pool).await;
    }
}

/// A day in the current month, so its partition exists and prunes alone.
fn bench_day() -> NaiveDate {
    let today = Utc::now().date_naive();
    today.with_day0(0).unwrap_or(today)
}

use chrono::Datelike;

async fn summary_bench(pool: &PgPool) {
    let (events, users) = (setting("SUMMARY_EVENTS", 1_000_000), setting("SUMMARY_USERS", 10_000));
    let day = bench_day();
    sqlx::query("TRUNCATE auth_user CASCADE").execute(pool).await.expect("truncate");
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO auth_user (email, username, password_hash)
         SELECT 'u' || g || '@bench.test', 'u' || g, 'x' FROM generate_series(1, $1) g",
    )
    .bind(users)
    .execute(pool)
    .await
    .expect("users");
    // 40% session, 30% mfa, 20% device, 10% link events, spread over the day, users
    // round-robin; a few IPs, countries and devices per user; every risk level.
    let generate = |table: &str, share: i64, columns: &str, values: &str| {
        format!(
            "INSERT INTO {table} (user_id, {columns}, risk_level, is_anomalous, ip_address, created_at)
             SELECT u.id, {values}, (ARRAY['low','low','low','medium','high','critical'])[1 + g % 6],
                    g % 97 = 0, ('10.' || (g % 3) || '.' || (u.n % 250) || '.1')::inet,
                    $1::date + make_interval(secs => (g * 86399.0 / {n}))
               FROM generate_series(1, {n}) g
               JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM auth_user) u ON u.n = g % {users}",
            n = events * share / 100
        )
    };
    let inserts = [
        generate(
            "audit_log_sessionauditlog",
            40,
            "action, country",
            "(ARRAY['login','login_failed','refresh','logout','login_locked'])[1 + g % 5], (ARRAY['FR','DE','US'])[1 + g % 3]",
        ),
        generate(
            "audit_log_mfaauditlog",
            30,
            "action",
            "(ARRAY['challenge_created','verified','failed','enabled','codes_regenerated','rate_limited'])[1 + g % 6]",
        ),
        generate(
            "audit_log_deviceauditlog",
            20,
            "action, country",
            "(ARRAY['registered','seen','trusted','risk_changed'])[1 + g % 4], (ARRAY['FR','DE'])[1 + g % 2]",
        ),
        generate("audit_log_sessiondevicelinkauditlog", 10, "link_action", "(ARRAY['linked','switched'])[1 + g % 2]"),
    ];
    for sql in inserts {
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(day).execute(pool).await.expect("events");
    }
    sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
    println!("generated {events} events for {users} users on {day} in {:.1} s", started.elapsed().as_secs_f64());

    let bare = format!(
        "SELECT user_id, count(*) FROM (
             SELECT user_id FROM audit_log_sessionauditlog WHERE created_at >= '{day}' AND created_at < '{day}'::date + 1
             UNION ALL SELECT user_id FROM audit_log_deviceauditlog WHERE created_at >= '{day}' AND created_at < '{day}'::date + 1
             UNION ALL SELECT user_id FROM audit_log_mfaauditlog WHERE created_at >= '{day}' AND created_at < '{day}'::date + 1
             UNION ALL SELECT user_id FROM audit_log_sessiondevicelinkauditlog WHERE created_at >= '{day}' AND created_at < '{day}'::date + 1
         ) e GROUP BY user_id"
    );
    // Warm the cache once, then take the best of three for each.
    let mut bare_best = Duration::MAX;
    let mut summary_best = Duration::MAX;
    summary::run_day(pool, day, Trigger::Cli).await.expect("summary");
    for _ in 0..3 {
        let t = Instant::now();
        sqlx::query(sqlx::AssertSqlSafe(bare.clone())).fetch_all(pool).await.expect("bare");
        bare_best = bare_best.min(t.elapsed());
        // A fresh run each time: clear the day's rows so every run writes all of them.
        sqlx::query("DELETE FROM audit_log_auditlogsummary WHERE date = $1")
            .bind(day)
            .execute(pool)
            .await
            .expect("clear");
        let t = Instant::now();
        let run = summary::run_day(pool, day, Trigger::Cli).await.expect("summary");
        summary_best = summary_best.min(t.elapsed());
        assert_eq!(run.rows_affected, users);
    }
    println!(
        "summary of one day ({events} events): {:.0} ms; bare grouped count over the same partitions: {:.0} ms; ratio {:.2}",
        summary_best.as_secs_f64() * 1000.0,
        bare_best.as_secs_f64() * 1000.0,
        summary_best.as_secs_f64() / bare_best.as_secs_f64()
    );

    let plan: Vec<String> = {
        let mut tx = pool.begin().await.expect("tx");
        summary::explain_day(&mut tx, day).await.expect("explain")
    };
    let text = plan.join("\n");
    let temp_written = text.lines().any(|l| l.contains("temp written") || l.contains("Disk:"));
    let other_months = text
        .lines()
        .filter(|l| l.contains("Scan on audit_log_") && !l.contains(&day.format("_p%Y_%m").to_string()))
        .count();
    // Hash nodes report "Memory Usage: NkB" (and "Batches: n" past work_mem).
    let hash_kb = text
        .split("Memory Usage: ")
        .skip(1)
        .filter_map(|rest| rest.split("kB").next().and_then(|n| n.trim().parse::<u64>().ok()))
        .max()
        .unwrap_or(0);
    println!(
        "plan: temp blocks written: {}; partitions of other months scanned: {other_months}; largest hash table {:.1} MB",
        if temp_written { "YES" } else { "none" },
        hash_kb as f64 / 1024.0
    );
    if std::env::var("BENCH_PLAN").is_ok() {
        println!("{text}");
    }
}

async fn outbox_bench(pool: &PgPool) {
    let keys = std::sync::Arc::new(gatehouse::core::data_keys::DataKeys::new(&[7u8; 32], &[]));
    const MESSAGES: usize = 2_000;
    let capture = smtp::SmtpCapture::start().await;
    let user: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO auth_user (email, username, password_hash) VALUES ('outbox@bench.test', 'outbox-bench', 'x')
         ON CONFLICT (email) DO UPDATE SET updated_at = now() RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("user");
    sqlx::query("DELETE FROM notifications_emailnotification").execute(pool).await.expect("clear");
    for i in 0..MESSAGES {
        let mut tx = pool.begin().await.expect("tx");
        notifications::enqueue_email(
            &mut tx,
            &keys,
            user,
            &Email::parse(&format!("r{i}@bench.test")).expect("email"),
            gatehouse::notifications::Message::TokenReused { username: "bench".into() },
        )
        .await
        .expect("enqueue");
        tx.commit().await.expect("commit");
    }
    let mailer = Mailer::new(Some(&capture.url()), "Gatehouse <no-reply@bench.test>").expect("mailer");
    // SMTP alone, no database: what the transport costs per message.
    let probe = notifications::models::ClaimedEmail {
        id: uuid::Uuid::nil(),
        to_email: "probe@bench.test".into(),
        subject: "probe".into(),
        body: "probe".into(),
        html_body: Some("<p>probe</p>".into()),
        retry_count: 0,
        max_retries: 0,
    };
    let started = Instant::now();
    for _ in 0..100 {
        assert!(matches!(mailer.send(&probe).await, notifications::models::Outcome::Sent { .. }));
    }
    println!("smtp alone: {:.2} ms per message, one connection after another", started.elapsed().as_secs_f64() * 10.0);
    let config = DeliveryConfig::default();
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (pool, mailer, keys) = (pool.clone(), mailer.clone(), keys.clone());
            tokio::spawn(async move {
                while delivery::deliver_once(&pool, &keys, &mailer, &config).await.expect("deliver")
                    != delivery::Pass::default()
                {}
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let elapsed = started.elapsed();
    assert_eq!(capture.wait_for(MESSAGES + 100, 10).await.len(), MESSAGES + 100);
    println!(
        "outbox: {MESSAGES} emails over SMTP to a loopback capture server with 2 workers in {:.2} s: {:.0} messages/s",
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64()
    );
}
