"""``lccm demo``: the demo city end to end on one machine.

Services (embedded where none is configured) -> device registry imported from the city file -> ingest worker ->
API -> the simulator publishing over MQTT. Accelerated time runs in the recent past and ends at "now", so every
event time is a plausible device clock reading (the contract refuses times in the future).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg

from lccm.runtime import Ingest, Services, ingest_process, services
from lccm.services import free_port
from lccm.settings import Settings

log = logging.getLogger(__name__)

# An unbounded demo first replays this much of the past at the chosen speed, then follows the wall clock.
_UNBOUNDED_REPLAY = timedelta(hours=12)


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float | None = None
    speed: float = 600.0
    seed: int = 42
    faults: bool = True
    quiet: bool = False


def run_demo(
    settings: Settings, opts: DemoOptions, stop: threading.Event, echo: Callable[[str], None]
) -> dict[str, Any]:
    from lccm.simulators.city import load_city
    from lccm.simulators.run import SimConfig, run_simulation

    city = load_city(settings.city_file)
    with services(settings, embedded=True) as svc:
        _import_registry(settings, svc, city)
        inventory = _import_base_year(svc)
        # As `lccm ingest` runs, with alerts on the event clock: the demo replays the recent past at speed, and on
        # the wall clock every alert of the replay would be recorded as late.
        demo = settings.model_copy(update={"alert_clock": "event"})
        worker = ingest_process(demo, svc, client_id=f"{settings.mqtt_client_id}-demo")
        worker.start()
        with _api_server(settings, svc) as api_url:
            echo(f"API: {api_url}  (OpenAPI: {api_url}/docs)")
            echo(f"broker: {svc.mqtt_host}:{svc.mqtt_port} ({svc.broker.kind if svc.broker else 'external'})")
            span = timedelta(seconds=opts.duration_s * opts.speed) if opts.duration_s else _UNBOUNDED_REPLAY
            cfg = SimConfig(
                host=svc.mqtt_host,
                port=svc.mqtt_port,
                protocol="3.1.1" if svc.mqtt_protocol == "3.1.1" else "5",
                seed=opts.seed,
                start=datetime.now(UTC) - span,
                end=None,
                speed=opts.speed,
                duration_s=opts.duration_s,
                faults=opts.faults,
                topic_root=settings.mqtt_topic_root,
            )
            started = time.monotonic()
            reporter = _Reporter(worker, echo, started)
            truth = run_simulation(city, cfg, stop_event=stop, progress=reporter)
            worker.stop(drain_s=1.0)  # the updaters, the evaluator and the dispatcher drain what is left
            elapsed = time.monotonic() - started
            return {**_summary(svc, worker, truth.summary(), elapsed), "inventory": inventory,
                    "alerts": _alert_summary(svc)}  # fmt: skip


def _alert_summary(svc: Services) -> dict[str, Any]:
    """Alerts by rule and state, and what notification made of the paged changes."""
    with psycopg.connect(svc.database_url) as conn:
        by_rule = conn.execute(
            "SELECT rule_key, state, count(*) FROM alerts GROUP BY rule_key, state ORDER BY rule_key, state"
        ).fetchall()
        paged = conn.execute(
            "SELECT count(*) FILTER (WHERE page), count(*) FILTER (WHERE page AND notified_at"
            " IS NOT NULL), count(*) FILTER (WHERE late) FROM alert_events"
        ).fetchone()
        sent = conn.execute("SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok),"
                            " count(DISTINCT notification_id) FROM notify_deliveries").fetchone()  # fmt: skip
    assert paged is not None and sent is not None
    rules: dict[str, dict[str, int]] = {}
    for rule, state, n in by_rule:
        rules.setdefault(rule, {})[state] = n
    return {"by_rule": rules, "changes_paged": paged[0], "changes_handed_on": paged[1], "changes_late": paged[2],
            "deliveries_ok": sent[0], "deliveries_failed": sent[1], "notifications": sent[2]}  # fmt: skip


def _import_registry(settings: Settings, svc: Services, city: Any) -> None:
    from lccm.store.devices import import_registry, parse_registry_csv

    path = settings.data_dir / "demo-devices.csv"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    city.devices_csv(path)
    parsed = parse_registry_csv(path.read_bytes())
    with psycopg.connect(svc.database_url) as conn:
        import_registry(conn, parsed)


BASE_YEAR_EXAMPLE = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv")


def _import_base_year(svc: Services) -> dict[str, Any]:
    """Lampang's example base-year CFO (2025) and this year's device-to-item mapping, so the comparison and the
    CFO report have a baseline (docs/inventory-template.md). Idempotent: a second demo finds it unchanged."""
    from lccm.store.inventory import import_inventory_file
    from lccm.store.inventory_mapping import auto_map

    year = datetime.now(UTC).year
    with psycopg.connect(svc.database_url) as conn:
        report = import_inventory_file(
            conn, BASE_YEAR_EXAMPLE.read_bytes(), file_name=BASE_YEAR_EXAMPLE.name, organisation="lampang",
            year_ce=2025, base_year=True,
        )  # fmt: skip
        mapped = auto_map(conn, "lampang", year, "calendar")
    return {"base_year": 2025, "import": report.status, "items": report.rows, "mapped_year": year,
            "devices_mapped": len(mapped.mapped)}  # fmt: skip


@contextlib.contextmanager
def _api_server(settings: Settings, svc: Services) -> Iterator[str]:
    import uvicorn

    from lccm.api.app import create_app
    from lccm.services import wait_for_port

    port = settings.api_port or free_port()
    with contextlib.suppress(TimeoutError):
        wait_for_port(settings.api_host, port, timeout_s=0.2)
        port = free_port()  # something already answers on the configured port
    app = create_app(settings.model_copy(update={"database_url": svc.database_url}))
    server = uvicorn.Server(uvicorn.Config(app, host=settings.api_host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="lccm-api", daemon=True)
    thread.start()
    wait_for_port(settings.api_host, port, timeout_s=15)
    try:
        yield f"http://{settings.api_host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class _Reporter:
    """Progress line every few seconds: what the simulator sent against what ingest committed."""

    def __init__(self, worker: Ingest, echo: Callable[[str], None], started: float, every_s: float = 5.0):
        self._worker, self._echo, self._started, self._every = worker, echo, started, every_s
        self._last = started

    def __call__(self, info: Any) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        s = self._worker.loop.stats
        self._echo(
            f"[{now - self._started:6.0f} s] messages {s.messages:,}  readings stored {s.readings_stored:,}"
            f"  duplicates {s.duplicates_dropped + s.duplicates_in_db:,}"
            f"  dead letters {sum(s.dead_letters.values()):,}  sim: {info}"
        )


def _summary(svc: Services, worker: Ingest, truth: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    with psycopg.connect(svc.database_url) as conn:
        readings = conn.execute("SELECT count(*), count(DISTINCT device_id) FROM readings").fetchone()
        registered = conn.execute("SELECT count(*) FROM devices").fetchone()
        dead = conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason").fetchall()
        energy = conn.execute(
            "SELECT m.name, round(sum(b.amount)::numeric, 3)::float8, round(sum(b.kgco2e)::numeric, 3)::float8"
            " FROM energy_buckets b JOIN metrics m ON m.id = b.metric_id WHERE b.resolution = '1mo'"
            " GROUP BY m.name ORDER BY m.name"
        ).fetchall()
    assert readings is not None and registered is not None
    stats = worker.loop.stats
    return {
        "devices_registered": registered[0],
        "devices_seen": readings[1],
        "readings_stored": readings[0],
        "readings_stored_this_run": stats.readings_stored,
        "readings_per_s": round(stats.readings_stored / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "messages": stats.messages,
        "duplicates_removed": stats.duplicates_dropped + stats.duplicates_in_db,
        "dead_letters": {reason: n for reason, n in dead},
        "energy_kwh": next((a for name, a, _ in energy if name == "energy"), 0.0),
        "fuel_l": next((a for name, a, _ in energy if name == "fuel"), 0.0),
        "kgco2e": round(sum(kg for _, _, kg in energy), 3),
        "elapsed_s": round(elapsed_s, 1),
        "broker": svc.broker.kind if svc.broker else "external",
        "database": svc.database.kind if svc.database else "external",
        "simulator": truth,
    }
