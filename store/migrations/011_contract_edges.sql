-- 010: contract edges (docs/contract.md): second values for a stored reading, and retained dead letters once.

-- A reading for an existing (device, metric, event time) with another value than the stored one. First wins: the
-- stored reading (and everything derived from it) stays as it is, and the offered value is kept here, once per
-- key and value, for a person to review (GET /conflicts). A value within 1 part in 10^9 of the stored one is the
-- same value (store/writer.py SAME_VALUE_RTOL) and is not recorded.
CREATE TABLE reading_conflicts (
    id            bigserial PRIMARY KEY,
    device_id     integer NOT NULL,
    metric_id     smallint NOT NULL,
    ts            timestamptz NOT NULL,
    stored_value  double precision NOT NULL,  -- the value stored when the second one arrived (canonical unit)
    offered_value double precision NOT NULL,  -- the value refused (canonical unit)
    seq           bigint,                     -- the offering message's sequence number, when it had one
    received_at   timestamptz NOT NULL,       -- when the offering message was received
    UNIQUE (device_id, metric_id, ts, offered_value)
);
CREATE INDEX reading_conflicts_received_idx ON reading_conflicts (received_at);

-- A retained message is delivered again at every subscription (each reconnect). Its dead letter is recorded once:
-- the first record of a (topic, payload) delivered as retained is kept, the repeats are no-ops.
ALTER TABLE dead_letters ADD COLUMN retained boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX dead_letters_retained_once_idx ON dead_letters (topic, sha256(payload)) WHERE retained;
