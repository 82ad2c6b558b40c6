//! The recording API other apps call inside their own transaction, and partition upkeep.

use chrono::{Datelike, Months, NaiveDate, Utc};
use sqlx::{PgExecutor, PgPool};

use super::{
    models::{
        events::{AuditKind, DeviceEvent, LinkEvent, MfaEvent, SessionEvent},
        review::PartitionInfo,
    },
    repo,
};

/// Records a session event in the caller's transaction.
pub async fn record_session(db: impl PgExecutor<'_>, event: &SessionEvent) -> sqlx::Result<()> {
    repo::record::insert_session_event(db, event).await
}

/// Records a device event in the caller's transaction.
pub async fn record_device(db: impl PgExecutor<'_>, event: &DeviceEvent) -> sqlx::Result<()> {
    repo::record::insert_device_event(db, event).await
}

/// Records an MFA event in the caller's transaction.
pub async fn record_mfa(db: impl PgExecutor<'_>, event: &MfaEvent) -> sqlx::Result<()> {
    repo::record::insert_mfa_event(db, event).await
}

/// Records a session-device link event in the caller's transaction.
pub async fn record_link(db: impl PgExecutor<'_>, event: &LinkEvent) -> sqlx::Result<()> {
    repo::record::insert_link_event(db, event).await
}

/// When `user`'s wrong answers with an MFA method happened since `since`, oldest first
/// (otp's per-method lock reads them).
pub async fn mfa_failures_since(
    db: impl PgExecutor<'_>,
    user: uuid::Uuid,
    method: &str,
    since: chrono::DateTime<Utc>,
) -> sqlx::Result<Vec<chrono::DateTime<Utc>>> {
    repo::record::mfa_failures_since(db, user, method, since).await
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// Creates every missing monthly partition from this month to `months_ahead` months ahead.
/// Returns the partitions created.
pub async fn ensure_partitions(db: &PgPool, today: NaiveDate, months_ahead: u32) -> sqlx::Result<Vec<String>> {
    let mut created = Vec::new();
    let start = first_of_month(today);
    for kind in AuditKind::ALL {
        for m in 0..=months_ahead {
            let Some(month) = start.checked_add_months(Months::new(m)) else { continue };
            // One transaction per partition: creating and attaching it go together.
            let mut tx = db.begin().await?;
            repo::partitions::lock_creation(&mut *tx).await?;
            if repo::partitions::create_partition(&mut *tx, kind.table(), month).await? {
                created.push(format!("{}_p{}", kind.table(), month.format("%Y_%m")));
            }
            crate::core::db::commit(tx).await?;
        }
    }
    Ok(created)
}

pub async fn list_partitions(db: &PgPool) -> sqlx::Result<Vec<PartitionInfo>> {
    repo::partitions::list_partitions(db).await
}

/// Detaches and drops the monthly partitions older than each table's retention
/// (audit_log_retentionpolicy, else `default_months`). The current month always stays.
pub async fn prune_partitions(db: &PgPool, today: NaiveDate, default_months: i32) -> sqlx::Result<Vec<String>> {
    let mut dropped = Vec::new();
    for kind in AuditKind::ALL {
        let months = repo::partitions::retention_months(db, kind.table()).await?.unwrap_or(default_months).max(1);
        // Keeping N months means the current month and the N-1 before it.
        let Some(cutoff) = first_of_month(today).checked_sub_months(Months::new((months - 1) as u32)) else {
            continue;
        };
        for name in repo::partitions::partitions_before(db, kind.table(), cutoff).await? {
            // Outside a transaction: the detach is concurrent (repo::partitions::drop_partition).
            let mut conn = db.acquire().await?;
            // Its lock_timeout is a session setting: the connection goes, not back to the pool.
            conn.close_on_drop();
            repo::partitions::drop_partition(&mut conn, kind.table(), &name).await?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

/// Today's date in UTC, the calendar the partitions follow.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Cuts the client addresses of the audit tables' rows dated in `[from, to)` to their network.
pub async fn truncate_ips(
    tx: &mut sqlx::PgConnection,
    from: Option<chrono::DateTime<chrono::Utc>>,
    to: chrono::DateTime<chrono::Utc>,
) -> crate::core::AppResult<u64> {
    let mut rows = 0;
    for column in super::repo::partitions::IP_COLUMNS {
        rows += crate::core::db::truncate_ips(&mut *tx, *column, from, to).await?;
    }
    Ok(rows)
}
