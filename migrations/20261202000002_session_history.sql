-- The login's risk check asks whether the user's recent sessions came from this country
-- or this IP range. Without an index in created_at order per user, that question read
-- every session the user ever had (a bitmap scan of idx_session_user_status cannot stop
-- early): thousands of index entries per login for an account that signs in often.
-- This index answers "the user's last 50 sessions" from the index alone.
CREATE INDEX idx_session_user_recent ON accounts_session (user_id, created_at DESC) INCLUDE (country, ip_address);
