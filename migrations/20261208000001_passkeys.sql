-- Passkeys (WebAuthn): one more otp method. Two tables the seed design predates
-- (docs/schema.md lists them as departures): the credentials, and the ceremonies in flight.

CREATE TABLE otp_webauthncredential (
    id               uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id          uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    -- The authenticator's credential id: how an assertion names its key.
    credential_id    bytea NOT NULL,
    -- The COSE public key (CBOR), as the authenticator gave it at registration.
    public_key       bytea NOT NULL,
    -- The last signature counter seen; 0 for synced passkeys, which keep none.
    sign_count       bigint NOT NULL DEFAULT 0,
    backup_eligible  boolean NOT NULL,
    backup_state     boolean NOT NULL,
    transports       text[] NOT NULL DEFAULT '{}',
    aaguid           uuid,
    name             varchar(64) NOT NULL,
    -- webauthn-rs's record of the credential (the key, counter and policy it verifies
    -- against); the columns above are what people and queries read.
    passkey          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz,
    CONSTRAINT otp_webauthncredential_credential_id_key UNIQUE (credential_id),
    CONSTRAINT otp_webauthncredential_sign_count CHECK (sign_count >= 0),
    CONSTRAINT otp_webauthncredential_name CHECK (length(btrim(name)) > 0)
);
CREATE INDEX idx_webauthncredential_user ON otp_webauthncredential (user_id, created_at);

-- A registration or an assertion between its options and its answer: the library's state,
-- kept here and never in the client, single use (deleted by the answer that takes it) and
-- five minutes long (the cleanup job deletes the rest).
CREATE TABLE otp_webauthnceremony (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind          varchar(20) NOT NULL,
    -- Registration: the user and the session that started it, and no one else, finish it.
    user_id       uuid REFERENCES auth_user (id) ON DELETE CASCADE,
    session_id    uuid REFERENCES accounts_session (id) ON DELETE CASCADE,
    -- A second factor: the MFA challenge it answers (one ceremony per challenge).
    challenge_id  uuid REFERENCES otp_mfachallenge (id) ON DELETE CASCADE,
    state         jsonb NOT NULL,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT otp_webauthnceremony_kind CHECK (kind IN ('register', 'mfa', 'login')),
    CONSTRAINT otp_webauthnceremony_owner CHECK (
        (kind = 'register' AND user_id IS NOT NULL AND session_id IS NOT NULL AND challenge_id IS NULL)
        OR (kind = 'mfa' AND user_id IS NOT NULL AND challenge_id IS NOT NULL)
        OR (kind = 'login' AND user_id IS NULL AND challenge_id IS NULL)),
    CONSTRAINT otp_webauthnceremony_challenge_key UNIQUE (challenge_id)
);
CREATE INDEX idx_webauthnceremony_expires ON otp_webauthnceremony (expires_at);
CREATE INDEX idx_webauthnceremony_user ON otp_webauthnceremony (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX idx_webauthnceremony_session ON otp_webauthnceremony (session_id) WHERE session_id IS NOT NULL;

-- The method names gain `passkey`.
ALTER TABLE accounts_mfasettings DROP CONSTRAINT accounts_mfasettings_primary_method,
    ADD CONSTRAINT accounts_mfasettings_primary_method CHECK (primary_method IN ('totp', 'email', 'sms', 'passkey'));
ALTER TABLE accounts_mfamethodpreference DROP CONSTRAINT accounts_mfamethodpreference_method,
    ADD CONSTRAINT accounts_mfamethodpreference_method
        CHECK (mfa_method IN ('totp', 'backup_code', 'email', 'sms', 'passkey'));
ALTER TABLE accounts_profile DROP CONSTRAINT accounts_profile_mfa_method,
    ADD CONSTRAINT accounts_profile_mfa_method
        CHECK (preferred_mfa_method IS NULL OR preferred_mfa_method IN ('totp', 'email', 'sms', 'passkey'));
