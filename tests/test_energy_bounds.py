"""Every meter has a plausibility bound (issue 11, point 4), through the production writer and energy updater into a
real PostgreSQL: learned from the meter's own stored buckets, from its site's for a new meter, or the setting's
default for a new meter at a new site; catch-ups that reach back over earlier updates are stored where they belong
(live updates give what a recompute gives). docs/reference.md#plausibility-bound-of-a-register.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest

from lccm.engine.counters import LEARNED_HEADROOM
from lccm.engine.timebase import CITY_TZ_NAME, US_PER_DAY, bkk_us
from lccm.runtime import updaters
from lccm.settings import Settings
from lccm.store.energy import Spans, bound_priors, enqueue
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.energy import BOUND_HISTORY_DAYS, DEFAULT_BOUND_KW, DEFAULT_BOUND_LPH, EnergyUpdater
from lccm.stream.updaters import recompute

BASE_2025 = (bkk_us(2025), bkk_us(2026))
MIN = 60 * 1_000_000
Q = 15 * MIN
DAY0 = bkk_us(2026, 3, 2)  # a Monday
ENERGY, FUEL = 1, 8


def _setup(url: str) -> dict[str, int]:
    """Town hall (TH): main meter M1 and a new annex meter M2, neither with a rated power. Depot (DP): fuel meter G1,
    alone at its site. Every meter reads every 15 minutes."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city) VALUES ('TH', 'Town hall', 'building', 'x'),"
            " ('DP', 'Depot', 'fleet', 'x')"
        )
        rows = conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s, register_modulus) VALUES"
            " ('M1', 1, 'electricity_meter', 'main', 900, 100000), ('M2', 1, 'electricity_meter', 'annex', 900, NULL),"
            " ('G1', 2, 'fuel_meter', 'pump', 900, NULL) RETURNING device_id, id"
        ).fetchall()
    return {name: int(pk) for name, pk in rows}


def _write(url: str, device: int, metric: int, points: list[tuple[int, float]]) -> None:
    n = len(points)
    cols = ReadingColumns(
        device_id=np.full(n, device, np.int32),
        metric_id=np.full(n, metric, np.int16),
        ts_us=np.array([t for t, _ in points], np.int64),
        value=np.array([v for _, v in points], np.float64),
        seq=np.full(n, NO_SEQ, np.int64),
        received_at_us=np.full(n, DAY0, np.int64),
    )
    with psycopg.connect(url, autocommit=True) as conn:
        write_batch(conn, cols)


def _updater(url: str) -> EnergyUpdater:
    return EnergyUpdater(lambda: psycopg.connect(url), base_year_us=BASE_2025)


def _quarters(url: str, device: int) -> dict[int, tuple[float, int]]:
    """15-minute buckets of a device: start (UTC us) -> (kWh or l, quality)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT (extract(epoch FROM bucket_start) * 1e6)::bigint, amount, quality FROM energy_buckets"
            " WHERE resolution = '15min' AND device_id = %s ORDER BY bucket_start",
            (device,),
        ).fetchall()
    return {int(t): (float(a), int(q)) for t, a, q in rows}


def _history(url: str, device: int) -> float:
    """Two days of M1: 4 kW, and 8 kW from 13:00 to 15:00 each day (eight quarters); returns the last register."""
    points, reg = [], 5000.0
    for k in range(2 * 96 + 1):
        t = DAY0 + k * Q
        points.append((t, reg))
        hour = (k % 96) / 4
        reg += (8.0 if 13 <= hour < 15 else 4.0) * 0.25
    _write(url, device, ENERGY, points)
    _updater(url).drain()
    return points[-1][1]


def _live(url: str, device: int, metric: int, points: list[tuple[int, float]]) -> None:
    """Each reading in its own batch, the updater drained after each (the live path)."""
    for p in points:
        _write(url, device, metric, [p])
        _updater(url).drain()


def _recomputed(url: str, device: int, metric: int, lo: int, hi: int) -> dict[int, tuple[float, int]]:
    """The buckets from ``lo`` on, recomputed in one go (the history before, the bound is learned from, is kept)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM energy_buckets WHERE device_id = %s AND bucket_start >= 'epoch'::timestamptz + %s * interval"
            " '1 microsecond'",
            (device, lo),
        )
        enqueue(conn, Spans(np.array([device], np.int32), np.array([metric], np.int16),
                            np.array([lo], np.int64), np.array([hi], np.int64)))  # fmt: skip
    _updater(url).drain()
    return _quarters(url, device)


def test_the_bound_is_learned_from_the_meters_own_buckets_or_its_sites(fresh_db: str) -> None:
    pk = _setup(fresh_db)
    _history(fresh_db, pk["M1"])
    after = DAY0 + 2 * 96 * Q + Q
    spans = Spans(np.array([pk["M1"], pk["M2"], pk["G1"]], np.int32), np.array([ENERGY, ENERGY, FUEL], np.int16),
                  np.full(3, after, np.int64), np.full(3, after, np.int64))  # fmt: skip
    with psycopg.connect(fresh_db) as conn:
        priors = bound_priors(conn, spans, BOUND_HISTORY_DAYS)
    own, site = priors.own, priors.site
    # M1's third highest quarter: 8 kW (16 quarters at 8 kW); M2 has none, its site's is M1's; G1 has neither
    assert own[0] == pytest.approx(8.0) and np.isnan(site[0])
    assert np.isnan(own[1]) and site[1] == pytest.approx(8.0)
    assert np.isnan(own[2]) and np.isnan(site[2])


def _own_peak(url: str, device: int, metric: int, day_start: int) -> float:
    """The reference: the third highest (or the least of fewer) of amount x 3600 / covered_s among the device's
    15-minute buckets with covered_s > 0 and amount > 0 in [day_start - 28 days, day_start); NaN if none."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT (extract(epoch FROM bucket_start) * 1e6)::bigint, amount, covered_s FROM energy_buckets"
            " WHERE resolution = '15min' AND device_id = %s AND metric_id = %s",
            (device, metric),
        ).fetchall()
    lo = day_start - BOUND_HISTORY_DAYS * US_PER_DAY
    powers = sorted((a * 3600.0 / c for t, a, c in rows if lo <= t < day_start and c > 0 and a > 0), reverse=True)
    return powers[min(2, len(powers) - 1)] if powers else float("nan")


def _spans(pairs: list[tuple[int, int]], starts: list[int]) -> Spans:
    return Spans(np.array([d for d, _ in pairs], np.int32), np.array([m for _, m in pairs], np.int16),
                 np.array(starts, np.int64), np.array(starts, np.int64))  # fmt: skip


def test_every_span_of_a_day_gets_the_bound_of_the_days_before_its_midnight(fresh_db: str) -> None:
    """The bound of a span is that of the Bangkok day it starts in: M1's own robust peak before that day's midnight
    (a pure-Python reference over its stored buckets), for a span at 00:15 as for one at 23:45; M2's is its site's
    (M1's); G1's, at a new site, the default. A span on the history's first day has nothing before its midnight."""
    pk = _setup(fresh_db)
    points, reg = [], 100.0
    for k in range(2 * 96 + 1):  # two days of an uneven load: every quarter's power differs
        points.append((DAY0 + k * Q, reg))
        reg += 0.25 * (3.0 + (k * 37 % 23) / 4.0 + (6.0 if 40 <= k % 96 < 44 else 0.0))
    _write(fresh_db, pk["M1"], ENERGY, points)
    _updater(fresh_db).drain()
    day1, day2 = DAY0 + US_PER_DAY, DAY0 + 2 * US_PER_DAY
    ref1, ref2 = _own_peak(fresh_db, pk["M1"], ENERGY, day1), _own_peak(fresh_db, pk["M1"], ENERGY, day2)
    assert ref1 != ref2 and 4.0 < ref1 < 12.0
    pairs = [(pk["M1"], ENERGY), (pk["M2"], ENERGY), (pk["G1"], FUEL)]
    updater = _updater(fresh_db)
    for day_start, ref in ((day1, ref1), (day2, ref2)):
        for start in (day_start, day_start + Q, day_start + 95 * Q):
            spans = _spans(pairs, [start] * 3)
            with psycopg.connect(fresh_db) as conn:
                priors = bound_priors(conn, spans, BOUND_HISTORY_DAYS)
                learned = updater._learned_bounds(conn, spans)
            assert priors.own[0] == ref and np.isnan(priors.site[0])
            assert np.isnan(priors.own[1]) and priors.site[1] == ref  # M2: its site's
            assert np.isnan(priors.own[2]) and np.isnan(priors.site[2])  # G1: none
            assert learned.tolist() == [LEARNED_HEADROOM * ref, LEARNED_HEADROOM * ref, DEFAULT_BOUND_LPH]
    # Before the history's first midnight there is nothing, even for a span late that day (a range-start rule saw
    # the day's own quarters before it).
    with psycopg.connect(fresh_db) as conn:
        priors = bound_priors(conn, _spans(pairs[:2], [DAY0 + 95 * Q] * 2), BOUND_HISTORY_DAYS)
    assert np.isnan(priors.own).all() and np.isnan(priors.site).all()


def _two_meters(url: str) -> tuple[int, int, float]:
    """Meters A and B at a site of their own, with the same two days of history as M1 (4 kW, 8 kW 13:00-15:00: a
    bound of 24 kW), stored; returns their ids and the last register (at the second midnight)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (site_code, name, kind, city) VALUES ('GR', 'Grouping', 'building', 'x')")
        rows = conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s) SELECT x, s.id, 'electricity_meter', x,"
            " 900 FROM sites s, unnest(ARRAY['A', 'B']) x WHERE s.site_code = 'GR' ORDER BY x RETURNING id"
        ).fetchall()
    a, b = (int(r[0]) for r in rows)
    points, reg = [], 5000.0
    for k in range(2 * 96 + 1):
        points.append((DAY0 + k * Q, reg))
        reg += (8.0 if 13 <= (k % 96) / 4 < 15 else 4.0) * 0.25
    _write(url, a, ENERGY, points)
    _write(url, b, ENERGY, points)
    _updater(url).drain()
    return a, b, points[-1][1]


def _rows(url: str, device: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT resolution, bucket_start, amount, amount_estimated, covered_s, quality, intervals, kgco2e,"
            " kgco2e_base FROM energy_buckets WHERE device_id = %s ORDER BY resolution, bucket_start",
            (device,),
        ).fetchall()


def test_the_stored_energy_does_not_depend_on_how_a_days_readings_are_claimed(fresh_db: str) -> None:
    """A register near its bound (24 kW: a cap of 9 kWh a quarter) through one Bangkok day: quarters at 20 kW, then
    one at 40 kW (held: over the cap, caught up with the next), then 20 kW again. Meter A's readings in one claim,
    meter B's in four: bit-identical buckets. With the bound learned before each range's start (until migration 028),
    B's later claims learned 3 x 20 kW from the day's own quarters and counted the 40 kW quarter as measured, while A
    held it and spread it over two quarters, estimated."""
    a, b, reg = _two_meters(fresh_db)
    t1 = DAY0 + 2 * US_PER_DAY
    steps = [5.0] * 6 + [10.0] + [5.0] * 5
    points = [(t1 + (k + 1) * Q, reg + sum(steps[: k + 1])) for k in range(len(steps))]
    _write(fresh_db, a, ENERGY, points)
    _updater(fresh_db).drain()
    for chunk in (points[:3], points[3:6], points[6:8], points[8:]):
        _write(fresh_db, b, ENERGY, chunk)
        _updater(fresh_db).drain()
    got_a, got_b = _rows(fresh_db, a), _rows(fresh_db, b)
    assert got_a == got_b
    held = [r for r in got_a if r[0] == "15min" and r[5] > 0]  # the spike's quarter and the next: (10 + 5) / 2
    assert [(r[2], r[3]) for r in held] == [(7.5, 7.5), (7.5, 7.5)]
    assert sum(r[2] for r in got_a if r[0] == "15min" and r[1].timestamp() * 1e6 >= t1) == pytest.approx(sum(steps))


def _bound_day(url: str, device: int, day_start: int) -> tuple[float | None, float | None, int] | None:
    """The cached row of the device's day (own_kw, site_kw, xmin), or None."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT own_kw, site_kw, xmin::text::bigint FROM energy_bound_days WHERE device_id = %s AND metric_id = 1"
            " AND day = (('epoch'::timestamptz + %s * interval '1 microsecond') AT TIME ZONE %s)::date",
            (device, day_start, CITY_TZ_NAME),
        ).fetchone()
    return None if row is None else (row[0], row[1], int(row[2]))


def _own(url: str, device: int, start: int) -> float:
    """The device's own peak for a span starting at ``start``, as a claim would read it; rolled back."""
    with psycopg.connect(url) as conn:
        own = float(bound_priors(conn, _spans([(device, ENERGY)], [start]), BOUND_HISTORY_DAYS).own[0])
        conn.rollback()
    return own


def _scale_history(url: str, device: int, before: int, factor: float) -> None:
    """Scale the device's stored 15-minute amounts before ``before`` (what the cache must not see until a
    recompute)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE energy_buckets SET amount = amount * %s WHERE resolution = '15min' AND device_id = %s"
            " AND bucket_start < 'epoch'::timestamptz + %s * interval '1 microsecond'",
            (factor, device, before),
        )


def test_a_days_bound_is_computed_once_and_reused_by_its_later_claims(fresh_db: str) -> None:
    """The first claim of a day stores its row; later claims of the day read it, unchanged (same row version), even
    when the history before the day changed meanwhile; the next day's first claim learns from the buckets then."""
    pk = _setup(fresh_db)
    reg = _history(fresh_db, pk["M1"])
    t1 = DAY0 + 2 * US_PER_DAY
    # The first claim's range starts at the reading before it, at the day's midnight: the day before's bound.
    _live(fresh_db, pk["M1"], ENERGY, [(t1 + Q, reg + 1.0), (t1 + 2 * Q, reg + 2.0)])
    first = _bound_day(fresh_db, pk["M1"], t1)
    assert first is not None and first[:2] == (pytest.approx(8.0), None)
    _scale_history(fresh_db, pk["M1"], t1, 10.0)  # the history now says 80 kW
    _live(fresh_db, pk["M1"], ENERGY, [(t1 + 3 * Q, reg + 3.0), (t1 + 4 * Q, reg + 4.0)])
    assert _bound_day(fresh_db, pk["M1"], t1) == first  # not rewritten
    assert _own(fresh_db, pk["M1"], t1 + 3 * Q) == 8.0
    assert _own(fresh_db, pk["M1"], t1 + US_PER_DAY) == pytest.approx(80.0)  # the next day: the buckets as they are
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM energy_bound_days WHERE device_id = %s", (pk["M1"],)).fetchone() == (
            3,  # the history's first day, the day before the live one, the live day; the next day's probe rolled back
        )


def test_a_recompute_learns_the_bounds_of_the_days_after_its_start_again(fresh_db: str) -> None:
    """A day's row cached while the history before it was wrong (scaled by 10) holds until `lccm recompute` rewrites
    the buckets: the rows of the days after the start's day are deleted and learned again from the rewritten ones."""
    pk = _setup(fresh_db)
    reg = _history(fresh_db, pk["M1"])
    t1 = DAY0 + 2 * US_PER_DAY
    _scale_history(fresh_db, pk["M1"], t1, 10.0)
    _live(fresh_db, pk["M1"], ENERGY, [(t1 + Q, reg + 1.0), (t1 + 2 * Q, reg + 2.0)])
    stale = _bound_day(fresh_db, pk["M1"], t1)
    assert stale is not None and stale[0] == pytest.approx(80.0)
    start_row = _bound_day(fresh_db, pk["M1"], DAY0)
    s = Settings(database_url=fresh_db)
    recompute(updaters(s, fresh_db), lambda: psycopg.connect(fresh_db), DAY0, t1 + US_PER_DAY)
    assert _bound_day(fresh_db, pk["M1"], DAY0) == start_row  # the start's day: its history is not rewritten
    assert _bound_day(fresh_db, pk["M1"], t1) is None
    assert _own(fresh_db, pk["M1"], t1 + 2 * Q) == pytest.approx(8.0)
    _live(fresh_db, pk["M1"], ENERGY, [(t1 + 3 * Q, reg + 3.0)])
    again = _bound_day(fresh_db, pk["M1"], t1)
    assert again is not None and again[0] == pytest.approx(8.0)


def test_a_spike_on_a_meter_without_rated_power_adds_nothing(fresh_db: str) -> None:
    """M1 learned 3 x 8 kW from its history. Live: 1 kWh a quarter, then a spike of a million kWh, then on. The
    spike's quarter is suspect; the catch-up after it brings the total to what the register says."""
    pk = _setup(fresh_db)
    reg = _history(fresh_db, pk["M1"])
    t1 = DAY0 + 2 * 96 * Q
    live = [(t1 + Q, reg + 1), (t1 + 2 * Q, reg + 1e6), (t1 + 3 * Q, reg + 3), (t1 + 4 * Q, reg + 4),
            (t1 + 5 * Q, reg + 5)]  # fmt: skip
    _live(fresh_db, pk["M1"], ENERGY, live)
    quarters = _quarters(fresh_db, pk["M1"])
    assert sum(a for t, (a, _) in quarters.items() if t >= t1) == pytest.approx(5.0)
    assert quarters[t1 + Q][1] == 2  # the spike's quarter: suspect
    assert max(a for a, _ in quarters.values()) <= LEARNED_HEADROOM * 8.0 * 0.25 * 1.5


def test_a_new_meter_takes_its_sites_bound_and_a_new_site_the_default(fresh_db: str) -> None:
    """M2 is new at the town hall: from its first readings it is bound by M1's history (a spike rejected at once,
    plain quarters measured at once). G1 is new at a new site: the default bound for fuel (100 L/h) does the same."""
    pk = _setup(fresh_db)
    _history(fresh_db, pk["M1"])
    t1 = DAY0 + 2 * 96 * Q
    _live(fresh_db, pk["M2"], ENERGY, [(t1, 10.0), (t1 + Q, 11.0), (t1 + 2 * Q, 12.0), (t1 + 3 * Q, 5e5),
                                       (t1 + 4 * Q, 13.5), (t1 + 5 * Q, 14.0)])  # fmt: skip
    m2 = _quarters(fresh_db, pk["M2"])
    assert sum(a for a, _ in m2.values()) == pytest.approx(4.0)
    assert m2[t1][1] == m2[t1 + Q][1] == 0  # measured: the site's bound holds from the start
    _live(fresh_db, pk["G1"], FUEL, [(t1, 50.0), (t1 + Q, 52.0), (t1 + 2 * Q, 1e7), (t1 + 3 * Q, 55.0),
                                     (t1 + 4 * Q, 56.0)])  # fmt: skip
    g1 = _quarters(fresh_db, pk["G1"])
    assert sum(a for a, _ in g1.values()) == pytest.approx(6.0)
    assert g1[t1][1] == 0


def test_a_growing_load_is_confirmed_across_live_updates_as_a_recompute_would(fresh_db: str) -> None:
    """M1 learned 24 kW (3 x 8); the load jumps to 40 kW (10 kWh a quarter). Readings come one per update: the
    quarters over the bound are held until three agree, then caught up from the anchor, which an earlier update
    stored; the buckets it reaches back into are recomputed. Nothing is lost, and a recompute of the whole range
    gives the same buckets."""
    pk = _setup(fresh_db)
    reg = _history(fresh_db, pk["M1"])
    t1 = DAY0 + 2 * 96 * Q
    live = [(t1 + k * Q, reg + 10.0 * k) for k in range(1, 7)]
    _live(fresh_db, pk["M1"], ENERGY, live)
    got = _quarters(fresh_db, pk["M1"])
    assert sum(a for t, (a, _) in got.items() if t >= t1) == pytest.approx(60.0)
    assert _recomputed(fresh_db, pk["M1"], ENERGY, t1, live[-1][0]) == got


def test_a_dip_caught_up_across_live_updates_is_stored_as_a_recompute_would(fresh_db: str) -> None:
    """A backward glitch and the catch-up two readings later, each reading its own update: the catch-up is spread
    over the quarters since the anchor, stored by earlier updates; live equals recompute."""
    pk = _setup(fresh_db)
    reg = _history(fresh_db, pk["M1"])
    t1 = DAY0 + 2 * 96 * Q
    live = [(t1 + Q, reg + 1), (t1 + 2 * Q, reg - 40), (t1 + 3 * Q, reg + 3), (t1 + 4 * Q, reg + 4)]
    _live(fresh_db, pk["M1"], ENERGY, live)
    got = _quarters(fresh_db, pk["M1"])
    assert sum(a for t, (a, _) in got.items() if t >= t1) == pytest.approx(4.0)
    assert _recomputed(fresh_db, pk["M1"], ENERGY, t1, live[-1][0]) == got


def test_the_settings_defaults_are_the_updaters() -> None:
    s = Settings()
    assert (s.meter_default_bound_kw, s.meter_default_bound_lph, s.meter_bound_history_days) == (
        DEFAULT_BOUND_KW,
        DEFAULT_BOUND_LPH,
        BOUND_HISTORY_DAYS,
    )
