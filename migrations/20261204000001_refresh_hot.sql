-- A refresh rewrites the session's token ids and slides its expiry. All three columns were
-- indexed (two UNIQUE constraints and idx_session_expires_at), so every refresh wrote a new
-- version of the row into all eight indexes and left the old entries behind. Nothing looks
-- a session up by them: an access token carries its session id (`sid`), a refresh token is
-- found through accounts_refreshtokenrecord.jti (UNIQUE there), and the cleanup job's
-- delete (revoked OR expired) is a scan either way. Without these indexes, and with room
-- left on each page, the update is HOT: the new version stays on its page and no index
-- changes. The ids are random (UUIDv4 access jti, SHA-256 of 256 random bits), so
-- uniqueness on the session row was never what kept them apart.
ALTER TABLE accounts_session DROP CONSTRAINT accounts_session_access_jti_key;
ALTER TABLE accounts_session DROP CONSTRAINT accounts_session_refresh_jti_key;
DROP INDEX idx_session_expires_at;
ALTER TABLE accounts_session SET (fillfactor = 70);

-- A refresh record is updated once (claimed: is_valid, rotated_at, child_sealed, none
-- indexed); room on its page keeps that update HOT too, so its seven indexes are written
-- at insert only.
ALTER TABLE accounts_refreshtokenrecord SET (fillfactor = 60);
