"""End to end with faults on: the virtual city -> real Mosquitto -> ingest -> real PostgreSQL.

The simulator's ground truth is the independent expectation: every reading it published that the broker accepted
is stored exactly once (same value, same event time), every malformed message is a dead letter with the reason the
simulator intended, and every correction (another value for a reading already sent) is listed as a conflict while
the first value stays stored.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from lccm.services import Broker
from lccm.simulators.run import SimConfig, run_simulation
from tests._city import registered_city, running_ingest

# Heavier faults than the city file's defaults, so a short run exercises every kind of fault many times.
FAULTS = {
    "drop": 0.02,
    "duplicate": 0.05,
    "reorder": 0.03,
    "late": 0.02,
    "late_delay_s": [600, 3600],
    "clock_skew": 0.2,
    "stuck": 0.01,
    "spike": 0.01,
    "register_reset": 0.005,
    "correction": 0.01,
    "malformed": {
        "bad_json": 0.004,
        "bad_payload": 0.004,
        "bad_senml": 0.004,
        "unknown_field": 0.004,
        "device_mismatch": 0.004,
        "unknown_metric": 0.004,
        "unknown_unit": 0.004,
        "bad_time": 0.004,
        "naive_time": 0.004,
        "future_time": 0.004,
        "non_finite_value": 0.004,
        "out_of_range": 0.004,
        "oversized_payload": 0.002,
        "too_many_readings": 0.002,
        "bad_topic": 0.002,
        "bad_status": 0.002,
        "city_mismatch": 0.002,
        "unsupported_version": 0.002,
    },
}


def _stored(url: str) -> dict[tuple[str, str, int], float]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT d.device_id, m.name, (extract(epoch FROM r.ts) * 1000000)::bigint, r.value"
            " FROM readings r JOIN devices d ON d.id = r.device_id JOIN metrics m ON m.id = r.metric_id"
        ).fetchall()
    return {(dev, metric, int(ts)): float(v) for dev, metric, ts, v in rows}


@pytest.mark.slow
def test_every_accepted_reading_is_stored_once_and_every_malformed_message_is_a_dead_letter(
    fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    city = registered_city(fresh_db, tmp_path)
    worker, _ = running_ingest(fresh_db, broker, topic_root, tmp_path)
    group = topic_root.split("/")[0]
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    try:
        truth = run_simulation(
            city,
            SimConfig(
                host=broker.host,
                port=broker.port,
                protocol="5",
                seed=7,
                start=end - timedelta(hours=6),
                end=end,
                speed=None,  # replay as fast as possible
                duration_s=None,
                faults=True,
                fault_overrides=FAULTS,
                max_devices=150,
                topic_root=topic_root,
                client_id_prefix=f"sim-{group}",
            ),
        )
        worker.wait_idle(1.0)
    finally:
        worker.stop()
    assert worker.error is None

    expected = truth.expected_readings()
    expected_by_key = {(dev, metric, ts): v for dev, metric, ts, v in expected}
    assert len(expected_by_key) == len(expected), "the simulator sent two values for one (device, metric, time)"
    stored = _stored(fresh_db)
    missing = expected_by_key.keys() - stored.keys()
    extra = stored.keys() - expected_by_key.keys()
    assert not missing, f"{len(missing)} accepted readings not stored, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} stored readings the simulator never sent validly, e.g. {sorted(extra)[:3]}"
    wrong = [k for k, v in expected_by_key.items() if not math.isclose(stored[k], v, rel_tol=1e-9, abs_tol=1e-9)]
    assert not wrong, f"{len(wrong)} values differ, e.g. {[(k, expected_by_key[k], stored[k]) for k in wrong[:3]]}"

    with psycopg.connect(fresh_db) as conn:
        dead: Counter[str] = Counter(
            dict(conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall())
        )
    assert dead == truth.expected_dead_letters()
    # The run must actually have exercised what it claims to test.
    assert len(dead) >= 12 and dead["unknown_device"] > 0

    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            "SELECT d.device_id, m.name, (extract(epoch FROM c.ts) * 1000000)::bigint, c.offered_value, c.stored_value"
            " FROM reading_conflicts c JOIN devices d ON d.id = c.device_id JOIN metrics m ON m.id = c.metric_id"
        ).fetchall()
    conflicts = {(dev, metric, int(ts), float(offered)) for dev, metric, ts, offered, _ in rows}
    expected_conflicts = truth.expected_conflicts()
    assert len(expected_conflicts) > 10, "the run sent too few corrections to test them"
    assert len(conflicts) == len(rows) == len(expected_conflicts)
    offered_by_key = {k[:3]: k[3] for k in expected_conflicts}
    assert {k[:3] for k in conflicts} == offered_by_key.keys()
    assert all(math.isclose(v, offered_by_key[(d, m, t)], rel_tol=1e-12) for d, m, t, v in conflicts)
    for dev, metric, ts, _, stored in rows:
        assert math.isclose(stored, expected_by_key[(dev, metric, int(ts))], rel_tol=1e-9, abs_tol=1e-9)
    assert worker.loop.stats.conflicts == len(expected_conflicts)
    assert worker.loop.stats.duplicates_dropped + worker.loop.stats.duplicates_in_db > 0
