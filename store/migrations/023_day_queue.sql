-- 023: reading_days kept off the stream's write path (issue 14 item 3): the writer queues each (device, Bangkok
-- day) a batch stored readings in, with the batch's time span in that day, in the readings' transaction (so a
-- crash between the commit and the count loses no work); the derived-data updaters claim the rows (per device
-- partition, like rollup_queue) and bring reading_days up to date (store/reading_days.py).
CREATE TABLE day_queue (
    device_id   integer NOT NULL,
    day         date NOT NULL,  -- the Asia/Bangkok calendar day
    lo          timestamptz NOT NULL,
    hi          timestamptz NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now()
);

-- The hull [counted_lo, counted_hi] of the event times counted into the row so far: a queued span outside it holds
-- only readings not counted yet (added to the row by a count over the span alone); one that overlaps it makes the
-- updater count the whole day again. NULL: nothing counted yet. Rows counted before this migration get the whole
-- day (their first queued span recounts the day once); 'Asia/Bangkok' = lccm.engine.timebase.CITY_TZ_NAME.
ALTER TABLE reading_days ADD COLUMN counted_lo timestamptz, ADD COLUMN counted_hi timestamptz;
UPDATE reading_days SET counted_lo = day::timestamp AT TIME ZONE 'Asia/Bangkok',
    counted_hi = (day + 1)::timestamp AT TIME ZONE 'Asia/Bangkok';
