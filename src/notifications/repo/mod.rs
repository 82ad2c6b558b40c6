//! SQL of the notifications app: the outbox, the policy's reads, the user's settings.

pub mod outbox;
pub mod policy;
pub mod settings;
