//! SQL for the audit tables. Inserts take any executor, so they join the caller's transaction.

use chrono::NaiveDate;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::models::{DeviceEvent, LinkEvent, MfaEvent, PartitionInfo, SessionEvent, fit, reasons};

pub async fn insert_session_event(db: impl PgExecutor<'_>, e: &SessionEvent) -> sqlx::Result<()> {
    let c = e.columns();
    sqlx::query!(
        r#"INSERT INTO audit_log_sessionauditlog
             (user_id, session_id, device_id, action, session_type, mfa_verified, mfa_method, country, city,
              ip_address, risk_level, is_anomalous, anomaly_reasons, requires_review, metadata, error_message,
              created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, COALESCE($17, now()))"#,
        e.user_id,
        e.session_id,
        e.device_id,
        c.action,
        c.session_type,
        e.mfa_verified,
        c.mfa_method,
        c.country,
        c.city,
        e.origin.ip,
        c.risk_level,
        e.flags.is_anomalous,
        c.anomaly_reasons.as_deref(),
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

// The admin review API.

/// One page of `kind`'s rows matching `f`, newest first (each row carries the total).
pub async fn list_events(
    db: impl PgExecutor<'_>,
    kind: super::models::AuditKind,
    f: &super::models::EventFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<super::models::AuditEvent>> {
    use super::models::{AuditEvent, AuditKind};
    let level = f.risk_level.map(|l| l.as_str());
    macro_rules! list {
        ($file:literal) => {
            sqlx::query_file_as!(
                AuditEvent,
                $file,
                f.from,
                f.to,
                f.user_id,
                f.action.as_deref(),
                level,
                f.min_risk_score,
                f.is_anomalous,
                f.requires_review,
                limit,
                offset
            )
            .fetch_all(db)
            .await
        };
    }
    match kind {
        AuditKind::Session => list!("queries/audit_list_session.sql"),
        AuditKind::Device => list!("queries/audit_list_device.sql"),
        AuditKind::Mfa => list!("queries/audit_list_mfa.sql"),
        AuditKind::Link => list!("queries/audit_list_link.sql"),
    }
}

/// The plan of `list_events` for `kind` between `from` and `to` (tests and diagnosis).
pub async fn explain_list(
    db: impl PgExecutor<'_>,
    kind: super::models::AuditKind,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<Vec<String>> {
    use super::models::AuditKind;
    let sql = match kind {
        AuditKind::Session => include_str!("../../queries/audit_list_session.sql"),
        AuditKind::Device => include_str!("../../queries/audit_list_device.sql"),
        AuditKind::Mfa => include_str!("../../queries/audit_list_mfa.sql"),
        AuditKind::Link => include_str!("../../queries/audit_list_link.sql"),
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}")))
        .bind(from)
        .bind(to)
        .bind(None::<Uuid>)
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(None::<i32>)
        .bind(None::<bool>)
        .bind(None::<bool>)
        .bind(20_i64)
        .bind(0_i64)
        .fetch_all(db)
        .await
}

/// A user's own events from all four tables, newest first.
pub async fn events_of_user(
    db: impl PgExecutor<'_>,
    user: Uuid,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<super::models::AuditEvent>> {
    sqlx::query_file_as!(super::models::AuditEvent, "queries/audit_events_of_user.sql", user, from, to, limit, offset)
        .fetch_all(db)
        .await
}

/// Records a review on one row of `kind`; returns whether the row exists.
pub async fn review_event(
    db: impl PgExecutor<'_>,
    kind: super::models::AuditKind,
    id: Uuid,
    status: &str,
    notes: Option<&str>,
    reviewer: Uuid,
) -> sqlx::Result<Option<Uuid>> {
    use super::models::AuditKind;
    match kind {
        AuditKind::Session => {
            sqlx::query_scalar!(
                "UPDATE audit_log_sessionauditlog
                    SET review_status = $2, review_notes = $3, reviewed_by_id = $4, reviewed_at = now()
                  WHERE id = $1 RETURNING user_id",
                id,
                status,
                notes,
                reviewer
            )
            .fetch_optional(db)
            .await
        }
        AuditKind::Device => {
            sqlx::query_scalar!(
                "UPDATE audit_log_deviceauditlog
                    SET review_status = $2, review_notes = $3, reviewed_by_id = $4, reviewed_at = now()
                  WHERE id = $1 RETURNING user_id",
                id,
                status,
                notes,
                reviewer
            )
            .fetch_optional(db)
            .await
        }
        AuditKind::Mfa => {
            sqlx::query_scalar!(
                "UPDATE audit_log_mfaauditlog
                    SET review_status = $2, review_notes = $3, reviewed_by_id = $4, reviewed_at = now()
                  WHERE id = $1 RETURNING user_id",
                id,
                status,
                notes,
                reviewer
            )
            .fetch_optional(db)
            .await
        }
        AuditKind::Link => {
            sqlx::query_scalar!(
                "UPDATE audit_log_sessiondevicelinkauditlog
                    SET review_status = $2, review_notes = $3, reviewed_by_id = $4, reviewed_at = now()
                  WHERE id = $1 RETURNING user_id",
                id,
                status,
                notes,
                reviewer
            )
            .fetch_optional(db)
            .await
        }
    }
}

pub async fn summaries(
    db: impl PgExecutor<'_>,
    from: NaiveDate,
    to: NaiveDate,
    user: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<super::models::Summary>, i64)> {
    let rows = sqlx::query!(
        r#"SELECT user_id, date, total_sessions, total_devices, total_failed_logins, total_mfa_challenges,
                  total_api_calls, total_events, low_risk_events, medium_risk_events, high_risk_events,
                  critical_risk_events, countries_accessed, unique_ips, unique_devices, mfa_enabled_count,
                  mfa_disabled_count, backup_codes_generated, rate_limit_exceeded, anomalies_detected,
                  approvals_required, approvals_completed, updated_at, count(*) OVER () AS "total!"
             FROM audit_log_auditlogsummary
            WHERE date BETWEEN $1 AND $2 AND ($3::uuid IS NULL OR user_id = $3)
            ORDER BY date DESC, high_risk_events DESC, user_id
            LIMIT $4 OFFSET $5"#,
        from,
        to,
        user,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total = rows.first().map(|r| r.total).unwrap_or(0);
    let items = rows
        .into_iter()
        .map(|r| super::models::Summary {
            user_id: r.user_id,
            date: r.date,
            total_sessions: r.total_sessions,
            total_devices: r.total_devices,
            total_failed_logins: r.total_failed_logins,
            total_mfa_challenges: r.total_mfa_challenges,
            total_api_calls: r.total_api_calls,
            total_events: r.total_events,
            low_risk_events: r.low_risk_events,
            medium_risk_events: r.medium_risk_events,
            high_risk_events: r.high_risk_events,
            critical_risk_events: r.critical_risk_events,
            countries_accessed: r.countries_accessed,
            unique_ips: r.unique_ips,
            unique_devices: r.unique_devices,
            mfa_enabled_count: r.mfa_enabled_count,
            mfa_disabled_count: r.mfa_disabled_count,
            backup_codes_generated: r.backup_codes_generated,
            rate_limit_exceeded: r.rate_limit_exceeded,
            anomalies_detected: r.anomalies_detected,
            approvals_required: r.approvals_required,
            approvals_completed: r.approvals_completed,
            updated_at: r.updated_at,
        })
        .collect();
    Ok((items, total))
}

pub async fn daily_totals(
    db: impl PgExecutor<'_>,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Vec<super::models::DailyTotals>> {
    sqlx::query_as!(
        super::models::DailyTotals,
        r#"SELECT d::date AS "date!", count(s.user_id) AS "users!",
                  COALESCE(sum(s.total_sessions), 0)::bigint AS "total_sessions!",
                  COALESCE(sum(s.total_failed_logins), 0)::bigint AS "total_failed_logins!",
                  COALESCE(sum(s.total_mfa_challenges), 0)::bigint AS "total_mfa_challenges!",
                  COALESCE(sum(s.total_events), 0)::bigint AS "total_events!",
                  COALESCE(sum(s.low_risk_events), 0)::bigint AS "low_risk_events!",
                  COALESCE(sum(s.medium_risk_events), 0)::bigint AS "medium_risk_events!",
                  COALESCE(sum(s.high_risk_events), 0)::bigint AS "high_risk_events!",
                  COALESCE(sum(s.critical_risk_events), 0)::bigint AS "critical_risk_events!",
                  COALESCE(sum(s.rate_limit_exceeded), 0)::bigint AS "rate_limit_exceeded!",
                  COALESCE(sum(s.anomalies_detected), 0)::bigint AS "anomalies_detected!"
             FROM generate_series($1::date, $2::date, interval '1 day') d
             LEFT JOIN audit_log_auditlogsummary s ON s.date = d::date
            GROUP BY d ORDER BY d"#,
        from,
        to,
    )
    .fetch_all(db)
    .await
}

pub async fn job_runs(
    db: impl PgExecutor<'_>,
    kind: Option<&str>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<JobRun>, i64)> {
    let rows = sqlx::query!(
        r#"SELECT id, kind, target_date, status, rows_affected, started_at, finished_at, duration_ms, error, triggered_by,
                  count(*) OVER () AS "total!"
             FROM audit_log_jobrun WHERE ($1::text IS NULL OR kind = $1)
            ORDER BY started_at DESC, id DESC LIMIT $2 OFFSET $3"#,
        kind,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    let total = rows.first().map(|r| r.total).unwrap_or(0);
    let items = rows
        .into_iter()
        .map(|r| JobRun {
            id: r.id,
            kind: r.kind,
            target_date: r.target_date,
            status: r.status,
            rows_affected: r.rows_affected,
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: r.duration_ms,
            error: r.error,
            triggered_by: r.triggered_by,
        })
        .collect();
    Ok((items, total))
}

pub async fn retention_rows(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, i32)>> {
    let rows = sqlx::query!("SELECT table_name, months_kept FROM audit_log_retentionpolicy").fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.table_name, r.months_kept)).collect())
}

pub async fn set_retention(db: impl PgExecutor<'_>, table: &str, months: i32, by: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO audit_log_retentionpolicy (table_name, months_kept, updated_by_id) VALUES ($1, $2, $3)
         ON CONFLICT ON CONSTRAINT audit_log_retentionpolicy_table_key DO UPDATE SET
             months_kept = EXCLUDED.months_kept, updated_by_id = EXCLUDED.updated_by_id, updated_at = now()",
        table,
        months,
        by,
    )
    .execute(db)
    .await?;
    Ok(())
}
