-- Devices and risk: the seed's geo and anomaly indexes (002 "Indexing Strategy"), a permission
-- for the admin device search, and the job kind of the IP retention cut.
--
-- Devices near a point: earthdistance (with cube, which it needs) ships in PostgreSQL's
-- contrib. A managed server that refuses the extensions fails here; docs/risk.md gives the
-- fallback (a plain (latitude, longitude) btree and a bounding-box query).
CREATE EXTENSION IF NOT EXISTS cube;
CREATE EXTENSION IF NOT EXISTS earthdistance;

CREATE INDEX idx_device_earth ON accounts_device
    USING gist (ll_to_earth(latitude::float8, longitude::float8))
    WHERE latitude IS NOT NULL AND longitude IS NOT NULL;

-- Administrators filter audit lists by an anomaly reason (`anomaly=new_country`). Partial:
-- most rows have no reasons, and a login (which writes two audit rows) should not pay for
-- index entries nobody searches; `anomaly_reasons @> ...` implies NOT NULL, so the
-- planner still uses them.
CREATE INDEX idx_sessionaudit_anomaly ON audit_log_sessionauditlog USING gin (anomaly_reasons)
    WHERE anomaly_reasons IS NOT NULL;
CREATE INDEX idx_deviceaudit_anomaly ON audit_log_deviceauditlog USING gin (anomaly_reasons)
    WHERE anomaly_reasons IS NOT NULL;
CREATE INDEX idx_mfaaudit_anomaly ON audit_log_mfaauditlog USING gin (anomaly_reasons)
    WHERE anomaly_reasons IS NOT NULL;
CREATE INDEX idx_linkaudit_anomaly ON audit_log_sessiondevicelinkauditlog USING gin (anomaly_reasons)
    WHERE anomaly_reasons IS NOT NULL;

INSERT INTO auth_permission (name, app_label, codename) VALUES ('Can view device', 'accounts', 'view_device');

-- The daily cut of old client addresses (IP_RETENTION_DAYS) records its runs; each run's
-- target_date is its cutoff, where the next one starts.
ALTER TABLE audit_log_jobrun DROP CONSTRAINT audit_log_jobrun_kind,
    ADD CONSTRAINT audit_log_jobrun_kind
        CHECK (kind IN ('audit_summary', 'partitions', 'cleanup', 'outbox', 'data_export', 'ip_retention'));
