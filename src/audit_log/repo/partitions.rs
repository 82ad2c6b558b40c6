//! The monthly partitions of the audit tables, and how long each table keeps them.

use chrono::NaiveDate;
use sqlx::PgExecutor;

use crate::audit_log::models::review::PartitionInfo;

/// Serialises partition creation across instances and the CLI (two `serve` starts would
/// both find a month missing and one would fail on the other's table); held to the end of
/// the caller's transaction. Not the partitions job's session lock, which its holder keeps
/// on another connection while it creates.
pub async fn lock_creation(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(x'6761746500ff'::bigint)").execute(db).await?;
    Ok(())
}

/// Creates `parent`'s partition for the month of `month`, unless it exists.
pub async fn create_partition(db: impl PgExecutor<'_>, parent: &str, month: NaiveDate) -> sqlx::Result<bool> {
    let created = sqlx::query_scalar!(r#"SELECT audit_log_create_partition($1, $2) AS "created!""#, parent, month)
        .fetch_one(db)
        .await?;
    Ok(created)
}

/// Every partition of the four audit tables with its bounds, live row count and size.
pub async fn list_partitions(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<PartitionInfo>> {
    // reltuples is an estimate; exact counts matter more here than speed.
    sqlx::query_as!(
        PartitionInfo,
        r#"SELECT p.relname::text AS "parent!", c.relname::text AS "name!",
                  pg_get_expr(c.relpartbound, c.oid) AS "bounds!",
                  (xpath('/row/n/text()',
                         query_to_xml(format('SELECT count(*) AS n FROM %I', c.relname), false, true, '')))[1]::text::bigint
                      AS "rows!",
                  pg_total_relation_size(c.oid) AS "size_bytes!"
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname IN ('audit_log_sessionauditlog', 'audit_log_deviceauditlog',
                                'audit_log_sessiondevicelinkauditlog', 'audit_log_mfaauditlog')
            ORDER BY p.relname, c.relname"#
    )
    .fetch_all(db)
    .await
}

/// The mark a drop puts on a month before it detaches it: a detached table is dropped by a
/// later run only when it carries this mark, so a month an operator detached (to archive
/// it, say) is theirs and stays.
pub const DETACH_MARK: &str = "gatehouse: detached by the audit retention job";

/// Monthly partitions of `parent` whose month starts before `cutoff` and ended more than a
/// day ago, and tables of theirs a drop detached (marked `DETACH_MARK`) but did not get to
/// drop (drop_partition ends both).
pub async fn partitions_before(db: impl PgExecutor<'_>, parent: &str, cutoff: NaiveDate) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT c.relname::text AS "name!"
             FROM pg_class c
            WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
              AND c.relname ~ ('^' || $1 || '_p[0-9]{4}_[0-9]{2}$')
              AND (EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid AND i.inhparent = $1::text::regclass)
                   OR obj_description(c.oid, 'pg_class') = $3)
              AND to_date(right(c.relname, 7), 'YYYY_MM') < $2
              -- Never a month that ended less than a day ago by the database's clock (rows
              -- are dated by it, not by the caller's `cutoff`): a transaction begun before
              -- midnight on the 1st still writes into the month that just ended.
              AND to_date(right(c.relname, 7), 'YYYY_MM') + interval '1 month'
                  <= (now() AT TIME ZONE 'UTC') - interval '1 day'
            ORDER BY c.relname"#,
        parent,
        cutoff,
        DETACH_MARK,
    )
    .fetch_all(db)
    .await
}

/// How long each step of a drop may wait for a lock before it lets go, and how often it tries.
const DROP_LOCK_TIMEOUT: &str = "50ms";
const DROP_ATTEMPTS: u32 = 40;
const DROP_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Detaches and drops one partition; `name` comes from the catalogue, never from a client.
/// DETACH ... CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on the parent, so the requests
/// writing audit rows go on; it cannot run in a transaction (raw_sql sends each statement
/// on its own). A detach cut short earlier leaves the partition pending: FINALIZE ends it.
/// Finishing a detach and the DROP both change the foreign-key triggers on auth_user,
/// accounts_session and accounts_device (SHARE ROW EXCLUSIVE, then ACCESS EXCLUSIVE, on
/// each in turn): queued behind a request, either would hold every later write to those
/// tables up, and against a refresh's order the DROP deadlocked one (make bench-scale).
/// So every step waits at most DROP_LOCK_TIMEOUT (a session setting: the concurrent detach
/// cannot SET LOCAL) and the whole is tried again; a partition left pending or detached is
/// finished by the next try or the next run. The caller closes the connection after (the
/// setting must not outlive this).
pub async fn drop_partition(db: &mut sqlx::PgConnection, parent: &str, name: &str) -> sqlx::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET lock_timeout = '{DROP_LOCK_TIMEOUT}'"))).execute(&mut *db).await?;
    let mut attempt = 1;
    loop {
        match detach_and_drop(db, parent, name).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < DROP_ATTEMPTS && lock_not_available(&e) => {
                attempt += 1;
                tokio::time::sleep(DROP_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn detach_and_drop(db: &mut sqlx::PgConnection, parent: &str, name: &str) -> sqlx::Result<()> {
    let pending = sqlx::query_scalar!(
        r#"SELECT inhdetachpending AS "pending!" FROM pg_inherits WHERE inhrelid = $1::text::regclass"#,
        name
    )
    .fetch_optional(&mut *db)
    .await?;
    let detach = match pending {
        Some(true) => format!("ALTER TABLE \"{parent}\" DETACH PARTITION \"{name}\" FINALIZE"),
        Some(false) => format!("ALTER TABLE \"{parent}\" DETACH PARTITION \"{name}\" CONCURRENTLY"),
        None => String::new(),
    };
    if !detach.is_empty() {
        // Marked first (its own statement: the concurrent detach cannot run in a
        // transaction), so a detach cut short leaves a table the next run knows as its own.
        let mark = format!("COMMENT ON TABLE \"{name}\" IS '{DETACH_MARK}'");
        sqlx::raw_sql(sqlx::AssertSqlSafe(mark)).execute(&mut *db).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(detach)).execute(&mut *db).await?;
    }
    let mut tx = sqlx::Connection::begin(&mut *db).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE \"{name}\""))).execute(&mut *tx).await?;
    tx.commit().await
}

/// SQLSTATE 55P03: a lock_timeout ran out.
fn lock_not_available(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "55P03")
}

/// Months kept per audit table, from audit_log_retentionpolicy.
pub async fn retention_months(db: impl PgExecutor<'_>, table: &str) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar!("SELECT months_kept FROM audit_log_retentionpolicy WHERE table_name = $1", table)
        .fetch_optional(db)
        .await
}

/// The raw client addresses of the audit tables, and what dates them
/// (core::db::truncate_ips; each statement prunes to the partitions of its window).
pub const IP_COLUMNS: &[crate::core::db::IpColumn] = &[
    crate::core::db::IpColumn { table: "audit_log_sessionauditlog", ip: "ip_address", dated_by: "created_at" },
    crate::core::db::IpColumn { table: "audit_log_deviceauditlog", ip: "ip_address", dated_by: "created_at" },
    crate::core::db::IpColumn { table: "audit_log_deviceauditlog", ip: "previous_ip", dated_by: "created_at" },
    crate::core::db::IpColumn { table: "audit_log_mfaauditlog", ip: "ip_address", dated_by: "created_at" },
    crate::core::db::IpColumn {
        table: "audit_log_sessiondevicelinkauditlog",
        ip: "ip_address",
        dated_by: "created_at",
    },
];
