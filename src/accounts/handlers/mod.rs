//! HTTP in and out for accounts: parse the request into domain values, call the service,
//! shape the response.

mod auth;
mod devices;
mod mfa;

pub use auth::*;
pub use devices::*;
pub use mfa::*;
