"""The updaters' read of raw readings (``store.energy.window_readings``): the binary rows it decodes give exactly the
readings stored, in span then time order, against a pure-Python filter of what was written."""

from __future__ import annotations

import numpy as np
import psycopg

from lccm.engine.timebase import utc_us
from lccm.store.energy import Spans, window_readings
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch

S = 1_000_000


def _devices(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (site_code, name, kind, city) VALUES ('TH', 'Town hall', 'building', 'x')")
        rows = conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s) VALUES"
            " ('M1', 1, 'electricity_meter', 'one', 60), ('M2', 1, 'electricity_meter', 'two', 60) RETURNING id"
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_windows_give_the_stored_readings_exactly(fresh_db: str) -> None:
    d1, d2 = _devices(fresh_db)
    t0 = utc_us(2026, 3, 1)
    # (device, metric, ts_us, value): odd microseconds, a time before PostgreSQL's epoch (2000) and before 1970,
    # values whose last bits a decimal round trip would lose, negative and huge ones.
    points = [
        (d1, 1, t0 + 7, 0.1 + 0.2),
        (d1, 1, t0 + 60 * S, 1e300),
        (d1, 1, t0 + 120 * S + 999_999, -2.5e-300),
        (d1, 2, t0 + 30 * S, 5.0),
        (d2, 1, t0 - 3 * S, 1 / 3),
        (d2, 1, t0, 2 / 3),
        (d2, 1, utc_us(1999, 12, 31, 23, 59) + 1, -7.25),
        (d2, 1, -86_400 * S - 1, 42.0),
    ]
    n = len(points)
    cols = ReadingColumns(
        device_id=np.array([p[0] for p in points], np.int32),
        metric_id=np.array([p[1] for p in points], np.int16),
        ts_us=np.array([p[2] for p in points], np.int64),
        value=np.array([p[3] for p in points], np.float64),
        seq=np.full(n, NO_SEQ, np.int64),
        received_at_us=np.full(n, t0 + 600 * S, np.int64),
    )
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        write_batch(conn, cols, alerts=False)

    # Windows [lo, hi], bounds included: one with nothing in it between two that have readings, and two windows
    # of one series that overlap (each gets its own copy of the shared readings).
    windows = [
        (d1, 1, t0, t0 + 120 * S + 999_999),
        (d1, 2, t0 + 31 * S, t0 + 90 * S),
        (d2, 1, -86_400 * S - 1, t0),
        (d2, 1, t0 - 3 * S, t0 + 1),
        (d1, 1, t0 + 60 * S, t0 + 60 * S),
    ]
    spans = Spans(
        np.array([w[0] for w in windows], np.int32),
        np.array([w[1] for w in windows], np.int16),
        np.array([w[2] for w in windows], np.int64),
        np.array([w[3] for w in windows], np.int64),
    )
    expected = [
        (i, ts, v)
        for i, (d, m, lo, hi) in enumerate(windows)
        for ts, v in sorted((p[2], p[3]) for p in points if p[0] == d and p[1] == m and lo <= p[2] <= hi)
    ]
    with psycopg.connect(fresh_db) as conn:
        span_idx, ts_us, value = window_readings(conn, spans)
    assert (span_idx.dtype, ts_us.dtype, value.dtype) == (np.int32, np.int64, np.float64)
    got = list(zip(span_idx.tolist(), ts_us.tolist(), value.tolist(), strict=True))
    assert got == expected  # float equality: bit for bit
    assert [i for i, _, _ in got] == [0, 0, 0, 2, 2, 2, 2, 3, 3, 4]


def test_no_readings_in_any_window(fresh_db: str) -> None:
    d1, _ = _devices(fresh_db)
    spans = Spans(np.array([d1], np.int32), np.array([1], np.int16), np.array([0], np.int64), np.array([S], np.int64))
    with psycopg.connect(fresh_db) as conn:
        span_idx, ts_us, value = window_readings(conn, spans)
    assert (len(span_idx), len(ts_us), len(value)) == (0, 0, 0)
    assert (span_idx.dtype, ts_us.dtype, value.dtype) == (np.int32, np.int64, np.float64)
