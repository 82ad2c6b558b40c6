//! SQL of the audit_log app: recording, partitions, jobs, and the administrators' review.

pub mod jobs;
pub mod partitions;
pub mod record;
pub mod review;
