//! audit_log: records every security event into four monthly-partitioned tables, keeps
//! the partitions, summarises each day, and serves the administrators' review. Imports
//! only core.

pub mod forms;
pub mod handlers;
pub mod jobs;
pub mod models;
pub mod repo;
pub mod review;
pub mod routes;
pub mod service;
pub mod summary;

pub use models::events::{
    DeviceAction, DeviceEvent, Flags, LinkAction, LinkEvent, MfaAction, MfaEvent, Origin, RiskLevel, SessionAction,
    SessionEvent,
};
pub use service::{record_device, record_link, record_mfa, record_session};
