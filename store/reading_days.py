"""Each device's reading times per Asia/Bangkok day (table ``reading_days``, migration 018): what GET /completeness
and the overview report as ``received`` and the sequence-number span, kept by the writer so that reading a day's
completeness is a lookup of one row per device, not a count over the day's readings.

The writer brackets its insert: :func:`lock_and_look` before it, :func:`count_in` after it, in one transaction. For
each (device, day) of the batch, over the span [lo, hi] of the batch's times in that day only, the readings are
looked at before and after the insert; the difference is what the batch added:

- ``received``: distinct times in the span after, minus before (times outside the span are untouched);
- ``seq_first``/``seq_last``: the least/greatest of the stored ones and the span's after the insert;
- ``messages_received``: plus the seqs in the span after that were not there before, when each lies outside the
  day's stored [seq_first, seq_last] (so it cannot occur elsewhere in the day). A new seq inside that range (a
  late or reordered message, a device that rebooted) might, and that (device, day) is counted again in full.

Work per batch is therefore in proportion to the batch, not to the day so far. A duplicate or redelivered reading, a
second metric at a time already counted, a correction (first wins) or a reading days late leave the figures exactly
what a count over ``readings`` gives (the full count is :data:`_RECOUNT`; migration 018 filled the table the same way).

Two writers of the same (device, day) at once: each first locks the day's row (all in one order: no deadlock), and
looks at the span before in a new statement, whose snapshot holds everything committed before it got the lock; the
second writer's "before" therefore includes the first one's readings.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from lccm.engine.timebase import CITY_TZ_NAME

_SPANS = "unnest(%(device)s::int[], %(day)s::int[], %(lo)s::bigint[], %(hi)s::bigint[]) AS u(d, n, lo, hi)"
_DAY = "(DATE '1970-01-01' + u.n)"
# ``metric_id = ANY(every metric)`` makes the primary key (device_id, metric_id, ts) serve one range scan per
# (device, metric) rather than a walk over the device's whole history.
_IN_SPAN = (
    "readings x WHERE x.device_id = u.d AND x.metric_id = ANY(ARRAY(SELECT id FROM metrics))"
    " AND x.ts >= 'epoch'::timestamptz + u.lo * interval '1 microsecond'"
    " AND x.ts <= 'epoch'::timestamptz + u.hi * interval '1 microsecond'"
)
_LOOK = (
    "SELECT count(DISTINCT x.ts)::int AS times, coalesce(array_agg(DISTINCT x.seq) FILTER"
    " (WHERE x.seq IS NOT NULL), '{}') AS seqs, min(x.seq) AS seq_lo, max(x.seq) AS seq_hi FROM " + _IN_SPAN
)

_CREATE_BEFORE = (
    "CREATE TEMP TABLE IF NOT EXISTS reading_days_before (d int, n int, lo bigint, hi bigint, times int,"
    " seqs bigint[]) ON COMMIT DELETE ROWS"
)
_ENSURE = (
    f"INSERT INTO reading_days (device_id, day, received) SELECT u.d, {_DAY}, 0 FROM {_SPANS}"
    " ORDER BY 2, 1 ON CONFLICT DO NOTHING"
)
_LOCK = (
    f"SELECT 1 FROM reading_days r JOIN {_SPANS} ON r.device_id = u.d AND r.day = {_DAY}"
    " ORDER BY r.day, r.device_id FOR UPDATE OF r"
)
_BEFORE = (
    f"INSERT INTO reading_days_before SELECT u.d, u.n, u.lo, u.hi, b.times, b.seqs FROM {_SPANS}"
    f" CROSS JOIN LATERAL ({_LOOK}) b"
)
# The seqs in the span now that were not there before: new to the day when outside its stored range.
_ADD = f"""
WITH a AS (
    SELECT u.d, {_DAY} AS day, a.times - u.times AS times, a.seq_lo, a.seq_hi,
        (SELECT array_agg(s) FROM unnest(a.seqs) s WHERE s <> ALL(u.seqs)) AS new_seqs
    FROM reading_days_before u CROSS JOIN LATERAL ({_LOOK}) a
)
UPDATE reading_days r SET received = r.received + a.times, seq_first = least(r.seq_first, a.seq_lo),
    seq_last = greatest(r.seq_last, a.seq_hi),
    messages_received = nullif(coalesce(r.messages_received, 0) + coalesce(cardinality(a.new_seqs), 0), 0)
FROM a WHERE r.device_id = a.d AND r.day = a.day
AND NOT EXISTS (SELECT 1 FROM unnest(a.new_seqs) s WHERE s BETWEEN r.seq_first AND r.seq_last)
RETURNING r.device_id, r.day - DATE '1970-01-01'
"""
# The definition, over the whole day: what GET /completeness reports as received and the seq span.
_RECOUNT = f"""
UPDATE reading_days r SET received = c.received, seq_first = c.seq_first, seq_last = c.seq_last,
    messages_received = c.messages_received
FROM (
    SELECT u.d, {_DAY} AS day, x.* FROM unnest(%(device)s::int[], %(day)s::int[]) AS u(d, n) CROSS JOIN LATERAL (
        SELECT count(DISTINCT x.ts)::int AS received, min(x.seq) AS seq_first, max(x.seq) AS seq_last,
            nullif(count(DISTINCT x.seq), 0)::int AS messages_received
        FROM readings x WHERE x.device_id = u.d AND x.metric_id = ANY(ARRAY(SELECT id FROM metrics))
        AND x.ts >= {_DAY}::timestamp AT TIME ZONE '{CITY_TZ_NAME}'
        AND x.ts < ({_DAY} + 1)::timestamp AT TIME ZONE '{CITY_TZ_NAME}'
    ) x
) c
WHERE r.device_id = c.d AND r.day = c.day
"""


def lock_and_look(
    conn: psycopg.Connection, device_ids: Sequence[int], days: Sequence[int], lo_us: Sequence[int],
    hi_us: Sequence[int],
) -> None:  # fmt: skip
    """Before the insert, in its transaction: lock each (device, Bangkok day as days since 1970-01-01) of the batch
    and note what its span [lo_us, hi_us] holds already. Give the pairs sorted by day, then device."""
    params = {"device": list(device_ids), "day": list(days), "lo": list(lo_us), "hi": list(hi_us)}
    conn.execute(_CREATE_BEFORE)
    # Emptied at commit; a caller that writes several batches in one transaction of its own would otherwise add
    # an earlier batch's difference again.
    conn.execute("DELETE FROM reading_days_before")
    conn.execute(_ENSURE, params)
    conn.execute(_LOCK, params)
    conn.execute(_BEFORE, params)


def count_in(conn: psycopg.Connection, device_ids: Sequence[int], days: Sequence[int]) -> None:
    """After the insert, in the same transaction: add what it brought to each (device, day) of
    :func:`lock_and_look` (the same pairs)."""
    added = {(int(r[0]), int(r[1])) for r in conn.execute(_ADD)}
    again = sorted(set(zip(device_ids, days, strict=True)) - added, key=lambda p: (p[1], p[0]))
    if again:
        conn.execute(_RECOUNT, {"device": [p[0] for p in again], "day": [p[1] for p in again]})
