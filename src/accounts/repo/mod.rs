//! SQL of the accounts app, one file per group of tables. Functions take any executor, so
//! the service decides which run together in one transaction.

/// A `UserRow` from a `query!` record that selected the user's columns under their own
/// names (the statements that join the user to something else).
macro_rules! user_row {
    ($r:expr) => {
        $crate::accounts::models::UserRow {
            id: $r.id,
            email: $r.email,
            username: $r.username,
            password_hash: $r.password_hash,
            first_name: $r.first_name,
            last_name: $r.last_name,
            is_active: $r.is_active,
            is_staff: $r.is_staff,
            is_superuser: $r.is_superuser,
            email_verified: $r.email_verified,
            mfa_enabled: $r.mfa_enabled,
            date_joined: $r.date_joined,
            last_login: $r.last_login,
        }
    };
}

pub mod api_keys;
pub mod attempts;
pub mod console;
pub mod devices;
pub mod exports;
pub mod mfa;
pub mod one_time_tokens;
pub mod permissions;
pub mod refresh;
pub mod sessions;
pub mod social;
pub mod users;
