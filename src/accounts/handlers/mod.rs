//! HTTP in and out for accounts: parse the request into domain values, call the service,
//! shape the response.

pub mod admin;
pub mod api_keys;
pub mod auth;
pub mod devices;
pub mod exports;
pub mod introspection;
pub mod mfa;
pub mod passkeys;
pub mod social;
