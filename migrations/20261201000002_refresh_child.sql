-- Refresh tokens are random, never derived from their parent. To answer a client's
-- parallel double-submit within REFRESH_REUSE_LEEWAY_SECONDS with the very same pair, the
-- child token is kept on the parent's record, sealed with the refresh-child data key, for
-- the leeway only; the cleanup job wipes it afterwards.
ALTER TABLE accounts_refreshtokenrecord ADD COLUMN child_sealed bytea;
