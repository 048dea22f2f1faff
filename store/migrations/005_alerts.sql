-- 005: alert rules, alerts with their lifecycle and history, and the evaluator's carry state.
--
-- Rules are validated by engine/alerts.py (AlertRule) before they are written here; `definition` is the rule as
-- that model serialises it (aliases such as raise/for, durations in seconds). Rules come from the shipped YAML file
-- (origin 'file', re-synced at start-up) or the API (origin 'api', which the file then leaves alone).

CREATE TABLE alert_rules (
    key         text PRIMARY KEY CHECK (key ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    definition  jsonb NOT NULL,
    origin      text NOT NULL CHECK (origin IN ('file', 'api')),
    version     integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per alert. Event times (started_at, raised_at, cleared_at) are the readings' times; detected_at and the
-- acknowledgement/closing times are wall-clock times. rule_key carries no foreign key: an alert outlives its rule.
CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    rule_key        text NOT NULL,
    dedup_key       text NOT NULL,
    device_id       integer REFERENCES devices(id),
    site_id         integer REFERENCES sites(id),
    signal          text NOT NULL,           -- metric key, index name, or 'device' (offline)
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state           text NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared', 'closed')),
    started_at      timestamptz NOT NULL,    -- the condition began (event time)
    raised_at       timestamptz NOT NULL,    -- the raise condition was complete (event time)
    raised_value    double precision,
    threshold       double precision,
    peak_value      double precision,
    cleared_at      timestamptz,
    cleared_value   double precision,
    clear_reason    text,
    acknowledged_by text,
    acknowledged_at timestamptz,
    ack_note        text,
    closed_by       text,
    closed_at       timestamptz,
    close_note      text,
    late            boolean NOT NULL,        -- raised more than the lateness horizon behind its watermark: not paged
    flaps           integer NOT NULL DEFAULT 0,  -- re-raised within the hold-off after a clear (reopened)
    detected_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Dedup: at most one active alert per rule and dedup key (station and pollutant, device ...).
CREATE UNIQUE INDEX alerts_active_key ON alerts (rule_key, dedup_key) WHERE state IN ('open', 'acknowledged');
CREATE INDEX alerts_raised_idx ON alerts (raised_at DESC, id DESC);
CREATE INDEX alerts_unclosed_idx ON alerts (state) WHERE state <> 'closed';

-- History of every alert: raised, reopened, duplicate, acknowledged, cleared, closed. `page` marks the transitions
-- handed to the notifier (on-time raises and clears); notified_at is set once it has taken them (at least once).
CREATE TABLE alert_events (
    id          bigserial PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('raised', 'reopened', 'duplicate', 'acknowledged', 'cleared', 'closed')),
    at          timestamptz NOT NULL,        -- event time (raised, cleared ...) or wall time (acknowledged, closed)
    value       double precision,
    device_id   integer,
    actor       text,
    note        text,
    late        boolean NOT NULL DEFAULT false,
    page        boolean NOT NULL DEFAULT false,
    notified_at timestamptz,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, id);
CREATE INDEX alert_events_to_notify ON alert_events (id) WHERE page AND notified_at IS NULL;

-- The evaluator's carry state per (rule, device): engine.alerts.SeriesState as JSON, and the alert it owns.
CREATE TABLE alert_series_state (
    rule_key    text NOT NULL,
    device_id   integer NOT NULL,
    state       jsonb NOT NULL,
    alert_id    bigint,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_key, device_id)
);

-- How far each device has delivered (offline rules: its newest data's time when that came on time, else the
-- watermark it arrived under), and the city's event-time watermark.
CREATE TABLE alert_device_seen (
    device_id   integer PRIMARY KEY,
    last_ts     timestamptz NOT NULL
);
CREATE TABLE alert_progress (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    event_watermark timestamptz NOT NULL,
    behind_frontier bigint NOT NULL DEFAULT 0,   -- readings that arrived behind their series' evaluation frontier
    updated_at      timestamptz NOT NULL DEFAULT now()
);
