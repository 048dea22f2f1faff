-- 006: air-quality indices per station and hour (engine/aqi.py): the Thai AQI (PCD 2023), the US EPA AQI (2024)
-- and the EPA NowCast overlay for PM, computed from the hourly means in sample_buckets.
--
-- The row of the current hour is recomputed with every batch from that hour's readings so far: it is the live
-- index. A row exists only where the index is defined (enough valid hours in the window).

CREATE TABLE aqi_hourly (
    index_key    text NOT NULL CHECK (index_key IN ('thai_pcd_2023', 'us_epa_2024', 'us_epa_2024_nowcast')),
    device_id    integer NOT NULL,
    hour_start   timestamptz NOT NULL,
    aqi          double precision NOT NULL CHECK (aqi >= 0),
    responsible  text NOT NULL,            -- the pollutant with the highest sub-index
    category     smallint NOT NULL,        -- index into the index's category table (engine/aqi_tables.py)
    sub_index    jsonb NOT NULL,           -- pollutant -> sub-index (only those defined)
    average      jsonb NOT NULL,           -- window series -> average used, in the store's canonical unit
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (index_key, device_id, hour_start)
);
CREATE INDEX aqi_hourly_time_idx ON aqi_hourly (index_key, hour_start);

-- Outbox: station hours whose means changed, written by the sample updater in its own transaction.
CREATE TABLE aqi_queue (
    device_id   integer NOT NULL,
    lo          timestamptz NOT NULL,
    hi          timestamptz NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now()
);
