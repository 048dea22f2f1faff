-- 010: every AQI row says how complete it is (engine/aqi.py, docs/reference.md#averaging-and-completeness).
--
-- Before, a row existed only where the index could be computed, and a pollutant whose window fell below the
-- completeness rule dropped out of the AQI silently. Now a row exists for every station hour at which a pollutant
-- is measured, with
--   status    complete   | every measured pollutant's sub-index meets its rule
--             incomplete | a sub-index is missing or computed from fewer hours than its rule needs: aqi is the
--                        | highest sub-index there is, a lower bound
--             withheld   | no sub-index could be computed: aqi, responsible and category are NULL
--   reason    the same in words (NULL when complete)
--   missing   the measured pollutants whose sub-index is withheld
--   coverage  pollutant -> {series, status, window_h, hours_with_data, needed, of_latest_h, latest_with_data}

ALTER TABLE aqi_hourly
    ALTER COLUMN aqi DROP NOT NULL,
    ALTER COLUMN responsible DROP NOT NULL,
    ALTER COLUMN category DROP NOT NULL,
    ADD COLUMN status text NOT NULL DEFAULT 'incomplete' CHECK (status IN ('complete', 'incomplete', 'withheld')),
    ADD COLUMN reason text,
    ADD COLUMN missing text[] NOT NULL DEFAULT '{}',
    ADD COLUMN coverage jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Rows computed before this migration carry no coverage: say so, and queue every station hour with pollutant means
-- (catalogue ids 9-14, 001_core.sql) or an index, so the AQI updater recomputes them from the stored hourly means,
-- withheld hours included (a row whose means are gone keeps this reason).
UPDATE aqi_hourly SET reason = 'Computed before data coverage was recorded: coverage unknown.';
INSERT INTO aqi_queue (device_id, lo, hi)
SELECT device_id, min(lo), max(hi) FROM (
    SELECT device_id, hour_start AS lo, hour_start + interval '1 hour' - interval '1 microsecond' AS hi
    FROM aqi_hourly
    UNION ALL
    SELECT device_id, bucket_start, bucket_start + interval '1 hour' - interval '1 microsecond'
    FROM sample_buckets WHERE resolution = '1h' AND metric_id BETWEEN 9 AND 14
) hours GROUP BY device_id;

ALTER TABLE aqi_hourly
    ALTER COLUMN status DROP DEFAULT,
    ADD CONSTRAINT aqi_hourly_withheld_has_no_aqi CHECK ((status = 'withheld') = (aqi IS NULL)),
    ADD CONSTRAINT aqi_hourly_aqi_has_its_category CHECK ((aqi IS NULL) = (category IS NULL)
                                                          AND (aqi IS NULL) = (responsible IS NULL)),
    ADD CONSTRAINT aqi_hourly_says_why CHECK ((status = 'complete') = (reason IS NULL));
