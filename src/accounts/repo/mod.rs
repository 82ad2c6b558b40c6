//! SQL of the accounts app, one file per group of tables. Functions take any executor, so
//! the service decides which run together in one transaction.

mod api_keys;
mod attempts;
mod devices;
mod exports;
mod mfa;
mod one_time_tokens;
mod permissions;
mod sessions;
mod users;

pub use api_keys::*;
pub use attempts::*;
pub use devices::*;
pub use exports::*;
pub use mfa::*;
pub use one_time_tokens::*;
pub use permissions::*;
pub use sessions::*;
pub use users::*;
