-- otp: TOTP devices, backup codes, emailed/texted codes, MFA challenges, recovery.

CREATE TABLE otp_mfachallenge (
    id               uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id          uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    session_id       uuid REFERENCES accounts_session (id) ON DELETE SET NULL,
    device_id        uuid REFERENCES accounts_device (id) ON DELETE SET NULL,
    -- The id clients see: random (v4), so it reveals nothing about when it was made.
    challenge_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    challenge_type   varchar(20) NOT NULL DEFAULT 'login',
    expires_at       timestamptz NOT NULL,
    verified_at      timestamptz,
    failed_attempts  integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    risk_level       varchar(20) NOT NULL DEFAULT 'medium',
    metadata         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_mfachallenge_challenge_id_key UNIQUE (challenge_id),
    CONSTRAINT otp_mfachallenge_type CHECK (challenge_type IN ('login', 'step_up', 'admin')),
    CONSTRAINT otp_mfachallenge_risk CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT otp_mfachallenge_attempts CHECK (failed_attempts >= 0 AND max_attempts > 0)
);
CREATE INDEX idx_mfachallenge_user ON otp_mfachallenge (user_id);
CREATE INDEX idx_mfachallenge_session ON otp_mfachallenge (session_id);
CREATE INDEX idx_mfachallenge_expires ON otp_mfachallenge (expires_at);

CREATE TABLE otp_otp (
    id             uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id        uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    challenge_id   uuid REFERENCES otp_mfachallenge (id) ON DELETE CASCADE,
    method         varchar(20) NOT NULL,
    -- HMAC-SHA-256 of the code, keyed by the server; the code is never stored.
    code_hash      varchar(255) NOT NULL,
    purpose        varchar(20) NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    used_by_ip     inet,
    attempt_count  integer NOT NULL DEFAULT 0,
    max_attempts   integer NOT NULL DEFAULT 3,
    is_valid       boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_otp_method CHECK (method IN ('email', 'sms')),
    CONSTRAINT otp_otp_purpose CHECK (purpose IN ('login', 'setup', 'step_up')),
    CONSTRAINT otp_otp_attempts CHECK (attempt_count >= 0 AND max_attempts > 0)
);
CREATE INDEX idx_otp_user_method ON otp_otp (user_id, method, created_at DESC);
CREATE INDEX idx_otp_challenge ON otp_otp (challenge_id);
CREATE INDEX idx_otp_expires_at ON otp_otp (expires_at) WHERE is_valid;

CREATE TABLE otp_totpdevice (
    id                         uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id                    uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    -- AES-256-GCM (nonce || ciphertext) of the shared secret, key from DATA_ENCRYPTION_KEY.
    secret_encrypted           bytea NOT NULL,
    -- The last accepted 30 s step: a code is accepted at most once (replay refused).
    last_used_step             bigint,
    backup_codes_generated_at  timestamptz,
    is_verified                boolean NOT NULL DEFAULT false,
    verified_at                timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_totpdevice_user_key UNIQUE (user_id)
);

CREATE TABLE otp_backupcode (
    id          uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id     uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    code_hash   varchar(255) NOT NULL,
    used_at     timestamptz,
    used_by_ip  inet,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_backupcode_user_hash_key UNIQUE (user_id, code_hash)
);
CREATE INDEX idx_backup_unused ON otp_backupcode (user_id) WHERE used_at IS NULL;

CREATE TABLE otp_emailmfamethod (
    id                uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id           uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    email             varchar(255) NOT NULL,
    is_verified       boolean NOT NULL DEFAULT false,
    verified_at       timestamptz,
    otp_sent_count    integer NOT NULL DEFAULT 0,
    last_otp_sent_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_emailmfamethod_user_key UNIQUE (user_id)
);

CREATE TABLE otp_smsmfamethod (
    id                uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id           uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    phone_number      varchar(20) NOT NULL,
    is_verified       boolean NOT NULL DEFAULT false,
    verified_at       timestamptz,
    otp_sent_count    integer NOT NULL DEFAULT 0,
    last_otp_sent_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_smsmfamethod_user_key UNIQUE (user_id),
    CONSTRAINT otp_smsmfamethod_phone_e164 CHECK (phone_number ~ '^\+[1-9][0-9]{1,14}$')
);

CREATE TABLE otp_mfarecovery (
    id               uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id          uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    recovery_method  varchar(50) NOT NULL,
    used_at          timestamptz,
    used_by_ip       inet,
    is_successful    boolean,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_mfarecovery_method CHECK (recovery_method IN ('backup_code', 'email', 'admin_reset'))
);
CREATE INDEX idx_recovery_user ON otp_mfarecovery (user_id, created_at DESC);
