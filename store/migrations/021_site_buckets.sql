-- 021: per-site sums of the bucket tables (issue 14 item 5: dashboards stay fast at a year of data).
--
-- A fiscal year by site at 1 day read one row per meter and day: 730,000 rows at 2,000 meters, ~2 s
-- (benchmarks/city_year.py), and a site's live power (15 minutes over a week) 1.3 million. A site's figures are sums
-- over its devices' rows of the same bucket, so they are kept per site too, at every resolution: 25 sites make
-- 9,125 day rows a year. The updaters rewrite a site's rows in the transaction that rewrites its devices' rows
-- (store.energy.refresh_sites), from those rows, so the two never disagree.
--
-- Which site a device belongs to is devices.site_id, as the device-level queries read it (store.queries): a
-- device that moves to another site, or is removed, takes its whole history with it, so the rows of both sites
-- are rebuilt (trigger below). A device's service dates (migration 014) do not enter: its buckets exist only where
-- it reported.
--
-- TimescaleDB's continuous aggregates would keep these sums too, but they cannot join devices (a device's site is
-- not in the bucket rows) and the bucket tables are plain partitioned tables, not hypertables: the same tables are
-- used with and without the extension.

CREATE TABLE energy_site_buckets (
    resolution       text NOT NULL CHECK (resolution IN ('15min', '1h', '1d', '1mo')),
    site_id          integer NOT NULL,
    metric_id        smallint NOT NULL,
    bucket_start     timestamptz NOT NULL,
    amount           double precision NOT NULL,
    amount_estimated double precision NOT NULL,
    covered_s        double precision NOT NULL,
    quality          smallint NOT NULL,          -- worst of the devices'
    intervals        bigint NOT NULL,
    kgco2e           double precision NOT NULL,
    kgco2e_base      double precision NOT NULL,
    devices          integer NOT NULL,           -- devices with a row in the bucket
    PRIMARY KEY (resolution, site_id, metric_id, bucket_start)
) PARTITION BY LIST (resolution);  -- as migration 017: a year of day rows is a few dense pages
CREATE TABLE energy_site_buckets_15min PARTITION OF energy_site_buckets FOR VALUES IN ('15min');
CREATE TABLE energy_site_buckets_1h PARTITION OF energy_site_buckets FOR VALUES IN ('1h');
CREATE TABLE energy_site_buckets_1d PARTITION OF energy_site_buckets FOR VALUES IN ('1d');
CREATE TABLE energy_site_buckets_1mo PARTITION OF energy_site_buckets FOR VALUES IN ('1mo');
CREATE INDEX energy_site_buckets_time_idx ON energy_site_buckets (resolution, bucket_start);

CREATE TABLE sample_site_buckets (
    resolution          text NOT NULL CHECK (resolution IN ('15min', '1h', '1d', '1mo')),
    site_id             integer NOT NULL,
    metric_id           smallint NOT NULL,
    bucket_start        timestamptz NOT NULL,
    devices             integer NOT NULL,
    n                   bigint NOT NULL,
    sum                 double precision NOT NULL,
    min                 double precision NOT NULL,
    max                 double precision NOT NULL,
    last                double precision NOT NULL,  -- the value of the site's latest reading in the bucket
    last_ts             timestamptz NOT NULL,
    sum_of_device_means double precision NOT NULL,  -- each device's sum / n, added up (a site's power)
    PRIMARY KEY (resolution, site_id, metric_id, bucket_start)
) PARTITION BY LIST (resolution);
CREATE TABLE sample_site_buckets_15min PARTITION OF sample_site_buckets FOR VALUES IN ('15min');
CREATE TABLE sample_site_buckets_1h PARTITION OF sample_site_buckets FOR VALUES IN ('1h');
CREATE TABLE sample_site_buckets_1d PARTITION OF sample_site_buckets FOR VALUES IN ('1d');
CREATE TABLE sample_site_buckets_1mo PARTITION OF sample_site_buckets FOR VALUES IN ('1mo');
CREATE INDEX sample_site_buckets_time_idx ON sample_site_buckets (resolution, metric_id, bucket_start);

-- Rebuild the site rows of `tbl` ('energy_buckets' or 'sample_buckets') at `level` over each (site, metric,
-- [lo, hi)) from the devices' rows; ranges of one (site, metric) are merged first so no device row counts twice.
-- The level goes into the text as a literal so that only its partition is read.
CREATE FUNCTION lccm_refresh_site_buckets(tbl text, level text, s integer[], m smallint[], lo timestamptz[],
                                          hi timestamptz[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    site_tbl text;
    cols text;
    aggs text;
    ranges text := 'WITH r AS (SELECT t.s, t.m, min(t.lo) AS lo, max(t.hi) AS hi'
                   ' FROM unnest($1, $2, $3, $4) AS t(s, m, lo, hi) GROUP BY t.s, t.m) ';
BEGIN
    IF tbl = 'energy_buckets' THEN
        site_tbl := 'energy_site_buckets';
        cols := 'amount, amount_estimated, covered_s, quality, intervals, kgco2e, kgco2e_base, devices';
        aggs := 'sum(b.amount), sum(b.amount_estimated), sum(b.covered_s), max(b.quality), sum(b.intervals),'
                ' sum(b.kgco2e), sum(b.kgco2e_base), count(*)';
    ELSIF tbl = 'sample_buckets' THEN
        site_tbl := 'sample_site_buckets';
        cols := 'devices, n, sum, min, max, last, last_ts, sum_of_device_means';
        aggs := 'count(*), sum(b.n), sum(b.sum), min(b.min), max(b.max),'
                ' (array_agg(b.last ORDER BY b.last_ts DESC))[1], max(b.last_ts), sum(b.sum / b.n)';
    ELSE
        RAISE EXCEPTION 'no site table for %', tbl;
    END IF;
    EXECUTE ranges || format(
        'DELETE FROM %I x USING r WHERE x.resolution = %L AND x.site_id = r.s AND x.metric_id = r.m'
        ' AND x.bucket_start >= r.lo AND x.bucket_start < r.hi', site_tbl, level)
        USING s, m, lo, hi;
    EXECUTE ranges || format(
        'INSERT INTO %I (resolution, site_id, metric_id, bucket_start, %s)'
        ' SELECT %L, r.s, r.m, b.bucket_start, %s'
        ' FROM r JOIN devices d ON d.site_id = r.s'
        ' JOIN %I b ON b.device_id = d.id AND b.metric_id = r.m AND b.bucket_start >= r.lo AND b.bucket_start < r.hi'
        ' WHERE b.resolution = %L GROUP BY r.s, r.m, b.bucket_start',
        site_tbl, cols, level, aggs, tbl, level)
        USING s, m, lo, hi;
END $$;

-- Every site's rows of both tables at every level, over all time, for these sites.
CREATE FUNCTION lccm_rebuild_sites(sites integer[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    lvl text;
    s integer[];
    m smallint[];
BEGIN
    SELECT array_agg(x.site), array_agg(mt.id) INTO s, m FROM unnest(sites) AS x(site) CROSS JOIN metrics mt;
    IF s IS NULL THEN
        RETURN;
    END IF;
    FOREACH tbl IN ARRAY ARRAY['energy_buckets', 'sample_buckets'] LOOP
        FOREACH lvl IN ARRAY ARRAY['15min', '1h', '1d', '1mo'] LOOP
            PERFORM lccm_refresh_site_buckets(tbl, lvl, s, m, array_fill('-infinity'::timestamptz, ARRAY[cardinality(s)]),
                                              array_fill('infinity'::timestamptz, ARRAY[cardinality(s)]));
        END LOOP;
    END LOOP;
END $$;

CREATE FUNCTION lccm_devices_moved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sites integer[];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT x.site) INTO sites FROM (
            SELECT o.site_id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE n.site_id <> o.site_id
            UNION
            SELECT n.site_id FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE n.site_id <> o.site_id) AS x(site);
    ELSE
        SELECT array_agg(DISTINCT o.site_id) INTO sites FROM old_rows o;
    END IF;
    PERFORM lccm_rebuild_sites(sites);
    RETURN NULL;
END $$;

CREATE TRIGGER devices_moved_update AFTER UPDATE ON devices REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lccm_devices_moved();
CREATE TRIGGER devices_moved_delete AFTER DELETE ON devices REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lccm_devices_moved();

SELECT lccm_rebuild_sites(array_agg(id)) FROM sites;
ANALYZE energy_site_buckets, sample_site_buckets;
