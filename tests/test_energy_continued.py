"""The energy updater continues the bucket of a register's last reading from the counter state its previous claim
stored (migration 026, stream/energy.py: EnergyUpdater._compute) instead of re-reading the bucket. Random register
series (steady loads, flat runs and catch-ups, spikes, dips, gaps; a meter with a rated power and one whose bound is
learned), written in random groupings with a drain after each, some batches held back and written after later ones,
give bit for bit the rows of the same groupings read whole (continue_stored=False, what the updater did before), and
``lccm recompute`` rebuilds the same rows again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lccm.engine.timebase import US_PER_DAY
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import energy_updater, factor_rows, updaters
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.stream.updaters import recompute
from tests._db import device_pk, fresh_database, registry_csv, us, write_readings

Reading = tuple[int, int, datetime, float]  # (meter: 0 rated, 1 learned bound; index, ts, register kWh)
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)  # inside the live horizon


@st.composite
def register_series(draw: st.DrawFn) -> list[tuple[datetime, float]]:
    """One meter's readings: seconds to minutes apart, each step a steady load, a stuck display (no step), a catch-up
    after one, a spike up or a step back."""
    n = draw(st.integers(2, 120))
    # from a quarter-hour's start: a bucket before the first reading is missing, and the claims' ranges then reach
    # back over it (store/energy.py: bucket_ranges) for half an hour, continuing nothing
    t, v, out = T0, 1000.0, [(T0, 1000.0)]
    stuck = 0.0
    for _ in range(n):
        dt = draw(st.sampled_from([1] * 6 + [2, 5, 10, 30, 60, 170, 400, 1300]))
        t += timedelta(seconds=dt)
        # faults rarer than loads: after one, the claims' ranges reach back over its suspect buckets for half an
        # hour and read whole; between them the claims continue
        kind = draw(st.sampled_from(["load"] * 30 + ["stuck", "stuck", "spike", "back"]))
        kw = draw(st.sampled_from([0.0, 5.0, 40.0, 40.0, 120.0, 240.0]))
        if kind == "stuck":
            stuck += kw * dt / 3600
        elif kind == "spike":
            v += draw(st.sampled_from([50.0, 5000.0]))
        elif kind == "back":
            v -= draw(st.sampled_from([0.5, 30.0]))
        else:
            v += stuck + kw * dt / 3600
            stuck = 0.0
        out.append((t, v))
    return out


@st.composite
def groupings(draw: st.DrawFn, n: int) -> list[list[int]]:
    """The reading indices [0, n) cut into batches in time order, then a few batches moved later (held back)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=30))))
    batches = [list(range(a, b)) for a, b in zip([0, *cuts], [*cuts, n], strict=True) if b > a]
    for _ in range(draw(st.integers(0, 2))):
        if len(batches) > 2:
            i = draw(st.integers(0, len(batches) - 2))
            j = draw(st.integers(i + 1, len(batches) - 1))
            batches.insert(j, batches.pop(i))
    return batches


def _rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT resolution, device_id, metric_id, bucket_start, amount, amount_estimated, covered_s, quality,"
            " intervals, kgco2e, kgco2e_base FROM energy_buckets ORDER BY 1, 2, 3, 4"
        ).fetchall()


def _run(series: Sequence[Sequence[tuple[datetime, float]]], batches: Sequence[Sequence[Reading]], on: bool) -> Any:
    """Every energy row after each batch written in order and the energy updater drained (continuing stored states
    or not); the rows after an `lccm recompute` of the day; how many ranges were continued."""
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            import_registry(conn, parse_registry_csv(registry_csv()))
            sync_factor_registry(conn, *factor_rows())
            meters = [device_pk(conn, "HALL-M1"), device_pk(conn, "HALL-M2")]  # rated 250 kW; bound learned
        s = Settings(database_url=url)
        updater = energy_updater(s, url)
        updater.continue_stored = on
        live = []  # after every drain: a continued claim stores what a whole read stores, not just in the end
        for batch in batches:
            with psycopg.connect(url) as conn:
                write_readings(conn, [(meters[m], 1, t, v, t + timedelta(seconds=5)) for m, _, t, v in batch])
            updater.drain()
            live.append(_rows(url))
        everything = [t for one in series for t, _ in one]
        lo, hi = us(min(everything)) // US_PER_DAY * US_PER_DAY, us(max(everything)) // US_PER_DAY * US_PER_DAY
        recompute(updaters(s, url), lambda: psycopg.connect(url), lo, hi + US_PER_DAY)
        return live, _rows(url), updater.continued


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(register_series(), min_size=1, max_size=2), st.data())
def test_continued_claims_store_the_rows_of_whole_reads(
    series: list[list[tuple[datetime, float]]], data: st.DataObject
) -> None:
    readings = sorted(
        ((m, i, t, v) for m, one in enumerate(series) for i, (t, v) in enumerate(one)), key=lambda r: r[2]
    )
    batches = [[readings[i] for i in b] for b in data.draw(groupings(len(readings)))]
    on, on_rebuilt, _ = _run(series, batches, on=True)
    off, off_rebuilt, none = _run(series, batches, on=False)
    assert none == 0
    assert on == off  # bit for bit: the floats compared as stored
    assert on_rebuilt == off_rebuilt


def test_a_meter_read_every_second_continues_its_bucket_claim_after_claim() -> None:
    """The benchmark's case: one new reading a second, a claim after each few. All but the claims after a bucket's
    first readings continue the stored state, and the rows are those of whole reads."""
    one = [(T0 + timedelta(seconds=s), 1000.0 + 0.01 * s) for s in range(0, 1900, 1)]
    cut = list(range(0, len(one), 37))
    batches = [[(0, i, *one[i]) for i in range(a, min(b, len(one)))] for a, b in itertools.pairwise([*cut, len(one)])]
    on, on_rebuilt, continued = _run([one], batches, on=True)
    off, _, _ = _run([one], batches, on=False)
    assert on == off
    assert on[-1] == on_rebuilt
    assert continued >= len(batches) - 6, (continued, len(batches))  # the first claim and two per bucket edge


def test_a_stuck_register_fed_a_few_readings_at_a_time_keeps_its_catch_up_spread() -> None:
    """A display stuck across a quarter-hour's edge: the claims' ranges reach back to where it stuck (bucket_ranges),
    before the bucket of the last reading, where a later catch-up is spread to. Such a range is not continued (the
    state's flat run starts before its bucket: _continued), so the catch-up's share of the quarter-hour before is
    stored as a whole read stores it; the claims before and after the stuck run continue."""
    stuck = [(T0 + timedelta(minutes=i), 1000.0 + 2 * (min(i, 10) if 10 <= i < 40 else i)) for i in range(90)]
    for m in (0, 1):
        batches = [[(m, i, *stuck[i]) for i in range(a, min(a + 2, len(stuck)))] for a in range(0, len(stuck), 2)]
        on, on_rebuilt, continued = _run([stuck] if m == 0 else [[], stuck], batches, on=True)
        off, off_rebuilt, _ = _run([stuck] if m == 0 else [[], stuck], batches, on=False)
        assert on == off
        assert on_rebuilt == off_rebuilt
        assert continued > len(batches) // 2, (continued, len(batches))
