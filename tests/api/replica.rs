//! Reports on a read replica (`DATABASE_REPLICA_URL`): a server that is not in recovery (a
//! promoted or split-off replica, or a database that was never a standby) is never read.
//! Reading a real streaming replica (pg_basebackup -R) while it is within its lag budget,
//! falling back to the primary when it lags, stops or is promoted, and its
//! `pg_stat_activity`, are `make faults`' drill 5.

use std::time::{Duration, Instant};

use gatehouse::core::db;
use reqwest::Method;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};

use crate::helpers::{TestApp, Tokens, admin, json, test_config};

/// The actions and user ids of the admin audit list, for telling the databases apart.
async fn listed(app: &TestApp, root: &Tokens) -> (u16, Vec<Value>, Duration) {
    let started = Instant::now();
    let response =
        app.with_token(Method::GET, "/api/v1/admin/audit/session", &root.access).send().await.expect("request");
    let took = started.elapsed();
    let status = response.status().as_u16();
    let body = json(response).await;
    (status, body["items"].as_array().cloned().unwrap_or_default(), took)
}

fn on_replica(events: &[Value]) -> bool {
    events.iter().any(|e| e["metadata"]["seen_on"] == "replica")
}

#[sqlx::test]
async fn a_replica_that_is_not_in_recovery_is_never_read(pool: PgPool) {
    // A second database: reachable, current, but not a standby (as a promoted or split-off
    // replica is not). It holds an event the primary lacks, so a list read from it shows.
    let options = pool.connect_options();
    // Not named after the test's database: that name already fills PostgreSQL's 63 bytes.
    let name = format!("replica_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    let seed = PgPool::connect_with(options.as_ref().clone().database(&name)).await.unwrap();
    db::migrate(&seed).await.unwrap();
    sqlx::query(
        r#"WITH u AS (INSERT INTO auth_user (email, username, password_hash)
                      VALUES ('replica@example.com', 'replica', '!') RETURNING id)
           INSERT INTO audit_log_sessionauditlog (user_id, action, session_type, risk_level, metadata)
           SELECT id, 'login', 'web', 'low', '{"seen_on": "replica"}' FROM u"#,
    )
    .execute(&seed)
    .await
    .unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&seed).await.unwrap();
    assert!(!in_recovery);
    seed.close().await;

    let mut config = test_config(&pool);
    config.database.replica_url = Some(
        format!("postgres://{}@{}:{}/{name}", options.get_username(), options.get_host(), options.get_port()).into(),
    );
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    let root = admin(&app, &pool).await;

    // Through several of the watcher's checks (one a second), every list is the primary's.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        let (status, events, _) = listed(&app, &root).await;
        assert_eq!(status, 200);
        assert!(!on_replica(&events) && !events.is_empty(), "{events:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let replica = app.state.replica.clone().expect("a replica is configured");
    assert!(replica.pool().is_none(), "the watcher never admits it");
    let direct = PgPool::connect_with(options.as_ref().clone().database(&name)).await.unwrap();
    assert_eq!(gatehouse::core::replica::lag_seconds(&direct).await.unwrap(), None, "not in recovery: never used");
    direct.close().await;

    replica.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&pool).await.unwrap();
}
