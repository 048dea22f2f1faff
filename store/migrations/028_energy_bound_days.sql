-- 028: the learned plausibility bound of a register is that of the city's calendar day its range starts in
-- (engine/timebase.py: local_day), learned from the stored 15-minute buckets of the days before that day's midnight
-- (store/energy.py: bound_priors). Each (meter, metric, day) is computed once, by the first claim of a range starting in
-- that day, and every later claim of the day reads it: the bound no longer depends on where a claim's range starts,
-- so neither do the stored buckets, and the 28 days of buckets are scanned once a day per meter, not at every claim.
-- The peaks are kept, not the bound, so the headroom and the defaults stay settings. `lccm recompute` deletes the rows
-- of the days after its start's day (their history is rewritten); retention drops the rows older than the late-data
-- horizon and a margin (store/maintenance.py). docs/reference.md#plausibility-bound-of-a-register.
CREATE TABLE energy_bound_days (
    device_id  integer NOT NULL,
    metric_id  smallint NOT NULL,
    day        date NOT NULL,    -- the city's calendar day
    own_kw     float8,           -- the meter's robust peak (kW or L/h) in the days before; NULL: it has none
    site_kw    float8,           -- where it has none: the highest of its site's other meters'; NULL: none either
    PRIMARY KEY (device_id, metric_id, day)
);
