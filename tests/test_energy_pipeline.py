"""Registers -> 15-minute energy and emissions -> Bangkok hours, days, months: hand-computed, then live == recompute.

The meter (rolls over at 100,000 kWh, reads every 15 minutes) reads across Bangkok's midnight into 2026, when TGO's
grid factor drops from 0.4999 to 0.4750 kgCO2e/kWh (2025-12-31T17:00Z). Base year 2025 (0.4999 all year).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from lccm.engine.timebase import bkk_us, utc_us
from lccm.store.energy import Spans, enqueue, queue_length
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.energy import EnergyUpdater

BASE_2025 = (bkk_us(2025), bkk_us(2026))
MIN = 60 * 1_000_000


def _setup(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (site_code, name, kind, city) VALUES ('TH', 'Town hall', 'building', 'x')")
        row = conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s, rated_kw, register_modulus)"
            " VALUES ('M1', 1, 'electricity_meter', 'main', 900, 100, 100000) RETURNING id"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _write(url: str, device: int, points: list[tuple[int, float]]) -> None:
    n = len(points)
    cols = ReadingColumns(
        device_id=np.full(n, device, np.int32),
        metric_id=np.full(n, 1, np.int16),
        ts_us=np.array([t for t, _ in points], np.int64),
        value=np.array([v for _, v in points], np.float64),
        seq=np.full(n, NO_SEQ, np.int64),
        received_at_us=np.full(n, utc_us(2026, 1, 2), np.int64),
    )
    with psycopg.connect(url, autocommit=True) as conn:
        write_batch(conn, cols)


def _updater(url: str) -> EnergyUpdater:
    return EnergyUpdater(lambda: psycopg.connect(url), base_year_us=BASE_2025)


def _buckets(url: str, resolution: str) -> list[tuple[datetime, float, float, float, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT bucket_start, round(amount::numeric, 9)::float8, round(kgco2e::numeric, 9)::float8,"
            " round(kgco2e_base::numeric, 9)::float8, quality FROM energy_buckets WHERE resolution = %s"
            " ORDER BY bucket_start",
            (resolution,),
        ).fetchall()


T = [utc_us(2025, 12, 31, 16, 30) + k * 15 * MIN for k in range(5)]  # 23:30 .. 00:30 Bangkok
READINGS = [(T[0], 99990.0), (T[1], 99995.0), (T[2], 2.5), (T[3], 5.0), (T[4], 10.0)]


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_rollover_and_the_new_year_factor_change_by_hand(fresh_db: str) -> None:
    device = _setup(fresh_db)
    _write(fresh_db, device, READINGS)
    result = _updater(fresh_db).drain()
    assert result.spans == 1
    # Intervals: 99990 -> 99995 = 5 kWh; 99995 -> 2.5 wraps at 100,000: 5 + 2.5 = 7.5 kWh; then 2.5 and 5 kWh.
    # Before 17:00Z at 0.4999 kg/kWh: 5 x 0.4999 = 2.4995, 7.5 x 0.4999 = 3.74925.
    # After at 0.4750: 2.5 x 0.475 = 1.1875, 5 x 0.475 = 2.375. Base year 2025: all at 0.4999.
    quarter = [(b, a, kg, base) for b, a, kg, base, _ in _buckets(fresh_db, "15min") if a > 0]
    assert quarter == [
        (utc(2025, 12, 31, 16, 30), 5.0, 2.4995, 2.4995),
        (utc(2025, 12, 31, 16, 45), 7.5, 3.74925, 3.74925),
        (utc(2025, 12, 31, 17, 0), 2.5, 1.1875, 1.24975),
        (utc(2025, 12, 31, 17, 15), 5.0, 2.375, 2.4995),
    ]
    # Bangkok hours are UTC hours (+7 h); the Bangkok day and month change at 17:00Z.
    hours = [(b, a, kg) for b, a, kg, _, _ in _buckets(fresh_db, "1h") if a > 0]
    assert hours == [(utc(2025, 12, 31, 16), 12.5, 6.24875), (utc(2025, 12, 31, 17), 7.5, 3.5625)]
    days = [(b, a, kg, base) for b, a, kg, base, _ in _buckets(fresh_db, "1d") if a > 0]
    assert days == [(utc(2025, 12, 30, 17), 12.5, 6.24875, 6.24875), (utc(2025, 12, 31, 17), 7.5, 3.5625, 3.74925)]
    months = [(b, a, kg) for b, a, kg, _, _ in _buckets(fresh_db, "1mo") if a > 0]
    assert months == [(utc(2025, 11, 30, 17), 12.5, 6.24875), (utc(2025, 12, 31, 17), 7.5, 3.5625)]


def test_a_late_reading_recomputes_its_neighbours_and_live_equals_recompute(fresh_db: str) -> None:
    device = _setup(fresh_db)
    updater = _updater(fresh_db)
    for point in READINGS[:2] + READINGS[3:]:  # live, in order, one batch each, the third reading missing
        _write(fresh_db, device, [point])
        updater.drain()
    # Without the third reading, 99995 -> 5.0 is one 30-minute interval of 10 kWh spread 5 + 5.
    before = {b: a for b, a, *_ in _buckets(fresh_db, "15min")}
    assert before[utc(2025, 12, 31, 16, 45)] == pytest.approx(5.0)
    _write(fresh_db, device, [READINGS[2]])  # the late reading arrives
    updater.drain()
    live = {r: _buckets(fresh_db, r) for r in ("15min", "1h", "1d", "1mo")}
    assert [a for _, a, *_ in live["15min"] if a > 0] == [5.0, 7.5, 2.5, 5.0]

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM energy_buckets")
        enqueue(conn, Spans(np.array([device], np.int32), np.array([1], np.int16),
                            np.array([T[0]], np.int64), np.array([T[-1]], np.int64)))  # fmt: skip
    updater.drain()
    assert {r: _buckets(fresh_db, r) for r in live} == live
    with psycopg.connect(fresh_db) as conn:
        assert queue_length(conn) == 0


def test_a_failed_update_leaves_the_work_queued(fresh_db: str) -> None:
    device = _setup(fresh_db)
    _write(fresh_db, device, READINGS)
    # No factor registry: the update fails after it has claimed the work, inside the same transaction.
    failing = EnergyUpdater(lambda: psycopg.connect(fresh_db), base_year_us=BASE_2025, registry=None)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        failing.run_once()
    with psycopg.connect(fresh_db) as conn:
        assert queue_length(conn) == 1
    assert _updater(fresh_db).drain().spans == 1


def test_closed_buckets_not_fully_covered_are_missing_and_the_live_edge_is_not(fresh_db: str) -> None:
    # First reading at 10:07: the 10:00-10:15 bucket has only 8 of its 15 minutes (no interval before the first
    # reading), so part of its energy is missing. 10:15 and 10:30 are fully covered: measured (0). The 10:45 bucket
    # is the live edge (latest reading 10:47): its quality is not judged until a later reading closes it.
    device = _setup(fresh_db)
    t0 = utc_us(2026, 3, 2, 3, 7)  # 10:07 Bangkok
    points = [(t0 + k * 5 * MIN, 100.0 + k) for k in range(9)]  # 10:07 .. 10:47, 1 kWh per 5 minutes
    _write(fresh_db, device, points)
    _updater(fresh_db).drain()
    missing, measured = 3, 0
    rows = [(b, a, q) for b, a, _, _, q in _buckets(fresh_db, "15min")]
    assert rows == [
        (utc(2026, 3, 2, 3, 0), 1.6, missing),  # 10:07 -> 10:15 = 8 min at 0.2 kWh/min
        (utc(2026, 3, 2, 3, 15), 3.0, measured),
        (utc(2026, 3, 2, 3, 30), 3.0, measured),
        (utc(2026, 3, 2, 3, 45), 0.4, measured),  # 10:45 -> 10:47, still open
    ]
    _write(fresh_db, device, [(t0 + 55 * MIN, 111.0)])  # 11:02 closes 10:45 with a full 15 minutes
    _updater(fresh_db).drain()
    rows = [(b, a, q) for b, a, _, _, q in _buckets(fresh_db, "15min")]
    assert rows[3] == (utc(2026, 3, 2, 3, 45), 3.0, measured) and rows[0][2] == missing
    assert rows[4] == (utc(2026, 3, 2, 4, 0), 0.4, measured)
