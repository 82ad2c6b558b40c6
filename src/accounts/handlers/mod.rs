//! HTTP in and out for accounts: parse the request into domain values, call the service,
//! shape the response.

mod admin;
mod api_keys;
mod auth;
mod devices;
mod exports;
mod introspection;
mod mfa;

pub use admin::*;
pub use api_keys::*;
pub use auth::*;
pub use devices::*;
pub use exports::*;
pub use introspection::*;
pub use mfa::*;
