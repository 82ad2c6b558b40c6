-- Admin list of audit_log_sessionauditlog: newest first, every filter optional. The time bounds are
-- written as COALESCE(param) so the executor prunes to the months they cover.
-- $1 from, $2 to, $3 user_id, $4 action, $5 risk_level, $6 min_risk_score, $7 is_anomalous,
-- $8 requires_review, $9 limit, $10 offset, $11 one anomaly reason (served by the GIN index
-- on anomaly_reasons), $12 and $13 the keyset cursor (the last row's created_at and id):
-- rows after it in the list's order (its time bound written as COALESCE too, so that a generic
-- plan starts its index scan at the cursor). `total` counts matching rows up to 1,001 (a month may
-- hold tens of millions; an exact count would cost more than the page). A min_risk_score on tables without scores
-- compares the level's floor (low 0, medium 25, high 50, critical 75).
WITH matching AS NOT MATERIALIZED (
    SELECT * FROM audit_log_sessionauditlog
     WHERE created_at >= COALESCE($1::timestamptz, '-infinity'::timestamptz)
       AND created_at < COALESCE($2::timestamptz, 'infinity'::timestamptz)
       AND ($3::uuid IS NULL OR user_id = $3)
       AND ($4::text IS NULL OR action = $4)
       AND ($5::text IS NULL OR risk_level = $5)
       AND ($6::int IS NULL OR (CASE risk_level WHEN 'low' THEN 0 WHEN 'medium' THEN 25 WHEN 'high' THEN 50 ELSE 75 END) >= $6)
       AND ($7::bool IS NULL OR is_anomalous = $7)
       AND ($8::bool IS NULL OR requires_review = $8)
       AND ($11::text IS NULL OR anomaly_reasons @> ARRAY[$11::text])
)
SELECT id AS "id!", 'session' AS "kind!", user_id AS "user_id!", session_id AS "session_id?", device_id AS "device_id?",
       action AS "action!", risk_level AS "risk_level!", (CASE risk_level WHEN 'low' THEN 0 WHEN 'medium' THEN 25 WHEN 'high' THEN 50 ELSE 75 END) AS "risk_score?",
       is_anomalous AS "is_anomalous!", anomaly_reasons AS "anomaly_reasons?", requires_review AS "requires_review!",
       review_status AS "review_status?", reviewed_by_id AS "reviewed_by_id?", reviewed_at AS "reviewed_at?",
       review_notes AS "review_notes?", ip_address AS "ip_address?", country AS "country?", city AS "city?",
       metadata AS "metadata?", created_at AS "created_at!", (SELECT count(*) FROM (SELECT 1 FROM matching LIMIT 1001) counted) AS "total!"
  FROM matching
 WHERE created_at <= COALESCE($12::timestamptz, 'infinity'::timestamptz)
   AND ($12 IS NULL OR created_at < $12 OR id < $13::uuid)
 ORDER BY created_at DESC, id DESC
 LIMIT $9 OFFSET $10
