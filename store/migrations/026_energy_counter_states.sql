-- 026: the energy updater continues the 15-minute bucket of a register's last reading with the readings after it,
-- rather than reading the bucket again from the reading at or before its start (stream/energy.py:
-- EnergyUpdater._compute). It keeps, per series, what its last claim's engine run ended with at the live edge: the
-- counter's carried state after the series' last reading (anchor, flat run, learned bound, run of steps over it) and
-- the cell of that reading's bucket, with what that run started from (the bucket, the first reading read, the meter
-- model and learned bound). A claim continues them only when its own run would start from the same reading with the
-- same model, so it ends with the bits a whole read gives. Every claim that stores a series' buckets replaces or
-- deletes its row in the same transaction; a process that takes over a partition finds the rows as they were.
CREATE TABLE energy_counter_states (
    device_id     integer NOT NULL,
    metric_id     smallint NOT NULL,
    range_lo      timestamptz NOT NULL,  -- the first bucket whose row that run (or the one it continued) stored
    bucket_start  timestamptz NOT NULL,  -- the 15-minute bucket of last_ts, the first of the range continued
    window_lo     timestamptz NOT NULL,  -- the first reading the run read (at or before its range's start)
    last_ts       timestamptz NOT NULL,  -- the series' last reading, the state is the one after it
    model         bytea NOT NULL,        -- the meter model and learned bound the run had (stream/energy.py: _model)
    state         bytea NOT NULL,        -- the counter state and the bucket's cell (stream/energy.py: _STATE)
    PRIMARY KEY (device_id, metric_id)
);
