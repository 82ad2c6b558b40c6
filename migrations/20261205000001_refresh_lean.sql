-- Every refresh inserts one accounts_refreshtokenrecord row, so each index on the table is
-- a B-tree insert on the hottest write path. Three of the seed's indexes serve lookups that
-- other indexes already answer:
--   idx_refresh_family: a family is one session's chain (a new family is minted with each
--     session and every child inherits it), so a family is found through idx_refresh_session.
--   idx_refresh_user: a user's records are found through their sessions
--     (idx_session_user_status, then idx_refresh_session). It also served the user_id
--     foreign key's ON DELETE CASCADE; that cascade now runs through the session's own
--     (deleting a user deletes its sessions, which delete their records), so the foreign key
--     goes too, and with it a lookup and a KEY SHARE lock on the user's row per refresh.
--     session_id's foreign key still ties each record to a session of the same user.
--   idx_refresh_expires: read only by the cleanup job's range delete. expires_at grows with
--     insertion order (now + refresh TTL, capped by the session's age), so a BRIN index
--     finds the expired block ranges at a fraction of a B-tree's upkeep.
DROP INDEX idx_refresh_family;
DROP INDEX idx_refresh_user;
ALTER TABLE accounts_refreshtokenrecord DROP CONSTRAINT accounts_refreshtokenrecord_user_id_fkey;
DROP INDEX idx_refresh_expires;
CREATE INDEX idx_refresh_expires ON accounts_refreshtokenrecord USING brin (expires_at);
