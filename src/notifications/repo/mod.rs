//! SQL of the notifications app: the outbox, the policy's reads, the user's settings.

mod outbox;
mod policy;
mod settings;

pub use outbox::*;
pub use policy::*;
pub use settings::*;
