-- 022: the alert evaluator partitioned like the updaters (issue 14 item 1, docs/partitions.md).
--
-- The durable hand-over from the writer to the evaluator: one row per (device, metric) of every committed batch,
-- written in the readings' own transaction (store/writer.py), late readings and redeliveries included. A batch
-- committed and never evaluated (a crash) waits here, so no start-up catch-up is needed. The evaluator that leases
-- the device's partition claims the rows (FOR UPDATE SKIP LOCKED, its lease rows FOR SHARE) and deletes them in the
-- transaction that writes the alert state. The id orders the rows as they were committed: the event-clock watermark
-- of a row is the running maximum of batch_newest in that order (stream/alerts.py).
CREATE TABLE alert_queue (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id     integer NOT NULL,
    metric_id     smallint NOT NULL,
    lo            timestamptz NOT NULL,   -- the span of event times the batch committed for this series
    hi            timestamptz NOT NULL,
    batch_newest  timestamptz NOT NULL,   -- the newest event time of the whole batch (event-clock watermark)
    batch_received timestamptz NOT NULL   -- the newest receipt time of the whole batch (wall-clock watermark)
);

-- Per device, what the evaluator knows of its deliveries, kept by the evaluator that owns the device's partition
-- (in its own transaction): first and newest event time committed, the delivery clock of offline rules (its newest
-- data's event time when that came on time, else the watermark it arrived under), and for devices an index rule
-- watches the recent (newest event time, watermark) pairs of its batches, flat. Replaces alert_device_seen. The
-- city's watermarks are the maxima of newest_ts and delivered_ts (one index probe each): no row every writer or
-- every evaluator updates.
CREATE TABLE alert_device_clock (
    device_id     integer PRIMARY KEY,
    first_ts      timestamptz NOT NULL,
    newest_ts     timestamptz NOT NULL,
    delivered_ts  timestamptz NOT NULL,
    spans         bigint[] NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_device_clock_newest_idx ON alert_device_clock (newest_ts);
CREATE INDEX alert_device_clock_delivered_idx ON alert_device_clock (delivered_ts);

INSERT INTO alert_device_clock (device_id, first_ts, newest_ts, delivered_ts)
SELECT device_id, last_ts, last_ts, last_ts FROM alert_device_seen;  -- the delivery clock stands in for the rest
DROP TABLE alert_device_seen;

-- Readings that arrived behind their series' frontier, counted per partition (each evaluator adds to its own rows;
-- the old single row would serialise the evaluators). The total is the sum.
CREATE TABLE alert_behind (
    partition        integer PRIMARY KEY,
    behind_frontier  bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO alert_behind (partition, behind_frontier) SELECT 0, behind_frontier FROM alert_progress;
DROP TABLE alert_progress;

-- How far each ingest process (by its MQTT client id, which a restarted process keeps) has committed in event time,
-- written with each of its batches (its own row: no two writers share one). Offline rules judge silence against the
-- slowest of the processes heard from lately: a device whose data sits in a slower process's backlog is not silent.
CREATE TABLE ingest_progress (
    client_id   text PRIMARY KEY,
    newest_ts   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
