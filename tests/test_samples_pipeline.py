"""Instantaneous readings -> 15-minute statistics -> Bangkok hours, days, months; lamp state -> burning, day
burning and outage time; late data past the horizon. Hand-computed, then live == recompute."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from astral import LocationInfo
from astral.sun import sun

from lccm.engine.timebase import bkk_us, utc_us
from lccm.store.energy import queue_length
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.energy import EnergyUpdater
from lccm.stream.samples import SampleUpdater
from lccm.stream.updaters import Updaters, recompute
from tests._db import write_points

MIN = 60 * 1_000_000
DAY = 24 * 60 * MIN
POWER, LAMP_ON = 2, 6
LAMPANG = (18.2888, 99.4908)


def _setup(url: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city, lat, lon) VALUES"
            " ('TH', 'Town hall', 'building', 'Lampang', %s, %s), ('RD', 'Road', 'street', 'Lampang', %s, %s)",
            (*LAMPANG, *LAMPANG),
        )
        meter = conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s) VALUES"
            " ('M1', 1, 'electricity_meter', 'main', 300) RETURNING id"
        ).fetchone()
        lamp = conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s) VALUES"
            " ('L1', 2, 'lamp', 'lamp 1', 900) RETURNING id"
        ).fetchone()
    assert meter is not None and lamp is not None
    return int(meter[0]), int(lamp[0])


def _write(url: str, device: int, metric: int, points: list[tuple[int, float]], received_us: int | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        write_points(conn, device, metric, points, received_us=received_us)


def _samples(url: str, resolution: str) -> list[tuple[datetime, int, float, float, float, float, datetime]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT bucket_start, n, sum, min, max, last, last_ts FROM sample_buckets"
            " WHERE resolution = %s AND metric_id = 2 ORDER BY bucket_start",
            (resolution,),
        ).fetchall()


def _lamps(url: str, resolution: str) -> list[tuple[datetime, float, float, float, float, float]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT bucket_start, on_s, day_on_s, night_off_s, night_known_s, unknown_s FROM lamp_buckets"
            " WHERE resolution = %s ORDER BY bucket_start",
            (resolution,),
        ).fetchall()


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


# Power across Bangkok's midnight at the end of a month: 23:50, 23:55 on 31 Oct, 00:05, 00:10 on 1 Nov (Bangkok).
P = [
    (utc_us(2026, 10, 31, 16, 50), 1000.0),
    (utc_us(2026, 10, 31, 16, 55), 3000.0),
    (utc_us(2026, 10, 31, 17, 5), 500.0),
    (utc_us(2026, 10, 31, 17, 10), 1500.0),
]


def test_power_statistics_by_hand_across_a_bangkok_month_end(fresh_db: str) -> None:
    meter, _ = _setup(fresh_db)
    _write(fresh_db, meter, POWER, P)
    SampleUpdater(lambda: psycopg.connect(fresh_db)).drain()
    # 15-minute buckets: [16:45, 17:00) holds 1000 and 3000; [17:00, 17:15) holds 500 and 1500.
    assert _samples(fresh_db, "15min") == [
        (utc(2026, 10, 31, 16, 45), 2, 4000.0, 1000.0, 3000.0, 3000.0, utc(2026, 10, 31, 16, 55)),
        (utc(2026, 10, 31, 17, 0), 2, 2000.0, 500.0, 1500.0, 1500.0, utc(2026, 10, 31, 17, 10)),
    ]
    # Bangkok hours are UTC hours; the Bangkok day and month change at 17:00Z: 31 Oct 23:00 and 1 Nov 00:00.
    hours = [(b, n, s) for b, n, s, *_ in _samples(fresh_db, "1h")]
    assert hours == [(utc(2026, 10, 31, 16), 2, 4000.0), (utc(2026, 10, 31, 17), 2, 2000.0)]
    months = [(b, n, s, lo, hi, last) for b, n, s, lo, hi, last, _ in _samples(fresh_db, "1mo")]
    assert months == [
        (utc(2026, 9, 30, 17), 2, 4000.0, 1000.0, 3000.0, 3000.0),  # October (Bangkok)
        (utc(2026, 10, 31, 17), 2, 2000.0, 500.0, 1500.0, 1500.0),  # November (Bangkok)
    ]


def test_a_late_sample_updates_every_level_and_live_equals_recompute(fresh_db: str) -> None:
    meter, _ = _setup(fresh_db)
    updaters = Updaters(
        EnergyUpdater(lambda: psycopg.connect(fresh_db), base_year_us=(bkk_us(2025), bkk_us(2026))),
        SampleUpdater(lambda: psycopg.connect(fresh_db)),
    )
    for point in P:
        _write(fresh_db, meter, POWER, [point])
        updaters.drain()
    late = (utc_us(2026, 10, 31, 16, 46), 6000.0)  # a new maximum, older than the bucket's last reading
    _write(fresh_db, meter, POWER, [late])
    updaters.drain()
    live = {r: _samples(fresh_db, r) for r in ("15min", "1h", "1d", "1mo")}
    # The bucket [16:45, 17:00): 1000 + 6000 + 3000 = 10000 over 3; last is still 3000 (16:55 is the latest).
    assert live["15min"][0][1:6] == (3, 10000.0, 1000.0, 6000.0, 3000.0)
    assert live["1d"][0][1:6] == (3, 10000.0, 1000.0, 6000.0, 3000.0)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM sample_buckets")
    recompute(updaters, lambda: psycopg.connect(fresh_db), utc_us(2026, 10, 31), utc_us(2026, 11, 2))
    assert {r: _samples(fresh_db, r) for r in live} == live


def _reference(points: list[tuple[int, float]]) -> tuple[int, float, float, float, float]:
    """(n, sum, min, max, last) of one bucket's readings: a plain running sum in time order."""
    rows = sorted(points)
    total = 0.0
    for _, v in rows:
        total += v
    return len(rows), total, min(v for _, v in rows), max(v for _, v in rows), rows[-1][1]


def test_a_bucket_fed_a_reading_at_a_time_holds_one_reads_statistics(fresh_db: str) -> None:
    """The live path continues a bucket's stored row with the readings after its last one (benchmarks/README.md#the-
    databases-cpu-for-derived-data): the same bits as one read of the bucket, whatever arrives behind that row."""
    meter, _ = _setup(fresh_db)
    updaters = Updaters(
        EnergyUpdater(lambda: psycopg.connect(fresh_db), base_year_us=(bkk_us(2025), bkk_us(2026))),
        SampleUpdater(lambda: psycopg.connect(fresh_db)),
    )
    at = utc_us(2026, 10, 31, 16, 45)  # the bucket [16:45, 17:00)
    fed: list[tuple[int, float]] = []
    for minute, value in ((1, 0.1), (3, 0.2), (5, 0.7), (6, 1e-17), (8, 0.3)):  # sums whose bits depend on the order
        fed.append((at + minute * MIN, value))
        _write(fresh_db, meter, POWER, [fed[-1]])
        updaters.drain()
        assert _samples(fresh_db, "15min")[0][1:6] == _reference(fed)
    behind = (at + 2 * MIN, 0.6)  # queued, before the stored row's last reading: the bucket is read whole
    fed.append(behind)
    _write(fresh_db, meter, POWER, [behind])
    updaters.drain()
    assert _samples(fresh_db, "15min")[0][1:6] == _reference(fed)
    # Past the live horizon (received 8 days later): stored, not queued, an open late span. The next on-time reading
    # reads the bucket whole again, so the late one is counted, as it always was by a whole read.
    past = (at + 4 * MIN, 5.0)
    _write(fresh_db, meter, POWER, [past], received_us=past[0] + 8 * DAY)
    fed.append(past)
    fed.append((at + 9 * MIN, 0.05))
    _write(fresh_db, meter, POWER, [fed[-1]])
    updaters.drain()
    assert _samples(fresh_db, "15min")[0][1:6] == _reference(fed)


def test_the_live_path_continues_the_stored_row_and_recompute_rebuilds_it(fresh_db: str) -> None:
    meter, _ = _setup(fresh_db)
    updaters = Updaters(
        EnergyUpdater(lambda: psycopg.connect(fresh_db), base_year_us=(bkk_us(2025), bkk_us(2026))),
        SampleUpdater(lambda: psycopg.connect(fresh_db)),
    )
    at = utc_us(2026, 10, 31, 16, 45)
    _write(fresh_db, meter, POWER, [(at + MIN, 100.0), (at + 2 * MIN, 200.0)])
    updaters.drain()
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # what the live path trusts: the stored row
        conn.execute("UPDATE sample_buckets SET n = n + 10, sum = sum + 1000 WHERE resolution = '15min'")
    _write(fresh_db, meter, POWER, [(at + 3 * MIN, 300.0)])
    updaters.drain()
    assert _samples(fresh_db, "15min")[0][1:3] == (13, 1600.0)  # continued from it, not read whole
    recompute(updaters, lambda: psycopg.connect(fresh_db), utc_us(2026, 10, 31), utc_us(2026, 11, 1))
    assert _samples(fresh_db, "15min")[0][1:6] == (3, 600.0, 100.0, 300.0, 300.0)  # rebuilt from the readings


def _sun_is_up(at_us: int) -> bool:
    """Independent of the engine's NOAA sun times: astral at Lampang."""
    where = LocationInfo("Lampang", "Thailand", "Asia/Bangkok", *LAMPANG)
    at = datetime.fromtimestamp(at_us / 1e6, UTC)
    s = sun(where.observer, date=at.astimezone(where.tzinfo).date(), tzinfo=where.tzinfo)
    return bool(s["sunrise"] < at < s["sunset"])


def test_lamp_burning_day_burning_and_outage_by_hand(fresh_db: str) -> None:
    _, lamp = _setup(fresh_db)
    noon, evening = bkk_us(2026, 11, 20, 12), bkk_us(2026, 11, 20, 20)
    assert _sun_is_up(noon) and _sun_is_up(noon + 90 * MIN)
    assert not _sun_is_up(evening) and not _sun_is_up(evening + 90 * MIN)
    q = 15 * MIN
    day = [(noon + k * q, 1.0) for k in range(4)] + [(noon + 4 * q, 0.0)]  # on 12:00-13:00, then off
    night = [(evening, 1.0), (evening + q, 1.0), (evening + 2 * q, 0.0), (evening + 3 * q, 0.0), (evening + 4 * q, 1.0)]
    _write(fresh_db, lamp, LAMP_ON, day + night)
    SampleUpdater(lambda: psycopg.connect(fresh_db)).drain()
    by_hour = {b: row for b, *row in _lamps(fresh_db, "1h")}
    # 12:00-13:00 on, all while the sun is up (day burning 3600 s). The 13:00 'off' holds 2 x 900 s = 30 min:
    # 13:00-13:30 is known off (by day, no outage), 13:30-14:00 unknown.
    assert by_hour[utc(2026, 11, 20, 5)] == [3600.0, 3600.0, 0.0, 0.0, 0.0]
    assert by_hour[utc(2026, 11, 20, 6)] == [0.0, 0.0, 0.0, 0.0, 1800.0]
    # Night: on 20:00-20:30, off 20:30-21:00 (outage 1800 s), on 21:00 held until 21:30. Time after the last
    # reading's hold is not accounted until another reading follows.
    assert by_hour[utc(2026, 11, 20, 13)] == [1800.0, 0.0, 1800.0, 3600.0, 0.0]
    assert by_hour[utc(2026, 11, 20, 14)] == [1800.0, 0.0, 0.0, 1800.0, 0.0]
    days = _lamps(fresh_db, "1d")
    # Burning 1 h + 30 min + 30 min; day burning 1 h; outage 30 min; unknown 13:30-20:00 = 6.5 h.
    assert [tuple(r[1:]) for r in days] == [(7200.0, 3600.0, 1800.0, 5400.0, 23400.0)]

    # A late 'off' at 12:50 cuts the noon burning to 50 minutes; then the next morning's readings arrive one at a
    # time (the gap since 21:30 becomes unknown time). Live equals a recompute from scratch.
    _write(fresh_db, lamp, LAMP_ON, [(noon + 50 * MIN, 0.0)])
    SampleUpdater(lambda: psycopg.connect(fresh_db)).drain()
    for k in range(3):
        _write(fresh_db, lamp, LAMP_ON, [(bkk_us(2026, 11, 21, 5) + k * q, 1.0)])
        SampleUpdater(lambda: psycopg.connect(fresh_db)).drain()
    live = {r: _lamps(fresh_db, r) for r in ("15min", "1h", "1d", "1mo")}
    assert {b: row[1] for b, *row in live["1h"]}[utc(2026, 11, 20, 5)] == 3000.0
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DELETE FROM lamp_buckets")
    updaters = Updaters(
        EnergyUpdater(lambda: psycopg.connect(fresh_db), base_year_us=(bkk_us(2025), bkk_us(2026))),
        SampleUpdater(lambda: psycopg.connect(fresh_db)),
    )
    recompute(updaters, lambda: psycopg.connect(fresh_db), utc_us(2026, 11, 19), utc_us(2026, 11, 22))
    assert {r: _lamps(fresh_db, r) for r in live} == live


def test_readings_past_the_late_horizon_are_stored_listed_and_left_to_recompute(fresh_db: str) -> None:
    meter, _ = _setup(fresh_db)
    received = utc_us(2026, 11, 20)
    _write(fresh_db, meter, POWER, [(received - 8 * DAY, 700.0), (received - 8 * DAY + 5 * MIN, 900.0)], received)
    _write(fresh_db, meter, POWER, [(received - 6 * DAY, 100.0)], received)  # inside the horizon
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (3,)  # nothing accepted is dropped
        late = conn.execute("SELECT device_id, metric_id, readings, resolved_at FROM late_spans").fetchall()
        assert late == [(meter, POWER, 2, None)]
        assert queue_length(conn, "sample_queue") == 1  # only the on-time reading
    updaters = Updaters(
        EnergyUpdater(lambda: psycopg.connect(fresh_db), base_year_us=(bkk_us(2025), bkk_us(2026))),
        SampleUpdater(lambda: psycopg.connect(fresh_db)),
    )
    updaters.drain()
    assert [n for _, n, *_ in _samples(fresh_db, "15min")] == [1]
    recompute(updaters, lambda: psycopg.connect(fresh_db), received - 9 * DAY, received)
    assert [n for _, n, *_ in _samples(fresh_db, "15min")] == [2, 1]
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute("SELECT resolved_at IS NOT NULL FROM late_spans").fetchone()
    assert row == (True,)


@pytest.mark.parametrize("horizon_days", [1, 30])
def test_the_horizon_is_a_setting(fresh_db: str, horizon_days: int) -> None:
    meter, _ = _setup(fresh_db)
    received = utc_us(2026, 11, 20)
    cols = ReadingColumns(
        np.array([meter], np.int32), np.array([POWER], np.int16), np.array([received - 2 * DAY], np.int64),
        np.array([5.0]), np.array([NO_SEQ], np.int64), np.array([received], np.int64),
    )  # fmt: skip
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        write_batch(conn, cols, late_horizon_us=horizon_days * DAY)
        late = conn.execute("SELECT count(*) FROM late_spans").fetchone()
    assert late == ((1,) if horizon_days == 1 else (0,))
