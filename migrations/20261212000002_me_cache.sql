-- GET /users/me is served from each instance's cache (core::auth_cache), by user id. What it
-- shows must evict it, on every instance, in the transaction of the change: the user's
-- names join the auth_user trigger's columns; the profile and the MFA switch
-- (accounts_mfasettings.is_enabled) get triggers of their own. last_login stays out (a NOTIFY per login would
-- serialise commits): the cache keeps a body at most 60 s, so it lags at most that.
DROP TRIGGER auth_user_notify ON auth_user;
CREATE TRIGGER auth_user_notify
    AFTER UPDATE ON auth_user FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.is_staff IS DISTINCT FROM NEW.is_staff
          OR OLD.is_superuser IS DISTINCT FROM NEW.is_superuser OR OLD.email IS DISTINCT FROM NEW.email
          OR OLD.username IS DISTINCT FROM NEW.username OR OLD.email_verified IS DISTINCT FROM NEW.email_verified
          OR OLD.password_hash IS DISTINCT FROM NEW.password_hash
          OR OLD.first_name IS DISTINCT FROM NEW.first_name OR OLD.last_name IS DISTINCT FROM NEW.last_name
          OR OLD.date_joined IS DISTINCT FROM NEW.date_joined)
    EXECUTE FUNCTION gatehouse_notify_user();

-- A row's user, for the tables keyed by user_id.
CREATE FUNCTION gatehouse_notify_user_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('gatehouse_auth', 'u:' || OLD.user_id::text);
    ELSE
        PERFORM pg_notify('gatehouse_auth', 'u:' || NEW.user_id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER accounts_profile_notify
    AFTER INSERT OR UPDATE OR DELETE ON accounts_profile FOR EACH ROW
    EXECUTE FUNCTION gatehouse_notify_user_row();
CREATE TRIGGER accounts_mfasettings_notify
    AFTER UPDATE ON accounts_mfasettings FOR EACH ROW
    WHEN (OLD.is_enabled IS DISTINCT FROM NEW.is_enabled)
    EXECUTE FUNCTION gatehouse_notify_user_row();
CREATE TRIGGER accounts_mfasettings_notify_insert
    AFTER INSERT OR DELETE ON accounts_mfasettings FOR EACH ROW
    EXECUTE FUNCTION gatehouse_notify_user_row();
