//! SQL for the audit tables. Inserts take any executor, so they join the caller's transaction.

use chrono::NaiveDate;
use sqlx::PgExecutor;

use super::models::{DeviceEvent, LinkEvent, MfaEvent, PartitionInfo, SessionEvent};

/// Cuts free text to a column's width so an over-long header never fails the caller.
fn fit(value: &Option<String>, max: usize) -> Option<String> {
    value.as_ref().map(|v| v.chars().take(max).collect())
}

fn reasons(r: &[String]) -> Option<Vec<String>> {
    if r.is_empty() { None } else { Some(r.to_vec()) }
}

pub async fn insert_session_event(db: impl PgExecutor<'_>, e: &SessionEvent) -> sqlx::Result<()> {
    let reasons = reasons(&e.flags.anomaly_reasons);
    sqlx::query!(
        r#"INSERT INTO audit_log_sessionauditlog
             (user_id, session_id, device_id, action, session_type, mfa_verified, mfa_method, country, city,
              ip_address, risk_level, is_anomalous, anomaly_reasons, requires_review, metadata, error_message,
              created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, COALESCE($17, now()))"#,
        e.user_id,
        e.session_id,
        e.device_id,
        e.action.as_str(),
        fit(&e.session_type, 20),
        e.mfa_verified,
        fit(&e.mfa_method, 20),
        fit(&e.origin.country, 100),
        fit(&e.origin.city, 100),
        e.origin.ip,
        e.risk_level.as_str(),
        e.flags.is_anomalous,
        reasons.as_deref(),
        e.flags.requires_review,
        e.metadata,
        e.error_message,
        e.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_device_event(db: impl PgExecutor<'_>, e: &DeviceEvent) -> sqlx::Result<()> {
    let level = super::models::RiskLevel::from_score(e.risk_score);
    let reasons = reasons(&e.flags.anomaly_reasons);
    sqlx::query!(
        r#"INSERT INTO audit_log_deviceauditlog
             (user_id, device_id, session_id, action, device_type, browser, os, risk_score, previous_risk_score,
              risk_level, is_anomalous, anomaly_reasons, requires_review, country, city, ip_address,
              trust_state_change, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                   COALESCE($19, now()))"#,
        e.user_id,
        e.device_id,
        e.session_id,
        e.action.as_str(),
        fit(&e.device_type, 50),
        fit(&e.browser, 100),
        fit(&e.os, 100),
        e.risk_score.clamp(0, 100),
        e.previous_risk_score.map(|s| s.clamp(0, 100)),
        level.as_str(),
        e.flags.is_anomalous,
        reasons.as_deref(),
        e.flags.requires_review,
        fit(&e.origin.country, 100),
        fit(&e.origin.city, 100),
        e.origin.ip,
        fit(&e.trust_state_change, 100),
        e.metadata,
        e.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_mfa_event(db: impl PgExecutor<'_>, e: &MfaEvent) -> sqlx::Result<()> {
    let reasons = reasons(&e.flags.anomaly_reasons);
    sqlx::query!(
        r#"INSERT INTO audit_log_mfaauditlog
             (user_id, device_id, session_id, action, mfa_method, challenge_id, verification_attempts,
              request_count_last_hour, rate_limit_status, ip_address, risk_level, is_anomalous, anomaly_reasons,
              requires_review, old_value, new_value, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                   COALESCE($18, now()))"#,
        e.user_id,
        e.device_id,
        e.session_id,
        e.action.as_str(),
        e.mfa_method,
        e.challenge_id,
        e.verification_attempts,
        e.request_count_last_hour,
        e.rate_limit_status,
        e.origin.ip,
        e.risk_level.as_str(),
        e.flags.is_anomalous,
        reasons.as_deref(),
        e.flags.requires_review,
        e.old_value,
        e.new_value,
        e.metadata,
        e.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_link_event(db: impl PgExecutor<'_>, e: &LinkEvent) -> sqlx::Result<()> {
    let reasons = reasons(&e.flags.anomaly_reasons);
    sqlx::query!(
        r#"INSERT INTO audit_log_sessiondevicelinkauditlog
             (user_id, session_id, device_id, link_action, previous_device_id, link_duration_seconds, ip_address,
              risk_level, is_anomalous, anomaly_reasons, requires_review, metadata, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, COALESCE($13, now()))"#,
        e.user_id,
        e.session_id,
        e.device_id,
        e.action.as_str(),
        e.previous_device_id,
        e.link_duration_seconds,
        e.origin.ip,
        e.risk_level.as_str(),
        e.flags.is_anomalous,
        reasons.as_deref(),
        e.flags.requires_review,
        e.metadata,
        e.created_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Creates `parent`'s partition for the month of `month` (moving DEFAULT rows into it).
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

/// Monthly partitions of `parent` whose month starts before `cutoff`.
pub async fn partitions_before(db: impl PgExecutor<'_>, parent: &str, cutoff: NaiveDate) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT c.relname::text AS "name!"
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = $1::text::regclass
              AND c.relname ~ '_p[0-9]{4}_[0-9]{2}$'
              AND to_date(right(c.relname, 7), 'YYYY_MM') < $2
            ORDER BY c.relname"#,
        parent,
        cutoff,
    )
    .fetch_all(db)
    .await
}

/// Detaches and drops one partition; `name` comes from the catalogue, never from a client.
pub async fn drop_partition(db: &mut sqlx::PgConnection, parent: &str, name: &str) -> sqlx::Result<()> {
    let detach = format!("ALTER TABLE \"{parent}\" DETACH PARTITION \"{name}\"");
    let drop = format!("DROP TABLE \"{name}\"");
    sqlx::query(sqlx::AssertSqlSafe(detach)).execute(&mut *db).await?;
    sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut *db).await?;
    Ok(())
}

/// Months kept per audit table, from audit_log_retentionpolicy.
pub async fn retention_months(db: impl PgExecutor<'_>, table: &str) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar!("SELECT months_kept FROM audit_log_retentionpolicy WHERE table_name = $1", table)
        .fetch_optional(db)
        .await
}

/// Recomputes every user's summary row for `day` (UTC) in one set-based statement over that
/// day's partitions; returns the rows written. Counter definitions: docs/audit.md.
pub async fn upsert_day_summaries(db: impl PgExecutor<'_>, day: NaiveDate) -> sqlx::Result<u64> {
    let done = sqlx::query_file!("queries/audit_summary_upsert.sql", day,).execute(db).await?;
    Ok(done.rows_affected())
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the summary statement for `day`, run inside `tx`
/// (the caller rolls it back): the plan the benchmark checks for spills and pruning.
pub async fn explain_day_summaries(tx: &mut sqlx::PgConnection, day: NaiveDate) -> sqlx::Result<Vec<String>> {
    let sql = concat!("EXPLAIN (ANALYZE, BUFFERS) ", include_str!("../../queries/audit_summary_upsert.sql"));
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(day).fetch_all(tx).await
}

/// Memory for the summary's sorts and hashes, for this transaction only: the default 4 MB
/// spills a day of a busy service to temporary files.
pub async fn summary_work_mem(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("SET LOCAL work_mem = '64MB'").execute(db).await?;
    Ok(())
}

/// Takes the per-day summary lock for the rest of the transaction, waiting for a holder.
pub async fn lock_summary_day(db: impl PgExecutor<'_>, day: NaiveDate) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('audit_summary'), ($1::date - DATE '2000-01-01'))", day)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether a run for `day` of `kind` has already succeeded.
pub async fn job_succeeded(db: impl PgExecutor<'_>, kind: &str, day: NaiveDate) -> sqlx::Result<bool> {
    let found = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM audit_log_jobrun WHERE kind = $1 AND target_date = $2
                          AND status = 'succeeded') AS "found!""#,
        kind,
        day,
    )
    .fetch_one(db)
    .await?;
    Ok(found)
}

/// The latest day `kind` succeeded for.
pub async fn last_succeeded_day(db: impl PgExecutor<'_>, kind: &str) -> sqlx::Result<Option<NaiveDate>> {
    sqlx::query_scalar!("SELECT max(target_date) FROM audit_log_jobrun WHERE kind = $1 AND status = 'succeeded'", kind)
        .fetch_one(db)
        .await
}

/// Records a finished job run.
pub async fn insert_job_run(db: impl PgExecutor<'_>, run: &super::models::NewJobRun<'_>) -> sqlx::Result<JobRun> {
    sqlx::query_as!(
        JobRun,
        r#"INSERT INTO audit_log_jobrun
             (kind, target_date, status, rows_affected, started_at, finished_at, duration_ms, error, triggered_by)
           VALUES ($1, $2, $3, $4, $5, clock_timestamp(),
                   (extract(epoch FROM clock_timestamp() - $5) * 1000)::bigint, $6, $7)
           RETURNING id, kind, target_date, status, rows_affected, started_at, finished_at, duration_ms, error,
                     triggered_by"#,
        run.kind,
        run.target_date,
        run.status,
        run.rows_affected,
        run.started_at,
        run.error,
        run.triggered_by,
    )
    .fetch_one(db)
    .await
}

pub use super::models::JobRun;
