//! Request bodies of accounts and their parsing into domain values, as Django's forms do:
//! a handler calls `parse`, and a service receives only checked values, with every
//! password, token and code in a `SecretString` whose `Debug` prints `[REDACTED]`.

pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod devices;
pub mod mfa;
pub mod social;
