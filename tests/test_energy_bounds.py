"""Every meter has a plausibility bound (issue 11, point 4), through the production writer and energy updater into a
real PostgreSQL: learned from the meter's own stored buckets, from its site's for a new meter, or the setting's
default for a new meter at a new site; catch-ups that reach back over earlier updates are stored where they belong
(live updates give what a recompute gives). docs/reference.md#plausibility-bound-of-a-register.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from lccm.engine.counters import LEARNED_HEADROOM
from lccm.engine.timebase import bkk_us
from lccm.settings import Settings
from lccm.store.energy import Spans, bound_priors, enqueue
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.energy import BOUND_HISTORY_DAYS, DEFAULT_BOUND_KW, DEFAULT_BOUND_LPH, EnergyUpdater

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
        own, site = bound_priors(conn, spans, BOUND_HISTORY_DAYS)
    # M1's third highest quarter: 8 kW (16 quarters at 8 kW); M2 has none, its site's is M1's; G1 has neither
    assert own[0] == pytest.approx(8.0) and np.isnan(site[0])
    assert np.isnan(own[1]) and site[1] == pytest.approx(8.0)
    assert np.isnan(own[2]) and np.isnan(site[2])


def test_the_sites_bound_is_the_one_before_each_spans_start(fresh_db: str) -> None:
    """Site bounds looked up once per (site, metric, start): two starts of the new meter M2 get its site's peak before
    each, and M1 at its own first reading has no history and a site with none either."""
    pk = _setup(fresh_db)
    _history(fresh_db, pk["M1"])
    after, early = DAY0 + 2 * 96 * Q + Q, DAY0 + 4 * Q
    starts = np.array([after, early, early, DAY0], np.int64)
    spans = Spans(
        np.array([pk["M2"], pk["M2"], pk["M1"], pk["M1"]], np.int32), np.full(4, ENERGY, np.int16), starts, starts
    )
    with psycopg.connect(fresh_db) as conn:
        own, site = bound_priors(conn, spans, BOUND_HISTORY_DAYS)
    # Before `after`: M1's third highest quarter is 8 kW. Before `early`: M1's four quarters after midnight, 4 kW each.
    assert np.isnan(own[0]) and site[0] == pytest.approx(8.0)
    assert np.isnan(own[1]) and site[1] == pytest.approx(4.0)
    assert own[2] == pytest.approx(4.0) and np.isnan(site[2])
    assert np.isnan(own[3]) and np.isnan(site[3])


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
