"""Storage side of the sample and lamp updater: its queue, the reading windows it needs, and the bucket tables.

Samples (power, PM2.5, lamp state ...): a bucket's statistics depend only on the readings inside it, so a span of
new readings [lo, hi] changes the 15-minute buckets [floor15(lo), floor15(hi) + 15 min).

Lamps: a lamp_on reading holds its state until the device's next reading, for at most the hold time (2 x the
device's cadence); after that, until the next reading, the state is unknown. A new reading at t changes the
accounting from the end of the previous reading P's hold (or t) until the next reading N after the span, or until
the span's last reading plus the hold: the buckets [floor15(min(lo, P + hold)), ceil15(min(N, hi + hold))). Time
after a device's last reading is not accounted until a reading follows it. To recompute
them the engine needs the last reading at or before the first bucket's start (its state reaches in), every reading
inside, and the first at or after the end (it cuts the last state's hold). All times are UTC epoch microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg

from lccm.store.energy import (
    _EPOCH,
    _UNNEST,
    _US,
    BUCKET_US,
    ROLL_UP_LEVELS,
    WINDOW_HI,
    WINDOW_LO,
    Spans,
    _spans,
    _ts,
    _us,
    delete_15min,
    in_time_order,
    refresh_sites,
    roll_up,
    set_city_time_zone,
    window_readings,
)
from lccm.store.writer import PG_EPOCH_OFFSET_US, encode_columns, us_to_datetime

LAMP_METRIC = 6  # lamp_on
# How far back the previous reading is looked for: the unknown time between its hold and a new reading is accounted
# when the new reading arrives, as a recompute would (a lamp silent for longer is recomputed from the cut-off).
GAP_LOOKBACK = "31 days"
NO_END = np.iinfo(np.int64).max


def sample_ranges(spans: Spans) -> Spans:
    """The 15-minute bucket range [s, e) each span of new readings changes."""
    s = (spans.lo_us // BUCKET_US) * BUCKET_US
    e = (spans.hi_us // BUCKET_US + 1) * BUCKET_US
    return Spans(spans.device_id, spans.metric_id, s, e)


def sample_readings(
    conn: psycopg.Connection, ranges: Spans, from_us: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(span index, ts_us, value) of the readings in each [s, e) (from ``from_us`` instead of s where given), ordered
    by span then time."""
    lo_us = ranges.lo_us if from_us is None else from_us
    return window_readings(conn, Spans(ranges.device_id, ranges.metric_id, lo_us, ranges.hi_us - 1))


def stored_prefix(conn: psycopg.Connection, ranges: Spans, new_lo_us: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each range [s, e) whose new readings start at ``new_lo_us`` (the claimed span's first time): the stored
    15-minute row at s if its last reading is before that. Then the readings in it up to there are unchanged since
    it was computed (a reading that arrived later at or before its last reading is in a queued span that starts there:
    that claim recomputes the bucket whole; a reading stored too late to be queued, in an open late span, makes the
    bucket read whole too), and the updater reads only the readings after it (with the benchmark's
    reading a second, about one in twenty of the bucket's: benchmarks/README.md#the-databases-cpu-for-derived-data).
    Returns (range index, n, sum, min, max, last, last_ts_us) arrays of the rows found."""
    rows = conn.execute(
        f"""
        SELECT t.i, b.n, b.sum, b.min, b.max, b.last, {_us("b.last_ts")}
        FROM (SELECT row_number() OVER () - 1 AS i, d, m, lo, hi FROM {_UNNEST}) t
        JOIN sample_buckets b ON b.resolution = '15min' AND b.device_id = t.d AND b.metric_id = t.m
         AND b.bucket_start = {_ts("t.lo")} AND b.last_ts < {_ts("t.hi")}
        WHERE NOT EXISTS (
            -- Readings stored without a live recompute (later than the live horizon) may lie before the row's last
            -- reading and not be in it: a whole read would count them (migration 025).
            SELECT 1 FROM late_spans l WHERE l.resolved_at IS NULL AND l.device_id = t.d AND l.metric_id = t.m
            AND l.hi >= b.bucket_start AND l.lo <= b.last_ts)
        ORDER BY t.i
        """,
        (ranges.device_id.tolist(), ranges.metric_id.tolist(), ranges.lo_us.tolist(), new_lo_us.tolist()),
    ).fetchall()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    types = (np.int64, np.int64, np.float64, np.float64, np.float64, np.float64, np.int64)
    return tuple(np.array(c, t) for c, t in zip(cols, types, strict=True))


@dataclass(frozen=True, slots=True)
class SampleRows:
    """15-minute rows to store, one per (span, bucket) with readings."""

    device_id: np.ndarray
    metric_id: np.ndarray
    bucket_start_us: np.ndarray
    n: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray
    last_ts_us: np.ndarray


def replace_samples(conn: psycopg.Connection, ranges: Spans, rows: SampleRows) -> None:
    """Replace the 15-minute rows of each (device, metric, [s, e)) and recompute the coarser levels over them."""
    delete_15min(conn, "sample_buckets", ranges)
    with conn.cursor().copy(
        "COPY sample_buckets (resolution, device_id, metric_id, bucket_start, n, sum, min, max, last, last_ts)"
        " FROM STDIN (FORMAT BINARY)"
    ) as cp:
        cp.write(encode_columns([
            ("S5", b"15min"), (">i4", rows.device_id), (">i2", rows.metric_id),
            (">i8", rows.bucket_start_us - PG_EPOCH_OFFSET_US), (">i4", rows.n), (">f8", rows.sum), (">f8", rows.min),
            (">f8", rows.max), (">f8", rows.last), (">i8", rows.last_ts_us - PG_EPOCH_OFFSET_US),
        ]))  # fmt: skip
    set_city_time_zone(conn)
    for level, finer, unit in ROLL_UP_LEVELS:
        roll_up(
            conn, "sample_buckets", ranges, level, finer, unit,
            {
                "n": "sum(b.n)", "sum": in_time_order("sum(b.sum)"), "min": "min(b.min)", "max": "max(b.max)",
                "last": "(array_agg(b.last ORDER BY b.last_ts DESC))[1]", "last_ts": "max(b.last_ts)",
            },
        )  # fmt: skip
    refresh_sites(conn, "sample_buckets", ranges)


def lamp_ranges(conn: psycopg.Connection, spans: Spans) -> tuple[Spans, Spans, np.ndarray, np.ndarray]:
    """For each lamp span: the bucket range [s, e), the reading window [wlo, whi], the hold time (us), and where
    the device's accounted time ends when no reading follows the span (last reading + hold; else NO_END): the
    rest of the range after it is not known yet, rather than unknown."""
    rows = conn.execute(
        f"""
        WITH q AS (SELECT d, m, {_ts("lo")} AS lo, {_ts("hi")} AS hi FROM {_UNNEST}),
        -- A recompute queues whole ranges: narrow each span to the readings it holds.
        t AS (SELECT q.d, q.m, r.lo, r.hi FROM q CROSS JOIN LATERAL (
                SELECT min(x.ts) AS lo, max(x.ts) AS hi FROM readings x
                WHERE x.device_id = q.d AND x.metric_id = q.m AND x.ts BETWEEN q.lo AND q.hi) r
              WHERE r.lo IS NOT NULL),
        h AS MATERIALIZED (
            SELECT t.d, t.m, {_us("t.lo")} AS lo, {_us("t.hi")} AS hi, 2 * dv.cadence_s * 1000000::bigint AS hold,
                (SELECT {_us("x.ts")} FROM readings x WHERE x.device_id = t.d AND x.metric_id = t.m AND x.ts < t.lo
                 AND x.ts >= t.lo - interval '{GAP_LOOKBACK}' ORDER BY x.ts DESC LIMIT 1) AS p,
                (SELECT {_us("x.ts")} FROM readings x WHERE x.device_id = t.d AND x.metric_id = t.m AND x.ts > t.hi
                 ORDER BY x.ts LIMIT 1) AS n
              FROM t JOIN devices dv ON dv.id = t.d),
        se AS MATERIALIZED (
            SELECT d, m, hold, hi, n, (least(lo, coalesce(p + hold, lo)) / {BUCKET_US}) * {BUCKET_US} AS s,
                   ((least(coalesce(n, hi + hold), hi + hold) + {BUCKET_US} - 1) / {BUCKET_US}) * {BUCKET_US} AS e
            FROM h)
        SELECT se.d, se.m, se.s, se.e, CASE WHEN se.n IS NULL THEN se.hi + se.hold END AS open_from, se.hold,
            {WINDOW_LO} AS wlo,
            {WINDOW_HI} AS whi
        FROM se ORDER BY se.d, se.m
        """,
        spans.params(),
    ).fetchall()
    ranges = _spans([(d, m, s, e) for d, m, s, e, _, _, _, _ in rows])
    windows = _spans([(d, m, wlo, whi) for d, m, _, _, _, _, wlo, whi in rows])
    hold = np.array([r[5] for r in rows], np.int64)
    open_from = np.array([NO_END if r[4] is None else r[4] for r in rows], np.int64)
    return ranges, windows, hold, open_from


def site_coordinates(conn: psycopg.Connection, device_ids: list[int]) -> dict[int, tuple[float, float] | None]:
    """device -> (lat, lon) of its site, or None where the site has no coordinates."""
    rows = conn.execute(
        "SELECT d.id, s.lat, s.lon FROM devices d JOIN sites s ON s.id = d.site_id WHERE d.id = ANY(%s)",
        (device_ids,),
    ).fetchall()
    return {d: (lat, lon) if lat is not None and lon is not None else None for d, lat, lon in rows}


@dataclass(frozen=True, slots=True)
class LampRows:
    """15-minute lamp accounting rows, seconds."""

    device_id: np.ndarray
    bucket_start_us: np.ndarray
    on_s: np.ndarray
    day_on_s: np.ndarray
    night_off_s: np.ndarray
    night_known_s: np.ndarray
    unknown_s: np.ndarray


def replace_lamps(conn: psycopg.Connection, ranges: Spans, rows: LampRows) -> None:
    delete_15min(conn, "lamp_buckets", ranges, with_metric=False)
    with conn.cursor().copy(
        "COPY lamp_buckets (resolution, device_id, bucket_start, on_s, day_on_s, night_off_s, night_known_s,"
        " unknown_s) FROM STDIN"
    ) as cp:
        for d, b, *seconds in zip(
            rows.device_id.tolist(), rows.bucket_start_us.tolist(), rows.on_s.tolist(), rows.day_on_s.tolist(),
            rows.night_off_s.tolist(), rows.night_known_s.tolist(), rows.unknown_s.tolist(), strict=True,
        ):  # fmt: skip
            cp.write_row(("15min", d, us_to_datetime(b), *seconds))
    set_city_time_zone(conn)
    sums = {c: in_time_order(f"sum(b.{c})") for c in ("on_s", "day_on_s", "night_off_s", "night_known_s", "unknown_s")}
    for level, finer, unit in ROLL_UP_LEVELS:
        roll_up(conn, "lamp_buckets", ranges, level, finer, unit, sums, with_metric=False)


def resolve_late_spans(conn: psycopg.Connection, lo_us: int, hi_us: int) -> int:
    """Mark the late spans inside [lo, hi] as handled by a recompute; returns how many."""
    cur = conn.execute(
        f"UPDATE late_spans SET resolved_at = now() WHERE resolved_at IS NULL"
        f" AND lo >= {_EPOCH} + %s * {_US} AND hi <= {_EPOCH} + %s * {_US}",
        (lo_us, hi_us),
    )
    return cur.rowcount
