-- The account console's cookie holds a random secret; the session it signed in keeps only
-- the secret's SHA-256 (hex). Looked up by it on every console request, so unique where set.
-- The session's own id is never the cookie: ids are time-ordered (UUIDv7), a secret is not.
ALTER TABLE accounts_session ADD COLUMN console_secret_hash varchar(64);
CREATE UNIQUE INDEX idx_session_console_secret ON accounts_session (console_secret_hash)
    WHERE console_secret_hash IS NOT NULL;
