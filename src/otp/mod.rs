//! otp: TOTP devices, backup codes, emailed and texted codes, MFA challenges.
//! Imports notifications, audit_log and core.

pub mod routes;
