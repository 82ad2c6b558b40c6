-- notifications: the email/SMS outbox, MFA code deliveries, preferences, quiet hours,
-- blocklist, consent and the log of every delivery decision.

CREATE TABLE notifications_emailnotification (
    id                   uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id              uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    to_email             varchar(255) NOT NULL,
    subject              varchar(255) NOT NULL,
    email_type           varchar(50) NOT NULL,
    template_name        varchar(100) NOT NULL,
    body                 text NOT NULL,
    html_body            text,
    priority             varchar(20) NOT NULL DEFAULT 'medium',
    status               varchar(20) NOT NULL DEFAULT 'pending',
    -- Outbox bookkeeping: when the row is next due, and who claimed it until when.
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    claimed_until        timestamptz,
    sent_at              timestamptz,
    opened_at            timestamptz,
    clicked_at           timestamptz,
    click_url            varchar(500),
    error_message        text,
    retry_count          integer NOT NULL DEFAULT 0,
    max_retries          integer NOT NULL DEFAULT 3,
    provider             varchar(50),
    provider_message_id  varchar(255),
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_emailnotification_status CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'opened', 'failed', 'cancelled')),
    CONSTRAINT notifications_emailnotification_priority CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT notifications_emailnotification_retries CHECK (retry_count >= 0 AND max_retries >= 0)
);
CREATE INDEX idx_email_user_created ON notifications_emailnotification (user_id, created_at DESC);
CREATE INDEX idx_email_due ON notifications_emailnotification (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX idx_email_type ON notifications_emailnotification (email_type);

CREATE TABLE notifications_smsnotification (
    id                   uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id              uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    phone_number         varchar(20) NOT NULL,
    message              text NOT NULL,
    sms_type             varchar(50) NOT NULL,
    priority             varchar(20) NOT NULL DEFAULT 'medium',
    status               varchar(20) NOT NULL DEFAULT 'pending',
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    claimed_until        timestamptz,
    sent_at              timestamptz,
    delivered_at         timestamptz,
    error_message        text,
    error_code           varchar(50),
    retry_count          integer NOT NULL DEFAULT 0,
    max_retries          integer NOT NULL DEFAULT 3,
    cost                 numeric(10, 4),
    provider             varchar(50),
    provider_message_id  varchar(255),
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_smsnotification_status CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed')),
    CONSTRAINT notifications_smsnotification_priority CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT notifications_smsnotification_phone_e164 CHECK (phone_number ~ '^\+[1-9][0-9]{1,14}$')
);
CREATE INDEX idx_sms_user_created ON notifications_smsnotification (user_id, created_at DESC);
CREATE INDEX idx_sms_due ON notifications_smsnotification (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX idx_sms_type ON notifications_smsnotification (sms_type);

CREATE TABLE notifications_notificationpreference (
    id                   uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id              uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    email_otp            boolean NOT NULL DEFAULT true,
    email_alerts         boolean NOT NULL DEFAULT true,
    email_marketing      boolean NOT NULL DEFAULT false,
    sms_otp              boolean NOT NULL DEFAULT true,
    sms_alerts           boolean NOT NULL DEFAULT true,
    push_enabled         boolean NOT NULL DEFAULT false,
    quiet_hours_enabled  boolean NOT NULL DEFAULT false,
    quiet_start          time,
    quiet_end            time,
    digest_frequency     varchar(20) NOT NULL DEFAULT 'real-time',
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_notificationpreference_user_key UNIQUE (user_id),
    CONSTRAINT notifications_notificationpreference_digest CHECK (digest_frequency IN ('real-time', 'hourly', 'daily', 'weekly'))
);

CREATE TABLE notifications_detailednotificationpreference (
    id                   uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id              uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    notification_type    varchar(50) NOT NULL,
    email_enabled        boolean NOT NULL DEFAULT true,
    sms_enabled          boolean NOT NULL DEFAULT true,
    in_app_enabled       boolean NOT NULL DEFAULT true,
    push_enabled         boolean NOT NULL DEFAULT true,
    priority             varchar(20) NOT NULL DEFAULT 'medium',
    respect_quiet_hours  boolean NOT NULL DEFAULT true,
    delay_minutes        integer NOT NULL DEFAULT 0,
    max_per_day          integer NOT NULL DEFAULT 100,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_detailednotificationpreference_user_type_key UNIQUE (user_id, notification_type),
    CONSTRAINT notifications_detailednotificationpreference_priority CHECK (priority IN ('low', 'medium', 'high', 'critical')),
    CONSTRAINT notifications_detailednotificationpreference_limits CHECK (delay_minutes BETWEEN 0 AND 1440 AND max_per_day BETWEEN 0 AND 10000)
);
CREATE INDEX idx_detailed_type ON notifications_detailednotificationpreference (notification_type);

CREATE TABLE notifications_quiethours (
    id                   uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id              uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    day_of_week          integer NOT NULL,
    start_time           time NOT NULL,
    end_time             time NOT NULL,
    is_enabled           boolean NOT NULL DEFAULT true,
    allow_critical_only  boolean NOT NULL DEFAULT true,
    timezone             varchar(63) NOT NULL DEFAULT 'UTC',
    description          varchar(100),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_quiethours_user_day_start_key UNIQUE (user_id, day_of_week, start_time),
    CONSTRAINT notifications_quiethours_day CHECK (day_of_week BETWEEN 0 AND 6),
    CONSTRAINT notifications_quiethours_window CHECK (start_time <> end_time)
);

CREATE TABLE notifications_notificationblocklist (
    id             uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id        uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    block_type     varchar(50) NOT NULL,
    blocked_value  varchar(255) NOT NULL,
    is_active      boolean NOT NULL DEFAULT true,
    blocked_at     timestamptz NOT NULL DEFAULT now(),
    unblocked_at   timestamptz,
    reason         varchar(255),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_notificationblocklist_user_value_key UNIQUE (user_id, block_type, blocked_value),
    CONSTRAINT notifications_notificationblocklist_type CHECK (block_type IN ('notification_type', 'channel', 'sender'))
);

CREATE TABLE notifications_notificationconsent (
    id            uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id       uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    consent_type  varchar(50) NOT NULL,
    is_consented  boolean NOT NULL DEFAULT false,
    consented_at  timestamptz,
    withdrawn_at  timestamptz,
    source        varchar(50),
    ip_address    inet,
    user_agent    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_notificationconsent_user_type_key UNIQUE (user_id, consent_type),
    CONSTRAINT notifications_notificationconsent_type CHECK (consent_type IN ('marketing', 'analytics', 'third_party'))
);

CREATE TABLE notifications_mfanotification (
    id                     uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id                uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    email_notification_id  uuid REFERENCES notifications_emailnotification (id) ON DELETE SET NULL,
    sms_notification_id    uuid REFERENCES notifications_smsnotification (id) ON DELETE SET NULL,
    mfa_type               varchar(50) NOT NULL,
    delivery_method        varchar(20) NOT NULL,
    recipient              varchar(255) NOT NULL,
    subject                varchar(255),
    -- The code itself lives only in the outgoing message until it is sent.
    otp_code_hash          varchar(255) NOT NULL,
    code_length            integer NOT NULL DEFAULT 6,
    is_sent                boolean NOT NULL DEFAULT false,
    sent_at                timestamptz,
    is_delivered           boolean NOT NULL DEFAULT false,
    delivered_at           timestamptz,
    is_verified            boolean NOT NULL DEFAULT false,
    verified_at            timestamptz,
    verification_attempts  integer NOT NULL DEFAULT 0,
    max_attempts           integer NOT NULL DEFAULT 3,
    expires_at             timestamptz NOT NULL,
    error_message          text,
    retry_count            integer NOT NULL DEFAULT 0,
    provider               varchar(50),
    provider_message_id    varchar(255),
    created_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_mfanotification_method CHECK (delivery_method IN ('email', 'sms'))
);
CREATE INDEX idx_mfanotif_user ON notifications_mfanotification (user_id, created_at DESC);
CREATE INDEX idx_mfanotif_email ON notifications_mfanotification (email_notification_id);
CREATE INDEX idx_mfanotif_sms ON notifications_mfanotification (sms_notification_id);

CREATE TABLE notifications_notificationlog (
    id                 uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id            uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    notification_type  varchar(50) NOT NULL,
    channel            varchar(50) NOT NULL,
    recipient          varchar(255),
    decision           varchar(20) NOT NULL,
    reason             varchar(100),
    delivered          boolean NOT NULL DEFAULT false,
    metadata           jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_notificationlog_decision CHECK (decision IN ('queued', 'deferred', 'suppressed', 'sent', 'failed'))
);
CREATE INDEX idx_notiflog_user_created ON notifications_notificationlog (user_id, created_at DESC);
CREATE INDEX idx_notiflog_type_day ON notifications_notificationlog (user_id, notification_type, created_at) WHERE decision IN ('queued', 'deferred');
