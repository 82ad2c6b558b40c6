//! SQL of the accounts app, one file per group of tables. Functions take any executor, so
//! the service decides which run together in one transaction.

mod attempts;
mod devices;
mod mfa;
mod one_time_tokens;
mod sessions;
mod users;

pub use attempts::*;
pub use devices::*;
pub use mfa::*;
pub use one_time_tokens::*;
pub use sessions::*;
pub use users::*;
