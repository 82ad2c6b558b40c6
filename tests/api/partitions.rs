//! The audit tables' storage: monthly partitions, their upkeep beside live traffic, and
//! the reports pool's connections with the lists' plans made ahead.

use chrono::{Months, Utc};
use gatehouse::{
    audit_log::{self, SessionAction, SessionEvent},
    core::db,
};
use sqlx::PgPool;

use crate::helpers::test_config;

/// The retention drop with 13 months kept, running beside the test.
fn spawn_prune(pool: &PgPool, today: chrono::NaiveDate) -> tokio::task::JoinHandle<sqlx::Result<Vec<String>>> {
    let pool = pool.clone();
    tokio::spawn(async move { audit_log::service::prune_partitions(&pool, today, 13).await })
}

async fn insert_user(pool: &PgPool) -> uuid::Uuid {
    sqlx::query_scalar(
        "INSERT INTO auth_user (email, username, password_hash) VALUES ('a@example.com', 'alice', 'x') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn audit_rows_land_in_their_month_and_outside_every_month_are_refused(pool: PgPool) {
    let user = insert_user(&pool).await;
    let next = Utc::now() + Months::new(1);
    let event = SessionEvent { created_at: Some(next), ..SessionEvent::new(user, SessionAction::Login) };
    audit_log::record_session(&pool, &event).await.unwrap();
    let landed: String =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_log_sessionauditlog WHERE created_at = $1")
            .bind(next)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(landed, format!("audit_log_sessionauditlog_p{}", next.format("%Y_%m")));

    // Rows are written at now(); one five years ahead has no month to land in.
    let far = Utc::now() + Months::new(60);
    let event = SessionEvent { created_at: Some(far), ..SessionEvent::new(user, SessionAction::Login) };
    let refused = audit_log::record_session(&pool, &event).await.unwrap_err();
    let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23514"), "{refused}");
}

#[sqlx::test]
async fn ensure_makes_the_months_ahead_once(pool: PgPool) {
    let today = Utc::now().date_naive();
    let created = audit_log::service::ensure_partitions(&pool, today, 5).await.unwrap();
    assert_eq!(created.len(), 4 * 2, "months 4 and 5 for four tables: {created:?}");
    let far = Utc::now() + Months::new(5);
    let user = insert_user(&pool).await;
    let event = SessionEvent { created_at: Some(far), ..SessionEvent::new(user, SessionAction::Logout) };
    audit_log::record_session(&pool, &event).await.unwrap();
    assert!(audit_log::service::ensure_partitions(&pool, today, 5).await.unwrap().is_empty());
}

/// The retention drop detaches concurrently: a request writing audit rows goes on while
/// the drop waits for an older open transaction (the ACCESS EXCLUSIVE detach it replaced
/// queued every writer behind that transaction).
#[sqlx::test]
async fn prune_does_not_hold_up_writers(pool: PgPool) {
    let user = insert_user(&pool).await;
    let today = Utc::now().date_naive();
    let old = today - Months::new(20);
    audit_log::repo::partitions::create_partition(&pool, "audit_log_sessionauditlog", old).await.unwrap();

    let mut open = pool.begin().await.unwrap();
    audit_log::record_session(&mut *open, &SessionEvent::new(user, SessionAction::Login)).await.unwrap();
    let prune = spawn_prune(&pool, today);
    // The drop is under way: its detach waits for `open`.
    let mut waited = 0;
    while waited < 100 {
        let detaching: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%DETACH PARTITION%CONCURRENTLY%' AND state = 'active'
               AND pid <> pg_backend_pid()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if detaching > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(waited < 100, "the detach never started");
    let logout = SessionEvent::new(user, SessionAction::Logout);
    let write = audit_log::record_session(&pool, &logout);
    tokio::time::timeout(std::time::Duration::from_secs(10), write)
        .await
        .expect("a writer waited behind the retention drop")
        .unwrap();
    open.commit().await.unwrap();
    let dropped = prune.await.unwrap().unwrap();
    assert_eq!(dropped, vec![format!("audit_log_sessionauditlog_p{}", old.format("%Y_%m"))]);
}

/// The DROP of a detached month waits at most 50 ms for its locks on auth_user (its
/// foreign keys' triggers live there) and tries again: a transaction holding auth_user does
/// not make every later reader of auth_user queue behind the drop. A table an earlier run
/// detached (and marked as its own) but did not drop is found and dropped.
#[sqlx::test]
async fn the_drop_lets_go_of_a_busy_table(pool: PgPool) {
    let today = Utc::now().date_naive();
    let old = today - Months::new(20);
    let name = format!("audit_log_mfaauditlog_p{}", old.format("%Y_%m"));
    audit_log::repo::partitions::create_partition(&pool, "audit_log_mfaauditlog", old).await.unwrap();
    let mark = audit_log::repo::partitions::DETACH_MARK;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "COMMENT ON TABLE {name} IS '{mark}'; ALTER TABLE audit_log_mfaauditlog DETACH PARTITION {name}"
    )))
    .execute(&pool)
    .await
    .unwrap();

    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM auth_user").execute(&mut *holder).await.unwrap();
    let prune = spawn_prune(&pool, today);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..5 {
        let read = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM auth_user").fetch_one(&pool);
        tokio::time::timeout(std::time::Duration::from_secs(2), read)
            .await
            .expect("a reader of auth_user queued behind the drop")
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    holder.commit().await.unwrap();
    assert_eq!(prune.await.unwrap().unwrap(), vec![name]);
}

/// Finishing a detach makes the month's foreign-key triggers on auth_user (SHARE ROW
/// EXCLUSIVE there): behind a transaction that writes auth_user, it waits at most 50 ms
/// and tries again, so the writes after it (every login stamps auth_user) do not queue.
#[sqlx::test]
async fn the_detach_lets_go_of_a_busy_table(pool: PgPool) {
    let holder_user = insert_user(&pool).await;
    let writer_user: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO auth_user (email, username, password_hash) VALUES ('b@example.com', 'bob', 'x') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let today = Utc::now().date_naive();
    let old = today - Months::new(20);
    audit_log::repo::partitions::create_partition(&pool, "audit_log_mfaauditlog", old).await.unwrap();

    let mut holder = pool.begin().await.unwrap();
    sqlx::query("UPDATE auth_user SET last_login = now() WHERE id = $1")
        .bind(holder_user)
        .execute(&mut *holder)
        .await
        .unwrap();
    let prune = spawn_prune(&pool, today);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for _ in 0..5 {
        let write =
            sqlx::query("UPDATE auth_user SET last_login = now() WHERE id = $1").bind(writer_user).execute(&pool);
        tokio::time::timeout(std::time::Duration::from_secs(2), write)
            .await
            .expect("a writer of auth_user queued behind the detach")
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    holder.commit().await.unwrap();
    assert_eq!(prune.await.unwrap().unwrap(), vec![format!("audit_log_mfaauditlog_p{}", old.format("%Y_%m"))]);
}

/// Past retention means dropped; a month an operator detached by hand (to archive it, say)
/// is theirs: the job leaves a detached table alone unless it marked it itself.
#[sqlx::test]
async fn prune_drops_only_partitions_past_retention(pool: PgPool) {
    let today = Utc::now().date_naive();
    let old = today - Months::new(20);
    let archived = today - Months::new(22);
    let kept = today - Months::new(12);
    for month in [old, archived, kept] {
        audit_log::repo::partitions::create_partition(&pool, "audit_log_mfaauditlog", month).await.unwrap();
    }
    let archived_name = format!("audit_log_mfaauditlog_p{}", archived.format("%Y_%m"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER TABLE audit_log_mfaauditlog DETACH PARTITION {archived_name}")))
        .execute(&pool)
        .await
        .unwrap();
    let dropped = audit_log::service::prune_partitions(&pool, today, 13).await.unwrap();
    assert_eq!(dropped, vec![format!("audit_log_mfaauditlog_p{}", old.format("%Y_%m"))]);
    let left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&archived_name).fetch_one(&pool).await.unwrap();
    assert_eq!(left.as_deref(), Some(archived_name.as_str()), "the hand-detached month was dropped");
    let names: Vec<String> =
        audit_log::service::list_partitions(&pool).await.unwrap().into_iter().map(|p| p.name).collect();
    assert!(names.contains(&format!("audit_log_mfaauditlog_p{}", kept.format("%Y_%m"))));
    assert!(names.contains(&format!("audit_log_mfaauditlog_p{}", today.format("%Y_%m"))));
}

/// A connection of the reports pool opens with the four lists that run a generic plan
/// prepared and planned (`audit_log::repo::review::warm_up`), and a list through the pool
/// runs on that plan: none of them plans again.
#[sqlx::test]
async fn reports_connections_open_with_the_lists_planned(pool: PgPool) {
    let config = test_config(&pool);
    let reports = db::reports_pool(&config.database, audit_log::repo::review::warm_up).unwrap();
    // Opened at start, all of them, before any read.
    db::open_reports(reports.clone()).await;
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'gatehouse-reports-primary'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 4, "the reports pool's four connections");
    let mut conn = reports.acquire().await.unwrap();
    let plans: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%FROM audit_log_%auditlog%'
            AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(plans, vec![(1, 0); 4], "four lists, each planned once, generically");
    drop(conn);
    let filter = audit_log::models::review::EventFilter::default();
    for _ in 0..8 {
        audit_log::repo::review::list_events(&reports, audit_log::models::events::AuditKind::Session, &filter, 21, 0)
            .await
            .unwrap();
    }
    let custom: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(custom_plans), 0)::bigint FROM pg_prepared_statements WHERE statement LIKE '%FROM audit_log_%auditlog%'
            AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_one(&reports)
    .await
    .unwrap();
    assert_eq!(custom, 0);
    reports.close().await;
}
