-- Account policies (round three): the MFA policy columns are enforced, magic links exist,
-- API keys run on sessions of their own, and the device audit has the seed's risk index.

-- When the account was last made staff: `grace_period_days` counts from here.
ALTER TABLE accounts_mfasettings ADD COLUMN grace_started_at timestamptz;

-- Magic links are one-time tokens like the others (hashed, single use, revoked by every
-- remediation but undo links).
ALTER TABLE accounts_onetimetoken DROP CONSTRAINT accounts_onetimetoken_purpose;
ALTER TABLE accounts_onetimetoken ADD CONSTRAINT accounts_onetimetoken_purpose
    CHECK (purpose IN ('email_verification', 'password_reset', 'email_change', 'email_change_undo', 'magic_link'));

-- Each API key is backed by one session of session_type 'api'; its requests are counted on
-- it in batches (total_api_calls).
ALTER TABLE accounts_apikey ADD COLUMN session_id uuid REFERENCES accounts_session (id) ON DELETE SET NULL;
-- Live keys made before this migration get theirs (the prefix is unique, so it ties each
-- new session to its key).
WITH made AS (
    INSERT INTO accounts_session (user_id, access_jti, refresh_jti, expires_at, session_type, aal, amr)
    SELECT user_id, 'apikey:' || prefix, 'apikey:' || prefix, expires_at, 'api', 1, '{}'
      FROM accounts_apikey WHERE revoked_at IS NULL AND expires_at > now() AND session_id IS NULL
    RETURNING id, access_jti
)
UPDATE accounts_apikey k SET session_id = made.id FROM made WHERE made.access_jti = 'apikey:' || k.prefix;

-- Seed 002's indexing strategy: the riskiest device events first, newest first among equals.
CREATE INDEX idx_deviceaudit_risk_created ON audit_log_deviceauditlog (risk_score DESC, created_at DESC);

-- The cleanup job marks sessions past their expiry `expired` in batches. That change needs
-- no eviction (an expired session is already refused by its expiry), and a NOTIFY per row
-- would flood the channel when millions expire at once.
DROP TRIGGER accounts_session_notify ON accounts_session;
CREATE TRIGGER accounts_session_notify
    AFTER UPDATE ON accounts_session FOR EACH ROW
    WHEN ((OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'expired')
          OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.aal IS DISTINCT FROM NEW.aal OR OLD.mfa_verified_at IS DISTINCT FROM NEW.mfa_verified_at
          OR OLD.amr IS DISTINCT FROM NEW.amr OR OLD.device_id IS DISTINCT FROM NEW.device_id
          OR NEW.expires_at < OLD.expires_at)
    EXECUTE FUNCTION gatehouse_notify_session();
