-- A device trusted to skip MFA does so only from a country it has signed in from (API.md
-- "Recovery"). The login asks that of the user's last 50 sessions, which it already reads
-- from idx_session_user_recent alone; the index now carries each session's device too, so
-- the answer costs no heap fetch and no extra statement.
CREATE INDEX idx_session_user_recent_device ON accounts_session (user_id, created_at DESC)
    INCLUDE (country, ip_address, device_id);
DROP INDEX idx_session_user_recent;
ALTER INDEX idx_session_user_recent_device RENAME TO idx_session_user_recent;
