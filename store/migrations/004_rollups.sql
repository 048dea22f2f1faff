-- 004: rollups of instantaneous readings, streetlight burning time, and late data past the live horizon.
--
-- Both tables follow energy_buckets: '15min' rows are computed by the engine from raw readings, '1h', '1d' and
-- '1mo' (Asia/Bangkok) are combined from the finer rows in SQL, so every level agrees with the one below it.

-- Statistics of instantaneous and state readings (power, voltage, PM2.5, SO2, lamp state ...) per device, metric
-- and bucket, in the metric's canonical unit. mean = sum / n (an arithmetic mean of the readings).
CREATE TABLE sample_buckets (
    resolution   text NOT NULL CHECK (resolution IN ('15min', '1h', '1d', '1mo')),
    device_id    integer NOT NULL,
    metric_id    smallint NOT NULL,
    bucket_start timestamptz NOT NULL,
    n            integer NOT NULL CHECK (n > 0),
    sum          double precision NOT NULL,
    min          double precision NOT NULL,
    max          double precision NOT NULL,
    last         double precision NOT NULL,   -- the value of the latest reading in the bucket
    last_ts      timestamptz NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resolution, device_id, metric_id, bucket_start),
    CHECK (min <= max)
);
CREATE INDEX sample_buckets_time_idx ON sample_buckets (resolution, metric_id, bucket_start);

-- Lamp time accounting from lamp_on state readings (engine/streetlights.py), in seconds per device and bucket.
-- Sun up/down from sunrise and sunset at the site's coordinates; a grace period around each belongs to neither.
CREATE TABLE lamp_buckets (
    resolution     text NOT NULL CHECK (resolution IN ('15min', '1h', '1d', '1mo')),
    device_id      integer NOT NULL,
    bucket_start   timestamptz NOT NULL,
    on_s           double precision NOT NULL,  -- burning
    day_on_s       double precision NOT NULL,  -- burning while the sun is up (day burning)
    night_off_s    double precision NOT NULL,  -- off while the sun is down (outage)
    night_known_s  double precision NOT NULL,  -- night time with a known state (the outage ratio's denominator)
    unknown_s      double precision NOT NULL,  -- no known state (no reading within the hold time)
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resolution, device_id, bucket_start)
);
CREATE INDEX lamp_buckets_time_idx ON lamp_buckets (resolution, bucket_start);

-- Outbox for the sample and lamp updater, written in the readings' transaction like rollup_queue.
CREATE TABLE sample_queue (
    device_id   integer NOT NULL,
    metric_id   smallint NOT NULL,
    lo          timestamptz NOT NULL,
    hi          timestamptz NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now()
);

-- Readings that arrived later than the live horizon (setting late_horizon_s, default 7 days) behind their receipt
-- time. They are stored like any reading, but the live updaters do not rewrite closed periods for them:
-- `lccm recompute` over the range does, and marks the row resolved. Until then the API lists them (/late-data).
CREATE TABLE late_spans (
    id           bigserial PRIMARY KEY,
    device_id    integer NOT NULL,
    metric_id    smallint NOT NULL,
    lo           timestamptz NOT NULL,
    hi           timestamptz NOT NULL,
    readings     integer NOT NULL CHECK (readings > 0),
    received_at  timestamptz NOT NULL,
    resolved_at  timestamptz
);
CREATE INDEX late_spans_open_idx ON late_spans (lo) WHERE resolved_at IS NULL;
