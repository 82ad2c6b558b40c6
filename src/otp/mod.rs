//! otp: TOTP devices, backup codes, emailed and texted codes, passkeys, MFA challenges. Imports
//! notifications, audit_log and core. Its HTTP routes live in accounts, because answering a
//! challenge opens or raises a session; `challenges::answer` is the one way in.

pub mod challenges;
pub mod factors;
pub mod models;
pub mod passkeys;
pub mod policy;
pub mod repo;
pub mod service;

pub use models::{Challenge, ChallengeType, Factors, MfaMethod, PasskeyInfo, TotpSetup};
pub use policy::Policy;
