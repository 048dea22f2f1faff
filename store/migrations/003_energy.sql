-- 003: energy and emissions derived from the cumulative registers.
--
-- The factor registry and the source classes are written by the application at start-up from engine/factors.py
-- (their single source, with sources cited there); the tables make them visible to the API, dashboards and SQL.

CREATE TABLE emission_factors (
    key             text NOT NULL,
    kgco2e_per_unit double precision NOT NULL CHECK (kgco2e_per_unit >= 0),
    unit            text NOT NULL,
    source          text NOT NULL,
    valid_from      timestamptz NOT NULL,   -- '-infinity' when open
    valid_to        timestamptz NOT NULL,   -- 'infinity' when open; exclusive
    description     text NOT NULL,
    PRIMARY KEY (key, valid_from),
    CHECK (valid_to > valid_from)
);

CREATE TABLE source_classes (
    key          text PRIMARY KEY,
    factor_key   text NOT NULL,
    scope        smallint NOT NULL CHECK (scope IN (1, 2, 3)),
    cfo_category text NOT NULL,
    gpc_ref      text,
    metric_id    smallint NOT NULL REFERENCES metrics(id),
    description  text NOT NULL
);

-- Which inventory source a device's register feeds. NULL means the default for its kind (device_sources below).
ALTER TABLE devices ADD COLUMN source_class text;

CREATE VIEW device_sources AS
SELECT d.id AS device_id,
       coalesce(d.source_class,
                CASE
                    WHEN d.kind = 'electricity_meter' THEN 'building_electricity'
                    WHEN d.kind = 'streetlight_cabinet' THEN 'streetlight_electricity'
                    WHEN d.kind = 'fuel_meter' AND s.kind = 'fleet' THEN 'fleet_diesel'
                    WHEN d.kind = 'fuel_meter' THEN 'generator_diesel'
                END) AS source_class
FROM devices d JOIN sites s ON s.id = d.site_id;

-- Interval energy (kWh) or fuel (l) per device and bucket, with emissions at the factor in force and at the
-- base-year factor. '15min' rows are computed by the engine from raw readings; '1h', '1d' (Asia/Bangkok days)
-- and '1mo' (Asia/Bangkok months) are sums of the finer rows, so every level adds up to the same total.
CREATE TABLE energy_buckets (
    resolution      text NOT NULL CHECK (resolution IN ('15min', '1h', '1d', '1mo')),
    device_id       integer NOT NULL,
    metric_id       smallint NOT NULL,
    bucket_start    timestamptz NOT NULL,
    amount          double precision NOT NULL,  -- kWh (energy) or l (fuel), after the multiplier
    amount_estimated double precision NOT NULL, -- the part of amount from gap-spread or bridged intervals
    covered_s       double precision NOT NULL,  -- seconds of the bucket covered by intervals
    quality         smallint NOT NULL,          -- worst of: 0 measured, 1 estimated, 2 suspect, 3 missing
    intervals       integer NOT NULL,
    kgco2e          double precision NOT NULL,  -- at the factor in force over each piece of each interval
    kgco2e_base     double precision NOT NULL,  -- at the base year's factor (like-for-like with the baseline)
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resolution, device_id, metric_id, bucket_start)
);
CREATE INDEX energy_buckets_time_idx ON energy_buckets (resolution, bucket_start);

-- Outbox: the batch writer records the (device, metric, time span) each batch touched, in the same transaction
-- as the readings, so a crash between the commit and the energy update loses no work.
CREATE TABLE rollup_queue (
    device_id   integer NOT NULL,
    metric_id   smallint NOT NULL,
    lo          timestamptz NOT NULL,
    hi          timestamptz NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now()
);
