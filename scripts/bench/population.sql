-- The users a deployment serving thousands of refreshes a second has: 20,000 accounts, each
-- with a live session and the refresh tokens of its last rotations (two spent, one live).
-- Without them the bench's tables hold a few dozen rows, PostgreSQL plans (and caches, per
-- connection, for the foreign-key checks) sequential scans over them, and those scans slow
-- down as every refresh leaves a row version behind (docs/performance.md, "Refresh, fourth
-- pass"). Emails and usernames are of a reserved domain; the password hash is no hash, so
-- none of these accounts can sign in.
INSERT INTO auth_user (email, username, password_hash, date_joined)
SELECT 'member' || g || '@population.invalid', 'member' || g, '!', now() - g * interval '1 minute'
  FROM generate_series(1, 20000) g;

INSERT INTO accounts_session (user_id, access_jti, refresh_jti, expires_at, ip_address, last_seen_at, created_at)
SELECT id, md5(id::text || 'access'), encode(sha256(convert_to(id::text || '3', 'UTF8')), 'hex'),
       now() + interval '1 day', ('198.51.100.' || (1 + abs(hashtext(id::text)) % 254))::inet, now(), now() - interval '1 hour'
  FROM auth_user WHERE email LIKE '%@population.invalid';

INSERT INTO accounts_refreshtokenrecord
    (user_id, session_id, jti, family_id, parent_jti, is_valid, rotated_at, created_at, expires_at)
SELECT s.user_id, s.id, encode(sha256(convert_to(s.user_id::text || g, 'UTF8')), 'hex'), s.id,
       CASE WHEN g > 1 THEN encode(sha256(convert_to(s.user_id::text || (g - 1), 'UTF8')), 'hex') END,
       g = 3, CASE WHEN g < 3 THEN now() - (3 - g) * interval '20 minutes' END,
       now() - (4 - g) * interval '20 minutes', now() + interval '1 day'
  FROM accounts_session s JOIN auth_user u ON u.id = s.user_id, generate_series(1, 3) g
 WHERE u.email LIKE '%@population.invalid';
