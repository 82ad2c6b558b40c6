//! Passkeys (otp_webauthncredential) and the ceremonies in flight (otp_webauthnceremony).
//! A ceremony is taken by one DELETE ... RETURNING: of concurrent answers exactly one gets
//! its state.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::otp::models::PasskeyInfo;

/// A passkey as verification needs it: the library's record and the counter seen last.
pub struct StoredPasskey {
    pub id: Uuid,
    pub passkey: serde_json::Value,
    pub sign_count: i64,
}

/// What a registration stores.
pub struct NewPasskey<'a> {
    pub user: Uuid,
    pub credential_id: &'a [u8],
    pub public_key: &'a [u8],
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub transports: &'a [String],
    pub aaguid: Option<Uuid>,
    pub name: &'a str,
    pub passkey: serde_json::Value,
}

pub async fn insert_passkey(db: impl PgExecutor<'_>, new: &NewPasskey<'_>) -> sqlx::Result<PasskeyInfo> {
    sqlx::query_as!(
        PasskeyInfo,
        "INSERT INTO otp_webauthncredential
                (user_id, credential_id, public_key, sign_count, backup_eligible, backup_state, transports, aaguid,
                 name, passkey)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         RETURNING id, name, created_at, last_used_at, backup_eligible",
        new.user,
        new.credential_id,
        new.public_key,
        new.sign_count,
        new.backup_eligible,
        new.backup_state,
        new.transports,
        new.aaguid,
        new.name,
        new.passkey,
    )
    .fetch_one(db)
    .await
}

pub async fn list_passkeys(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<PasskeyInfo>> {
    sqlx::query_as!(
        PasskeyInfo,
        "SELECT id, name, created_at, last_used_at, backup_eligible
           FROM otp_webauthncredential WHERE user_id = $1 ORDER BY created_at, id",
        user
    )
    .fetch_all(db)
    .await
}

/// The library's records of every passkey of `user` (the assertion options list them).
pub async fn passkeys_of(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<serde_json::Value>> {
    sqlx::query_scalar!("SELECT passkey FROM otp_webauthncredential WHERE user_id = $1 ORDER BY created_at, id", user)
        .fetch_all(db)
        .await
}

/// The credential `credential_id` of `user`, locked until the transaction ends, so two
/// assertions of one key are checked against each other's counter, never both against one.
pub async fn lock_passkey(
    db: impl PgExecutor<'_>,
    user: Uuid,
    credential_id: &[u8],
) -> sqlx::Result<Option<StoredPasskey>> {
    sqlx::query_as!(
        StoredPasskey,
        "SELECT id, passkey, sign_count FROM otp_webauthncredential
          WHERE user_id = $1 AND credential_id = $2 FOR UPDATE",
        user,
        credential_id
    )
    .fetch_optional(db)
    .await
}

/// After a good assertion: the counter, the backup state and the library's record.
pub async fn record_use(
    db: impl PgExecutor<'_>,
    id: Uuid,
    sign_count: i64,
    backup_state: bool,
    passkey: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE otp_webauthncredential
            SET sign_count = $2, backup_state = $3, passkey = $4, last_used_at = now()
          WHERE id = $1",
        id,
        sign_count,
        backup_state,
        passkey
    )
    .execute(db)
    .await
    .map(drop)
}

pub async fn rename_passkey(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
    name: &str,
) -> sqlx::Result<Option<PasskeyInfo>> {
    sqlx::query_as!(
        PasskeyInfo,
        "UPDATE otp_webauthncredential SET name = $3 WHERE user_id = $1 AND id = $2
         RETURNING id, name, created_at, last_used_at, backup_eligible",
        user,
        id,
        name
    )
    .fetch_optional(db)
    .await
}

pub async fn delete_passkey(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done =
        sqlx::query!("DELETE FROM otp_webauthncredential WHERE user_id = $1 AND id = $2", user, id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the passkeys of `user` registered after `since` (all of them without it);
/// returns their ids.
pub async fn delete_passkeys_since(
    db: impl PgExecutor<'_>,
    user: Uuid,
    since: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "DELETE FROM otp_webauthncredential
          WHERE user_id = $1 AND created_at > COALESCE($2, '-infinity'::timestamptz)
          RETURNING id",
        user,
        since
    )
    .fetch_all(db)
    .await
}

/// A registration in flight, for `user` in `session` only.
pub async fn insert_registration(
    db: impl PgExecutor<'_>,
    user: Uuid,
    session: Uuid,
    state: serde_json::Value,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO otp_webauthnceremony (kind, user_id, session_id, state, expires_at)
         VALUES ('register', $1, $2, $3, $4) RETURNING id",
        user,
        session,
        state,
        expires_at
    )
    .fetch_one(db)
    .await
}

/// Takes the registration `id` if it is `user`'s, from `session`, and live.
pub async fn take_registration(
    db: impl PgExecutor<'_>,
    id: Uuid,
    user: Uuid,
    session: Uuid,
) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar!(
        "DELETE FROM otp_webauthnceremony
          WHERE id = $1 AND kind = 'register' AND user_id = $2 AND session_id = $3 AND expires_at > now()
          RETURNING state",
        id,
        user,
        session
    )
    .fetch_optional(db)
    .await
}

/// The assertion in flight for an MFA challenge (its internal id): a new one replaces the
/// last, so a challenge has one at a time.
pub async fn put_challenge_assertion(
    db: impl PgExecutor<'_>,
    user: Uuid,
    challenge: Uuid,
    state: serde_json::Value,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO otp_webauthnceremony (kind, user_id, challenge_id, state, expires_at)
         VALUES ('mfa', $1, $2, $3, $4)
         ON CONFLICT (challenge_id) DO UPDATE
            SET state = EXCLUDED.state, expires_at = EXCLUDED.expires_at, created_at = now()",
        user,
        challenge,
        state,
        expires_at
    )
    .execute(db)
    .await
    .map(drop)
}

pub async fn take_challenge_assertion(
    db: impl PgExecutor<'_>,
    challenge: Uuid,
) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar!(
        "DELETE FROM otp_webauthnceremony
          WHERE challenge_id = $1 AND kind = 'mfa' AND expires_at > now()
          RETURNING state",
        challenge
    )
    .fetch_optional(db)
    .await
}

/// A passwordless sign-in in flight: nobody's yet.
pub async fn insert_login(
    db: impl PgExecutor<'_>,
    state: serde_json::Value,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        "INSERT INTO otp_webauthnceremony (kind, state, expires_at) VALUES ('login', $1, $2) RETURNING id",
        state,
        expires_at
    )
    .fetch_one(db)
    .await
}

pub async fn take_login(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<serde_json::Value>> {
    sqlx::query_scalar!(
        "DELETE FROM otp_webauthnceremony WHERE id = $1 AND kind = 'login' AND expires_at > now() RETURNING state",
        id
    )
    .fetch_optional(db)
    .await
}

/// Ceremonies past their five minutes, deleted by the cleanup job.
pub async fn delete_expired_ceremonies(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    Ok(sqlx::query!("DELETE FROM otp_webauthnceremony WHERE expires_at < now()").execute(db).await?.rows_affected())
}
