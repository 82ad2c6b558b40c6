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
    let done = sqlx::query!(
        r#"WITH bounds AS (
               SELECT ($1::date)::timestamp AT TIME ZONE 'UTC' AS lo,
                      ($1::date + 1)::timestamp AT TIME ZONE 'UTC' AS hi
           ),
           ev AS (
               SELECT 's' AS src, user_id, action, risk_level, is_anomalous, ip_address, country, device_id,
                      session_type
                 FROM audit_log_sessionauditlog, bounds WHERE created_at >= lo AND created_at < hi
               UNION ALL
               SELECT 'd', user_id, action, risk_level, is_anomalous, ip_address, country, device_id, NULL
                 FROM audit_log_deviceauditlog, bounds WHERE created_at >= lo AND created_at < hi
               UNION ALL
               SELECT 'm', user_id, action, risk_level, is_anomalous, ip_address, NULL, device_id, NULL
                 FROM audit_log_mfaauditlog, bounds WHERE created_at >= lo AND created_at < hi
               UNION ALL
               SELECT 'l', user_id, link_action, risk_level, is_anomalous, ip_address, NULL, device_id, NULL
                 FROM audit_log_sessiondevicelinkauditlog, bounds WHERE created_at >= lo AND created_at < hi
           ),
           agg AS (
               SELECT user_id,
                      count(*) AS total_events,
                      count(*) FILTER (WHERE src = 's' AND action = 'login_failed') AS failed_logins,
                      count(*) FILTER (WHERE src = 'm' AND action = 'challenge_created') AS mfa_challenges,
                      count(*) FILTER (WHERE src = 's' AND session_type = 'api') AS api_calls,
                      count(*) FILTER (WHERE risk_level = 'low') AS low,
                      count(*) FILTER (WHERE risk_level = 'medium') AS medium,
                      count(*) FILTER (WHERE risk_level = 'high') AS high,
                      count(*) FILTER (WHERE risk_level = 'critical') AS critical,
                      count(DISTINCT country) AS countries,
                      count(DISTINCT ip_address) AS ips,
                      count(DISTINCT device_id) AS devices,
                      count(*) FILTER (WHERE src = 'm' AND action = 'enabled') AS mfa_enabled,
                      count(*) FILTER (WHERE src = 'm' AND action = 'disabled') AS mfa_disabled,
                      count(*) FILTER (WHERE src = 'm' AND action = 'codes_regenerated') AS codes_generated,
                      count(*) FILTER (WHERE (src = 'm' AND action = 'rate_limited')
                                          OR (src = 's' AND action = 'login_locked')) AS rate_limited,
                      count(*) FILTER (WHERE is_anomalous) AS anomalies,
                      count(*) FILTER (WHERE src = 'm' AND action = 'change_requested') AS approvals_required,
                      count(*) FILTER (WHERE src = 'm' AND action IN ('change_approved', 'change_rejected'))
                          AS approvals_completed
                 FROM ev
                GROUP BY user_id
           ),
           sessions AS (
               SELECT user_id, count(*) AS n FROM accounts_session, bounds
                WHERE created_at >= lo AND created_at < hi GROUP BY user_id
           ),
           new_devices AS (
               SELECT user_id, count(*) AS n FROM accounts_device, bounds
                WHERE created_at >= lo AND created_at < hi GROUP BY user_id
           ),
           users AS (
               SELECT user_id FROM agg UNION SELECT user_id FROM sessions UNION SELECT user_id FROM new_devices
           )
           INSERT INTO audit_log_auditlogsummary AS s
               (user_id, date, total_sessions, total_devices, total_failed_logins, total_mfa_challenges,
                total_api_calls, total_events, low_risk_events, medium_risk_events, high_risk_events,
                critical_risk_events, countries_accessed, unique_ips, unique_devices, mfa_enabled_count,
                mfa_disabled_count, backup_codes_generated, rate_limit_exceeded, anomalies_detected,
                approvals_required, approvals_completed)
           SELECT u.user_id, $1, COALESCE(se.n, 0), COALESCE(nd.n, 0), COALESCE(a.failed_logins, 0),
                  COALESCE(a.mfa_challenges, 0), COALESCE(a.api_calls, 0), COALESCE(a.total_events, 0),
                  COALESCE(a.low, 0), COALESCE(a.medium, 0), COALESCE(a.high, 0), COALESCE(a.critical, 0),
                  COALESCE(a.countries, 0), COALESCE(a.ips, 0), COALESCE(a.devices, 0), COALESCE(a.mfa_enabled, 0),
                  COALESCE(a.mfa_disabled, 0), COALESCE(a.codes_generated, 0), COALESCE(a.rate_limited, 0),
                  COALESCE(a.anomalies, 0), COALESCE(a.approvals_required, 0), COALESCE(a.approvals_completed, 0)
             FROM users u
             JOIN auth_user au ON au.id = u.user_id
             LEFT JOIN agg a ON a.user_id = u.user_id
             LEFT JOIN sessions se ON se.user_id = u.user_id
             LEFT JOIN new_devices nd ON nd.user_id = u.user_id
           ON CONFLICT ON CONSTRAINT audit_log_auditlogsummary_user_date_key DO UPDATE SET
               total_sessions = EXCLUDED.total_sessions, total_devices = EXCLUDED.total_devices,
               total_failed_logins = EXCLUDED.total_failed_logins,
               total_mfa_challenges = EXCLUDED.total_mfa_challenges, total_api_calls = EXCLUDED.total_api_calls,
               total_events = EXCLUDED.total_events, low_risk_events = EXCLUDED.low_risk_events,
               medium_risk_events = EXCLUDED.medium_risk_events, high_risk_events = EXCLUDED.high_risk_events,
               critical_risk_events = EXCLUDED.critical_risk_events,
               countries_accessed = EXCLUDED.countries_accessed, unique_ips = EXCLUDED.unique_ips,
               unique_devices = EXCLUDED.unique_devices, mfa_enabled_count = EXCLUDED.mfa_enabled_count,
               mfa_disabled_count = EXCLUDED.mfa_disabled_count,
               backup_codes_generated = EXCLUDED.backup_codes_generated,
               rate_limit_exceeded = EXCLUDED.rate_limit_exceeded,
               anomalies_detected = EXCLUDED.anomalies_detected, approvals_required = EXCLUDED.approvals_required,
               approvals_completed = EXCLUDED.approvals_completed, updated_at = now()
           -- An unchanged row is not rewritten: re-running a day changes nothing.
           WHERE (s.total_sessions, s.total_devices, s.total_failed_logins, s.total_mfa_challenges,
                  s.total_api_calls, s.total_events, s.low_risk_events, s.medium_risk_events, s.high_risk_events,
                  s.critical_risk_events, s.countries_accessed, s.unique_ips, s.unique_devices,
                  s.mfa_enabled_count, s.mfa_disabled_count, s.backup_codes_generated, s.rate_limit_exceeded,
                  s.anomalies_detected, s.approvals_required, s.approvals_completed)
             IS DISTINCT FROM
                 (EXCLUDED.total_sessions, EXCLUDED.total_devices, EXCLUDED.total_failed_logins,
                  EXCLUDED.total_mfa_challenges, EXCLUDED.total_api_calls, EXCLUDED.total_events,
                  EXCLUDED.low_risk_events, EXCLUDED.medium_risk_events, EXCLUDED.high_risk_events,
                  EXCLUDED.critical_risk_events, EXCLUDED.countries_accessed, EXCLUDED.unique_ips,
                  EXCLUDED.unique_devices, EXCLUDED.mfa_enabled_count, EXCLUDED.mfa_disabled_count,
                  EXCLUDED.backup_codes_generated, EXCLUDED.rate_limit_exceeded, EXCLUDED.anomalies_detected,
                  EXCLUDED.approvals_required, EXCLUDED.approvals_completed)"#,
        day,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
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
