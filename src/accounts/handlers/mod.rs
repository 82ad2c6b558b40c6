//! HTTP in and out for accounts: parse the request into domain values, call the service,
//! shape the response.

mod auth;
mod mfa;

pub use auth::*;
pub use mfa::*;
