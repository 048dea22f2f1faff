"""Storage side of the energy engine: the work queue, the reading windows it needs, and the bucket tables.

Which buckets a span of new readings changes: a reading at t splits the interval between its neighbours, so the
changed intervals run from the reading before the span (P) to the reading after it (N), and the 15-minute buckets
to recompute are those overlapping [P, N]: [floor15(P), ceil15(N)). The engine spreads a catch-up back to the anchor
of its suspect run (engine.counters rule 5), and it takes the first reading of what it reads as trusted, so P moves
back: to the last reading with another value when the register was flat up to P (a stuck display), then, if a
stored 15-minute bucket from just before P onwards is suspect or missing, over that run of buckets to the end of
the last good one before it (a doubtful reading, or a run that may still be caught up), and from there again to
the start of a flat run (a stuck run's buckets stored as measured zeros while its catch-up was the newest reading);
at most FLAT_LOOKBACK. Forward, N is as far as bucket_ranges goes; a later stored reading whose catch-up reaches
back into the range (a flat or suspect run across its end) is found by the engine, and :func:`reach_forward` then
extends the range past it (stream.energy.EnergyUpdater._store).
To recompute them exactly the engine needs every reading inside, plus the last reading at or before the first
bucket's start and the first at or after the last bucket's end (their intervals reach into the range). All times
here are UTC epoch microseconds.

Each meter's plausibility bound where it has no rated power (:func:`bound_priors`) is learned from the stored
15-minute buckets: docs/reference.md#plausibility-bound-of-a-register.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from lccm.engine.timebase import CITY_TZ_NAME, local_day
from lccm.store import leases
from lccm.store.leases import Held
from lccm.store.writer import PG_EPOCH_OFFSET_US, encode_columns, sent_rows, sent_us

BUCKET_US = 15 * 60 * 1_000_000
DAY_BUCKETS = 96  # 15-minute buckets in a day
# How far back the start of a flat (stuck) register run, or of a suspect run, is looked for; matches the late-data
# horizon.
FLAT_LOOKBACK = "7 days"
_EPOCH = "'epoch'::timestamptz"
_US = "interval '1 microsecond'"


def _ts(expr: str) -> str:
    return f"({_EPOCH} + ({expr}) * {_US})"


def _us(expr: str) -> str:
    return f"(extract(epoch FROM {expr}) * 1000000)::bigint"


# The reading window of a bucket range [se.s, se.e) of (se.d, se.m), in microseconds: from the last reading at or
# before its start to the first at or after its end (their intervals reach into the range); the range's own ends
# where there is none.
WINDOW_LO = (
    f"coalesce((SELECT {_us('x.ts')} FROM readings x WHERE x.device_id = se.d AND x.metric_id = se.m"
    f" AND x.ts <= {_ts('se.s')} ORDER BY x.ts DESC LIMIT 1), se.s)"
)
WINDOW_HI = (
    f"coalesce((SELECT {_us('x.ts')} FROM readings x WHERE x.device_id = se.d AND x.metric_id = se.m"
    f" AND x.ts >= {_ts('se.e')} ORDER BY x.ts LIMIT 1), se.e)"
)


@dataclass(frozen=True, slots=True)
class Spans:
    """One row per (device, metric): a time span [lo_us, hi_us] of new readings, or the bucket range [s_us, e_us)."""

    device_id: np.ndarray  # int32
    metric_id: np.ndarray  # int16
    lo_us: np.ndarray  # int64
    hi_us: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.device_id.shape[0])

    def take(self, index: np.ndarray) -> Spans:
        return Spans(self.device_id[index], self.metric_id[index], self.lo_us[index], self.hi_us[index])

    def params(self) -> tuple[list[int], list[int], list[int], list[int]]:
        return self.device_id.tolist(), self.metric_id.tolist(), self.lo_us.tolist(), self.hi_us.tolist()


def _spans(rows: Sequence[tuple[int, int, int, int]]) -> Spans:
    if not rows:
        return Spans(np.zeros(0, np.int32), np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros(0, np.int64))
    d, m, lo, hi = zip(*rows, strict=True)
    return Spans(np.array(d, np.int32), np.array(m, np.int16), np.array(lo, np.int64), np.array(hi, np.int64))


_UNNEST = "unnest(%s::int[], %s::smallint[], %s::bigint[], %s::bigint[]) AS t(d, m, lo, hi)"


QUEUES = ("rollup_queue", "sample_queue")  # registers -> energy; instantaneous and state metrics -> samples, lamps


# The claimed rows merged per (device, metric): one span from the earliest to the latest time queued.
_MERGED_SPANS = sql.SQL(
    f"SELECT device_id, metric_id, {_us('min(lo)')}, {_us('max(hi)')} FROM taken"
    " GROUP BY device_id, metric_id ORDER BY device_id, metric_id"
)


def claim_spans(
    conn: psycopg.Connection, limit: int = 20_000, queue: str = "rollup_queue", held: Held | None = None
) -> Spans:
    """Take queued work (deleted in the caller's transaction, so a failure puts it back), merged per device; with
    ``held``, only rows of devices in those partitions (the process's leases, locked by the caller)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    rows = leases.claim(conn, queue, ("device_id", "metric_id", "lo", "hi"), _MERGED_SPANS, limit=limit, held=held)
    return _spans(rows)


def enqueue(conn: psycopg.Connection, spans: Spans, queue: str = "rollup_queue") -> None:
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    conn.execute(
        f"INSERT INTO {queue} (device_id, metric_id, lo, hi) SELECT d, m, {_ts('lo')}, {_ts('hi')} FROM {_UNNEST}",
        spans.params(),
    )


def register_series(conn: psycopg.Connection, lo_us: int, hi_us: int) -> Spans:
    """Every (device, register metric) with readings in [lo, hi], as spans covering exactly that range."""
    return series_in_range(conn, ("register",), lo_us, hi_us)


def series_in_range(conn: psycopg.Connection, kinds: Sequence[str], lo_us: int, hi_us: int) -> Spans:
    """Every (device, metric of these kinds) with readings in [lo, hi], as spans covering exactly that range."""
    rows = conn.execute(
        "SELECT d.id, m.id, %s::bigint, %s::bigint FROM devices d CROSS JOIN metrics m WHERE m.kind = ANY(%s)"
        " AND EXISTS (SELECT 1 FROM readings r WHERE r.device_id = d.id AND r.metric_id = m.id"
        f" AND r.ts BETWEEN {_ts('%s::bigint')} AND {_ts('%s::bigint')}) ORDER BY d.id, m.id",
        (lo_us, hi_us, list(kinds), lo_us, hi_us),
    ).fetchall()
    return _spans(rows)


def queue_length(conn: psycopg.Connection, queue: str = "rollup_queue") -> int:
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    row = conn.execute(f"SELECT count(*) FROM {queue}").fetchone()
    return int(row[0]) if row else 0


def bucket_ranges(conn: psycopg.Connection, spans: Spans) -> tuple[Spans, Spans]:
    """For each span: the 15-minute bucket range to recompute [s, e), and the reading window [wlo, whi] it needs.

    Each step is MATERIALIZED: inlined, a step's correlated subqueries were copied into every later expression that
    names its column and run once per copy (the flat-run probe was in the plan 57 times: 1.4 ms per span against
    0.14, benchmarks/README.md#the-derived-works-cpu-per-reading)."""
    rows = conn.execute(
        f"""
        WITH t AS (SELECT d, m, {_ts("lo")} AS lo, {_ts("hi")} AS hi FROM {_UNNEST}),
        prev AS MATERIALIZED (
            SELECT t.d, t.m, t.lo, t.hi, pr.ts AS p_ts, pr.value AS p_value
            FROM t LEFT JOIN LATERAL (SELECT x.ts, x.value FROM readings x WHERE x.device_id = t.d
                                      AND x.metric_id = t.m AND x.ts < t.lo ORDER BY x.ts DESC LIMIT 1) pr ON true),
        pf AS MATERIALIZED (
            SELECT prev.d, prev.m, prev.p_ts, prev.hi,
                -- Back to the last reading with another value: a stuck register's catch-up is spread from there.
                coalesce((SELECT x.ts FROM readings x WHERE x.device_id = prev.d AND x.metric_id = prev.m
                          AND x.ts < prev.p_ts AND x.ts >= prev.p_ts - interval '{FLAT_LOOKBACK}'
                          AND x.value <> prev.p_value ORDER BY x.ts DESC LIMIT 1), prev.p_ts, prev.lo) AS p
            FROM prev),
        pb AS MATERIALIZED (
            -- The first suspect (or missing) bucket from just before that reading up to P: the reading may be a
            -- doubtful one, or a run may still be caught up from its anchor, which lies before such a bucket.
            SELECT pf.*, (SELECT min(b.bucket_start) FROM energy_buckets b WHERE b.resolution = '15min'
                          AND b.device_id = pf.d AND b.metric_id = pf.m AND b.quality >= 2
                          AND b.bucket_start > pf.p - interval '30 minutes' AND b.bucket_start < pf.p_ts) AS bad
            FROM pf),
        pn AS MATERIALIZED (
            SELECT pb.d, pb.m,
                -- ... then back over the suspect run to the end of the last good bucket before it.
                CASE WHEN pb.bad IS NULL THEN pb.p ELSE least(pb.p, coalesce(
                    (SELECT max(b.bucket_start) + interval '15 minutes' FROM energy_buckets b
                     WHERE b.resolution = '15min' AND b.device_id = pb.d AND b.metric_id = pb.m AND b.quality <= 1
                     AND b.bucket_start < pb.bad AND b.bucket_start >= pb.bad - interval '{FLAT_LOOKBACK}'),
                    pb.bad - interval '{FLAT_LOOKBACK}')) END AS p,
                coalesce((SELECT x.ts FROM readings x WHERE x.device_id = pb.d AND x.metric_id = pb.m
                          AND x.ts > pb.hi ORDER BY x.ts LIMIT 1), pb.hi) AS n,
                pb.bad
            FROM pb),
        pq AS MATERIALIZED (
            -- A good bucket before a suspect run may be a stuck register's measured zero (stored while the catch-up
            -- that ends the run was still the newest reading, judged at the live edge): back to the start of the
            -- flat run holding the reading there too, as from P above, so the catch-up is judged as a whole again.
            SELECT pn.d, pn.m, pn.n, CASE WHEN pn.bad IS NULL THEN pn.p ELSE coalesce((
                SELECT (SELECT x.ts FROM readings x WHERE x.device_id = pn.d AND x.metric_id = pn.m AND x.ts < q.ts
                        AND x.ts >= q.ts - interval '{FLAT_LOOKBACK}' AND x.value <> q.value
                        ORDER BY x.ts DESC LIMIT 1)
                FROM (SELECT y.ts, y.value FROM readings y WHERE y.device_id = pn.d AND y.metric_id = pn.m
                      AND y.ts <= pn.p ORDER BY y.ts DESC LIMIT 1) q), pn.p) END AS p
            FROM pn),
        se AS MATERIALIZED (
            SELECT d, m, ({_us("p")} / {BUCKET_US}) * {BUCKET_US} AS s,
                   (({_us("n")} + {BUCKET_US} - 1) / {BUCKET_US}) * {BUCKET_US} AS e
            FROM pq)
        SELECT se.d, se.m, se.s, se.e,
            {WINDOW_LO} AS wlo,
            {WINDOW_HI} AS whi
        FROM se ORDER BY se.d, se.m
        """,
        spans.params(),
    ).fetchall()
    buckets = _spans([(d, m, s, e) for d, m, s, e, _, _ in rows])
    windows = _spans([(d, m, wlo, whi) for d, m, _, _, wlo, whi in rows])
    return buckets, windows


def reach_forward(conn: psycopg.Connection, ranges: Spans, windows: Spans) -> tuple[Spans, Spans]:
    """For bucket ranges [s, e) whose counter may still be caught up from before e by a later reading (a flat run, or
    an open suspect run, across e): the ranges and windows extended over the stored readings after the window, past
    the flat run holding its last reading and one reading beyond the first that leaves it (the catch-up, and the
    reading that carries on from it); at most FLAT_LOOKBACK. A span with no reading after its window keeps its own."""
    rows = conn.execute(
        f"""
        WITH t AS (SELECT row_number() OVER () AS i, d, m, lo AS s, hi AS e, wlo, {_ts("whi")} AS whi
                   FROM unnest(%s::int[], %s::smallint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
                   AS t(d, m, lo, hi, wlo, whi)),
        w AS MATERIALIZED (
            SELECT t.*, (SELECT x.value FROM readings x WHERE x.device_id = t.d AND x.metric_id = t.m
                         AND x.ts <= t.whi ORDER BY x.ts DESC LIMIT 1) AS v
            FROM t),
        c AS MATERIALIZED (
            -- The first reading after the window that leaves the value the window ended on (the catch-up).
            SELECT w.*, (SELECT x.ts FROM readings x WHERE x.device_id = w.d AND x.metric_id = w.m AND x.ts > w.whi
                         AND x.ts <= w.whi + interval '{FLAT_LOOKBACK}' AND x.value <> w.v
                         ORDER BY x.ts LIMIT 1) AS c
            FROM w),
        n AS MATERIALIZED (
            -- ... and the reading after it, which carries on from it (a held catch-up is spread then); with no
            -- catch-up stored yet, the end of the flat run.
            SELECT c.i, c.d, c.m, c.s, c.e, c.wlo, coalesce(
                (SELECT x.ts FROM readings x WHERE x.device_id = c.d AND x.metric_id = c.m AND x.ts > c.c
                 ORDER BY x.ts LIMIT 1), c.c,
                (SELECT max(x.ts) FROM readings x WHERE x.device_id = c.d AND x.metric_id = c.m AND x.ts > c.whi
                 AND x.ts <= c.whi + interval '{FLAT_LOOKBACK}')) AS n
            FROM c),
        se AS MATERIALIZED (
            SELECT i, d, m, s, wlo, greatest(e, coalesce((({_us("n")} + {BUCKET_US} - 1) / {BUCKET_US}) * {BUCKET_US},
                                                         e)) AS e
            FROM n)
        SELECT se.d, se.m, se.s, se.e, se.wlo,
            {WINDOW_HI} AS whi
        FROM se ORDER BY se.i
        """,
        (*ranges.params(), windows.lo_us.tolist(), windows.hi_us.tolist()),
    ).fetchall()
    return _spans([(d, m, s, e) for d, m, s, e, _, _ in rows]), _spans(
        [(d, m, wlo, whi) for d, m, _, _, wlo, whi in rows]
    )


def counter_states(
    conn: psycopg.Connection, ranges: Spans, window_lo_us: np.ndarray, new_lo_us: np.ndarray
) -> list[tuple[int, int, int, int, bytes, bytes]]:
    """The stored counter states (migration 026) that the ranges' engine runs may continue: (range index,
    range_lo_us, bucket_start_us, last_ts_us, model, state) where the state's run read from the same first reading
    (``window_lo_us``), stored every bucket from the range's start on (range_lo at or before it), and its last reading
    lies in the range, before the claim's new readings (``new_lo_us``). Then the readings up to it are the
    ones that run read, unless one came since: such a reading is queued from its own time (in this claim: its new
    readings start at or before the state's last reading; or still queued, claimed later) or, stored past the live
    horizon, in an open late span (migration 025's index); either way the range is read whole, as before."""
    rows = conn.execute(
        f"""
        WITH t AS (SELECT row_number() OVER () - 1 AS i, d, m, lo, hi, wlo, nlo
                   FROM unnest(%s::int[], %s::smallint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
                   AS t(d, m, lo, hi, wlo, nlo)),
        queued AS (SELECT q.device_id, q.metric_id, min(q.lo) AS lo FROM rollup_queue q
                   WHERE (q.device_id, q.metric_id) IN (SELECT d, m FROM t) GROUP BY q.device_id, q.metric_id)
        SELECT t.i, {_us("c.range_lo")}, {_us("c.bucket_start")}, {_us("c.last_ts")}, c.model, c.state
        FROM t JOIN energy_counter_states c ON c.device_id = t.d AND c.metric_id = t.m
         AND c.range_lo <= {_ts("t.lo")} AND c.bucket_start >= {_ts("t.lo")} AND c.window_lo = {_ts("t.wlo")}
         AND c.last_ts < {_ts("t.nlo")}
         AND c.last_ts < {_ts("t.hi")}
        LEFT JOIN queued q ON q.device_id = t.d AND q.metric_id = t.m
        WHERE (q.lo IS NULL OR q.lo > c.last_ts)
          AND NOT EXISTS (
            SELECT 1 FROM late_spans l WHERE l.resolved_at IS NULL AND l.device_id = t.d AND l.metric_id = t.m
            AND l.hi >= c.window_lo AND l.lo <= c.last_ts)
        ORDER BY t.i
        """,
        (*ranges.params(), window_lo_us.tolist(), new_lo_us.tolist()),
    ).fetchall()
    return [(int(i), int(lo), int(b), int(last), bytes(mo), bytes(st)) for i, lo, b, last, mo, st in rows]


@dataclass(frozen=True, slots=True)
class CounterStateRows:
    """Counter states to store (migration 026), one per series: where its run started and ended, and what it ended
    with (opaque to the store: stream/energy.py packs them)."""

    device_id: np.ndarray  # int32
    metric_id: np.ndarray  # int16
    range_lo_us: np.ndarray  # int64
    bucket_start_us: np.ndarray  # int64
    window_lo_us: np.ndarray  # int64
    last_ts_us: np.ndarray  # int64
    model: list[bytes]
    state: list[bytes]

    def take(self, index: np.ndarray) -> CounterStateRows:
        picked = index.tolist()
        return CounterStateRows(
            self.device_id[index], self.metric_id[index], self.range_lo_us[index], self.bucket_start_us[index],
            self.window_lo_us[index], self.last_ts_us[index], [self.model[i] for i in picked],
            [self.state[i] for i in picked],
        )  # fmt: skip


def replace_counter_states(conn: psycopg.Connection, ranges: Spans, rows: CounterStateRows) -> None:
    """The stored counter state of each range's series becomes its row in ``rows``, or none: whatever a claim stored
    of a series' buckets, a later claim continues only from the state of that same computation."""
    keep = {(d, m) for d, m in zip(rows.device_id.tolist(), rows.metric_id.tolist(), strict=True)}
    gone = [(d, m) for d, m in zip(ranges.device_id.tolist(), ranges.metric_id.tolist(), strict=True)
            if (d, m) not in keep]  # fmt: skip
    if gone:
        conn.execute(
            "DELETE FROM energy_counter_states c USING unnest(%s::int[], %s::smallint[]) AS t(d, m)"
            " WHERE c.device_id = t.d AND c.metric_id = t.m",
            ([d for d, _ in gone], [m for _, m in gone]),
        )
    if keep:
        # an update in place (the key unchanged): no index entry to add, so the row's page absorbs the churn
        conn.execute(
            f"""
            INSERT INTO energy_counter_states
                (device_id, metric_id, range_lo, bucket_start, window_lo, last_ts, model, state)
            SELECT d, m, {_ts("r")}, {_ts("s")}, {_ts("w")}, {_ts("l")}, mo, st
            FROM unnest(%s::int[], %s::smallint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
                        %s::bytea[], %s::bytea[])
            AS t(d, m, r, s, w, l, mo, st)
            ON CONFLICT (device_id, metric_id) DO UPDATE SET range_lo = excluded.range_lo,
                bucket_start = excluded.bucket_start,
                window_lo = excluded.window_lo, last_ts = excluded.last_ts, model = excluded.model,
                state = excluded.state
            """,
            (rows.device_id.tolist(), rows.metric_id.tolist(), rows.range_lo_us.tolist(), rows.bucket_start_us.tolist(),
             rows.window_lo_us.tolist(), rows.last_ts_us.tolist(), rows.model, rows.state),
        )  # fmt: skip


def window_readings(conn: psycopg.Connection, windows: Spans) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(span index, ts_us, value) of the readings in each window, ordered by span then time.

    The updaters read every reading of the buckets they recompute, most of a claim's rows: each window's readings
    come as one binary string (PostgreSQL's own send format: int8 microseconds since 2000-01-01, float8) that numpy
    reads as it is, rather than a Python tuple of three objects per reading (what cost the updaters most of their
    CPU, and the garbage collector's passes over them, benchmarks/README.md#the-derived-works-cpu-per-reading)."""
    rows = conn.execute(
        f"""
        WITH t AS (SELECT row_number() OVER () - 1 AS i, d, m, {_ts("lo")} AS lo, {_ts("hi")} AS hi FROM {_UNNEST})
        SELECT t.i, w.n, w.tv FROM t CROSS JOIN LATERAL (
            SELECT count(*) AS n, string_agg(timestamptz_send(x.ts) || float8send(x.value), ''::bytea ORDER BY x.ts)
                   AS tv
            FROM readings x WHERE x.device_id = t.d AND x.metric_id = t.m AND x.ts BETWEEN t.lo AND t.hi) w
        WHERE w.n > 0 ORDER BY t.i
        """,
        windows.params(),
        binary=True,
    ).fetchall()
    if not rows:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64)
    span, n, tv = zip(*rows, strict=True)
    readings = sent_rows(b"".join(tv), sum(n), _TS_VALUE, "window readings")
    span_idx = np.repeat(np.array(span, np.int32), np.array(n, np.int64))
    return span_idx, sent_us(readings["ts"]), readings["value"].astype(np.float64)


# One reading as window_readings receives it: timestamptz_send (big-endian microseconds since PostgreSQL's epoch) and
# float8send, packed.
_TS_VALUE = np.dtype([("ts", ">i8"), ("value", ">f8")])


@dataclass(frozen=True, slots=True)
class BoundPriors:
    """What each span's meter drew (kW or L/h, NaN if nothing): see :func:`bound_priors`."""

    own: np.ndarray  # its robust peak in the days before its day
    site: np.ndarray  # where it has none: its site's
    today: np.ndarray  # its highest 15-minute power in its day before the span's start


def bound_priors(conn: psycopg.Connection, spans: Spans, days: int) -> BoundPriors:
    """What each span's meter drew in the ``days`` before the midnight of the city's day its span starts in: its own
    robust peak, and (only where it has none) its site's; and its highest power in that day before the span's start.
    The first two are the same for every span starting in that day, whichever claim it is in.

    The robust peak is the third highest 15-minute mean power (amount / covered time) among the buckets with
    energy, or the least of them when there are fewer: one or two odd buckets do not set it. Stored buckets hold
    accepted amounts only, each within the bound of its time, so a spike never reaches them. The site's is the
    highest robust peak among the site's other meters of the same metric, for a meter with no history of its own.

    A (meter, metric, day) is computed once (migration 028, ``energy_bound_days``): the days not cached yet are
    computed and inserted, and every day read, in one statement; a day inserted meanwhile by another transaction
    (``ON CONFLICT DO NOTHING``: a partition's new owner, a recompute) is taken as this statement computed it. Each
    meter's buckets are read by equality on the primary key's prefix, newest first and at most a day's worth per day
    of history, so the key is the plan whether or not the table has statistics (with none, the scan by time over
    every meter was chosen: 432 ms for 200 ranges against 23 ms). docs/reference.md#plausibility-bound-of-a-register.
    """
    if not len(spans):
        return BoundPriors(np.zeros(0), np.zeros(0), np.zeros(0))
    day, midnight = local_day(spans.lo_us)

    def power(device: str, m: str, lo: str, hi: str, limit: str) -> str:
        return f"""SELECT b.amount * 3600.0 / b.covered_s AS p FROM energy_buckets b
                   WHERE b.resolution = '15min' AND b.device_id = {device} AND b.metric_id = {m}
                   AND b.bucket_start >= {lo} AND b.bucket_start < {hi} AND b.covered_s > 0 AND b.amount > 0
                   ORDER BY b.bucket_start DESC LIMIT {limit}"""

    def peak(device: str, at: str) -> str:
        history = power(device, f"{at}.m", f"{at}.lo - %(days)s * interval '1 day'", f"{at}.lo", "%(limit)s")
        return f"(SELECT min(top.p) FROM (SELECT h.p FROM ({history}) h ORDER BY h.p DESC LIMIT 3) top)"

    today = power("t.d", "t.m", "t.lo", "t.at", str(DAY_BUCKETS))
    # The site's peak is the same for every meter of a site with none of its own and the same (metric, day): it is
    # looked up once per such (site, metric, day), over every meter of the site (a meter in it adds nothing: it has
    # no peak of its own there), not once per meter over the others (a new site of 200 meters: 200 x 199).
    rows = conn.execute(
        f"""
        WITH t AS (SELECT t.i, t.d, t.m, t.k, {_ts("t.s")} AS lo, {_ts("t.at")} AS at
                   FROM unnest(%(d)s::int[], %(m)s::smallint[], %(k)s::int[], %(s)s::bigint[], %(at)s::bigint[])
                   WITH ORDINALITY AS t(d, m, k, s, at, i)),
        w AS (SELECT DISTINCT t.d, t.m, t.k, date '1970-01-01' + t.k AS day, t.lo FROM t),
        cached AS MATERIALIZED (
            SELECT w.d, w.m, w.k, c.own_kw, c.site_kw FROM w CROSS JOIN LATERAL (
                SELECT c.own_kw, c.site_kw FROM energy_bound_days c
                WHERE c.device_id = w.d AND c.metric_id = w.m AND c.day = w.day LIMIT 1) c),
        mine AS MATERIALIZED (
            SELECT w.d, w.m, w.k, w.day, w.lo, x.site_id AS site, {peak("w.d", "w")} AS p
            FROM w LEFT JOIN devices x ON x.id = w.d
            WHERE NOT EXISTS (SELECT 1 FROM cached WHERE cached.d = w.d AND cached.m = w.m AND cached.k = w.k)),
        cold AS (SELECT DISTINCT site, m, k, lo FROM mine WHERE p IS NULL AND site IS NOT NULL),
        sites AS (
            SELECT cold.site, cold.m, cold.k, max({peak("y.id", "cold")}) AS p
            FROM cold JOIN devices y ON y.site_id = cold.site GROUP BY cold.site, cold.m, cold.k),
        computed AS MATERIALIZED (
            SELECT mine.d, mine.m, mine.k, mine.day, mine.p AS own_kw,
                   CASE WHEN mine.p IS NULL THEN sites.p END AS site_kw
            FROM mine LEFT JOIN sites ON sites.site = mine.site AND sites.m = mine.m AND sites.k = mine.k),
        stored AS (
            INSERT INTO energy_bound_days (device_id, metric_id, day, own_kw, site_kw)
            SELECT d, m, day, own_kw, site_kw FROM computed ON CONFLICT DO NOTHING),
        priors AS (SELECT d, m, k, own_kw, site_kw FROM cached UNION ALL SELECT d, m, k, own_kw, site_kw FROM computed)
        SELECT t.i, priors.own_kw, priors.site_kw, (SELECT max(h.p) FROM ({today}) h)
        FROM t JOIN priors ON priors.d = t.d AND priors.m = t.m AND priors.k = t.k ORDER BY t.i
        """,
        {"d": spans.device_id.tolist(), "m": spans.metric_id.tolist(), "k": day.tolist(), "s": midnight.tolist(),
         "at": spans.lo_us.tolist(), "days": days, "limit": days * DAY_BUCKETS},
    ).fetchall()  # fmt: skip
    if len(rows) != len(spans):
        raise RuntimeError("bound_priors: a span without its day's row")

    def column(c: int) -> np.ndarray:
        return np.array([np.nan if r[c] is None else r[c] for r in rows], np.float64)

    return BoundPriors(column(1), column(2), column(3))


def forget_bound_days(conn: psycopg.Connection, after_us: int) -> int:
    """Delete the cached bounds (:func:`bound_priors`) of the city's days after the one of ``after_us``: a recompute
    from ``after_us`` rewrites the buckets they were learned from. Returns the rows deleted."""
    day, _ = local_day(after_us)
    cur = conn.execute("DELETE FROM energy_bound_days WHERE day > date '1970-01-01' + %s::int", (int(day),))
    return cur.rowcount


# How far back a cached bound is kept beyond the late-data horizon: a live range starts up to FLAT_LOOKBACK before
# a late reading, and a week more of margin.
BOUND_DAYS_MARGIN = 14


def prune_bound_days(conn: psycopg.Connection, now_us: int, late_horizon_s: int) -> int:
    """Delete the cached bounds of the days the live path can no longer claim a range in: older than the late-data
    horizon plus :data:`BOUND_DAYS_MARGIN` days before ``now_us`` (a row per meter and day: 10,000 meters would keep
    about 3.7 M rows a year, some 370 MB with the key, without this). A day pruned and claimed again (a recompute) is
    computed again from the buckets then stored. Returns the rows deleted."""
    day, _ = local_day(now_us - late_horizon_s * 1_000_000)
    cur = conn.execute(
        "DELETE FROM energy_bound_days WHERE day < date '1970-01-01' + %s::int", (int(day) - BOUND_DAYS_MARGIN,)
    )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class MeterRow:
    device_id: int
    kind: str
    cadence_s: int
    rated_kw: float | None
    register_modulus: float | None
    source_class: str | None


def meters(conn: psycopg.Connection, device_ids: Sequence[int]) -> dict[int, MeterRow]:
    rows = conn.execute(
        "SELECT d.id, d.kind, d.cadence_s, d.rated_kw, d.register_modulus, s.source_class"
        " FROM devices d JOIN device_sources s ON s.device_id = d.id WHERE d.id = ANY(%s)",
        (list(device_ids),),
    ).fetchall()
    return {r[0]: MeterRow(*r) for r in rows}


@dataclass(frozen=True, slots=True)
class BucketRows:
    """15-minute rows to store, one per (span, bucket) that any interval touched."""

    device_id: np.ndarray
    metric_id: np.ndarray
    bucket_start_us: np.ndarray
    amount: np.ndarray
    amount_estimated: np.ndarray
    covered_s: np.ndarray
    quality: np.ndarray
    intervals: np.ndarray
    kgco2e: np.ndarray
    kgco2e_base: np.ndarray

    def take(self, index: np.ndarray) -> BucketRows:
        return BucketRows(*(getattr(self, f)[index] for f in BucketRows.__dataclass_fields__))


def replace_buckets(conn: psycopg.Connection, ranges: Spans, rows: BucketRows) -> None:
    """Replace the 15-minute rows of each (device, metric, [s, e)) and recompute the coarser levels over them."""
    delete_15min(conn, "energy_buckets", ranges)
    with conn.cursor().copy(
        "COPY energy_buckets (resolution, device_id, metric_id, bucket_start, amount, amount_estimated, covered_s,"
        " quality, intervals, kgco2e, kgco2e_base) FROM STDIN (FORMAT BINARY)"
    ) as cp:
        cp.write(encode_columns([
            ("S5", b"15min"), (">i4", rows.device_id), (">i2", rows.metric_id),
            (">i8", rows.bucket_start_us - PG_EPOCH_OFFSET_US), (">f8", rows.amount), (">f8", rows.amount_estimated),
            (">f8", rows.covered_s), (">i2", rows.quality), (">i4", rows.intervals), (">f8", rows.kgco2e),
            (">f8", rows.kgco2e_base),
        ]))  # fmt: skip
    # Hours, days and months are cut in the city's time zone; set for this transaction only.
    set_city_time_zone(conn)
    sums = {
        c: in_time_order(f"sum(b.{c})") for c in ("amount", "amount_estimated", "covered_s", "kgco2e", "kgco2e_base")
    }
    aggregates = {**sums, "intervals": "sum(b.intervals)", "quality": "max(b.quality)"}
    for level, finer, unit in ROLL_UP_LEVELS:
        roll_up(conn, "energy_buckets", ranges, level, finer, unit, aggregates)
    refresh_sites(conn, "energy_buckets", ranges)


def delete_15min(conn: psycopg.Connection, table: str, ranges: Spans, *, with_metric: bool = True) -> None:
    """Delete the 15-minute rows of ``table`` in each range [lo, hi) of its device (and metric: ``with_metric``)."""
    metric = " AND b.metric_id = t.m" if with_metric else ""
    conn.execute(
        f"DELETE FROM {table} b USING {_UNNEST} WHERE b.resolution = '15min' AND b.device_id = t.d{metric}"
        f" AND b.bucket_start >= {_ts('t.lo')} AND b.bucket_start < {_ts('t.hi')}",
        ranges.params(),
    )


def in_time_order(aggregate: str) -> str:
    """``sum(b.x)`` as ``sum(b.x ORDER BY b.bucket_start)``: a roll-up's float sum adds its finer rows in time order.
    Without it they were added in the order the plan read them (by index, or where they lay on disk, which each
    claim's rewrite changed): the same replay stored other last bits with and without the planner's statistics.
    Ordering a few dozen rows per group costs next to nothing."""
    return aggregate.removesuffix(")") + " ORDER BY b.bucket_start)"


# The coarser levels rebuilt from the 15-minute rows, each from the one below: (level, finer level, calendar unit).
ROLL_UP_LEVELS = (("1h", "15min", "hour"), ("1d", "1h", "day"), ("1mo", "1d", "month"))


def set_city_time_zone(conn: psycopg.Connection) -> None:
    """Cut hours, days and months (``date_trunc``, ``timestamptz`` arithmetic) in the city's time zone for the rest of
    this transaction: ``SET LOCAL TimeZone``, written as ``set_config`` so the zone is a bound parameter."""
    conn.execute("SELECT set_config('TimeZone', %s, true)", (CITY_TZ_NAME,))


def roll_up(
    conn: psycopg.Connection,
    table: str,
    ranges: Spans,
    level: str,
    finer: str,
    unit: str,
    aggregates: dict[str, str],
    *,
    with_metric: bool = True,
) -> None:
    """Rebuild the ``level`` rows of ``table`` over each range from its ``finer`` rows (the session time zone cuts
    the calendar units). ``aggregates`` maps each value column to its SQL aggregate over the finer rows ``b``.

    The recomputed rows are upserted and only the rows of the range with no finer rows left are deleted, in one
    statement: deleted and inserted again, every claim left a dead row and new index entries for each live hour, day
    and month it touched, which the next claims' probes stepped over (migration 027: updated in place, they are HOT).
    The finer rows of one (device, metric) are read in key order, so the sums are the same whichever way the rows
    were written."""
    keys = "b.device_id, b.metric_id" if with_metric else "b.device_id"
    match = "b.device_id = r.d AND b.metric_id = r.m" if with_metric else "b.device_id = r.d"
    plain = keys.replace("b.", "")
    columns = ", ".join(aggregates)
    conn.execute(
        f"""
        WITH r AS (SELECT DISTINCT d, m, date_trunc('{unit}', {_ts("lo")}) AS lo,
                   date_trunc('{unit}', {_ts("hi")} - interval '1 microsecond') + interval '1 {unit}' AS hi
                   FROM {_UNNEST}),
        up AS (
            INSERT INTO {table} AS x (resolution, {plain}, bucket_start, {columns})
            SELECT %s, {keys}, date_trunc('{unit}', b.bucket_start), {", ".join(aggregates.values())}
            FROM {table} b JOIN (SELECT DISTINCT d, {"m, " if with_metric else ""}lo, hi FROM r) r
              ON {match} AND b.bucket_start >= r.lo AND b.bucket_start < r.hi
            WHERE b.resolution = %s
            GROUP BY {keys}, date_trunc('{unit}', b.bucket_start)
            ON CONFLICT (resolution, {plain}, bucket_start) DO UPDATE SET
                {", ".join(f"{c} = excluded.{c}" for c in aggregates)}, computed_at = now()
            RETURNING {", ".join(f"x.{k}" for k in plain.split(", "))}, x.bucket_start),
        -- The rows of the ranges the upsert did not write: a set difference (hashed, or sorted where it is large, as
        -- at a recompute's week of a city), not a lookup in the upsert's rows per row. The statement's snapshot is
        -- from before the upsert, so these are rows it never touched.
        gone AS (
            SELECT {keys}, b.bucket_start FROM {table} b JOIN (SELECT DISTINCT d, {"m, " if with_metric else ""}lo, hi
                                                              FROM r) r
              ON {match} AND b.bucket_start >= r.lo AND b.bucket_start < r.hi
            WHERE b.resolution = %s
            EXCEPT
            SELECT {plain}, bucket_start FROM up)
        DELETE FROM {table} b USING gone g WHERE b.resolution = %s
        AND {" AND ".join(f"b.{k} = g.{k}" for k in plain.split(", "))} AND b.bucket_start = g.bucket_start
        """,
        (*ranges.params(), level, finer, level, level),
    )


SITE_LEVELS = (("15min", "minute"), ("1h", "hour"), ("1d", "day"), ("1mo", "month"))
_SITE_LEVELS = ", ".join(f"('{level}', '{unit}', interval '1 {unit}')" for level, unit in SITE_LEVELS)


def refresh_sites(conn: psycopg.Connection, table: str, ranges: Spans) -> None:
    """Rebuild the per-site rows (migration 021; upserted since 027, read by the key since 029) of ``table`` over the
    buckets of every level that ``ranges`` (15-minute aligned) touch, at the sites the devices belong to now: one
    statement for the four levels. Run after :func:`roll_up` of every level, in the same transaction and time zone
    (the day and month bounds are the city's)."""
    conn.execute(
        f"""
        WITH t AS MATERIALIZED (SELECT d.site_id AS s, t.m, {_ts("t.lo")} AS lo, {_ts("t.hi")} AS hi
                                FROM {_UNNEST} JOIN devices d ON d.id = t.d)
        SELECT count(lccm_refresh_site_buckets(%s, l.level, x.s, x.m, x.lo, x.hi))
        FROM (VALUES {_SITE_LEVELS}) AS l(level, unit, step) CROSS JOIN LATERAL (
            SELECT array_agg(t.s) AS s, array_agg(t.m) AS m, array_agg(date_trunc(l.unit, t.lo)) AS lo,
                   array_agg(date_trunc(l.unit, t.hi - interval '1 microsecond') + l.step) AS hi
            FROM t HAVING count(*) > 0) AS x
        """,
        (*ranges.params(), table),
    )


FACTOR_SYNC_LOCK_KEY = 0x4C434652  # "LCFR"


def sync_factor_registry(
    conn: psycopg.Connection,
    factors: Sequence[tuple[str, float, str, str, object, object, str]],
    classes: Sequence[tuple[str, str, int, str, str | None, int, str]],
) -> None:
    """Make the tables equal to the application's registry (factors: key, value, unit, source, valid_from or None,
    valid_to or None, description; classes: key, factor_key, scope, cfo_category, gpc_ref, metric_id, description)."""
    with conn.transaction():
        # Processes that start together (several ingest workers) would each delete and insert the same keys: one
        # at a time (a start-up lock, released at commit).
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (FACTOR_SYNC_LOCK_KEY,))
        conn.execute("DELETE FROM emission_factors")
        conn.cursor().executemany(
            "INSERT INTO emission_factors (key, kgco2e_per_unit, unit, source, valid_from, valid_to, description)"
            " VALUES (%s, %s, %s, %s, coalesce(%s, '-infinity'::timestamptz), coalesce(%s, 'infinity'::timestamptz),"
            " %s)",
            list(factors),
        )
        conn.cursor().executemany(
            "INSERT INTO source_classes (key, factor_key, scope, cfo_category, gpc_ref, metric_id, description)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET factor_key = excluded.factor_key,"
            " scope = excluded.scope, cfo_category = excluded.cfo_category, gpc_ref = excluded.gpc_ref,"
            " metric_id = excluded.metric_id, description = excluded.description",
            list(classes),
        )
