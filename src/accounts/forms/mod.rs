//! Request bodies of accounts and their parsing into domain values, as Django's forms do:
//! a handler calls `parse`, and a service receives only checked values, with every
//! password, token and code in a `SecretString` whose `Debug` prints `[REDACTED]`.

mod admin;
mod api_keys;
mod auth;
mod devices;
mod mfa;

pub use admin::*;
pub use api_keys::*;
pub use auth::*;
pub use devices::*;
pub use mfa::*;
