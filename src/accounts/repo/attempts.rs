//! accounts_loginattempt: every attempt is written (as 'pending') before the password is
//! checked, so the identifier's lockout counts concurrent attempts too (see service::login).

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::accounts::models::UserRow;

/// How long a pending attempt counts (the literal `30 seconds` below): longer than a
/// guess can wait for its hash (the pool's acquire timeout, 5 s by default, plus the CPU
/// queue's longest wait), so no queued guess stops counting before it is checked.
const PENDING_COUNTS_SECS: u64 = 30;
const _: () = assert!(5 + crate::core::cpu::MAX_QUEUE_WAIT.as_secs() < PENDING_COUNTS_SECS);

pub async fn reserve_attempt(
    db: impl PgExecutor<'_>,
    identifier: &str,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO accounts_loginattempt (identifier, ip_address, user_agent, outcome, failure_reason)
         VALUES ($1, $2, $3, 'pending', NULL) RETURNING id",
        identifier,
        ip,
        user_agent,
    )
    .fetch_one(db)
    .await
}

/// Everything login needs to know before checking a password, in one round trip: the
/// identifier's failures since its last success or unlock (the latest other than `own`,
/// and how many, `own` included, fall within `window_secs` of it), the failures and
/// in-flight attempts of the IP (its /64 for IPv6) within `ip_window_secs`, `own` excluded,
/// the account, if any, and what the risk check needs of its history (`History`).
pub struct LoginFacts {
    pub identifier_last: Option<DateTime<Utc>>,
    pub identifier_failures: i64,
    pub ip_last: Option<DateTime<Utc>>,
    pub ip_failures: i64,
    pub user: Option<UserRow>,
    pub history: History,
}

/// The account's past as the risk check sees it.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The account has had a session before.
    pub any_session: bool,
    /// This device (user, fingerprint hash) is known, and whether it is compromised or
    /// may skip MFA right now.
    pub device_known: bool,
    pub device_compromised: bool,
    pub device_may_skip_mfa: bool,
    /// The device may skip MFA, and this login comes from a country that none of the
    /// account's last 50 sessions came from on this device.
    pub device_new_country: bool,
    /// One of the account's last 50 sessions came from this country / this /16 (IPv6 /48).
    pub seen_country: bool,
    pub seen_ip_range: bool,
    /// The place and time of the account's most recent login that had coordinates.
    pub last_place: Option<((f64, f64), DateTime<Utc>)>,
}

#[allow(clippy::too_many_arguments)]
pub async fn login_facts(
    db: impl PgExecutor<'_>,
    identifier: &str,
    own: Uuid,
    ip: Option<IpNetwork>,
    window_secs: f64,
    ip_window_secs: f64,
    fingerprint_hash: &str,
    country: Option<&str>,
) -> sqlx::Result<LoginFacts> {
    let row = sqlx::query!(
        r#"WITH failures AS (
               SELECT a.id, a.created_at FROM accounts_loginattempt a
                WHERE a.identifier = $1
                  -- Since the last success or unlock, as a bound of the index range (an
                  -- InitPlan), so the scan never walks the account's older attempts.
                  AND a.created_at > GREATEST(
                        now() - make_interval(secs => $4::float8 * 2),
                        (SELECT created_at FROM accounts_loginattempt
                          WHERE identifier = $1 AND outcome IN ('success', 'unlock')
                          ORDER BY created_at DESC LIMIT 1))
                  -- Attempts still being checked count too; one pending for over 30 s was
                  -- cut off (a crash) and no longer counts.
                  AND (a.outcome = 'failure' OR (a.outcome = 'pending' AND a.created_at > now() - interval '30 seconds'))
           ), latest AS (SELECT max(created_at) AS at FROM failures WHERE id <> $2),
           ident AS (
               SELECT latest.at AS last, count(f.id) AS n
                 FROM latest LEFT JOIN failures f ON f.created_at >= latest.at - make_interval(secs => $4)
                GROUP BY latest.at
           ), by_ip AS (
               -- Failures and attempts still being checked (not this one), from the address
               -- or, for IPv6, its /64.
               SELECT max(created_at) AS last, count(*) AS n FROM accounts_loginattempt
                WHERE ip_address <<= network(set_masklen($3::inet, CASE WHEN family($3::inet) = 6 THEN 64 ELSE 32 END))
                  AND created_at > now() - make_interval(secs => $5) AND id <> $2
                  AND (outcome = 'failure' OR (outcome = 'pending' AND created_at > now() - interval '30 seconds'))
           )
           SELECT ident.last AS identifier_last, ident.n AS "identifier_failures!", by_ip.last AS ip_last,
                  by_ip.n AS "ip_failures!",
                  u.id AS "id?", u.email AS "email?", u.username AS "username?", u.password_hash AS "password_hash?",
                  u.first_name AS "first_name?", u.last_name AS "last_name?", u.is_active AS "is_active?",
                  u.is_staff AS "is_staff?", u.is_superuser AS "is_superuser?", u.email_verified AS "email_verified?",
                  COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined AS "date_joined?", u.last_login,
                  dev.id IS NOT NULL AS "device_known!", COALESCE(dev.is_compromised, false) AS "device_compromised!",
                  -- Only a device known by its fingerprint may skip MFA (API.md "Recovery").
                  COALESCE(dev.can_skip_mfa AND dev.mfa_skip_until > now() AND NOT dev.is_compromised
                           AND dev.is_verified, false) AS "device_may_skip_mfa!",
                  COALESCE(hist.device_seen_country, false) AS "device_seen_country!",
                  COALESCE(hist.any_session, false) AS "any_session!",
                  COALESCE(hist.seen_country, false) AS "seen_country!",
                  COALESCE(hist.seen_ip_range, false) AS "seen_ip_range!",
                  last.latitude::float8 AS "last_latitude?", last.longitude::float8 AS "last_longitude?",
                  last.last_used_at AS "last_at?"
             FROM ident CROSS JOIN by_ip
             LEFT JOIN auth_user u ON u.email = $1
             LEFT JOIN accounts_mfasettings m ON m.user_id = u.id
             LEFT JOIN accounts_device dev ON dev.user_id = u.id AND dev.fingerprint_hash = $6
             -- The user's last 50 sessions, read from idx_session_user_recent alone: has
             -- any come from this country, or this /16 (IPv6 /48), and from this country on
             -- this device? Bounded, however many sessions the account has had.
             LEFT JOIN LATERAL (
                 SELECT true AS any_session, bool_or(r.country = $7::text) AS seen_country,
                        bool_or(r.ip_address <<= network(set_masklen($3::inet,
                            CASE WHEN family($3::inet) = 6 THEN 48 ELSE 16 END))) AS seen_ip_range,
                        bool_or(r.country = $7::text AND r.device_id = dev.id) AS device_seen_country
                   FROM (SELECT s.country, s.ip_address, s.device_id FROM accounts_session s WHERE s.user_id = u.id
                          ORDER BY s.created_at DESC LIMIT 50) r
                 HAVING count(*) > 0) hist ON true
             LEFT JOIN LATERAL (
                 SELECT d.latitude, d.longitude, d.last_used_at FROM accounts_device d
                  WHERE d.user_id = u.id AND d.latitude IS NOT NULL AND d.last_used_at IS NOT NULL
                  ORDER BY d.last_used_at DESC LIMIT 1) last ON true"#,
        identifier,
        own,
        ip,
        window_secs,
        ip_window_secs,
        fingerprint_hash,
        country,
    )
    .fetch_one(db)
    .await?;
    let user = match (row.id, row.email, row.username, row.password_hash, row.date_joined) {
        (Some(id), Some(email), Some(username), Some(password_hash), Some(date_joined)) => Some(UserRow {
            id,
            email,
            username,
            password_hash,
            first_name: row.first_name.unwrap_or_default(),
            last_name: row.last_name.unwrap_or_default(),
            is_active: row.is_active.unwrap_or(false),
            is_staff: row.is_staff.unwrap_or(false),
            is_superuser: row.is_superuser.unwrap_or(false),
            email_verified: row.email_verified.unwrap_or(false),
            mfa_enabled: row.mfa_enabled,
            date_joined,
            last_login: row.last_login,
        }),
        _ => None,
    };
    let last_place = match (row.last_latitude, row.last_longitude, row.last_at) {
        (Some(lat), Some(lon), Some(at)) => Some(((lat, lon), at)),
        _ => None,
    };
    let history = History {
        any_session: row.any_session,
        device_known: row.device_known,
        device_compromised: row.device_compromised,
        device_may_skip_mfa: row.device_may_skip_mfa,
        // Only with a country to compare: without geo there is no signal.
        device_new_country: row.device_may_skip_mfa && country.is_some() && !row.device_seen_country,
        seen_country: row.seen_country,
        seen_ip_range: row.seen_ip_range,
        last_place,
    };
    Ok(LoginFacts {
        identifier_last: row.identifier_last,
        identifier_failures: row.identifier_failures,
        ip_last: row.ip_last,
        ip_failures: row.ip_failures,
        user,
        history,
    })
}

pub async fn finish_attempt(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Option<Uuid>,
    outcome: &str,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_loginattempt SET user_id = $2, outcome = $3, failure_reason = $4 WHERE id = $1",
        id,
        user_id,
        outcome,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A refused (locked) attempt is not a failure: it must not extend the lock.
pub async fn delete_attempt(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM accounts_loginattempt WHERE id = $1", id).execute(db).await?;
    Ok(())
}

pub async fn insert_unlock(db: impl PgExecutor<'_>, identifier: &str, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_loginattempt (identifier, user_id, outcome) VALUES ($1, $2, 'unlock')",
        identifier,
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A failed second factor: it counts against the identifier's lockout like a wrong
/// password, so fresh challenges cannot be farmed for guesses.
pub async fn insert_failed_attempt(
    db: impl PgExecutor<'_>,
    identifier: &str,
    user_id: Uuid,
    reason: &str,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_loginattempt (identifier, user_id, ip_address, user_agent, outcome, failure_reason)
         VALUES ($1, $2, $3, $4, 'failure', $5)",
        identifier,
        user_id,
        ip,
        user_agent,
        reason
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes login attempts older than `older_than_secs`: past the longest lockout window
/// they count toward nothing.
pub async fn delete_old_attempts(db: impl PgExecutor<'_>, older_than_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM accounts_loginattempt WHERE created_at < now() - make_interval(secs => $1)",
        older_than_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes the login attempts kept under `identifier` (an account being deleted: its
/// address goes with it, not an hour later).
pub async fn delete_attempts_of(db: impl PgExecutor<'_>, identifier: &str) -> sqlx::Result<u64> {
    let done = sqlx::query!("DELETE FROM accounts_loginattempt WHERE identifier = $1", identifier).execute(db).await?;
    Ok(done.rows_affected())
}
