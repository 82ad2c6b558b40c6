//! HTTP handlers of the audit_log app.
