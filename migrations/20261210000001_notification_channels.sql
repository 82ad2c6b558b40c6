-- Notifications that do what the user set: the in-app channel, push through a webhook
-- provider, and digests. Departures from the seed (docs/schema.md): the seed stores
-- `in_app_enabled`, `push_enabled` and `digest_frequency` but has nowhere to put what they
-- switch on.

-- The in-app inbox: a message as the user reads it in an app, read or not.
CREATE TABLE notifications_inappnotification (
    id                 uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id            uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    notification_type  varchar(50) NOT NULL,
    title              varchar(255) NOT NULL,
    body               text NOT NULL,
    priority           varchar(20) NOT NULL DEFAULT 'medium',
    read_at            timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_inappnotification_priority CHECK (priority IN ('low', 'medium', 'high', 'critical'))
);
CREATE INDEX idx_inapp_user_created ON notifications_inappnotification (user_id, created_at DESC);
CREATE INDEX idx_inapp_unread ON notifications_inappnotification (user_id) WHERE read_at IS NULL;

-- The push outbox (PUSH_PROVIDER): claimed and retried like the SMS outbox.
CREATE TABLE notifications_pushnotification (
    id                 uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
    user_id            uuid NOT NULL REFERENCES auth_user (id) ON DELETE CASCADE,
    notification_type  varchar(50) NOT NULL,
    title              varchar(255) NOT NULL,
    body               text NOT NULL,
    priority           varchar(20) NOT NULL DEFAULT 'medium',
    status             varchar(20) NOT NULL DEFAULT 'pending',
    retry_count        integer NOT NULL DEFAULT 0,
    max_retries        integer NOT NULL DEFAULT 3,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    claimed_until      timestamptz,
    sent_at            timestamptz,
    error_message      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_pushnotification_status CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    CONSTRAINT notifications_pushnotification_priority CHECK (priority IN ('low', 'medium', 'high', 'critical'))
);
CREATE INDEX idx_push_due ON notifications_pushnotification (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX idx_push_user_created ON notifications_pushnotification (user_id, created_at DESC);

-- Digests: a non-security email of a digest user waits `held` until the digest job sends
-- one email for all of them (`digested`, pointing at that email), in one transaction.
ALTER TABLE notifications_emailnotification
    DROP CONSTRAINT notifications_emailnotification_status,
    ADD CONSTRAINT notifications_emailnotification_status
        CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'opened', 'failed', 'cancelled', 'held', 'digested')),
    ADD COLUMN digest_id uuid REFERENCES notifications_emailnotification (id) ON DELETE SET NULL;
CREATE INDEX idx_email_held ON notifications_emailnotification (user_id) WHERE status = 'held';

ALTER TABLE notifications_notificationpreference ADD COLUMN last_digest_at timestamptz;

ALTER TABLE notifications_notificationlog
    DROP CONSTRAINT notifications_notificationlog_decision,
    ADD CONSTRAINT notifications_notificationlog_decision
        CHECK (decision IN ('queued', 'deferred', 'held', 'suppressed', 'sent', 'failed'));
