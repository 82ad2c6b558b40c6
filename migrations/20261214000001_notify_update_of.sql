-- The cache's eviction triggers name the columns they watch (UPDATE OF). A row trigger's
-- WHEN condition is read back from its stored text and prepared in every statement that
-- updates the table, whether or not the statement sets a watched column: the refresh
-- (the session's token ids and expiry), the login (auth_user.last_login) and every use of
-- an API key (last_used_at) paid for it on every request (a refresh's PostgreSQL time fell
-- ~10% without it, docs/performance.md). With a column list PostgreSQL skips the trigger,
-- WHEN and all, when the UPDATE sets none of those columns.
-- What each trigger fires on is unchanged. The session's expiry is its own trigger: a
-- refresh sets expires_at on every rotation, and that condition is one comparison. An
-- update that both revokes and shortens fires both; NOTIFY folds identical payloads of one
-- transaction into one.
-- Dropping a trigger locks its table (ACCESS EXCLUSIVE) for the migration's transaction:
-- behind a long transaction it would hold every login and refresh in the queue, so it
-- gives up instead (run it again in a quieter moment).
SET LOCAL lock_timeout = '5s';
DROP TRIGGER accounts_session_notify ON accounts_session;
CREATE TRIGGER accounts_session_notify
    AFTER UPDATE OF status, revoked_at, aal, mfa_verified_at, amr, device_id ON accounts_session
    FOR EACH ROW
    WHEN ((OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'expired')
          OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.aal IS DISTINCT FROM NEW.aal OR OLD.mfa_verified_at IS DISTINCT FROM NEW.mfa_verified_at
          OR OLD.amr IS DISTINCT FROM NEW.amr OR OLD.device_id IS DISTINCT FROM NEW.device_id)
    EXECUTE FUNCTION gatehouse_notify_session();
CREATE TRIGGER accounts_session_notify_shortened
    AFTER UPDATE OF expires_at ON accounts_session FOR EACH ROW
    WHEN (NEW.expires_at < OLD.expires_at)
    EXECUTE FUNCTION gatehouse_notify_session();

DROP TRIGGER auth_user_notify ON auth_user;
CREATE TRIGGER auth_user_notify
    AFTER UPDATE OF is_active, is_staff, is_superuser, email, username, email_verified, password_hash,
                    first_name, last_name, date_joined ON auth_user
    FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.is_staff IS DISTINCT FROM NEW.is_staff
          OR OLD.is_superuser IS DISTINCT FROM NEW.is_superuser OR OLD.email IS DISTINCT FROM NEW.email
          OR OLD.username IS DISTINCT FROM NEW.username OR OLD.email_verified IS DISTINCT FROM NEW.email_verified
          OR OLD.password_hash IS DISTINCT FROM NEW.password_hash
          OR OLD.first_name IS DISTINCT FROM NEW.first_name OR OLD.last_name IS DISTINCT FROM NEW.last_name
          OR OLD.date_joined IS DISTINCT FROM NEW.date_joined)
    EXECUTE FUNCTION gatehouse_notify_user();

-- Using an API key stamps its last_used_at; the MFA settings change on every enrolment step.
DROP TRIGGER accounts_apikey_notify ON accounts_apikey;
CREATE TRIGGER accounts_apikey_notify
    AFTER UPDATE OF revoked_at, expires_at, scopes ON accounts_apikey FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.scopes IS DISTINCT FROM NEW.scopes)
    EXECUTE FUNCTION gatehouse_notify_key();

DROP TRIGGER accounts_mfasettings_notify ON accounts_mfasettings;
CREATE TRIGGER accounts_mfasettings_notify
    AFTER UPDATE OF is_enabled ON accounts_mfasettings FOR EACH ROW
    WHEN (OLD.is_enabled IS DISTINCT FROM NEW.is_enabled)
    EXECUTE FUNCTION gatehouse_notify_user_row();
