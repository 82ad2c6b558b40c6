-- audit_log: four monthly-partitioned event tables, the daily summary, job runs and
-- retention policy. Rows outlive the sessions and devices they mention (SET NULL).

CREATE TABLE audit_log_sessionauditlog (
    id                        uuid NOT NULL DEFAULT uuid_generate_v7(),
    user_id                   uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    session_id                uuid REFERENCES accounts_session (id) ON DELETE SET NULL,
    device_id                 uuid REFERENCES accounts_device (id) ON DELETE SET NULL,
    action                    varchar(50) NOT NULL,
    session_type              varchar(20),
    mfa_verified              boolean,
    mfa_method                varchar(20),
    country                   varchar(100),
    city                      varchar(100),
    ip_address                inet,
    latitude                  numeric(10, 8),
    longitude                 numeric(11, 8),
    risk_level                varchar(20) NOT NULL DEFAULT 'low',
    is_anomalous              boolean NOT NULL DEFAULT false,
    anomaly_reasons           text[],
    session_duration_seconds  integer,
    total_requests            integer,
    requires_review           boolean NOT NULL DEFAULT false,
    review_status             varchar(20),
    reviewed_by_id            uuid REFERENCES auth_user (id) ON DELETE SET NULL,
    reviewed_at               timestamptz,
    review_notes              text,
    old_value                 jsonb,
    new_value                 jsonb,
    metadata                  jsonb,
    error_message             text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_sessionauditlog_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT audit_log_sessionauditlog_risk CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT audit_log_sessionauditlog_review CHECK (review_status IS NULL OR review_status IN ('confirmed', 'dismissed'))
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_sessionaudit_user_created ON audit_log_sessionauditlog (user_id, created_at DESC);
CREATE INDEX idx_sessionaudit_session ON audit_log_sessionauditlog (session_id);
CREATE INDEX idx_sessionaudit_created ON audit_log_sessionauditlog (created_at DESC);
CREATE INDEX idx_sessionaudit_review ON audit_log_sessionauditlog (created_at DESC) WHERE requires_review AND review_status IS NULL;

CREATE TABLE audit_log_deviceauditlog (
    id                   uuid NOT NULL DEFAULT uuid_generate_v7(),
    user_id              uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    device_id            uuid REFERENCES accounts_device (id) ON DELETE SET NULL,
    session_id           uuid REFERENCES accounts_session (id) ON DELETE SET NULL,
    action               varchar(50) NOT NULL,
    device_fingerprint   varchar(255),
    device_type          varchar(50),
    browser              varchar(100),
    os                   varchar(100),
    risk_score           integer NOT NULL DEFAULT 0,
    previous_risk_score  integer,
    risk_level           varchar(20) NOT NULL DEFAULT 'low',
    is_anomalous         boolean NOT NULL DEFAULT false,
    anomaly_reasons      text[],
    country              varchar(100),
    city                 varchar(100),
    latitude             numeric(10, 8),
    longitude            numeric(11, 8),
    trust_state_change   varchar(100),
    verified_at          timestamptz,
    trusted_at           timestamptz,
    compromised_at       timestamptz,
    verification_method  varchar(50),
    link_duration_seconds integer,
    ip_address           inet,
    previous_ip          inet,
    requires_review      boolean NOT NULL DEFAULT false,
    review_status        varchar(20),
    reviewed_by_id       uuid REFERENCES auth_user (id) ON DELETE SET NULL,
    reviewed_at          timestamptz,
    review_notes         text,
    old_value            jsonb,
    new_value            jsonb,
    metadata             jsonb,
    error_message        text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_deviceauditlog_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT audit_log_deviceauditlog_risk_score CHECK (risk_score BETWEEN 0 AND 100),
    CONSTRAINT audit_log_deviceauditlog_risk CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT audit_log_deviceauditlog_review CHECK (review_status IS NULL OR review_status IN ('confirmed', 'dismissed'))
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_deviceaudit_user_created ON audit_log_deviceauditlog (user_id, created_at DESC);
CREATE INDEX idx_deviceaudit_device ON audit_log_deviceauditlog (device_id);
CREATE INDEX idx_deviceaudit_created ON audit_log_deviceauditlog (created_at DESC);
CREATE INDEX idx_deviceaudit_review ON audit_log_deviceauditlog (created_at DESC) WHERE requires_review AND review_status IS NULL;

CREATE TABLE audit_log_sessiondevicelinkauditlog (
    id                     uuid NOT NULL DEFAULT uuid_generate_v7(),
    user_id                uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    session_id             uuid REFERENCES accounts_session (id) ON DELETE SET NULL,
    device_id              uuid REFERENCES accounts_device (id) ON DELETE SET NULL,
    link_action            varchar(50) NOT NULL,
    previous_device_id     uuid REFERENCES accounts_device (id) ON DELETE SET NULL,
    verified_at            timestamptz,
    trusted_at             timestamptz,
    revoked_at             timestamptz,
    link_duration_seconds  integer,
    ip_address             inet,
    risk_level             varchar(20) NOT NULL DEFAULT 'low',
    is_anomalous           boolean NOT NULL DEFAULT false,
    anomaly_reasons        text[],
    requires_review        boolean NOT NULL DEFAULT false,
    review_status          varchar(20),
    reviewed_by_id         uuid REFERENCES auth_user (id) ON DELETE SET NULL,
    reviewed_at            timestamptz,
    review_notes           text,
    context                jsonb,
    metadata               jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_sessiondevicelinkauditlog_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT audit_log_sessiondevicelinkauditlog_risk CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT audit_log_sessiondevicelinkauditlog_review CHECK (review_status IS NULL OR review_status IN ('confirmed', 'dismissed'))
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_linkaudit_user_created ON audit_log_sessiondevicelinkauditlog (user_id, created_at DESC);
CREATE INDEX idx_linkaudit_session ON audit_log_sessiondevicelinkauditlog (session_id);
CREATE INDEX idx_linkaudit_device ON audit_log_sessiondevicelinkauditlog (device_id);
CREATE INDEX idx_linkaudit_created ON audit_log_sessiondevicelinkauditlog (created_at DESC);
CREATE INDEX idx_linkaudit_review ON audit_log_sessiondevicelinkauditlog (created_at DESC) WHERE requires_review AND review_status IS NULL;

CREATE TABLE audit_log_mfaauditlog (
    id                       uuid NOT NULL DEFAULT uuid_generate_v7(),
    user_id                  uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    device_id                uuid REFERENCES accounts_device (id) ON DELETE SET NULL,
    session_id               uuid REFERENCES accounts_session (id) ON DELETE SET NULL,
    action                   varchar(50) NOT NULL,
    mfa_method               varchar(20),
    primary_method           boolean NOT NULL DEFAULT false,
    challenge_id             uuid,
    verification_attempts    integer,
    max_attempts             integer NOT NULL DEFAULT 3,
    code_length              integer,
    recovery_method          varchar(50),
    request_count_last_hour  integer,
    rate_limit_status        varchar(20) NOT NULL DEFAULT 'ok',
    ip_address               inet,
    risk_level               varchar(20) NOT NULL DEFAULT 'low',
    is_anomalous             boolean NOT NULL DEFAULT false,
    anomaly_reasons          text[],
    requires_review          boolean NOT NULL DEFAULT false,
    review_status            varchar(20),
    reviewed_by_id           uuid REFERENCES auth_user (id) ON DELETE SET NULL,
    reviewed_at              timestamptz,
    review_notes             text,
    old_value                jsonb,
    new_value                jsonb,
    metadata                 jsonb,
    error_message            text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_mfaauditlog_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT audit_log_mfaauditlog_risk CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT audit_log_mfaauditlog_rate_limit CHECK (rate_limit_status IN ('ok', 'warning', 'exceeded')),
    CONSTRAINT audit_log_mfaauditlog_review CHECK (review_status IS NULL OR review_status IN ('confirmed', 'dismissed'))
) PARTITION BY RANGE (created_at);
CREATE INDEX idx_mfaaudit_user_created ON audit_log_mfaauditlog (user_id, created_at DESC);
CREATE INDEX idx_mfaaudit_device ON audit_log_mfaauditlog (device_id);
CREATE INDEX idx_mfaaudit_created ON audit_log_mfaauditlog (created_at DESC);
CREATE INDEX idx_mfaaudit_review ON audit_log_mfaauditlog (created_at DESC) WHERE requires_review AND review_status IS NULL;

CREATE TABLE audit_log_auditlogsummary (
    id                      uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id                 uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    date                    date NOT NULL,
    total_sessions          integer NOT NULL DEFAULT 0,
    total_devices           integer NOT NULL DEFAULT 0,
    total_failed_logins     integer NOT NULL DEFAULT 0,
    total_mfa_challenges    integer NOT NULL DEFAULT 0,
    total_api_calls         integer NOT NULL DEFAULT 0,
    total_events            integer NOT NULL DEFAULT 0,
    low_risk_events         integer NOT NULL DEFAULT 0,
    medium_risk_events      integer NOT NULL DEFAULT 0,
    high_risk_events        integer NOT NULL DEFAULT 0,
    critical_risk_events    integer NOT NULL DEFAULT 0,
    countries_accessed      integer NOT NULL DEFAULT 0,
    unique_ips              integer NOT NULL DEFAULT 0,
    unique_devices          integer NOT NULL DEFAULT 0,
    mfa_enabled_count       integer NOT NULL DEFAULT 0,
    mfa_disabled_count      integer NOT NULL DEFAULT 0,
    backup_codes_generated  integer NOT NULL DEFAULT 0,
    rate_limit_exceeded     integer NOT NULL DEFAULT 0,
    anomalies_detected      integer NOT NULL DEFAULT 0,
    approvals_required      integer NOT NULL DEFAULT 0,
    approvals_completed     integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_auditlogsummary_user_date_key UNIQUE (user_id, date)
);
CREATE INDEX idx_summary_date ON audit_log_auditlogsummary (date);
CREATE INDEX idx_summary_high_risk ON audit_log_auditlogsummary (date, high_risk_events DESC);

CREATE TABLE audit_log_jobrun (
    id             uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    kind           varchar(50) NOT NULL,
    target_date    date,
    status         varchar(20) NOT NULL DEFAULT 'running',
    rows_affected  bigint NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz,
    duration_ms    bigint,
    error          text,
    triggered_by   varchar(50) NOT NULL DEFAULT 'scheduler',
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_jobrun_kind CHECK (kind IN ('audit_summary', 'partitions', 'cleanup', 'outbox', 'data_export')),
    CONSTRAINT audit_log_jobrun_status CHECK (status IN ('running', 'succeeded', 'failed', 'skipped'))
);
CREATE INDEX idx_jobrun_kind_date ON audit_log_jobrun (kind, target_date, started_at DESC);
CREATE INDEX idx_jobrun_started ON audit_log_jobrun (started_at DESC);

CREATE TABLE audit_log_retentionpolicy (
    id             uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    table_name     varchar(63) NOT NULL,
    months_kept    integer NOT NULL,
    updated_by_id  uuid REFERENCES auth_user (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_retentionpolicy_table_key UNIQUE (table_name),
    CONSTRAINT audit_log_retentionpolicy_table CHECK (table_name IN ('audit_log_sessionauditlog', 'audit_log_deviceauditlog', 'audit_log_sessiondevicelinkauditlog', 'audit_log_mfaauditlog')),
    CONSTRAINT audit_log_retentionpolicy_months CHECK (months_kept BETWEEN 1 AND 120)
);

-- Creates the monthly partition of `parent` that holds `month`, unless it exists.
-- Rows that already landed in the DEFAULT partition for that month are moved into the
-- new partition first; PostgreSQL would otherwise refuse the ATTACH.
CREATE FUNCTION audit_log_create_partition(parent text, month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    -- Months are calendar months in UTC, whatever the server's TimeZone.
    lo timestamptz := date_trunc('month', month)::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', month) + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    part text := format('%s_p%s', parent, to_char(month, 'YYYY_MM'));
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, parent);
    IF to_regclass(parent || '_default') IS NOT NULL THEN
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I WHERE created_at >= %L AND created_at < %L RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved', parent || '_default', lo, hi, part);
    END IF;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', parent, part, lo, hi);
    RETURN true;
END
$$;

DO $$
DECLARE
    t text;
    m integer;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_log_sessionauditlog', 'audit_log_deviceauditlog',
                            'audit_log_sessiondevicelinkauditlog', 'audit_log_mfaauditlog'] LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t || '_default', t);
        FOR m IN 0..2 LOOP
            PERFORM audit_log_create_partition(t, (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => m))::date);
        END LOOP;
    END LOOP;
END
$$;
