"""Each device's reading times per Asia/Bangkok day (table ``reading_days``, migration 018): what GET /completeness
and the overview report as ``received`` and the sequence-number span, kept up to date off the stream's write path
so that reading a day's completeness is a lookup of one row per device, not a count over the day's readings.

The writer queues, in the readings' transaction, each (device, day) a batch stored readings in with the batch's
span [lo, hi] of times in that day (``day_queue``, migration 023: :data:`ENQUEUE`). The derived-data updaters claim
queued rows of their partitions (stream/days.py) and count them in with :func:`count_claimed`:

- each row keeps the hull [counted_lo, counted_hi] of the times counted into it so far. A claimed span outside the
  hull holds only readings not counted yet, so it is counted alone and added: ``received`` plus the distinct times
  in the span, ``seq_first``/``seq_last`` widened, ``messages_received`` plus the span's distinct seqs, and the hull
  widened to the span. In-order data (the live stream, a bulk replay) always takes this way: work in proportion to
  what arrived, not to the day so far;
- a span that overlaps the hull (a late or reordered reading, a second metric at a time already counted, a
  duplicate) or brings a seq inside the day's stored [seq_first, seq_last] (a reordered message, a device that
  rebooted, a message straddling two claims) might repeat what is counted: that (device, day) is counted again in
  full (:data:`_RECOUNT`, as migration 018 filled the table) and its hull set to its first and last reading.

So a duplicate or redelivered reading, a correction (first wins) or a reading days late leave the figures exactly
what a count over ``readings`` gives, once the queue is drained. Until then the row lags by what is queued: the
updaters' lag (the Operations dashboard, dashboards/operations.py: ``lccm_queue_depth{queue="day_queue"}``).

Two claimers of one (device, day) (the partition leases prevent it; ``lccm recompute`` next to a live process
does not): each locks the day's rows first, all in one order, and counts in a new statement, whose snapshot holds
what the other committed.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from lccm.engine.timebase import CITY_TZ_NAME
from lccm.store import leases
from lccm.store.leases import Held

_TS_LO = "'epoch'::timestamptz + u.lo * interval '1 microsecond'"
_TS_HI = "'epoch'::timestamptz + u.hi * interval '1 microsecond'"
_SPANS = "unnest(%(device)s::int[], %(day)s::int[], %(lo)s::bigint[], %(hi)s::bigint[]) AS u(d, n, lo, hi)"
_DAY = "(DATE '1970-01-01' + u.n)"

# The writer's line in its one queueing statement (store/writer.py): per (device, day as days since 1970-01-01) of
# the batch, its span of event times in that day (epoch microseconds).
ENQUEUE = (
    f"INSERT INTO day_queue (device_id, day, lo, hi) SELECT u.d, {_DAY}, {_TS_LO}, {_TS_HI}"
    " FROM unnest(%s::int[], %s::int[], %s::bigint[], %s::bigint[]) AS u(d, n, lo, hi)"
)

# The claimed rows merged per (device, day), sorted by day then device (the order ``reading_days`` locks them in).
_MERGED_DAYS = sql.SQL(
    "SELECT device_id, day - DATE '1970-01-01', (extract(epoch FROM min(lo)) * 1000000)::bigint,"
    " (extract(epoch FROM max(hi)) * 1000000)::bigint FROM taken GROUP BY 1, 2 ORDER BY 2, 1"
)

# ``metric_id = ANY(every metric)`` makes the primary key (device_id, metric_id, ts) serve one range scan per
# (device, metric) rather than a walk over the device's whole history.
_LOOK = (
    "SELECT count(DISTINCT x.ts)::int AS times, coalesce(array_agg(DISTINCT x.seq) FILTER"
    " (WHERE x.seq IS NOT NULL), '{}') AS seqs, min(x.seq) AS seq_lo, max(x.seq) AS seq_hi"
    " FROM readings x WHERE x.device_id = u.d AND x.metric_id = ANY(ARRAY(SELECT id FROM metrics))"
    f" AND x.ts >= {_TS_LO} AND x.ts <= {_TS_HI}"
)
_ENSURE = (
    f"INSERT INTO reading_days (device_id, day, received) SELECT u.d, {_DAY}, 0 FROM {_SPANS}"
    " ORDER BY 2, 1 ON CONFLICT DO NOTHING"
)
_LOCK = (
    f"SELECT 1 FROM reading_days r JOIN {_SPANS} ON r.device_id = u.d AND r.day = {_DAY}"
    " ORDER BY r.day, r.device_id FOR UPDATE OF r"
)
# Spans outside the hull: only readings not counted yet. A seq inside the day's stored range may be counted already.
_ADD = f"""
WITH a AS (
    SELECT u.d, r.day, u.lo, u.hi, s.times, s.seqs, s.seq_lo, s.seq_hi
    FROM {_SPANS} JOIN reading_days r ON r.device_id = u.d AND r.day = {_DAY} CROSS JOIN LATERAL ({_LOOK}) s
    WHERE r.counted_lo IS NULL OR {_TS_HI} < r.counted_lo OR {_TS_LO} > r.counted_hi
)
UPDATE reading_days r SET received = r.received + a.times, seq_first = least(r.seq_first, a.seq_lo),
    seq_last = greatest(r.seq_last, a.seq_hi),
    messages_received = nullif(coalesce(r.messages_received, 0) + cardinality(a.seqs), 0),
    counted_lo = least(r.counted_lo, 'epoch'::timestamptz + a.lo * interval '1 microsecond'),
    counted_hi = greatest(r.counted_hi, 'epoch'::timestamptz + a.hi * interval '1 microsecond')
FROM a WHERE r.device_id = a.d AND r.day = a.day
AND NOT EXISTS (SELECT 1 FROM unnest(a.seqs) s WHERE s BETWEEN r.seq_first AND r.seq_last)
RETURNING r.device_id, r.day - DATE '1970-01-01'
"""
# The definition, over the whole day: what GET /completeness reports as received and the seq span.
_RECOUNT = f"""
UPDATE reading_days r SET received = c.received, seq_first = c.seq_first, seq_last = c.seq_last,
    messages_received = c.messages_received, counted_lo = c.first_ts, counted_hi = c.last_ts
FROM (
    SELECT u.d, {_DAY} AS day, x.* FROM unnest(%(device)s::int[], %(day)s::int[]) AS u(d, n) CROSS JOIN LATERAL (
        SELECT count(DISTINCT x.ts)::int AS received, min(x.seq) AS seq_first, max(x.seq) AS seq_last,
            nullif(count(DISTINCT x.seq), 0)::int AS messages_received, min(x.ts) AS first_ts, max(x.ts) AS last_ts
        FROM readings x WHERE x.device_id = u.d AND x.metric_id = ANY(ARRAY(SELECT id FROM metrics))
        AND x.ts >= {_DAY}::timestamp AT TIME ZONE '{CITY_TZ_NAME}'
        AND x.ts < ({_DAY} + 1)::timestamp AT TIME ZONE '{CITY_TZ_NAME}'
    ) x
) c
WHERE r.device_id = c.d AND r.day = c.day
"""

DaySpans = tuple[list[int], list[int], list[int], list[int]]  # device ids, days since 1970-01-01, lo_us, hi_us


def claim(conn: psycopg.Connection, limit: int = 20_000, held: Held | None = None) -> DaySpans:
    """Take queued rows (deleted in the caller's transaction, so a failure puts them back), merged per (device, day)
    and sorted by day then device; with ``held``, only rows of devices in those partitions."""
    rows = leases.claim(conn, "day_queue", ("device_id", "day", "lo", "hi"), _MERGED_DAYS, limit=limit, held=held)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]


def count_claimed(
    conn: psycopg.Connection, device_ids: Sequence[int], days: Sequence[int], lo_us: Sequence[int],
    hi_us: Sequence[int],
) -> int:  # fmt: skip
    """In the claim's transaction: bring each claimed (device, day) up to date with its span [lo_us, hi_us] (pairs
    sorted by day, then device, as :func:`claim` gives them). Returns how many were counted again in full."""
    if not device_ids:
        return 0
    params = {"device": list(device_ids), "day": list(days), "lo": list(lo_us), "hi": list(hi_us)}
    conn.execute(_ENSURE, params)
    conn.execute(_LOCK, params)
    added = {(int(r[0]), int(r[1])) for r in conn.execute(_ADD, params)}
    again = sorted(set(zip(device_ids, days, strict=True)) - added, key=lambda p: (p[1], p[0]))
    if again:
        conn.execute(_RECOUNT, {"device": [p[0] for p in again], "day": [p[1] for p in again]})
    return len(again)
