//! Database faults: a cut network, terminated connections and a statement over its budget
//! answer 503 `UNAVAILABLE` with `Retry-After` (never 500, never a hang past the budgets),
//! and the service recovers by itself once the database is back.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use gatehouse::core::db;
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::{net::TcpListener, task::AbortHandle};

use crate::helpers::{TestApp, assert_error, test_config};

/// A TCP relay in front of the real PostgreSQL that can cut the line: `cut` drops every
/// relayed connection and closes each new one at once (the database unreachable), until
/// `restore`.
pub struct Relay {
    pub port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::new()));
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        tokio::io::copy_bidirectional(&mut client, &mut server).await.ok();
                    }
                });
                links2.lock().expect("lock").push(link.abort_handle());
            }
        });
        Relay { port, up, links }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

pub fn target(pool: &PgPool) -> SocketAddr {
    let options = pool.connect_options();
    let host = if options.get_host() == "localhost" { "127.0.0.1" } else { options.get_host() };
    format!("{host}:{}", options.get_port()).parse().expect("a TCP address for PostgreSQL")
}

/// `GET /users/me`, timed.
async fn me(app: &TestApp, access: &str) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let response = app.with_token(Method::GET, "/api/v1/users/me", access).send().await.expect("request");
    (response, started.elapsed())
}

#[sqlx::test]
async fn with_the_database_unreachable_requests_answer_503_within_the_budget_and_recover(pool: PgPool) {
    let relay = Relay::start(target(&pool)).await;
    let mut config = test_config(&pool);
    let options = pool.connect_options();
    config.database.url = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        options.get_username(),
        relay.port,
        options.get_database().expect("a database")
    )
    .into();
    config.database.acquire_timeout = Duration::from_secs(1);
    let budget = config.database.acquire_timeout;
    let app = TestApp::spawn_with(db::lazy_pool(&config.database).unwrap(), config, gatehouse::routes()).await;
    let ann = app.signed_in("ann").await;
    // A few requests at once, so the pool holds several connections when the line goes.
    let (a, b, c, d) =
        tokio::join!(me(&app, &ann.access), me(&app, &ann.access), me(&app, &ann.access), me(&app, &ann.access));
    for (response, _) in [a, b, c, d] {
        assert_eq!(response.status(), 200);
    }

    relay.cut();
    let outage = Instant::now();
    let mut answers = 0;
    while outage.elapsed() < Duration::from_secs(3) {
        let (response, took) = me(&app, &ann.access).await;
        assert!(response.headers().contains_key("retry-after"), "{response:?}");
        assert_error(response, 503, "UNAVAILABLE").await;
        // The bound is the acquire budget; the slack is for a busy machine, not a target.
        assert!(took < budget + Duration::from_millis(1500), "a request waited {took:?}");
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 503);
        answers += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answers >= 2, "only {answers} answers during the outage");

    relay.restore();
    let back = Instant::now();
    loop {
        let (response, _) = me(&app, &ann.access).await;
        match response.status().as_u16() {
            200 => break,
            503 => {}
            other => panic!("answered {other} while recovering"),
        }
        assert!(back.elapsed() < Duration::from_secs(10), "no recovery 10 s after the database returned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("first success {:?} after the database returned", back.elapsed());
    assert_eq!(app.get("/readyz").await.status(), 200);
    // This test's own pool, closed so the test database can be dropped.
    app.state.db.close().await;
}

#[sqlx::test]
async fn connections_terminated_by_the_server_answer_503_never_500(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let ann = app.signed_in("ann").await;
    tokio::join!(me(&app, &ann.access), me(&app, &ann.access), me(&app, &ann.access), me(&app, &ann.access));

    // What a fast shutdown or a failover does to every open connection (SQLSTATE 57P01).
    let mut admin = PgConnection::connect_with(&pool.connect_options()).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed >= 1, "no pool connection to terminate");
    admin.close().await.unwrap();

    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (response, _) = me(&app, &ann.access).await;
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "the pool did not replace its dead connections: {statuses:?}");
}

#[sqlx::test]
async fn a_statement_over_its_budget_answers_503_and_releases_the_connection(pool: PgPool) {
    let mut config = test_config(&pool);
    config.database.statement_timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(db::lazy_pool(&config.database).unwrap(), config, gatehouse::routes()).await;
    let ann = app.signed_in("ann").await;

    // Another transaction holds ann's row, so the profile update waits on its lock.
    let mut holder = PgConnection::connect_with(&pool.connect_options()).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM auth_user WHERE username = 'ann' FOR UPDATE").execute(&mut *tx).await.unwrap();
    let patch = || app.with_token(Method::PATCH, "/api/v1/users/me", &ann.access).json(&json!({"first_name": "Ann"}));
    let started = Instant::now();
    let response = patch().send().await.unwrap();
    let took = started.elapsed();
    assert!(response.headers().contains_key("retry-after"));
    assert_error(response, 503, "UNAVAILABLE").await;
    assert!(took < Duration::from_secs(3), "the statement budget did not hold: {took:?}");

    tx.rollback().await.unwrap();
    assert_eq!(patch().send().await.unwrap().status(), 200);
    holder.close().await.unwrap();
    app.state.db.close().await;
}

#[sqlx::test]
async fn three_instances_run_a_scheduled_job_once_per_period(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let (b, c) = (a.another_instance().await, a.another_instance().await);
    let cleanup = |app: &TestApp| {
        let state = app.state.clone();
        async move {
            gatehouse::jobs::run_cleanup_once(&state, gatehouse::audit_log::jobs::Trigger::Scheduler)
                .await
                .unwrap()
                .is_some()
        }
    };
    // Three instances tick at once, then each ticks again: the advisory lock alone would let
    // the later ticks run again, one after the other.
    let (x, y, z) = tokio::join!(cleanup(&a), cleanup(&b), cleanup(&c));
    let mut ran = [x, y, z].iter().filter(|r| **r).count();
    for app in [&a, &b, &c] {
        ran += usize::from(cleanup(app).await);
    }
    // A run per period: one, or two if the 10-minute period turned during the test.
    let (runs, periods): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT period_start) FROM audit_log_jobrun
          WHERE kind = 'cleanup' AND status = 'succeeded' AND period_start IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(runs, periods);
    assert_eq!(ran as i64, runs);
    assert!(runs >= 1);

    // An instance died mid-run (its row stays `running`): once stale, the run is marked
    // failed and the period is claimed again, not left undone.
    sqlx::query(
        "UPDATE audit_log_jobrun SET status = 'running', finished_at = NULL, started_at = now() - interval '2 hours'
          WHERE kind = 'cleanup' AND period_start = (SELECT max(period_start) FROM audit_log_jobrun WHERE kind = 'cleanup')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(cleanup(&b).await, "the abandoned period was not retried");
    let abandoned: String =
        sqlx::query_scalar("SELECT error FROM audit_log_jobrun WHERE kind = 'cleanup' AND status = 'failed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(abandoned.starts_with("abandoned"), "{abandoned}");
    // By hand (CLI, admin), a run is never refused for its period.
    assert!(
        gatehouse::jobs::run_cleanup_once(&a.state, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap().is_some()
    );
}

/// The least-privilege role of docs/operations.md, on this test's database: rows, not schema.
async fn restricted_role(pool: &PgPool) -> PgPool {
    let mut admin = PgConnection::connect_with(&pool.connect_options()).await.unwrap();
    // Roles are cluster-wide and tests run in parallel: create it once, grant per database.
    sqlx::query(
        "DO $$ BEGIN CREATE ROLE gatehouse_app_test LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    for grant in [
        "GRANT USAGE ON SCHEMA public TO gatehouse_app_test",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO gatehouse_app_test",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO gatehouse_app_test",
    ] {
        sqlx::query(grant).execute(&mut admin).await.unwrap();
    }
    admin.close().await.unwrap();
    let options = pool.connect_options().as_ref().clone().username("gatehouse_app_test");
    sqlx::postgres::PgPoolOptions::new().max_connections(5).connect_with(options).await.unwrap()
}

#[sqlx::test]
async fn the_flows_run_under_a_role_that_cannot_change_the_schema(pool: PgPool) {
    let restricted = restricted_role(&pool).await;
    let who: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&restricted).await.unwrap();
    assert_eq!(who, "gatehouse_app_test");
    let config = test_config(&restricted);
    let app = TestApp::spawn_with(restricted.clone(), config, gatehouse::routes()).await;
    let _listener = app.start_auth_listener().await;

    assert_eq!(app.get("/readyz").await.status(), 200);
    let ann = app.signed_in("ann").await;
    assert_eq!(app.with_token(Method::GET, "/api/v1/users/me", &ann.access).send().await.unwrap().status(), 200);
    assert_eq!(app.with_token(Method::GET, "/api/v1/auth/whoami", &ann.access).send().await.unwrap().status(), 200);
    let refreshed = app.refresh(&ann.refresh).await;
    assert_eq!(refreshed.status(), 200);
    let patch = json!({"first_name": "Ann"});
    let changed = app.with_token(Method::PATCH, "/api/v1/users/me", &ann.access).json(&patch).send().await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(app.with_token(Method::POST, "/api/v1/auth/logout", &ann.access).send().await.unwrap().status(), 204);
    assert!(!app.deliver_mail().await.is_empty(), "the outbox sends under the role too");
    assert!(
        gatehouse::jobs::run_cleanup_once(&app.state, gatehouse::audit_log::jobs::Trigger::Cli)
            .await
            .unwrap()
            .is_some()
    );

    // What the role may not do: change the schema, or make partitions ahead (DDL); the
    // schema owner's pool (DATABASE_ADMIN_URL) does that.
    let today = chrono::Utc::now().date_naive();
    let refused = gatehouse::audit_log::service::ensure_partitions(&restricted, today, 12).await.unwrap_err();
    assert_eq!(refused.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"), "{refused}");
    let mut with_owner = app.state.clone();
    with_owner.edit().admin_db = Some(pool.clone());
    gatehouse::jobs::run_partitions_once(&with_owner, gatehouse::audit_log::jobs::Trigger::Cli).await.unwrap();
    let ddl = sqlx::query("CREATE TABLE intruder (id int)").execute(&restricted).await.unwrap_err();
    assert_eq!(ddl.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"), "{ddl}");
    let alter = sqlx::query("ALTER TABLE auth_user ADD COLUMN intruder int").execute(&restricted).await.unwrap_err();
    assert_eq!(alter.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"), "{alter}");
    restricted.close().await;
}
