-- 029: a site's rows read its devices' bucket rows by the key, one device at a time, never the whole partition
-- (issue 14 item 3: the database's CPU for derived data).
--
-- Migration 027 matched a site's bucket rows with `b.device_id = ANY(the site's devices)` in a join of the ranges to
-- the bucket table. PostgreSQL planned that join as a hash join over a sequential scan of the whole partition, with
-- and without statistics: every claim read every 15-minute row of every device (108,000 rows for 200 meters after
-- 1.3 days, 52 ms a call for 8,800 rows used; a city's 28 days of 2,000 meters would be 21 M rows a claim). Here each
-- (range, device of its site) reads its rows in a LATERAL subquery fenced with OFFSET 0, so it cannot be flattened
-- back into that join: a parameterized scan of the primary key (resolution, device_id, metric_id, bucket_start) per
-- device, whose cost is the rows the claim touches. Everything else is as in migration 027 (the advisory lock per
-- (table, site), upsert and set difference, sums in device order).
CREATE OR REPLACE FUNCTION lccm_refresh_site_buckets(tbl text, level text, s integer[], m smallint[], lo timestamptz[],
                                                     hi timestamptz[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    site_tbl text;
    cols text;
    aggs text;
    lock_key integer;
    ranges text := 'WITH r AS (SELECT t.s, t.m, min(t.lo) AS lo, max(t.hi) AS hi'
                   ' FROM unnest($1, $2, $3, $4) AS t(s, m, lo, hi) GROUP BY t.s, t.m) ';
BEGIN
    IF tbl = 'energy_buckets' THEN
        site_tbl := 'energy_site_buckets';
        lock_key := 1279477058;  -- 'LCEB'
        cols := 'amount, amount_estimated, covered_s, quality, intervals, kgco2e, kgco2e_base, devices';
        aggs := 'sum(b.amount ORDER BY b.device_id), sum(b.amount_estimated ORDER BY b.device_id),'
                ' sum(b.covered_s ORDER BY b.device_id), max(b.quality), sum(b.intervals),'
                ' sum(b.kgco2e ORDER BY b.device_id), sum(b.kgco2e_base ORDER BY b.device_id), count(*)';
    ELSIF tbl = 'sample_buckets' THEN
        site_tbl := 'sample_site_buckets';
        lock_key := 1279480642;  -- 'LCSB'
        cols := 'devices, n, sum, min, max, last, last_ts, sum_of_device_means';
        aggs := 'count(*), sum(b.n), sum(b.sum ORDER BY b.device_id), min(b.min), max(b.max),'
                ' (array_agg(b.last ORDER BY b.last_ts DESC, b.device_id))[1], max(b.last_ts),'
                ' sum(b.sum / b.n ORDER BY b.device_id)';
    ELSE
        RAISE EXCEPTION 'no site table for %', tbl;
    END IF;
    PERFORM pg_advisory_xact_lock(lock_key, x.site) FROM (SELECT DISTINCT u.site FROM unnest(s) AS u(site)
                                                          ORDER BY 1) AS x;
    -- The rows to delete are the ranges' rows the upsert did not write (a set difference; the statement's snapshot is
    -- from before the upsert, so they are rows it never touched).
    EXECUTE ranges || format(
        ', up AS (INSERT INTO %I AS x (resolution, site_id, metric_id, bucket_start, %s)'
        ' SELECT %L, r.s, r.m, b.bucket_start, %s'
        ' FROM r JOIN devices d ON d.site_id = r.s CROSS JOIN LATERAL (SELECT b.* FROM %I b'
        '  WHERE b.resolution = %L AND b.device_id = d.id AND b.metric_id = r.m AND b.bucket_start >= r.lo'
        '  AND b.bucket_start < r.hi OFFSET 0) b GROUP BY r.s, r.m, b.bucket_start'
        ' ON CONFLICT (resolution, site_id, metric_id, bucket_start) DO UPDATE SET %s'
        ' RETURNING x.site_id, x.metric_id, x.bucket_start),'
        ' gone AS (SELECT x.site_id, x.metric_id, x.bucket_start FROM %I x JOIN r ON x.site_id = r.s'
        ' AND x.metric_id = r.m AND x.bucket_start >= r.lo AND x.bucket_start < r.hi WHERE x.resolution = %L'
        ' EXCEPT SELECT site_id, metric_id, bucket_start FROM up)'
        ' DELETE FROM %I x USING gone g WHERE x.resolution = %L AND x.site_id = g.site_id'
        ' AND x.metric_id = g.metric_id AND x.bucket_start = g.bucket_start',
        site_tbl, cols, level, aggs, tbl, level,
        (SELECT string_agg(format('%1$I = excluded.%1$I', c), ', ') FROM unnest(string_to_array(cols, ', ')) AS c),
        site_tbl, level, site_tbl, level)
        USING s, m, lo, hi;
END $$;
