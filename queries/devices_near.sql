-- Devices within $3 km of ($1 latitude, $2 longitude), nearest first, at most $4. The
-- earth_box test is what idx_device_earth (GiST on gatehouse_ll_to_earth, the restorable
-- wrapper of ll_to_earth) serves; the box is a little larger than the circle, so the exact
-- distance filters after it.
SELECT d.id AS "id!", d.user_id AS "user_id!", d.device_name, d.device_type, d.os, d.browser,
       d.is_compromised AS "is_compromised!", d.risk_score AS "risk_score!", d.last_used_at,
       d.latitude::float8 AS "latitude!", d.longitude::float8 AS "longitude!",
       earth_distance(ll_to_earth($1::float8, $2::float8), ll_to_earth(d.latitude::float8, d.longitude::float8)) / 1000.0
           AS "distance_km!"
  FROM accounts_device d
 WHERE d.latitude IS NOT NULL AND d.longitude IS NOT NULL
   AND earth_box(ll_to_earth($1::float8, $2::float8), $3::float8 * 1000.0)
       @> gatehouse_ll_to_earth(d.latitude::float8, d.longitude::float8)
   AND earth_distance(ll_to_earth($1::float8, $2::float8), ll_to_earth(d.latitude::float8, d.longitude::float8))
       <= $3::float8 * 1000.0
 ORDER BY 12
 LIMIT $4
