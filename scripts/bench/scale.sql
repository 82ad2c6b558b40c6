-- A deployment's population for `make bench-scale`, built with SQL in minutes:
--   :users users (auth_user, accounts_profile, accounts_mfasettings; 10% with TOTP on),
--   2 devices and 3 sessions per user, 2 refresh records per session (one rotated, one
--   live), and a year of audit: 12 monthly partitions of the four audit tables, with
--   :current session events in this month (up to now) and :month in each of the 11 before;
--   the device, MFA and link tables get 40%, 25% and 15% of the session table's rows.
-- Of the sessions, 98% are live, 1% past their expiry (the cleanup marks them expired) and
-- 1% revoked 40 days ago (the cleanup deletes them): about a day of a deployment's churn.
-- Emails are of a reserved domain and no password hash is a hash: none of these accounts
-- can sign in. Run on a freshly migrated database (scripts/bench-scale.sh does).
\set ON_ERROR_STOP on
-- The rows are consistent by construction: foreign-key and NOTIFY triggers would check
-- and announce 10^8 rows one by one (hours). Audit partitions are filled before they are
-- attached, so their indexes are built once, sorted, instead of row by row.
SET session_replication_role = replica;
SET synchronous_commit = off;
SET maintenance_work_mem = '1GB';
SET work_mem = '256MB';
\timing on

CREATE UNLOGGED TABLE scale_user (n int PRIMARY KEY, id uuid NOT NULL);
INSERT INTO scale_user SELECT g, uuid_generate_v7() FROM generate_series(1, :users) g;
CREATE UNLOGGED TABLE scale_device (n int PRIMARY KEY, user_n int NOT NULL, id uuid NOT NULL);
INSERT INTO scale_device SELECT g, (g + 1) / 2, uuid_generate_v7() FROM generate_series(1, 2 * :users) g;

INSERT INTO auth_user (id, email, username, password_hash, first_name, last_name, email_verified,
                       last_login, date_joined, updated_at)
SELECT id, 'scale' || n || '@population.invalid', 'scale' || n, '!', 'Member', 'No ' || n, n % 10 <> 0,
       now() - (n % 720) * interval '1 hour', now() - (n % 1000) * interval '1 day', now()
  FROM scale_user;

INSERT INTO accounts_profile (user_id, country, city, timezone, language, preferred_mfa_method)
SELECT id, (ARRAY['DE', 'FR', 'US', 'GB', 'BR', 'IN', 'JP', 'NG'])[1 + n % 8], 'City ' || (n % 500),
       'UTC', 'en', CASE WHEN n % 10 = 0 THEN 'totp' END
  FROM scale_user;

INSERT INTO accounts_mfasettings (user_id, primary_method, is_enabled)
SELECT id, 'totp', n % 10 = 0 FROM scale_user;

INSERT INTO otp_totpdevice (user_id, secret_encrypted, is_verified)
SELECT id, decode(md5(n::text) || md5(n::text || 's') || md5(n::text || 't'), 'hex'), true FROM scale_user WHERE n % 10 = 0;

INSERT INTO accounts_device (id, user_id, device_name, device_type, os, browser, fingerprint_hash,
                             ip_address, is_verified, is_trusted, trust_expires_at, last_used_at, risk_score, created_at)
SELECT d.id, u.id, 'Device ' || d.n, (ARRAY['desktop', 'mobile'])[1 + d.n % 2], 'Linux', 'Firefox',
       'fp:' || md5(d.n::text), ('10.' || (d.n % 250) || '.' || (d.n / 250 % 250) || '.' || (d.n % 199 + 1))::inet,
       true, d.n % 5 = 0, CASE WHEN d.n % 5 = 0 THEN now() + (1 + d.n % 30) * interval '1 day' END,
       now() - (d.n % 90) * interval '1 day', d.n % 30, now() - (d.n % 400) * interval '1 day'
  FROM scale_device d JOIN scale_user u ON u.n = d.user_n;

CREATE UNLOGGED TABLE scale_session (n int PRIMARY KEY, user_n int NOT NULL, id uuid NOT NULL);
INSERT INTO scale_session SELECT g, (g + 2) / 3, uuid_generate_v7() FROM generate_series(1, 3 * :users) g;

INSERT INTO accounts_session (id, user_id, device_id, access_jti, refresh_jti, ip_address, user_agent,
                              status, expires_at, aal, amr, mfa_verified, revoked_at, revoked_reason,
                              last_seen_at, created_at, updated_at)
SELECT s.id, u.id, d.id, md5(s.n::text || 'a'), md5(s.n::text || 'r2') || md5(s.n::text || 'R2'),
       ('10.' || (s.n % 250) || '.' || (s.n / 250 % 250) || '.' || (s.n % 199 + 1))::inet, 'Mozilla/5.0 (X11; Linux)',
       CASE WHEN s.n % 100 = 1 THEN 'revoked' ELSE 'active' END,
       CASE WHEN s.n % 100 = 2 THEN now() - interval '1 hour' ELSE now() + (1 + s.n % 13) * interval '1 day' END,
       CASE WHEN u.n % 10 = 0 THEN 2 ELSE 1 END,
       CASE WHEN u.n % 10 = 0 THEN '{pwd,otp}'::text[] ELSE '{pwd}'::text[] END, u.n % 10 = 0,
       CASE WHEN s.n % 100 = 1 THEN now() - interval '40 days' END,
       CASE WHEN s.n % 100 = 1 THEN 'logout' END,
       now() - (s.n % 600) * interval '1 minute', now() - (s.n % 30) * interval '1 day' - interval '1 hour',
       now() - (s.n % 600) * interval '1 minute'
  FROM scale_session s JOIN scale_user u ON u.n = s.user_n
  JOIN scale_device d ON d.n = 2 * s.user_n - s.n % 2;

INSERT INTO accounts_refreshtokenrecord (user_id, session_id, jti, family_id, parent_jti, is_valid,
                                         rotated_at, created_at, expires_at)
SELECT u.id, s.id, md5(s.n::text || 'r' || k) || md5(s.n::text || 'R' || k), s.id,
       CASE WHEN k = 2 THEN md5(s.n::text || 'r1') || md5(s.n::text || 'R1') END,
       k = 2, CASE WHEN k = 1 THEN now() - interval '1 hour' END,
       now() - (3 - k) * interval '1 hour', now() + interval '7 days'
  FROM scale_session s JOIN scale_user u ON u.n = s.user_n, generate_series(1, 2) k;

-- The audit year. Each month's partition is made by audit_log_create_partition's naming,
-- filled while detached (this month's empty one is replaced), then attached.
CREATE FUNCTION pg_temp.scale_month(parent text, m int) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s_p%s', parent, to_char(date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => m), 'YYYY_MM'))
$$;
CREATE FUNCTION pg_temp.scale_bounds(m int, OUT lo timestamptz, OUT hi timestamptz) LANGUAGE sql AS $$
    SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => m)) AT TIME ZONE 'UTC',
           least(now(), (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => m - 1)) AT TIME ZONE 'UTC')
$$;

SELECT format('ALTER TABLE %I DETACH PARTITION %I', t, c.relname), format('DROP TABLE %I', c.relname)
  FROM unnest(ARRAY['audit_log_sessionauditlog', 'audit_log_deviceauditlog',
                    'audit_log_sessiondevicelinkauditlog', 'audit_log_mfaauditlog']) t,
       generate_series(0, 11) m
  JOIN pg_class c ON true
 WHERE c.relname = pg_temp.scale_month(t, m) \gexec

CREATE TEMP TABLE scale_plan AS
SELECT t, m, pg_temp.scale_month(t, m) AS part,
       (CASE WHEN m = 0 THEN :current ELSE :month END * share)::bigint AS rows
  FROM (VALUES ('audit_log_sessionauditlog', 1.0), ('audit_log_deviceauditlog', 0.4),
               ('audit_log_mfaauditlog', 0.25), ('audit_log_sessiondevicelinkauditlog', 0.15)) s(t, share),
       generate_series(0, 11) m;

SELECT format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, t) FROM scale_plan \gexec

-- Rows spread evenly over each month (this month up to now), a user each by a stride
-- through the population, a device of that user's for half of them.
SELECT format($f$
INSERT INTO %I (user_id, device_id, action, session_type, mfa_verified, country, ip_address, risk_level,
                is_anomalous, anomaly_reasons, requires_review, metadata, created_at)
SELECT u.id, CASE WHEN g %% 2 = 0 THEN d.id END,
       (ARRAY['login', 'refresh', 'refresh', 'refresh', 'logout', 'login_failed', 'mfa_verified', 'refresh'])[1 + g %% 8],
       'web', g %% 10 = 0, (ARRAY['DE', 'FR', 'US', 'GB', 'BR', 'IN', 'JP', 'NG'])[1 + g %% 8],
       ('10.' || (g %% 250) || '.' || (g / 250 %% 250) || '.' || (g %% 199 + 1))::inet,
       CASE WHEN g %% 1000 = 0 THEN 'high' ELSE 'low' END, g %% 1000 = 0,
       CASE WHEN g %% 1000 = 0 THEN '{new_country}'::text[] END, g %% 5000 = 0, '{"ua": "Mozilla/5.0"}',
       b.lo + (b.hi - b.lo) * ((g - 1)::float8 / %s)
  FROM generate_series(1, %s) g CROSS JOIN pg_temp.scale_bounds(%s) b
  JOIN scale_user u ON u.n = 1 + (g::bigint * 7919 %% %s)
  JOIN scale_device d ON d.n = 2 * u.n - g %% 2$f$, part, rows, rows, m, :users)
  FROM scale_plan WHERE t = 'audit_log_sessionauditlog' \gexec

SELECT format($f$
INSERT INTO %I (user_id, device_id, action, ip_address, risk_score, risk_level, is_anomalous, requires_review, created_at)
SELECT u.id, d.id, (ARRAY['seen', 'seen', 'seen', 'registered', 'trusted', 'ip_changed'])[1 + g %% 6],
       ('10.' || (g %% 250) || '.' || (g / 250 %% 250) || '.' || (g %% 199 + 1))::inet, (g * 37) %% 101,
       CASE WHEN g %% 500 = 0 THEN 'high' ELSE 'low' END, g %% 500 = 0, g %% 5000 = 0,
       b.lo + (b.hi - b.lo) * ((g - 1)::float8 / %s)
  FROM generate_series(1, %s) g CROSS JOIN pg_temp.scale_bounds(%s) b
  JOIN scale_user u ON u.n = 1 + (g::bigint * 7919 %% %s)
  JOIN scale_device d ON d.n = 2 * u.n - g %% 2$f$, part, rows, rows, m, :users)
  FROM scale_plan WHERE t = 'audit_log_deviceauditlog' \gexec

SELECT format($f$
INSERT INTO %I (user_id, device_id, action, mfa_method, ip_address, risk_level, is_anomalous, requires_review, created_at)
SELECT u.id, d.id, (ARRAY['verified', 'verified', 'verified', 'failed', 'code_sent'])[1 + g %% 5], 'totp',
       ('10.' || (g %% 250) || '.' || (g / 250 %% 250) || '.' || (g %% 199 + 1))::inet,
       'low', false, false, b.lo + (b.hi - b.lo) * ((g - 1)::float8 / %s)
  FROM generate_series(1, %s) g CROSS JOIN pg_temp.scale_bounds(%s) b
  JOIN scale_user u ON u.n = 10 * (1 + (g::bigint * 7919 %% (%s / 10)))
  JOIN scale_device d ON d.n = 2 * u.n - g %% 2$f$, part, rows, rows, m, :users)
  FROM scale_plan WHERE t = 'audit_log_mfaauditlog' \gexec

SELECT format($f$
INSERT INTO %I (user_id, device_id, link_action, ip_address, risk_level, is_anomalous, requires_review, created_at)
SELECT u.id, d.id, (ARRAY['linked', 'linked', 'unlinked'])[1 + g %% 3],
       ('10.' || (g %% 250) || '.' || (g / 250 %% 250) || '.' || (g %% 199 + 1))::inet,
       'low', false, false, b.lo + (b.hi - b.lo) * ((g - 1)::float8 / %s)
  FROM generate_series(1, %s) g CROSS JOIN pg_temp.scale_bounds(%s) b
  JOIN scale_user u ON u.n = 1 + (g::bigint * 7919 %% %s)
  JOIN scale_device d ON d.n = 2 * u.n - g %% 2$f$, part, rows, rows, m, :users)
  FROM scale_plan WHERE t = 'audit_log_sessiondevicelinkauditlog' \gexec

SELECT format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', t, part,
              (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => m)) AT TIME ZONE 'UTC',
              (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => m - 1)) AT TIME ZONE 'UTC')
  FROM scale_plan \gexec

-- As a deployment running the daily jobs has it: client addresses cut up to 91 days ago
-- (IP_RETENTION_DAYS 90), so the next cleanup cuts one day's. Only this watermark is
-- read; the older rows keep whole addresses here, which changes no measured query.
INSERT INTO audit_log_jobrun (kind, target_date, status, started_at, finished_at, duration_ms, triggered_by)
VALUES ('ip_retention', (now() AT TIME ZONE 'UTC')::date - 91, 'succeeded', now() - interval '1 day',
        now() - interval '1 day', 0, 'scheduler');

DROP TABLE scale_user, scale_device, scale_session;
RESET session_replication_role;
