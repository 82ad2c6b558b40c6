-- Every instance caches verified access tokens and API keys (core::auth_cache). These
-- triggers publish, in the transaction of the change, what makes an entry wrong, on the
-- channel the instances listen to. As triggers, they cover every path that changes these
-- rows (logout, revocation, password change, deactivation, device compromise, MFA reset,
-- key revocation, and any operator's SQL). Payloads: s:<session>, u:<user>, k:<key>.

CREATE FUNCTION gatehouse_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_auth', 's:' || OLD.id::text);
    RETURN NULL;
END $$;

CREATE FUNCTION gatehouse_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_auth', 'u:' || OLD.id::text);
    RETURN NULL;
END $$;

CREATE FUNCTION gatehouse_notify_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_auth', 'k:' || OLD.id::text);
    RETURN NULL;
END $$;

-- Not on every update: a refresh rewrites the session's token ids and expiry, and a
-- login stamps last_login; neither makes a cached entry wrong (an access token is cached
-- with its own expiry), and a NOTIFY per refresh would serialise commits.
CREATE TRIGGER accounts_session_notify
    AFTER UPDATE ON accounts_session FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.aal IS DISTINCT FROM NEW.aal OR OLD.mfa_verified_at IS DISTINCT FROM NEW.mfa_verified_at
          OR OLD.amr IS DISTINCT FROM NEW.amr OR OLD.device_id IS DISTINCT FROM NEW.device_id
          OR NEW.expires_at < OLD.expires_at)
    EXECUTE FUNCTION gatehouse_notify_session();
CREATE TRIGGER accounts_session_notify_delete
    AFTER DELETE ON accounts_session FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_session();

CREATE TRIGGER auth_user_notify
    AFTER UPDATE ON auth_user FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.is_staff IS DISTINCT FROM NEW.is_staff
          OR OLD.is_superuser IS DISTINCT FROM NEW.is_superuser OR OLD.email IS DISTINCT FROM NEW.email
          OR OLD.username IS DISTINCT FROM NEW.username OR OLD.email_verified IS DISTINCT FROM NEW.email_verified
          OR OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION gatehouse_notify_user();
CREATE TRIGGER auth_user_notify_delete
    AFTER DELETE ON auth_user FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_user();

CREATE TRIGGER accounts_apikey_notify
    AFTER UPDATE ON accounts_apikey FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.scopes IS DISTINCT FROM NEW.scopes)
    EXECUTE FUNCTION gatehouse_notify_key();
CREATE TRIGGER accounts_apikey_notify_delete
    AFTER DELETE ON accounts_apikey FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_key();
