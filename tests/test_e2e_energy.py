"""Issue 3's end-to-end evidence: the engine's kWh, litres and kgCO2e against the simulator's physics.

The virtual city runs with its fault mix on (drops, duplicates, reordering, late data, clock skew, stuck values,
spikes, register resets, rollovers, malformed payloads) through the real broker, ingest and database; the energy
updater turns the stored registers into buckets. The simulator knows the true consumption between each device's
first and last stored reading (GroundTruth.consumed), computed from its own physics, not from the registers.
Expected emissions use TGO's published factors directly (docs/reference.md#grid-electricity-factors): grid 0.4750
kgCO2e/kWh (2026), diesel 2.7078 kg/L for generators (stationary) and 2.7406 kg/L for the fleet (on-road).

A register reset the product is not told of (no meter-swap event recorded) hides what was consumed between the
device's last reading before it and the reset: the register shows 0 and counts on. The engine keeps that interval as
suspect (amount 0, docs/reference.md#plausibility-bound-of-a-register), so the comparison takes it out of the truth:
for each reset the simulator injected, its final register value minus the last stored reading before it. Nothing
else is excused. At some hours of the day a vehicle's reset fell mid-trip and hid 0.6 l, more than the tolerance.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from lccm.runtime import energy_updater, factor_rows
from lccm.services import Broker
from lccm.simulators.run import SimConfig, run_simulation
from lccm.simulators.truth import RegisterEvent
from lccm.store.energy import sync_factor_registry
from tests._city import registered_city, running_ingest

REGISTER_DEVICES = ["LPG-*-M[0-9]", "LPG-SL-C[0-9][0-9]", "LPG-FL-*", "LPG-GEN-*"]
GRID_2026, DIESEL_ONROAD, DIESEL_STATIONARY = 0.4750, 2.7406, 2.7078


def _factor(metric: str, site_kind: str) -> float:
    if metric == "energy":
        return GRID_2026
    return DIESEL_ONROAD if site_kind == "fleet" else DIESEL_STATIONARY  # vehicles vs standby generators


def _hidden_by_resets(conn: psycopg.Connection, events: list[RegisterEvent]) -> dict[tuple[str, str], float]:
    """Per (device, metric): what the injected resets hid, each its register's final value minus the last reading
    stored before it (no stored reading before it: nothing of it is in the truth's interval)."""
    hidden: dict[tuple[str, str], float] = {}
    for e in events:
        row = conn.execute(
            "SELECT r.value FROM readings r JOIN devices d ON d.id = r.device_id JOIN metrics m ON m.id = r.metric_id"
            " WHERE d.device_id = %s AND m.name = %s AND r.ts < 'epoch'::timestamptz + %s * interval '1 microsecond'"
            " ORDER BY r.ts DESC LIMIT 1",
            (e.device_id, e.metric, e.at_us),
        ).fetchone()
        if row is not None and e.old_final_register > row[0]:
            key = (e.device_id, e.metric)
            hidden[key] = hidden.get(key, 0.0) + e.old_final_register - row[0]
    return hidden


@pytest.mark.slow
def test_energy_litres_and_emissions_match_the_simulators_physics_within_a_tenth_of_a_percent(
    fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    city = registered_city(fresh_db, tmp_path)
    with psycopg.connect(fresh_db) as conn:
        sync_factor_registry(conn, *factor_rows())
    worker, settings = running_ingest(fresh_db, broker, topic_root, tmp_path)
    group = topic_root.split("/")[0]
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    try:
        truth = run_simulation(
            city,
            SimConfig(
                host=broker.host, port=broker.port, seed=11, start=end - timedelta(hours=24), end=end,
                speed=None, faults=True, device_filter=REGISTER_DEVICES,
                topic_root=topic_root, client_id_prefix=f"sim-{group}",
            ),
        )  # fmt: skip
        worker.wait_idle(1.0)
    finally:
        worker.stop()
    energy_updater(settings, fresh_db).drain()

    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT d.device_id, d.kind, s.kind, m.name, sum(b.amount), sum(b.kgco2e) FROM energy_buckets b"
            " JOIN devices d ON d.id = b.device_id JOIN sites s ON s.id = d.site_id"
            " JOIN metrics m ON m.id = b.metric_id WHERE b.resolution = '15min'"
            " GROUP BY d.device_id, d.kind, s.kind, m.name"
        ).fetchall()
    got = {(dev, metric): (amount, kg) for dev, _, _, metric, amount, kg in rows}
    kinds = {dev: (kind, site_kind) for dev, kind, site_kind, *_ in rows}
    consumed = truth.consumed()
    summary = truth.summary()
    assert summary["register_resets"] > 0 and summary["faults"].get("stuck", 0) > 0, "faults did not happen"

    with psycopg.connect(fresh_db) as conn:
        hidden = _hidden_by_resets(conn, truth.register_events())
    for (dev, metric), amount in hidden.items():
        consumed[dev][metric] -= amount
    true_kwh = sum(v["energy"] for v in consumed.values() if "energy" in v)
    true_l = sum(v["fuel"] for v in consumed.values() if "fuel" in v)
    true_kg = sum(
        amount * _factor(metric, kinds[dev][1])
        for dev, by_metric in consumed.items()
        for metric, amount in by_metric.items()
        if dev in kinds
    )
    our_kwh = sum(a for (_, metric), (a, _) in got.items() if metric == "energy")
    our_l = sum(a for (_, metric), (a, _) in got.items() if metric == "fuel")
    our_kg = sum(kg for _, kg in got.values())
    report = f"kWh {our_kwh:.3f} vs {true_kwh:.3f}; l {our_l:.3f} vs {true_l:.3f}; kg {our_kg:.3f} vs {true_kg:.3f}"
    print(
        f"engine vs ground truth: {report}; hidden by resets: {hidden}"
    )  # the figures of issue 3's evidence (pytest -s shows them)
    assert true_kwh > 1000 and true_l > 10, report
    assert our_kwh == pytest.approx(true_kwh, rel=1e-3), report
    assert our_l == pytest.approx(true_l, rel=1e-3), report
    assert our_kg == pytest.approx(true_kg, rel=1e-3), report
