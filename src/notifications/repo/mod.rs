//! SQL of the notifications app: the outbox, the policy's reads, the user's settings.

pub mod digest;
pub mod inbox;
pub mod outbox;
pub mod policy;
pub mod push;
pub mod settings;
