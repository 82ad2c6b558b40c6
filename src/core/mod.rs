//! core: what every app stands on — configuration, errors, the database, crypto,
//! extractors, request ids, metrics and the service routes.

pub mod auth;
pub mod auth_cache;
pub mod backoff;
pub mod client;
pub mod config;
pub mod cpu;
pub mod crypto;
pub mod data_keys;
pub mod db;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod headers;
pub mod jwt;
pub mod metrics;
pub mod oidc;
pub mod ratelimit;
pub mod redact;
pub mod replica;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod types;
pub mod webauthn;
#[macro_use]
mod text_enum;

pub use error::{AppError, AppResult};
pub use state::AppState;
pub(crate) use text_enum::text_enum;
