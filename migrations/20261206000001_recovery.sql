-- Recovery (API.md "Recovery: what ends an attacker's hold").

-- Two namespaces for devices. A device known by its X-Device-Fingerprint keeps the SHA-256
-- of the fingerprint (64 hex digits); a device known only by its User-Agent is keyed
-- 'ua:' || SHA-256('ua:' || User-Agent), which no fingerprint's hash can equal. Until now
-- both were bare hashes, so the fingerprint 'ua:<User-Agent>' named the User-Agent device.
-- Every device keeps its id (nobody gets a new-device email for a device they had). A
-- "verified" device whose hash is that of its own User-Agent was reached through the
-- collision: it goes back to the User-Agent namespace.
UPDATE accounts_device
   SET fingerprint_hash = 'ua:' || fingerprint_hash, is_verified = false, updated_at = now()
 WHERE fingerprint_hash NOT LIKE 'ua:%'
   AND (NOT is_verified
        OR fingerprint_hash = encode(sha256(convert_to('ua:' || COALESCE(user_agent, ''), 'UTF8')), 'hex'));

-- Trust ends on every device, quietly (no email). A device known only by its User-Agent is
-- never trusted again; and a verified one may have been reached through the collision
-- under another User-Agent than the one it stores, which no query can tell: its owner
-- passes the second factor once more and trusts it again.
UPDATE accounts_device
   SET is_trusted = false, trust_expires_at = NULL, can_skip_mfa = false, mfa_skip_until = NULL, updated_at = now()
 WHERE is_trusted OR can_skip_mfa;
UPDATE accounts_trusteddevice SET is_trusted = false, revoked_at = now(), updated_at = now()
 WHERE is_trusted AND NOT is_deleted;

ALTER TABLE accounts_device ADD CONSTRAINT accounts_device_namespace
    CHECK ((fingerprint_hash LIKE 'ua:%') = NOT is_verified);

-- The undo link of an email change, sent to the old address: it carries the address it
-- restores in new_email (for both purposes: the address the token sets).
ALTER TABLE accounts_onetimetoken DROP CONSTRAINT accounts_onetimetoken_purpose;
ALTER TABLE accounts_onetimetoken ADD CONSTRAINT accounts_onetimetoken_purpose
    CHECK (purpose IN ('email_verification', 'password_reset', 'email_change', 'email_change_undo'));
ALTER TABLE accounts_onetimetoken DROP CONSTRAINT accounts_onetimetoken_new_email;
ALTER TABLE accounts_onetimetoken ADD CONSTRAINT accounts_onetimetoken_new_email
    CHECK ((purpose IN ('email_change', 'email_change_undo')) = (new_email IS NOT NULL));

-- API keys expire: at most 365 days; the keys that had no expiry get 365 days from now.
-- `expiry_notice_at` records the owner's notice, sent 7 days before.
UPDATE accounts_apikey SET expires_at = now() + interval '365 days' WHERE expires_at IS NULL;
ALTER TABLE accounts_apikey ALTER COLUMN expires_at SET NOT NULL;
ALTER TABLE accounts_apikey ADD COLUMN expiry_notice_at timestamptz;
CREATE INDEX idx_apikey_expiring ON accounts_apikey (expires_at)
    WHERE revoked_at IS NULL AND expiry_notice_at IS NULL;

-- Audit rows outlive accounts, so they hold no address or name: email changes recorded
-- that they happened, and device renames that the name changed.
UPDATE accounts_auditlog SET details = details - 'old_email' - 'new_email'
 WHERE action IN ('email_change_requested', 'email_changed') AND details ?| ARRAY['old_email', 'new_email'];
UPDATE audit_log_deviceauditlog SET metadata = jsonb_build_object('fields', jsonb_build_array('device_name'))
 WHERE action = 'renamed' AND metadata ?| ARRAY['old', 'new'];

-- A webhook's URL (its secret may sit in the path or the query) reached the stored error
-- of a failed SMS; the detail of those errors goes.
UPDATE notifications_smsnotification SET error_message = 'webhook unreachable'
 WHERE error_message LIKE 'webhook unreachable:%';
UPDATE audit_log_sessionauditlog SET error_message = 'webhook unreachable'
 WHERE action = 'notification_failed' AND error_message LIKE 'webhook unreachable:%';
