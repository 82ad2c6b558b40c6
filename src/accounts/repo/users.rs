//! auth_user, accounts_profile, accounts_passwordhistory and accounts_auditlog.

use ipnetwork::IpNetwork;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::accounts::models::{Profile, UserRow, admin::AccountEvent};

pub async fn insert_user(
    db: impl PgExecutor<'_>,
    email: &str,
    username: &str,
    password_hash: &str,
    first_name: &str,
    last_name: &str,
) -> sqlx::Result<UserRow> {
    sqlx::query_as!(
        UserRow,
        r#"INSERT INTO auth_user (email, username, password_hash, first_name, last_name)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, email, username, password_hash, first_name, last_name, is_active, is_staff, is_superuser,
                     email_verified, false AS "mfa_enabled!", date_joined, last_login"#,
        email,
        username,
        password_hash,
        first_name,
        last_name,
    )
    .fetch_one(db)
    .await
}

pub async fn insert_profile(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("INSERT INTO accounts_profile (user_id) VALUES ($1)", user_id).execute(db).await?;
    Ok(())
}

pub async fn user_by_email(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.email, u.username, u.password_hash, u.first_name, u.last_name, u.is_active, u.is_staff,
                  u.is_superuser, u.email_verified, COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined,
                  u.last_login
             FROM auth_user u LEFT JOIN accounts_mfasettings m ON m.user_id = u.id
            WHERE u.email = $1"#,
        email
    )
    .fetch_optional(db)
    .await
}

pub async fn user_by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.email, u.username, u.password_hash, u.first_name, u.last_name, u.is_active, u.is_staff,
                  u.is_superuser, u.email_verified, COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined,
                  u.last_login
             FROM auth_user u LEFT JOIN accounts_mfasettings m ON m.user_id = u.id
            WHERE u.id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn set_email_verified(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("UPDATE auth_user SET email_verified = true, updated_at = now() WHERE id = $1", user_id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_password(db: impl PgExecutor<'_>, user_id: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query!("UPDATE auth_user SET password_hash = $2, updated_at = now() WHERE id = $1", user_id, hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_names(db: impl PgExecutor<'_>, user_id: Uuid, first: &str, last: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth_user SET first_name = $2, last_name = $3, updated_at = now() WHERE id = $1",
        user_id,
        first,
        last
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn make_superuser(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth_user SET is_staff = true, is_superuser = true, email_verified = true, updated_at = now()
          WHERE id = $1",
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM auth_user WHERE id = $1", user_id).execute(db).await?;
    Ok(())
}

pub async fn profile(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Profile> {
    sqlx::query_as!(
        Profile,
        "SELECT phone_number, date_of_birth, address, city, state, country, postal_code, timezone, language,
                preferred_mfa_method
           FROM accounts_profile WHERE user_id = $1",
        user_id
    )
    .fetch_one(db)
    .await
}

pub async fn save_profile(db: impl PgExecutor<'_>, user_id: Uuid, p: &Profile) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE accounts_profile
            SET phone_number = $2, date_of_birth = $3, address = $4, city = $5, state = $6, country = $7,
                postal_code = $8, timezone = $9, language = $10, preferred_mfa_method = $11, updated_at = now()
          WHERE user_id = $1",
        user_id,
        p.phone_number,
        p.date_of_birth,
        p.address,
        p.city,
        p.state,
        p.country,
        p.postal_code,
        p.timezone,
        p.language,
        p.preferred_mfa_method,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_password_history(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    hash: &str,
    changed_by: &str,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_passwordhistory (user_id, password_hash, changed_by, reason) VALUES ($1, $2, $3, $4)",
        user_id,
        hash,
        changed_by,
        reason,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The `n` most recent password hashes (the current one first).
pub async fn recent_password_hashes(db: impl PgExecutor<'_>, user_id: Uuid, n: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT password_hash FROM accounts_passwordhistory WHERE user_id = $1 ORDER BY changed_at DESC, id DESC
          LIMIT $2",
        user_id,
        n
    )
    .fetch_all(db)
    .await
}

pub async fn insert_account_event(
    db: impl PgExecutor<'_>,
    user_id: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
    ip: Option<IpNetwork>,
    user_agent: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO accounts_auditlog (user_id, action, details, ip_address, user_agent) VALUES ($1, $2, $3, $4, $5)",
        user_id,
        action,
        details,
        ip,
        user_agent,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Usernames of the given users (for the admin page).
pub async fn usernames(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query!("SELECT id, username FROM auth_user WHERE id = ANY($1)", ids).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.username)).collect())
}

/// Users whose email or username contains `search` (case-insensitive; `%` and `_` match
/// themselves), filtered by the flags given, newest first, with the total for paging.
pub async fn search_users(
    db: impl PgExecutor<'_>,
    search: Option<&str>,
    is_active: Option<bool>,
    is_staff: Option<bool>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<UserRow>, i64)> {
    let pattern = search.map(|s| {
        let escaped = s.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        format!("%{escaped}%")
    });
    let rows = sqlx::query!(
        r#"SELECT u.id, u.email, u.username, u.password_hash, u.first_name, u.last_name, u.is_active, u.is_staff,
                  u.is_superuser, u.email_verified, COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined,
                  u.last_login, count(*) OVER () AS "total!"
             FROM auth_user u LEFT JOIN accounts_mfasettings m ON m.user_id = u.id
            WHERE ($1::text IS NULL OR u.email LIKE $1 OR u.username LIKE $1)
              AND ($2::bool IS NULL OR u.is_active = $2)
              AND ($3::bool IS NULL OR u.is_staff = $3)
            ORDER BY u.date_joined DESC, u.id
            LIMIT $4 OFFSET $5"#,
        pattern,
        is_active,
        is_staff,
        limit,
        offset
    )
    .fetch_all(db)
    .await?;
    let total = rows.first().map_or(0, |r| r.total);
    let users = rows.into_iter().map(|r| user_row!(r)).collect();
    Ok((users, total))
}

/// Sets the flags given (None leaves one as it is).
pub async fn set_flags(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    is_active: Option<bool>,
    is_staff: Option<bool>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth_user SET is_active = COALESCE($2, is_active), is_staff = COALESCE($3, is_staff), updated_at = now()
          WHERE id = $1",
        user_id,
        is_active,
        is_staff
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Locks the user's row until the transaction ends, to order changes that check a
/// per-user count before they insert.
pub async fn lock_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("SELECT id FROM auth_user WHERE id = $1 FOR NO KEY UPDATE", user_id).fetch_optional(db).await?;
    Ok(())
}

/// Moves the account to `email`, proven by a link sent there (so it counts as verified).
pub async fn set_email(db: impl PgExecutor<'_>, user_id: Uuid, email: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE auth_user SET email = $2, email_verified = true, updated_at = now() WHERE id = $1",
        user_id,
        email
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The newest account events of `user` (accounts_auditlog), for staff.
pub async fn account_events(db: impl PgExecutor<'_>, user_id: Uuid, limit: i64) -> sqlx::Result<Vec<AccountEvent>> {
    sqlx::query_as!(
        AccountEvent,
        "SELECT id, action, details, ip_address, created_at FROM accounts_auditlog
          WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
        user_id,
        limit
    )
    .fetch_all(db)
    .await
}

/// `GET /users/me` in one statement: the user, the MFA flag and the profile.
pub async fn me(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Option<(UserRow, Profile)>> {
    let row = sqlx::query!(
        r#"SELECT u.id, u.email, u.username, u.password_hash, u.first_name, u.last_name, u.is_active, u.is_staff,
                  u.is_superuser, u.email_verified, COALESCE(m.is_enabled, false) AS "mfa_enabled!", u.date_joined,
                  u.last_login, p.phone_number, p.date_of_birth, p.address, p.city, p.state, p.country,
                  p.postal_code, p.timezone, p.language, p.preferred_mfa_method
             FROM auth_user u
             JOIN accounts_profile p ON p.user_id = u.id
             LEFT JOIN accounts_mfasettings m ON m.user_id = u.id
            WHERE u.id = $1"#,
        user_id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        let user = user_row!(r);
        let profile = Profile {
            phone_number: r.phone_number,
            date_of_birth: r.date_of_birth,
            address: r.address,
            city: r.city,
            state: r.state,
            country: r.country,
            postal_code: r.postal_code,
            timezone: r.timezone,
            language: r.language,
            preferred_mfa_method: r.preferred_mfa_method,
        };
        (user, profile)
    }))
}
