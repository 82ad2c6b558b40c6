//! Reports on a read replica (`DATABASE_REPLICA_URL`): the administrators' audit list reads
//! the replica while it is reachable and in its lag budget, the primary when it is not, and
//! the replica again once it is back. A real streaming replica (pg_basebackup -R), its lag
//! and its `pg_stat_activity` are `make faults`' drill; here the replica is a second
//! database holding an event the primary does not have, so the answer shows which was read.

use std::time::{Duration, Instant};

use gatehouse::core::db;
use reqwest::Method;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};

use crate::{
    faults::{Relay, target},
    helpers::{TestApp, Tokens, admin, json, test_config},
};

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

/// Waits until `pred` holds for the list, up to 10 s.
async fn until(app: &TestApp, root: &Tokens, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (status, events, _) = listed(app, root).await;
        assert_eq!(status, 200);
        if pred(&events) {
            return events;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test]
async fn the_audit_list_reads_the_replica_while_it_is_up_and_the_primary_when_it_is_not(pool: PgPool) {
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
    seed.close().await;

    let relay = Relay::start(target(&pool)).await;
    let mut config = test_config(&pool);
    config.database_replica_url =
        Some(format!("postgres://{}@127.0.0.1:{}/{name}", options.get_username(), relay.port));
    config.database_acquire_timeout = Duration::from_secs(1);
    let app = TestApp::spawn_with(pool.clone(), config, gatehouse::routes()).await;
    let root = admin(&app, &pool).await;

    // In use once the watcher has checked it: the list is the replica's, without the
    // primary's own login event.
    let events = until(&app, &root, on_replica).await;
    assert!(events.iter().all(|e| e["metadata"]["seen_on"] == "replica"), "{events:?}");

    // Unreachable: the same list comes from the primary, 200 and not slower than the
    // acquire budget (slack for a busy machine, not a target).
    relay.cut();
    let (status, events, took) = listed(&app, &root).await;
    assert_eq!(status, 200);
    assert!(!on_replica(&events) && !events.is_empty(), "{events:?}");
    assert!(took < Duration::from_millis(2500), "the fallback took {took:?}");
    for _ in 0..5 {
        let (status, events, _) = listed(&app, &root).await;
        assert_eq!((status, on_replica(&events)), (200, false));
    }

    // Back: the watcher finds it and the reports return to it.
    relay.restore();
    until(&app, &root, on_replica).await;

    if let Some(replica) = &app.state.replica {
        replica.close().await;
    }
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&pool).await.unwrap();
}
