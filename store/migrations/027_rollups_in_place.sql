-- 027: the roll-up and per-site rows are updated in place, not deleted and inserted again (issue 14 item 3: the
-- database's CPU for derived data).
--
-- Every claim rewrites the rows of the live hour, day and month of each device it touches, and of its site at every
-- resolution. Deleted and inserted again, each rewrite left a dead row and a new entry in every index: between two
-- autovacuum runs the next claims' index probes stepped over the dead entries (a month row's probe read ~20 buffers
-- after 30 claims) and the planner saw tables of a few hundred live rows with ten times as many dead. The updaters
-- now upsert the recomputed rows and delete only the rows of the range that no longer have finer rows under them
-- (store/energy.py: roll_up; the function below). An update that changes no indexed column and finds room on its
-- row's page is a heap-only tuple (HOT): no new index entry, and the old version is pruned with the page. The room
-- is what fillfactor leaves at insert: these partitions are small next to the 15-minute ones (a day row per 96), so
-- leaving half (a quarter or so of the hour rows' pages) free costs little. The 15-minute device rows are replaced
-- whole by COPY (no update), so their partitions keep the default.
ALTER TABLE energy_buckets_1h SET (fillfactor = 50);
ALTER TABLE energy_buckets_1d SET (fillfactor = 50);
ALTER TABLE energy_buckets_1mo SET (fillfactor = 50);
ALTER TABLE sample_buckets_1h SET (fillfactor = 50);
ALTER TABLE sample_buckets_1d SET (fillfactor = 50);
ALTER TABLE sample_buckets_1mo SET (fillfactor = 50);
ALTER TABLE lamp_buckets_1h SET (fillfactor = 50);
ALTER TABLE lamp_buckets_1d SET (fillfactor = 50);
ALTER TABLE lamp_buckets_1mo SET (fillfactor = 50);
ALTER TABLE energy_site_buckets_15min SET (fillfactor = 50);
ALTER TABLE energy_site_buckets_1h SET (fillfactor = 50);
ALTER TABLE energy_site_buckets_1d SET (fillfactor = 50);
ALTER TABLE energy_site_buckets_1mo SET (fillfactor = 50);
ALTER TABLE sample_site_buckets_15min SET (fillfactor = 50);
ALTER TABLE sample_site_buckets_1h SET (fillfactor = 50);
ALTER TABLE sample_site_buckets_1d SET (fillfactor = 50);
ALTER TABLE sample_site_buckets_1mo SET (fillfactor = 50);

-- As migration 021's, with four changes:
-- * the recomputed rows are upserted, and only the rows of the ranges that got no recomputed row (their buckets have
--   no device row left: a device moved away, or a bucket's readings were removed) are deleted;
-- * one refresh of a site's rows at a time (per table), from a snapshot taken after the one before it committed: an
--   advisory lock per (table, site), taken in site order, until the end of the transaction. Two ingest processes
--   share a site's devices (the partitions split devices, not sites), and an upsert computed from a snapshot that
--   misses the other process's committed device rows would overwrite the other's correct site row. Before, the two
--   deleted and inserted, and the second one's insert failed on the primary key (its claim was retried);
-- * the sums add the devices' rows in device order (ORDER BY b.device_id; the latest value's ties on last_ts go to
--   the lowest device id): the same bits whatever the order the rows are read in, which the plan and where the rows
--   lie on disk decided before;
-- * a range's devices are one array, the bucket rows matched by device_id = ANY(it): joined to devices per bucket
--   row, a table without statistics (no autovacuum yet) was read with a scan of the site's devices for every row.
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
        ' FROM (SELECT r.s, r.m, r.lo, r.hi, array_agg(d.id) AS devs FROM r JOIN devices d ON d.site_id = r.s'
        '       GROUP BY r.s, r.m, r.lo, r.hi) r'
        ' JOIN %I b ON b.device_id = ANY(r.devs) AND b.metric_id = r.m AND b.bucket_start >= r.lo'
        ' AND b.bucket_start < r.hi WHERE b.resolution = %L GROUP BY r.s, r.m, b.bucket_start'
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
