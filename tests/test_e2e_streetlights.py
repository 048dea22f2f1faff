"""Streetlight burning time end to end: the simulator's lamps (switched by photocells near sunset and sunrise)
through the real broker, ingest and database, then the sample updater's lamp accounting, against the simulator's
true lit seconds (GroundTruth.lamp_on_seconds, from its own switching instants).

The day runs from noon to noon Bangkok time, so every lamp starts and ends the run switched off: the lamp
accounting (a state holds until the next reading) then covers exactly the truth's span, first to last reading.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from lccm.engine.timebase import BANGKOK
from lccm.services import Broker
from lccm.simulators.run import SimConfig, run_simulation
from lccm.stream.samples import SampleUpdater
from tests._city import registered_city, running_ingest

CABINETS = ["LPG-SL-C01-L*", "LPG-SL-C02-L*"]  # an HPS road and an LED road, about 100 lamps


@pytest.mark.slow
def test_lamp_burning_hours_equal_the_simulators_switching(
    fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    city = registered_city(fresh_db, tmp_path)
    worker, _ = running_ingest(fresh_db, broker, topic_root, tmp_path)
    group = topic_root.split("/")[0]
    today_noon = datetime.now(BANGKOK).replace(hour=12, minute=0, second=0, microsecond=0)
    end = today_noon if today_noon < datetime.now(BANGKOK) else today_noon - timedelta(days=1)
    try:
        truth = run_simulation(
            city,
            SimConfig(
                host=broker.host, port=broker.port, seed=5, start=end - timedelta(hours=24), end=end,
                speed=None, faults=False, device_filter=CABINETS,
                topic_root=topic_root, client_id_prefix=f"sim-{group}",
            ),
        )  # fmt: skip
        worker.wait_idle(1.0)
    finally:
        worker.stop()
    SampleUpdater(lambda: psycopg.connect(fresh_db)).drain()

    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT d.device_id, sum(b.on_s), sum(b.day_on_s), sum(b.night_off_s), sum(b.unknown_s)"
            " FROM lamp_buckets b JOIN devices d ON d.id = b.device_id WHERE b.resolution = '15min'"
            " GROUP BY d.device_id"
        ).fetchall()
        day_rows = conn.execute("SELECT sum(on_s) FROM lamp_buckets WHERE resolution = '1d'").fetchone()
    ours = {dev: on_s for dev, on_s, *_ in rows}
    true = truth.lamp_on_seconds()
    assert len(true) > 90 and set(ours) <= set(true)
    lit = {dev for dev, s in true.items() if s > 0}
    assert 0 < len(true) - len(lit) < 10, "the city's failed lamps (about 1 %) should be dark all night"
    # Exact per lamp: switching instants are reading instants, and no reading is lost without faults.
    mismatched = {dev: (ours.get(dev, 0.0), s) for dev, s in true.items() if abs(ours.get(dev, 0.0) - s) > 1e-6}
    assert not mismatched, list(mismatched.items())[:5]
    assert all(unknown == 0 for *_, unknown in rows), [r for r in rows if r[4]][:5]
    # Photocells switch within minutes of sunset and sunrise: day burning is at most the grace period's edges.
    assert sum(day_on for _, _, day_on, _, _ in rows) <= 0.02 * sum(true.values())
    # A failed lamp is dark all night: its night is an outage.
    for dev in set(true) - lit:
        outage = next(r[3] for r in rows if r[0] == dev)
        assert outage > 10 * 3600, dev
    assert day_rows is not None and day_rows[0] == pytest.approx(sum(true.values()))
