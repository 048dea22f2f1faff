-- 018: each device's reading times per Asia/Bangkok day, kept by the writer (issue 13 item 7: the overview's
-- completeness was a count over every reading of the day, ~150 ms for the demo city's 2,107 devices; it is now a
-- lookup of one row per device).
--
-- received: distinct event times in the day over all metrics (a message carrying energy and power at one time is
-- one reading time); seq_first/seq_last: lowest and highest sequence number; messages_received: distinct sequence
-- numbers (NULL when the device sent none). The writer recounts a (device, day) from readings in the transaction
-- that stores readings in it (store/writer.py), so a redelivered or duplicate reading changes nothing and the
-- figures are those of GET /completeness's definition. Rows outlive the raw readings that retention removes.
-- The backfill below writes the city's zone as the literal 'Asia/Bangkok' = lccm.engine.timebase.CITY_TZ_NAME.
CREATE TABLE reading_days (
    device_id integer NOT NULL,
    day date NOT NULL,  -- the Asia/Bangkok calendar day
    received integer NOT NULL CHECK (received >= 0),
    seq_first bigint,
    seq_last bigint,
    messages_received integer,
    PRIMARY KEY (day, device_id)
);

INSERT INTO reading_days (device_id, day, received, seq_first, seq_last, messages_received)
SELECT device_id, (ts AT TIME ZONE 'Asia/Bangkok')::date, count(DISTINCT ts), min(seq), max(seq),
       nullif(count(DISTINCT seq), 0)
FROM readings GROUP BY 1, 2;
