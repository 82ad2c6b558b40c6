-- Every foreign key gets an index on its referencing column. Deleting a session or a device
-- sets the audit rows that name it to NULL (ON DELETE SET NULL), and PostgreSQL finds those
-- rows by the referencing column: without an index each deleted session scanned every
-- partition of the device and MFA audit tables. At a deployment's size (make bench-scale:
-- 1 M users, ~48 M audit rows) the cleanup's delete of a day's 30,000 dead sessions ran for
-- hours. The indexes are partial: most rows reference nothing, and `col = $1` (the
-- referential action's lookup) implies `col IS NOT NULL`, so the planner uses them.
CREATE INDEX idx_deviceaudit_session ON audit_log_deviceauditlog (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX idx_mfaaudit_session ON audit_log_mfaauditlog (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX idx_sessionaudit_device ON audit_log_sessionauditlog (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX idx_linkaudit_previous_device ON audit_log_sessiondevicelinkauditlog (previous_device_id)
    WHERE previous_device_id IS NOT NULL;
CREATE INDEX idx_sessionaudit_reviewer ON audit_log_sessionauditlog (reviewed_by_id) WHERE reviewed_by_id IS NOT NULL;
CREATE INDEX idx_deviceaudit_reviewer ON audit_log_deviceauditlog (reviewed_by_id) WHERE reviewed_by_id IS NOT NULL;
CREATE INDEX idx_mfaaudit_reviewer ON audit_log_mfaauditlog (reviewed_by_id) WHERE reviewed_by_id IS NOT NULL;
CREATE INDEX idx_linkaudit_reviewer ON audit_log_sessiondevicelinkauditlog (reviewed_by_id) WHERE reviewed_by_id IS NOT NULL;
CREATE INDEX idx_apikey_session ON accounts_apikey (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX idx_mfachallenge_device ON otp_mfachallenge (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX idx_oidcflow_session ON accounts_oidcflow (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX idx_oidcflow_user ON accounts_oidcflow (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX idx_loginattempt_user ON accounts_loginattempt (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX idx_mfachangelog_requested_by ON accounts_mfachangelog (requested_by_id) WHERE requested_by_id IS NOT NULL;
CREATE INDEX idx_mfachangelog_approved_by ON accounts_mfachangelog (approved_by_id) WHERE approved_by_id IS NOT NULL;
CREATE INDEX idx_retentionpolicy_updated_by ON audit_log_retentionpolicy (updated_by_id) WHERE updated_by_id IS NOT NULL;
CREATE INDEX idx_oidcflow_connection ON accounts_oidcflow (connection_id) WHERE connection_id IS NOT NULL;
CREATE INDEX idx_emailnotification_digest ON notifications_emailnotification (digest_id) WHERE digest_id IS NOT NULL;
