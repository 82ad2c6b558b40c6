//! accounts: users, passwords, sessions and tokens. The top app: it may import every other.

pub mod breached;
pub mod credentials;
pub mod forms;
pub mod handlers;
pub mod link_pages;
pub mod models;
pub mod repo;
pub mod risk;
pub mod routes;
pub mod service;
