-- The daily audit summary of day $1 (UTC) for every user with activity: one set-based
-- statement over that day's partitions. Counter definitions: docs/audit.md.
-- The day's bounds are written out in each WHERE (not joined from a CTE) so that the
-- executor prunes every partition but the day's month at start-up.
WITH ev AS (
    SELECT 's' AS src, user_id, action, risk_level, is_anomalous, ip_address, country, device_id
      FROM audit_log_sessionauditlog WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC'
                                                     AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
    UNION ALL
    SELECT 'd', user_id, action, risk_level, is_anomalous, ip_address, country, device_id
      FROM audit_log_deviceauditlog WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC'
                                                     AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
    UNION ALL
    SELECT 'm', user_id, action, risk_level, is_anomalous, ip_address, NULL, device_id
      FROM audit_log_mfaauditlog WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC'
                                                     AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
    UNION ALL
    SELECT 'l', user_id, link_action, risk_level, is_anomalous, ip_address, NULL, device_id
      FROM audit_log_sessiondevicelinkauditlog WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC'
                                                     AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'
),
-- First level: one parallel hashed pass keyed by user and the three dimensions counted
-- distinctly (aggregates with DISTINCT cannot hash or run in parallel; this can).
fine AS (
    SELECT user_id, ip_address, country, device_id,
           count(*) AS total_events,
           count(*) FILTER (WHERE src = 's' AND action = 'login_failed') AS failed_logins,
           count(*) FILTER (WHERE src = 'm' AND action = 'challenge_created') AS mfa_challenges,
           count(*) FILTER (WHERE risk_level = 'low') AS low,
           count(*) FILTER (WHERE risk_level = 'medium') AS medium,
           count(*) FILTER (WHERE risk_level = 'high') AS high,
           count(*) FILTER (WHERE risk_level = 'critical') AS critical,
           count(*) FILTER (WHERE src = 'm' AND action = 'enabled') AS mfa_enabled,
           count(*) FILTER (WHERE src = 'm' AND action = 'disabled') AS mfa_disabled,
           count(*) FILTER (WHERE src = 'm' AND action = 'codes_regenerated') AS codes_generated,
           count(*) FILTER (WHERE (src = 'm' AND action = 'rate_limited')
                               OR (src = 's' AND action = 'login_locked')) AS rate_limited,
           count(*) FILTER (WHERE is_anomalous) AS anomalies,
           count(*) FILTER (WHERE src = 'm' AND action = 'change_requested') AS approvals_required,
           count(*) FILTER (WHERE src = 'm' AND action IN ('change_approved', 'change_rejected'))
               AS approvals_completed
      FROM ev
     GROUP BY user_id, ip_address, country, device_id
),
-- Second level: per user, over the first level's far fewer rows.
agg AS (
    SELECT user_id,
           sum(total_events) AS total_events, sum(failed_logins) AS failed_logins,
           sum(mfa_challenges) AS mfa_challenges,
           sum(low) AS low, sum(medium) AS medium, sum(high) AS high, sum(critical) AS critical,
           count(DISTINCT country) AS countries, count(DISTINCT ip_address) AS ips,
           count(DISTINCT device_id) AS devices,
           sum(mfa_enabled) AS mfa_enabled, sum(mfa_disabled) AS mfa_disabled,
           sum(codes_generated) AS codes_generated, sum(rate_limited) AS rate_limited,
           sum(anomalies) AS anomalies, sum(approvals_required) AS approvals_required,
           sum(approvals_completed) AS approvals_completed
      FROM fine
     GROUP BY user_id
),
sessions AS (
    SELECT user_id, count(*) AS n FROM accounts_session
     WHERE session_type <> 'api' AND created_at >= $1::date::timestamp AT TIME ZONE 'UTC' AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC' GROUP BY user_id
),
new_devices AS (
    SELECT user_id, count(*) AS n FROM accounts_device
     WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC' AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC' GROUP BY user_id
),
users AS (
    SELECT user_id FROM agg UNION SELECT user_id FROM sessions UNION SELECT user_id FROM new_devices
)
INSERT INTO audit_log_auditlogsummary AS s
    (user_id, date, total_sessions, total_devices, total_failed_logins, total_mfa_challenges,
     total_api_calls, total_events, low_risk_events, medium_risk_events, high_risk_events,
     critical_risk_events, countries_accessed, unique_ips, unique_devices, mfa_enabled_count,
     mfa_disabled_count, backup_codes_generated, rate_limit_exceeded, anomalies_detected,
     approvals_required, approvals_completed)
SELECT u.user_id, $1, COALESCE(se.n, 0), COALESCE(nd.n, 0), COALESCE(a.failed_logins, 0),
       -- API calls are added as they are flushed (core::auth::flush_api_calls), not derived
       -- from events: a new row starts at 0 and an existing one keeps its count.
       COALESCE(a.mfa_challenges, 0), 0, COALESCE(a.total_events, 0),
       COALESCE(a.low, 0), COALESCE(a.medium, 0), COALESCE(a.high, 0), COALESCE(a.critical, 0),
       COALESCE(a.countries, 0), COALESCE(a.ips, 0), COALESCE(a.devices, 0), COALESCE(a.mfa_enabled, 0),
       COALESCE(a.mfa_disabled, 0), COALESCE(a.codes_generated, 0), COALESCE(a.rate_limited, 0),
       COALESCE(a.anomalies, 0), COALESCE(a.approvals_required, 0), COALESCE(a.approvals_completed, 0)
  FROM users u
  JOIN auth_user au ON au.id = u.user_id
  LEFT JOIN agg a ON a.user_id = u.user_id
  LEFT JOIN sessions se ON se.user_id = u.user_id
  LEFT JOIN new_devices nd ON nd.user_id = u.user_id
ON CONFLICT ON CONSTRAINT audit_log_auditlogsummary_user_date_key DO UPDATE SET
    total_sessions = EXCLUDED.total_sessions, total_devices = EXCLUDED.total_devices,
    total_failed_logins = EXCLUDED.total_failed_logins,
    total_mfa_challenges = EXCLUDED.total_mfa_challenges,
    total_events = EXCLUDED.total_events, low_risk_events = EXCLUDED.low_risk_events,
    medium_risk_events = EXCLUDED.medium_risk_events, high_risk_events = EXCLUDED.high_risk_events,
    critical_risk_events = EXCLUDED.critical_risk_events,
    countries_accessed = EXCLUDED.countries_accessed, unique_ips = EXCLUDED.unique_ips,
    unique_devices = EXCLUDED.unique_devices, mfa_enabled_count = EXCLUDED.mfa_enabled_count,
    mfa_disabled_count = EXCLUDED.mfa_disabled_count,
    backup_codes_generated = EXCLUDED.backup_codes_generated,
    rate_limit_exceeded = EXCLUDED.rate_limit_exceeded,
    anomalies_detected = EXCLUDED.anomalies_detected, approvals_required = EXCLUDED.approvals_required,
    approvals_completed = EXCLUDED.approvals_completed, updated_at = now()
-- An unchanged row is not rewritten: re-running a day changes nothing.
WHERE (s.total_sessions, s.total_devices, s.total_failed_logins, s.total_mfa_challenges,
       s.total_events, s.low_risk_events, s.medium_risk_events, s.high_risk_events,
       s.critical_risk_events, s.countries_accessed, s.unique_ips, s.unique_devices,
       s.mfa_enabled_count, s.mfa_disabled_count, s.backup_codes_generated, s.rate_limit_exceeded,
       s.anomalies_detected, s.approvals_required, s.approvals_completed)
  IS DISTINCT FROM
      (EXCLUDED.total_sessions, EXCLUDED.total_devices, EXCLUDED.total_failed_logins,
       EXCLUDED.total_mfa_challenges, EXCLUDED.total_events,
       EXCLUDED.low_risk_events, EXCLUDED.medium_risk_events, EXCLUDED.high_risk_events,
       EXCLUDED.critical_risk_events, EXCLUDED.countries_accessed, EXCLUDED.unique_ips,
       EXCLUDED.unique_devices, EXCLUDED.mfa_enabled_count, EXCLUDED.mfa_disabled_count,
       EXCLUDED.backup_codes_generated, EXCLUDED.rate_limit_exceeded, EXCLUDED.anomalies_detected,
       EXCLUDED.approvals_required, EXCLUDED.approvals_completed)
