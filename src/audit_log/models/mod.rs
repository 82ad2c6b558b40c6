//! Rows and values of the audit_log app: the events other apps record, and what
//! administrators read back.

mod events;
mod review;

pub use events::*;
pub use review::*;
