-- accounts: users, Django-style groups and permissions, profiles, MFA settings, devices,
-- sessions, refresh tokens, one-time tokens, login attempts, API keys, export requests.

CREATE TABLE auth_user (
    id              uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    email           varchar(255) NOT NULL,
    username        varchar(150) NOT NULL,
    password_hash   varchar(255) NOT NULL,
    first_name      varchar(100) NOT NULL DEFAULT '',
    last_name       varchar(100) NOT NULL DEFAULT '',
    is_active       boolean NOT NULL DEFAULT true,
    is_staff        boolean NOT NULL DEFAULT false,
    is_superuser    boolean NOT NULL DEFAULT false,
    email_verified  boolean NOT NULL DEFAULT false,
    last_login      timestamptz,
    date_joined     timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_user_email_key UNIQUE (email),
    CONSTRAINT auth_user_username_key UNIQUE (username),
    CONSTRAINT auth_user_email_lower CHECK (email = lower(email)),
    CONSTRAINT auth_user_username_lower CHECK (username = lower(username))
);
CREATE INDEX idx_auth_user_is_active ON auth_user (is_active);
CREATE INDEX idx_auth_user_date_joined ON auth_user (date_joined);

CREATE TABLE auth_group (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  varchar(150) NOT NULL,
    CONSTRAINT auth_group_name_key UNIQUE (name)
);

CREATE TABLE auth_permission (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       varchar(255) NOT NULL,
    app_label  varchar(100) NOT NULL,
    codename   varchar(100) NOT NULL,
    CONSTRAINT auth_permission_app_codename_key UNIQUE (app_label, codename)
);

CREATE TABLE auth_group_permissions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id       bigint NOT NULL REFERENCES auth_group (id) ON DELETE CASCADE,
    permission_id  bigint NOT NULL REFERENCES auth_permission (id) ON DELETE CASCADE,
    CONSTRAINT auth_group_permissions_key UNIQUE (group_id, permission_id)
);
CREATE INDEX idx_group_permissions_permission ON auth_group_permissions (permission_id);

CREATE TABLE auth_user_groups (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id   uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    group_id  bigint NOT NULL REFERENCES auth_group (id) ON DELETE CASCADE,
    CONSTRAINT auth_user_groups_key UNIQUE (user_id, group_id)
);
CREATE INDEX idx_user_groups_group ON auth_user_groups (group_id);

CREATE TABLE auth_user_user_permissions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    permission_id  bigint NOT NULL REFERENCES auth_permission (id) ON DELETE CASCADE,
    CONSTRAINT auth_user_user_permissions_key UNIQUE (user_id, permission_id)
);
CREATE INDEX idx_user_permissions_permission ON auth_user_user_permissions (permission_id);

-- The permissions the admin routes check (API.md "Administration"), Django-named.
INSERT INTO auth_permission (name, app_label, codename) VALUES
    ('Can view user', 'accounts', 'view_user'),
    ('Can change user', 'accounts', 'change_user'),
    ('Can approve MFA change', 'accounts', 'approve_mfachangelog'),
    ('Can view audit log', 'audit_log', 'view_auditlog'),
    ('Can review audit log', 'audit_log', 'review_auditlog'),
    ('Can view audit log summary', 'audit_log', 'view_auditlogsummary'),
    ('Can run audit log summary', 'audit_log', 'run_auditlogsummary'),
    ('Can view job run', 'audit_log', 'view_jobrun'),
    ('Can view retention policy', 'audit_log', 'view_retentionpolicy'),
    ('Can change retention policy', 'audit_log', 'change_retentionpolicy');

CREATE TABLE accounts_profile (
    id                    uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id               uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    date_of_birth         date,
    phone_number          varchar(20),
    address               text,
    city                  varchar(100),
    state                 varchar(100),
    country               varchar(100),
    postal_code           varchar(20),
    timezone              varchar(63) NOT NULL DEFAULT 'UTC',
    language              varchar(35) NOT NULL DEFAULT 'en',
    preferred_mfa_method  varchar(20),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_profile_user_key UNIQUE (user_id),
    CONSTRAINT accounts_profile_phone_e164 CHECK (phone_number IS NULL OR phone_number ~ '^\+[1-9][0-9]{1,14}$'),
    CONSTRAINT accounts_profile_mfa_method CHECK (preferred_mfa_method IS NULL OR preferred_mfa_method IN ('totp', 'email', 'sms'))
);
CREATE INDEX idx_profile_country ON accounts_profile (country);

CREATE TABLE accounts_mfasettings (
    id                     uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id                uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    primary_method         varchar(20) NOT NULL DEFAULT 'totp',
    is_enabled             boolean NOT NULL DEFAULT false,
    grace_period_days      integer NOT NULL DEFAULT 0,
    code_length            integer NOT NULL DEFAULT 6,
    code_validity_seconds  integer NOT NULL DEFAULT 300,
    enforce_for_admin      boolean NOT NULL DEFAULT true,
    enforce_for_api        boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_mfasettings_user_key UNIQUE (user_id),
    CONSTRAINT accounts_mfasettings_primary_method CHECK (primary_method IN ('totp', 'email', 'sms')),
    CONSTRAINT accounts_mfasettings_code_length CHECK (code_length BETWEEN 6 AND 10),
    CONSTRAINT accounts_mfasettings_validity CHECK (code_validity_seconds BETWEEN 30 AND 3600),
    CONSTRAINT accounts_mfasettings_grace CHECK (grace_period_days >= 0)
);
CREATE INDEX idx_mfasettings_enabled ON accounts_mfasettings (is_enabled);

CREATE TABLE accounts_mfamethodpreference (
    id                   uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id              uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    mfa_method           varchar(20) NOT NULL,
    is_enabled           boolean NOT NULL DEFAULT true,
    rate_limit_per_hour  integer NOT NULL DEFAULT 10,
    max_attempts         integer NOT NULL DEFAULT 3,
    lockout_minutes      integer NOT NULL DEFAULT 30,
    setup_completed      boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_mfamethodpreference_user_method_key UNIQUE (user_id, mfa_method),
    CONSTRAINT accounts_mfamethodpreference_method CHECK (mfa_method IN ('totp', 'backup_code', 'email', 'sms')),
    CONSTRAINT accounts_mfamethodpreference_limits CHECK (rate_limit_per_hour > 0 AND max_attempts > 0 AND lockout_minutes >= 0)
);
CREATE INDEX idx_mfapref_method ON accounts_mfamethodpreference (mfa_method);

CREATE TABLE accounts_mfachangelog (
    id                 uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id            uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    action             varchar(50) NOT NULL,
    mfa_method         varchar(20),
    old_value          jsonb,
    new_value          jsonb,
    change_reason      varchar(255),
    approval_required  boolean NOT NULL DEFAULT false,
    approval_status    varchar(20) NOT NULL DEFAULT 'not_required',
    approved_by_id     uuid REFERENCES auth_user (id) ON DELETE SET NULL,
    approved_at        timestamptz,
    requested_at       timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_mfachangelog_status CHECK (approval_status IN ('not_required', 'pending', 'approved', 'rejected'))
);
CREATE INDEX idx_mfachangelog_user ON accounts_mfachangelog (user_id, created_at DESC);
CREATE INDEX idx_mfachangelog_pending ON accounts_mfachangelog (requested_at) WHERE approval_status = 'pending';

CREATE TABLE accounts_passwordhistory (
    id             uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id        uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    password_hash  varchar(255) NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     varchar(100),
    reason         varchar(100)
);
CREATE INDEX idx_pwdhist_user_changed ON accounts_passwordhistory (user_id, changed_at DESC);

CREATE TABLE accounts_device (
    id                    uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id               uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    device_name           varchar(255),
    device_type           varchar(50),
    os                    varchar(100),
    browser               varchar(100),
    browser_version       varchar(50),
    fingerprint_hash      varchar(255) NOT NULL,
    ip_address            inet,
    user_agent            text,
    is_verified           boolean NOT NULL DEFAULT false,
    is_trusted            boolean NOT NULL DEFAULT false,
    last_used_at          timestamptz,
    latitude              numeric(10, 8),
    longitude             numeric(11, 8),
    trust_expires_at      timestamptz,
    is_compromised        boolean NOT NULL DEFAULT false,
    risk_score            integer NOT NULL DEFAULT 0,
    last_risk_assessment  timestamptz,
    can_skip_mfa          boolean NOT NULL DEFAULT false,
    mfa_skip_until        timestamptz,
    security_notes        text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- Unique per user, not globally: two users on one shared machine are two devices.
    CONSTRAINT accounts_device_user_fingerprint_key UNIQUE (user_id, fingerprint_hash),
    CONSTRAINT accounts_device_risk_score CHECK (risk_score BETWEEN 0 AND 100),
    CONSTRAINT accounts_device_latitude CHECK (latitude IS NULL OR latitude BETWEEN -90 AND 90),
    CONSTRAINT accounts_device_longitude CHECK (longitude IS NULL OR longitude BETWEEN -180 AND 180)
);
CREATE INDEX idx_device_risk_score ON accounts_device (risk_score DESC);

CREATE TABLE accounts_trusteddevice (
    id                uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id           uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    device_id         uuid NOT NULL REFERENCES accounts_device (id) ON DELETE CASCADE,
    is_trusted        boolean NOT NULL DEFAULT true,
    trusted_at        timestamptz NOT NULL DEFAULT now(),
    trust_expires_at  timestamptz,
    last_used_at      timestamptz,
    can_skip_mfa      boolean NOT NULL DEFAULT false,
    mfa_skip_until    timestamptz,
    revoked_at        timestamptz,
    is_deleted        boolean NOT NULL DEFAULT false,
    deleted_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_trusteddevice_user ON accounts_trusteddevice (user_id);
-- At most one live trust grant per device.
CREATE UNIQUE INDEX accounts_trusteddevice_live_key ON accounts_trusteddevice (device_id)
    WHERE is_trusted AND NOT is_deleted;

CREATE TABLE accounts_session (
    id                    uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id               uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    device_id             uuid REFERENCES accounts_device (id) ON DELETE SET NULL,
    access_jti            varchar(500) NOT NULL,
    refresh_jti           varchar(500) NOT NULL,
    ip_address            inet,
    user_agent            text,
    status                varchar(20) NOT NULL DEFAULT 'active',
    expires_at            timestamptz NOT NULL,
    session_type          varchar(20) NOT NULL DEFAULT 'web',
    country               varchar(100),
    city                  varchar(100),
    aal                   smallint NOT NULL DEFAULT 1,
    amr                   text[] NOT NULL DEFAULT '{pwd}',
    mfa_verified          boolean NOT NULL DEFAULT false,
    mfa_verified_at       timestamptz,
    mfa_method_used       varchar(20),
    is_suspicious         boolean NOT NULL DEFAULT false,
    suspicious_reason     text,
    requires_mfa_recheck  boolean NOT NULL DEFAULT false,
    total_requests        integer NOT NULL DEFAULT 0,
    total_api_calls       integer NOT NULL DEFAULT 0,
    revoked_at            timestamptz,
    revoked_reason        varchar(100),
    last_seen_at          timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_session_access_jti_key UNIQUE (access_jti),
    CONSTRAINT accounts_session_refresh_jti_key UNIQUE (refresh_jti),
    CONSTRAINT accounts_session_status CHECK (status IN ('active', 'revoked', 'expired')),
    CONSTRAINT accounts_session_type CHECK (session_type IN ('web', 'mobile', 'api', 'admin')),
    CONSTRAINT accounts_session_aal CHECK (aal IN (1, 2))
);
CREATE INDEX idx_session_user_status ON accounts_session (user_id, status);
CREATE INDEX idx_session_device ON accounts_session (device_id);
CREATE INDEX idx_session_expires_at ON accounts_session (expires_at);
CREATE INDEX idx_session_created_at ON accounts_session (created_at);

CREATE TABLE accounts_refreshtokenrecord (
    id                 uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id            uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    session_id         uuid NOT NULL REFERENCES accounts_session (id) ON DELETE CASCADE,
    -- SHA-256 of the opaque refresh token; the token itself is never stored.
    jti                varchar(500) NOT NULL,
    family_id          uuid NOT NULL,
    parent_jti         varchar(500),
    is_valid           boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    rotated_at         timestamptz,
    revoked_at         timestamptz,
    revocation_reason  varchar(255),
    CONSTRAINT accounts_refreshtokenrecord_jti_key UNIQUE (jti),
    -- A token has at most one child: rotation can never fork a family.
    CONSTRAINT accounts_refreshtokenrecord_parent_key UNIQUE (parent_jti)
);
CREATE INDEX idx_refresh_user ON accounts_refreshtokenrecord (user_id);
CREATE INDEX idx_refresh_session ON accounts_refreshtokenrecord (session_id);
CREATE INDEX idx_refresh_family ON accounts_refreshtokenrecord (family_id);
CREATE INDEX idx_refresh_expires ON accounts_refreshtokenrecord (expires_at);

CREATE TABLE accounts_auditlog (
    id          uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    -- SET NULL, not CASCADE: the record of an account's deletion outlives the account.
    user_id     uuid REFERENCES auth_user (id) ON DELETE SET NULL,
    action      varchar(100) NOT NULL,
    details     jsonb,
    ip_address  inet,
    user_agent  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_auditlog_user_created ON accounts_auditlog (user_id, created_at DESC);
CREATE INDEX idx_auditlog_created ON accounts_auditlog (created_at);

CREATE TABLE accounts_onetimetoken (
    id          uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id     uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    purpose     varchar(30) NOT NULL,
    token_hash  varchar(255) NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    ip_address  inet,
    user_agent  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_onetimetoken_hash_key UNIQUE (token_hash),
    CONSTRAINT accounts_onetimetoken_purpose CHECK (purpose IN ('email_verification', 'password_reset'))
);
CREATE INDEX idx_onetimetoken_user_purpose ON accounts_onetimetoken (user_id, purpose);
CREATE INDEX idx_onetimetoken_expires ON accounts_onetimetoken (expires_at);

CREATE TABLE accounts_loginattempt (
    id              uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    -- The normalised login identifier, whether or not an account has it.
    identifier      varchar(255) NOT NULL,
    user_id         uuid REFERENCES auth_user (id) ON DELETE CASCADE,
    ip_address      inet,
    user_agent      text,
    -- 'pending' while the password is being checked (counted against the identifier so
    -- parallel guesses cannot exceed the limit), then 'failure' or 'success'.
    outcome         varchar(20) NOT NULL,
    failure_reason  varchar(50),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_loginattempt_outcome CHECK (outcome IN ('pending', 'failure', 'success', 'unlock'))
);
CREATE INDEX idx_loginattempt_identifier ON accounts_loginattempt (identifier, created_at DESC);
-- The latest success or unlock of an identifier: where its failure count restarts.
CREATE INDEX idx_loginattempt_reset ON accounts_loginattempt (identifier, created_at DESC)
    WHERE outcome IN ('success', 'unlock');
CREATE INDEX idx_loginattempt_ip ON accounts_loginattempt (ip_address, created_at DESC) WHERE outcome = 'failure';
CREATE INDEX idx_loginattempt_created ON accounts_loginattempt (created_at);

CREATE TABLE accounts_apikey (
    id            uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id       uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    name          varchar(100) NOT NULL,
    -- The public lookup part of the key; the secret part is stored only as a hash.
    prefix        varchar(32) NOT NULL,
    key_hash      varchar(255) NOT NULL,
    scopes        text[] NOT NULL DEFAULT '{}',
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_apikey_prefix_key UNIQUE (prefix),
    CONSTRAINT accounts_apikey_scopes CHECK (scopes <@ ARRAY['me:read', 'audit:read']::text[])
);
CREATE INDEX idx_apikey_user ON accounts_apikey (user_id);

CREATE TABLE accounts_dataexportrequest (
    id             uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id        uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    status         varchar(20) NOT NULL DEFAULT 'pending',
    file_path      varchar(500),
    file_size      bigint,
    error_message  text,
    started_at     timestamptz,
    completed_at   timestamptz,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_dataexportrequest_status CHECK (status IN ('pending', 'processing', 'complete', 'failed', 'expired'))
);
CREATE INDEX idx_export_user ON accounts_dataexportrequest (user_id, created_at DESC);
CREATE INDEX idx_export_pending ON accounts_dataexportrequest (created_at) WHERE status = 'pending';
