-- pg_restore builds indexes with an empty search_path, and earthdistance's ll_to_earth
-- (PostgreSQL 15's contrib) names the `earth` type without its schema, so restoring a dump
-- failed at idx_device_earth ("type earth does not exist"; found by the restore drill of
-- `make faults`). The index now uses a wrapper that sets its own search_path; the devices
-- near a point query tests the box against the same expression.
CREATE FUNCTION gatehouse_ll_to_earth(lat float8, lon float8) RETURNS earth
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = public
    AS 'SELECT ll_to_earth(lat, lon)';

DROP INDEX idx_device_earth;
CREATE INDEX idx_device_earth ON accounts_device
    USING gist (gatehouse_ll_to_earth(latitude::float8, longitude::float8))
    WHERE latitude IS NOT NULL AND longitude IS NOT NULL;
