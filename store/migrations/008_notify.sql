-- 008: the notification outbox (notify/pg_outbox.py): alert changes held for quiet hours or a daily digest, and
-- every delivery outcome, so a failure stays visible and a restart neither loses nor repeats a notification.

CREATE TABLE notify_held (
    recipient    text NOT NULL,
    message_id   text NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('digest', 'quiet_hours')),
    release_at   timestamptz NOT NULL,
    held_at      timestamptz NOT NULL,
    event_time   timestamptz NOT NULL,
    alert        jsonb NOT NULL,
    released_at  timestamptz,
    PRIMARY KEY (recipient, message_id)
);
CREATE INDEX notify_held_due_idx ON notify_held (release_at) WHERE released_at IS NULL;

CREATE TABLE notify_deliveries (
    id               bigserial PRIMARY KEY,
    notification_id  text NOT NULL,
    kind             text NOT NULL,
    recipient        text NOT NULL,
    channel          text NOT NULL,
    address          text NOT NULL,
    ok               boolean NOT NULL,
    attempts         integer NOT NULL,
    error            text NOT NULL,
    detail           text NOT NULL,
    at               timestamptz NOT NULL,
    alert_ids        text[] NOT NULL,
    notification     jsonb            -- kept on failure, so the message can be re-sent
);
CREATE INDEX notify_deliveries_ok_idx ON notify_deliveries (notification_id, channel, address) WHERE ok;
