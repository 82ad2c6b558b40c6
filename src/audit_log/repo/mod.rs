//! SQL of the audit_log app: recording, partitions, jobs, and the administrators' review.

mod jobs;
mod partitions;
mod record;
mod review;

pub use jobs::*;
pub use partitions::*;
pub use record::*;
pub use review::*;
