"""Found by the partition equivalence test (docs/partitions.md): the energy updater's result for a stuck register
depended on how its readings were grouped into claims, so several ingest processes (or one with another batching)
stored other buckets from the same readings.

A meter drawing 120 kW reports every minute; its display sticks for 20 minutes, then catches up by 40 kWh. Sent all
at once, the catch-up is spread over the stuck run (30 kWh estimated in each of its buckets). Sent as it happens
live, with the catch-up as the newest reading of a batch and the readings after it in the next, the catch-up is
first judged at the live edge (suspect: nothing confirms the new level yet) and the stuck bucket before it is
stored as a measured zero; the next batch's recompute went back over the suspect bucket to "the last good one
before it", that measured zero, and no further: 0 kWh measured and 60 kWh suspect instead of 30 + 30 estimated.
store/energy.py: bucket_ranges now looks back over a flat run from there too, so these groupings agree.

The second case: readings that come after a stuck run's catch-up was stored (a killed process's messages again, a
late or reordered message). Their recompute ended inside the flat run, without the catch-up: see the second test.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from lccm.imports.registry import parse_registry_csv
from lccm.runtime import energy_updater, factor_rows
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from tests._db import device_pk, fresh_database, registry_csv, write_readings

Point = tuple[datetime, float]


def stuck_meter() -> list[Point]:
    """3 hours at one reading a minute, 2 kWh a minute, the display stuck from minute 60 to 79."""
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    return [(t0 + timedelta(minutes=i), 1000.0 + 2 * (min(i, 60) if 60 <= i < 80 else i)) for i in range(180)]


def buckets(batches: Sequence[Sequence[Point]]) -> list[tuple[Any, ...]]:
    """The meter's 15-minute buckets after writing the batches in order, draining the updater after each."""
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            import_registry(conn, parse_registry_csv(registry_csv()))
            sync_factor_registry(conn, *factor_rows())
            d = device_pk(conn, "HALL-M2")  # no rated power: its bound is learned from its buckets
        updater = energy_updater(Settings(database_url=url), url)
        for batch in batches:
            with psycopg.connect(url) as conn:
                write_readings(conn, [(d, 1, t, v, t + timedelta(seconds=5)) for t, v in batch])
            updater.drain()
        with psycopg.connect(url) as conn:
            return conn.execute(
                "SELECT bucket_start, round(amount::numeric, 6), round(amount_estimated::numeric, 6), quality"
                " FROM energy_buckets WHERE resolution = '15min' ORDER BY bucket_start"
            ).fetchall()


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param((81,), id="the catch-up newest, then the rest"),
        pytest.param((60, 80), id="before the stuck run, the stuck run, then the catch-up and the rest"),
        pytest.param(tuple(range(15, 180, 15)), id="a quarter-hour at a time"),
    ],
)
def test_a_stuck_register_gives_the_same_buckets_however_its_readings_are_grouped(cuts: tuple[int, ...]) -> None:
    points = stuck_meter()
    whole = buckets([points])
    stuck = [b[1:] for b in whole[4:6]]  # the quarter-hours from minute 60 and 75: (kWh, estimated kWh, quality)
    assert stuck == [(30, 30, 1), (30, 12, 2)], "the catch-up is spread over the stuck run"
    edges = (0, *cuts, len(points))
    assert buckets([points[a:b] for a, b in itertools.pairwise(edges)]) == whole


def stuck_from_minute_50() -> list[Point]:
    """As :func:`stuck_meter`, but the display sticks at minute 50 (a quarter-hour's middle) up to minute 79: 1100 kWh
    for 30 readings, then 1160 at minute 80 (60 kWh caught up) and on at 2 kWh a minute."""
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    return [(t0 + timedelta(minutes=i), 1000.0 + 2 * (50 if 50 <= i < 80 else i)) for i in range(180)]


@pytest.mark.parametrize(
    "late",
    [
        pytest.param(range(48, 49), id="a reading just before the stuck run comes after the catch-up"),
        pytest.param(range(60, 70), id="readings inside the stuck run come after the catch-up"),
        pytest.param(range(50, 52), id="the first readings of the stuck run come after the catch-up"),
    ],
)
def test_a_late_reading_before_a_stored_catch_up_keeps_the_catch_up_spread(late: range) -> None:
    """The second case the partition test found (docs/partitions.md): readings that come after the catch-up of a
    stuck run was stored. Their recompute ended inside the flat run (the first reading after the new ones, to the
    end of its quarter-hour), so the engine never saw the catch-up: the quarter-hours it covered were stored as
    measured zeros, and the quarter-hours after kept the spread from before (over a shorter run, when the new
    readings are its first). The energy updater now extends such a range forward over the flat run (or the open
    suspect run) that crosses its end, to the reading after its catch-up (EnergyUpdater._store).

    By hand: the catch-up at minute 80 is over the cap of its own minute, within the cap since minute 50 where the
    register stuck: held, and spread when minute 81 carries on, 62 kWh over (50, 81], 2 kWh a minute. The
    quarter-hour from minute 45 holds 10 kWh measured (46..50) and 20 estimated (50..60); the one from 60 is 30 kWh
    estimated; the one from 75 has 12 estimated (75..81) and 18 measured, suspect (the held row at 80)."""
    points = stuck_from_minute_50()
    whole = buckets([points])
    assert [b[1:] for b in whole[3:6]] == [(30, 20, 1), (30, 30, 1), (30, 12, 2)]
    early = [p for i, p in enumerate(points) if i not in late]
    assert buckets([early, [points[i] for i in late]]) == whole
