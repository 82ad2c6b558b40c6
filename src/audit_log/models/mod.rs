//! Rows and values of the audit_log app: the events other apps record, and what
//! administrators read back.

pub mod events;
pub mod review;
