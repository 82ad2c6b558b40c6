-- Social login (OpenID Connect, seed 003 "Social Providers"): the identities linked to
-- accounts, and the sign-ins in flight. Departures from the seed's table list, which
-- names the connection but gives no SQL (docs/schema.md).

CREATE TABLE accounts_socialconnection (
    id            uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id       uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    -- The configured provider's name (OIDC_PROVIDERS) and its stable id of the person.
    provider      varchar(64) NOT NULL,
    subject       varchar(255) NOT NULL,
    -- The address the provider gave at the last sign-in (informational: accounts are
    -- matched by subject, never by address).
    email         varchar(254),
    status        varchar(16) NOT NULL DEFAULT 'active',
    -- The provider's access token, sealed under the data keys (AES-256-GCM); refresh
    -- tokens are never stored. NULL once revoked.
    access_token  bytea,
    last_sync_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_socialconnection_subject_key UNIQUE (provider, subject),
    CONSTRAINT accounts_socialconnection_provider CHECK (provider ~ '^[a-z0-9_]+$'),
    CONSTRAINT accounts_socialconnection_status CHECK (status IN ('active', 'revoked'))
);
CREATE INDEX idx_socialconnection_user ON accounts_socialconnection (user_id, created_at);

-- One authorization-code flow: what the callback checks (state, by its keyed hash; nonce;
-- our PKCE verifier toward the provider), where it returns (an allowlisted URL), and after
-- the callback the one-time login_code bound to the client's own S256 code_challenge.
-- The state is taken once, the login code once (each by one statement); ten minutes for
-- the flow, sixty seconds for the code; the cleanup job deletes the rest.
CREATE TABLE accounts_oidcflow (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    state_hash             text NOT NULL,
    provider               varchar(64) NOT NULL,
    intent                 varchar(8) NOT NULL,
    -- Linking: the signed-in user and session that started it (the session must still be
    -- live at the callback). Signing in: the account, once the callback has found it.
    user_id                uuid REFERENCES auth_user (id) ON DELETE CASCADE,
    session_id             uuid REFERENCES accounts_session (id) ON DELETE CASCADE,
    nonce                  text NOT NULL,
    -- Sealed under the data keys.
    pkce_verifier          bytea NOT NULL,
    redirect_uri           text NOT NULL,
    code_challenge         varchar(43) NOT NULL,
    state_used_at          timestamptz,
    login_code_hash        text,
    login_code_expires_at  timestamptz,
    connection_id          uuid REFERENCES accounts_socialconnection (id) ON DELETE CASCADE,
    created_at             timestamptz NOT NULL DEFAULT now(),
    expires_at             timestamptz NOT NULL,
    CONSTRAINT accounts_oidcflow_state_key UNIQUE (state_hash),
    CONSTRAINT accounts_oidcflow_login_code_key UNIQUE (login_code_hash),
    CONSTRAINT accounts_oidcflow_intent CHECK (intent IN ('login', 'link')),
    CONSTRAINT accounts_oidcflow_link_owner CHECK (intent = 'login' OR (user_id IS NOT NULL AND session_id IS NOT NULL))
);
CREATE INDEX idx_oidcflow_expires ON accounts_oidcflow (expires_at);
