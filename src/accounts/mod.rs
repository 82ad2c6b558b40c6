//! accounts: users, passwords, sessions, tokens, devices and administration.
//! The top app: it may import every other.

pub mod routes;
