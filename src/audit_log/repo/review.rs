//! Reads and reviews for administrators: filtered event lists, a user's own events,
//! summaries, job runs and retention settings.

use chrono::NaiveDate;
use sqlx::PgExecutor;

use crate::audit_log::models::review::JobRun;
use uuid::Uuid;

/// One page of `kind`'s rows matching `f`, newest first (each row carries the total).
///
/// A custom plan of these queries costs 2-7 ms to make (every monthly partition of the
/// table, twice: the page and the count), several times what it then takes to run. Without
/// a user or an anomaly reason to look up, and outside the list by risk, the one plan that
/// serves every call is the same index walk down `created_at` (the time bounds and the
/// cursor prune months and start the walk as the executor starts): such a list runs the
/// statement's generic plan, made once per connection, and is one statement on a reports
/// connection, whose session plans generically (`core::db::reports_settings`). A user's or
/// a reason's rows keep a custom plan, which reaches them through their own indexes: that
/// list asks for one in its own transaction.
pub async fn list_events(
    db: &sqlx::PgPool,
    kind: crate::audit_log::models::events::AuditKind,
    f: &crate::audit_log::models::review::EventFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<crate::audit_log::models::review::AuditEvent>> {
    if generic(kind, f) {
        // Read only and one statement: autocommit gives it one snapshot.
        let mut conn = db.acquire().await?;
        return list_in(&mut conn, kind, f, limit, offset).await;
    }
    let mut tx = custom_plans(db).await?;
    let rows = list_in(&mut tx, kind, f, limit, offset).await?;
    // Read only: the commit ends the transaction, nothing to make durable.
    crate::core::db::commit(tx).await?;
    Ok(rows)
}

/// A transaction whose statements are planned for their parameters again, on a reports
/// connection whose session plans generically (`core::db::reports_settings`): for reads
/// whose parameters choose the index (one user's rows, an anomaly reason). The setting is
/// local: the connection goes back to the pool with its own.
async fn custom_plans(db: &sqlx::PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    // Shielded from the client hanging up mid-BEGIN (see core::db::begin).
    let mut tx = crate::core::db::begin(db).await?;
    sqlx::query!("SELECT set_config('plan_cache_mode', 'auto', true) AS plans").fetch_one(&mut *tx).await?;
    Ok(tx)
}

/// Whether `f`'s list is served by the statement's generic plan (see `list_events`).
fn generic(
    kind: crate::audit_log::models::events::AuditKind,
    f: &crate::audit_log::models::review::EventFilter,
) -> bool {
    use crate::audit_log::models::events::AuditKind;
    f.user_id.is_none() && f.anomaly.is_none() && !(kind == AuditKind::Device && f.by_risk)
}

/// The list statement of `kind`, on `conn` with its settings.
async fn list_in(
    conn: &mut sqlx::PgConnection,
    kind: crate::audit_log::models::events::AuditKind,
    f: &crate::audit_log::models::review::EventFilter,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<crate::audit_log::models::review::AuditEvent>> {
    use crate::audit_log::models::{events::AuditKind, review::AuditEvent};
    let level = f.risk_level.map(|l| l.as_str());
    let (after_at, after_id, after_risk) = match f.after {
        Some(c) => (Some(c.created_at), Some(c.id), c.risk_score),
        None => (None, None, None),
    };
    macro_rules! list {
        ($file:literal $(, $extra:expr)?) => {
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
                offset,
                f.anomaly.as_deref(),
                after_at,
                after_id
                $(, $extra)?
            )
            .fetch_all(&mut *conn)
            .await
        };
    }
    match kind {
        AuditKind::Session => list!("queries/audit_list_session.sql"),
        // A cursor from the newest-first list has no risk: it starts over at the top.
        AuditKind::Device if f.by_risk => list!("queries/audit_list_device_risk.sql", after_risk.unwrap_or(101)),
        AuditKind::Device => list!("queries/audit_list_device.sql"),
        AuditKind::Mfa => list!("queries/audit_list_mfa.sql"),
        AuditKind::Link => list!("queries/audit_list_link.sql"),
    }
}

/// Makes, on a fresh connection of the reports pool (`core::db::reports_pool`), the
/// generic plans of the four lists that run one: 10-28 ms each over a year of monthly
/// partitions, which the first lists each connection served used to pay (20-60 ms lists
/// after every start). The statements stay prepared on the connection with their plans;
/// the lists run in a window that prunes every month, so nothing is read. A failure is
/// logged, not fatal: the connection serves, and its first lists make the plans.
pub fn warm_up(conn: &mut sqlx::PgConnection) -> std::pin::Pin<Box<dyn Future<Output = sqlx::Result<()>> + Send + '_>> {
    use crate::audit_log::models::{events::AuditKind, review::EventFilter};
    Box::pin(async move {
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let f = EventFilter { from: Some(epoch), to: Some(epoch), ..EventFilter::default() };
        for &kind in AuditKind::ALL {
            if let Err(error) = list_in(conn, kind, &f, 1, 0).await {
                tracing::warn!(%error, "the reports connection's list plans were not made ahead");
                return Ok(());
            }
        }
        Ok(())
    })
}

/// The plan of the device list by risk for scores of at least `min_risk_score` (tests and
/// diagnosis: idx_deviceaudit_risk_created serves it).
pub async fn explain_device_risk_list(db: impl PgExecutor<'_>, min_risk_score: i32) -> sqlx::Result<Vec<String>> {
    let sql = include_str!("../../../queries/audit_list_device_risk.sql");
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}")))
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<Uuid>)
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(Some(min_risk_score))
        .bind(None::<bool>)
        .bind(None::<bool>)
        .bind(20_i64)
        .bind(0_i64)
        .bind(None::<String>)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<Uuid>)
        .bind(None::<i32>)
        .fetch_all(db)
        .await
}

/// The plan of `list_events` for `kind` between `from` and `to`, optionally for one
/// anomaly reason; `generic`: the generic plan those lists run without a user or a reason
/// (tests and diagnosis).
pub async fn explain_list(
    db: &sqlx::PgPool,
    kind: crate::audit_log::models::events::AuditKind,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    anomaly: Option<&str>,
    generic: bool,
) -> sqlx::Result<Vec<String>> {
    use crate::audit_log::models::events::AuditKind;
    let sql = match kind {
        AuditKind::Session => include_str!("../../../queries/audit_list_session.sql"),
        AuditKind::Device => include_str!("../../../queries/audit_list_device.sql"),
        AuditKind::Mfa => include_str!("../../../queries/audit_list_mfa.sql"),
        AuditKind::Link => include_str!("../../../queries/audit_list_link.sql"),
    };
    if generic {
        // A generic plan needs a prepared statement: EXPLAIN of a statement with bound
        // parameters plans it for their values. On a connection of its own, closed after
        // (a prepared statement and a session setting outlive any transaction).
        let mut conn = db.acquire().await?.detach();
        sqlx::query!("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await?;
        sqlx::query!("SET max_parallel_workers_per_gather = 0").execute(&mut conn).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE explained_list AS {sql}"))).execute(&mut conn).await?;
        let reason = anomaly.map_or("NULL".to_owned(), |a| format!("'{}'", a.replace('\'', "''")));
        let plan = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE explained_list('{}', '{}', NULL, NULL, NULL, NULL, NULL, NULL, 20, 0, {reason}, NULL, NULL)",
            from.to_rfc3339(),
            to.to_rfc3339(),
        )))
        .fetch_all(&mut conn)
        .await?;
        return Ok(plan);
    }
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
        .bind(anomaly)
        .bind(None::<chrono::DateTime<chrono::Utc>>)
        .bind(None::<Uuid>)
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
) -> sqlx::Result<Vec<crate::audit_log::models::review::AuditEvent>> {
    sqlx::query_file_as!(
        crate::audit_log::models::review::AuditEvent,
        "queries/audit_events_of_user.sql",
        user,
        from,
        to,
        limit,
        offset
    )
    .fetch_all(db)
    .await
}

/// Records a review on one row of `kind`; returns whether the row exists.
pub async fn review_event(
    db: impl PgExecutor<'_>,
    kind: crate::audit_log::models::events::AuditKind,
    id: Uuid,
    status: &str,
    notes: Option<&str>,
    reviewer: Uuid,
) -> sqlx::Result<Option<Uuid>> {
    use crate::audit_log::models::events::AuditKind;
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

/// Daily summaries, one user's (their index, a custom plan) or everyone's.
pub async fn summaries(
    db: &sqlx::PgPool,
    from: NaiveDate,
    to: NaiveDate,
    user: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<crate::audit_log::models::review::Summary>, i64)> {
    let mut tx = custom_plans(db).await?;
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
    .fetch_all(&mut *tx)
    .await?;
    crate::core::db::commit(tx).await?;
    let total = rows.first().map(|r| r.total).unwrap_or(0);
    let items = rows
        .into_iter()
        .map(|r| crate::audit_log::models::review::Summary {
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
) -> sqlx::Result<Vec<crate::audit_log::models::review::DailyTotals>> {
    sqlx::query_as!(
        crate::audit_log::models::review::DailyTotals,
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

/// Job runs, newest first; with `latest`, only the newest run of each kind.
pub async fn job_runs(
    db: impl PgExecutor<'_>,
    kind: Option<&str>,
    latest: bool,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<JobRun>, i64)> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id!", kind AS "kind!", target_date, status AS "status!", rows_affected AS "rows_affected!",
                  started_at AS "started_at!", finished_at, duration_ms, error, triggered_by AS "triggered_by!",
                  details, count(*) OVER () AS "total!"
             FROM (SELECT DISTINCT ON (CASE WHEN $4 THEN kind ELSE id::text END) *
                     FROM audit_log_jobrun WHERE ($1::text IS NULL OR kind = $1)
                    ORDER BY CASE WHEN $4 THEN kind ELSE id::text END, started_at DESC, id DESC) runs
            ORDER BY started_at DESC, id DESC LIMIT $2 OFFSET $3"#,
        kind,
        limit,
        offset,
        latest,
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
            details: r.details,
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
