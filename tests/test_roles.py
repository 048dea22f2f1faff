"""LCCM_INGEST_ROLE wires what each role runs (docs/partitions.md#roles): the stream without leases or updaters,
the derived work without MQTT, everything in one process by default. Built against the real database and broker,
not started (tests/test_e2e_partitions.py runs the roles end to end)."""

from __future__ import annotations

import pytest

from lccm.runtime import ALERTS_ROLE, Ingest, Services, needs_broker, role_process, runs
from lccm.services import Broker
from lccm.settings import Settings

STREAM = ["stream", "stream-writer"] if Settings().batches_in_flight else ["stream"]
WORKERS = {
    "all": [*STREAM, "updaters", "alerts", "notify-dispatch", "mqtt-in", "statistics", "leases"],
    "stream": [*STREAM, "mqtt-in"],
    "derived": ["updaters", "alerts", "notify-dispatch", "statistics", "leases"],
}


@pytest.mark.parametrize("role", ["all", "stream", "derived"])
def test_each_role_runs_its_workers_in_pipeline_order(fresh_db: str, broker: Broker, role: str) -> None:
    settings = Settings(database_url=fresh_db, ingest_role=role, mqtt_host=broker.host, mqtt_port=broker.port)
    process = role_process(settings, Services(fresh_db, broker.host, broker.port, "5"), client_id=f"roles-{role}")
    try:
        names = [w.name for w in process.supervisor]
        assert [n for n in names if n != "alert-publisher"] == WORKERS[role]
        assert isinstance(process, Ingest) == (role != "derived")
        assert (process.evaluator is not None) == (role != "stream")
    finally:
        process.stop()


def test_a_derived_process_needs_the_broker_only_to_publish_alerts() -> None:
    assert ALERTS_ROLE == "derived"
    assert needs_broker(Settings(ingest_role="stream", alerts_enabled=False))
    assert needs_broker(Settings(ingest_role="all"))
    assert needs_broker(Settings(ingest_role="derived", alerts_enabled=True))
    assert not needs_broker(Settings(ingest_role="derived", alerts_enabled=False))
    assert [runs(r, "derived") for r in ("all", "stream", "derived")] == [True, False, True]
    with pytest.raises(ValueError, match="unknown ingest role"):
        runs("both", "stream")
