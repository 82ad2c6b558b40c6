-- A user's own security events from all four audit tables, newest first.
-- $1 user_id, $2 from, $3 to, $4 limit, $5 offset.
SELECT id AS "id!", kind AS "kind!", user_id AS "user_id!", session_id AS "session_id?", device_id AS "device_id?",
       action AS "action!", risk_level AS "risk_level!", risk_score AS "risk_score?", is_anomalous AS "is_anomalous!",
       anomaly_reasons AS "anomaly_reasons?", requires_review AS "requires_review!", review_status AS "review_status?",
       reviewed_by_id AS "reviewed_by_id?", reviewed_at AS "reviewed_at?", review_notes AS "review_notes?",
       ip_address AS "ip_address?", country AS "country?", city AS "city?", metadata AS "metadata?",
       created_at AS "created_at!", count(*) OVER () AS "total!"
  FROM (
    SELECT id, 'session' AS kind, user_id, session_id AS session_id, device_id, action::text AS action, risk_level::text AS risk_level,
           (CASE risk_level WHEN 'low' THEN 0 WHEN 'medium' THEN 25 WHEN 'high' THEN 50 ELSE 75 END) AS risk_score, is_anomalous, anomaly_reasons, requires_review, review_status::text AS review_status,
           reviewed_by_id, reviewed_at, review_notes, ip_address, country::text AS country, city::text AS city, metadata, created_at
      FROM audit_log_sessionauditlog
     WHERE user_id = $1 AND created_at >= COALESCE($2::timestamptz, '-infinity'::timestamptz)
       AND created_at < COALESCE($3::timestamptz, 'infinity'::timestamptz)
    UNION ALL
    SELECT id, 'device' AS kind, user_id, session_id AS session_id, device_id, action::text AS action, risk_level::text AS risk_level,
           risk_score AS risk_score, is_anomalous, anomaly_reasons, requires_review, review_status::text AS review_status,
           reviewed_by_id, reviewed_at, review_notes, ip_address, country::text AS country, city::text AS city, metadata, created_at
      FROM audit_log_deviceauditlog
     WHERE user_id = $1 AND created_at >= COALESCE($2::timestamptz, '-infinity'::timestamptz)
       AND created_at < COALESCE($3::timestamptz, 'infinity'::timestamptz)
    UNION ALL
    SELECT id, 'mfa' AS kind, user_id, session_id AS session_id, device_id, action::text AS action, risk_level::text AS risk_level,
           (CASE risk_level WHEN 'low' THEN 0 WHEN 'medium' THEN 25 WHEN 'high' THEN 50 ELSE 75 END) AS risk_score, is_anomalous, anomaly_reasons, requires_review, review_status::text AS review_status,
           reviewed_by_id, reviewed_at, review_notes, ip_address, NULL::varchar::text AS country, NULL::varchar::text AS city, metadata, created_at
      FROM audit_log_mfaauditlog
     WHERE user_id = $1 AND created_at >= COALESCE($2::timestamptz, '-infinity'::timestamptz)
       AND created_at < COALESCE($3::timestamptz, 'infinity'::timestamptz)
    UNION ALL
    SELECT id, 'link' AS kind, user_id, session_id AS session_id, device_id, link_action::text AS action, risk_level::text AS risk_level,
           (CASE risk_level WHEN 'low' THEN 0 WHEN 'medium' THEN 25 WHEN 'high' THEN 50 ELSE 75 END) AS risk_score, is_anomalous, anomaly_reasons, requires_review, review_status::text AS review_status,
           reviewed_by_id, reviewed_at, review_notes, ip_address, NULL::varchar::text AS country, NULL::varchar::text AS city, metadata, created_at
      FROM audit_log_sessiondevicelinkauditlog
     WHERE user_id = $1 AND created_at >= COALESCE($2::timestamptz, '-infinity'::timestamptz)
       AND created_at < COALESCE($3::timestamptz, 'infinity'::timestamptz)
  ) e
 ORDER BY created_at DESC, id DESC
 LIMIT $4 OFFSET $5
