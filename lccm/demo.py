"""``lccm demo``: the demo city end to end on one machine.

Services (embedded where none is configured) -> device registry imported from the city file -> ingest worker ->
API -> the simulator publishing over MQTT. Accelerated time runs in the recent past and ends at "now", so every
event time is a plausible device clock reading (the contract refuses times in the future).

Stopping (Ctrl-C, or the end of ``--duration``) goes in the order the data flows: the simulator (its last PUBACKs
waited for at most SimConfig.stop_grace_s), the ingest drain (bounded), the updaters and alerts, the API, the broker,
the database. The embedded servers run in sessions of their own, so the terminal's Ctrl-C reaches only lccm.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console

from lccm.demo_progress import DemoStatus, LivePanel, PlainLines
from lccm.metrics import IngestMetrics
from lccm.monitoring import MonitoringServer, MonitoringUnavailable, start_monitoring, watch_ingest
from lccm.runtime import Ingest, Services, ingest_process, live_worker, services
from lccm.services import free_port, wait_for_port
from lccm.settings import Settings
from lccm.simulators.city import City, load_city
from lccm.simulators.run import SimConfig, run_simulation

log = logging.getLogger(__name__)

DEFAULT_SPEED = 600.0  # simulated seconds per wall second while replaying the past (`lccm demo --speed`)
# An unbounded demo first replays this much of the past at the chosen speed, then follows the wall clock.
UNBOUNDED_REPLAY = timedelta(hours=12)
# After Ctrl-C ingest commits what has already arrived for at most this long; the rest stays queued in the broker's
# persistent session (and on disk with mosquitto) and is committed by the next run: nothing is lost.
DRAIN_ON_STOP_S = 2.0
# At the end of a --duration run ingest commits everything the broker holds (a Ctrl-C cuts this short too).
DRAIN_AT_END_S = 60.0
# After Ctrl-C each worker downstream of ingest (updaters, alerts, notifications) gets this long to finish its step.
WORKER_STOP_S = 1.0
LOCK_FILE = "demo.lock"


class DemoInterrupted(Exception):
    """Ctrl-C before the demo was running: everything started so far has been stopped, there is no summary."""


class DataDirBusy(Exception):
    """Another ``lccm demo`` is running on the same data folder (its servers and files are that run's)."""


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float | None = None
    speed: float = DEFAULT_SPEED
    seed: int = 42
    faults: bool = True
    live: bool = False  # a live panel (a terminal); otherwise plain progress lines


def run_demo(
    settings: Settings,
    opts: DemoOptions,
    stop: threading.Event,
    echo: Callable[[str], None],
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo until opts.duration_s has passed or `stop` is set; return the summary. With opts.live the panel
    is drawn on `console`. DemoInterrupted when `stop` is set before the simulator started."""
    try:
        with _only_run(settings.data_dir):
            return _run(settings, opts, stop, echo, console)
    except (DemoInterrupted, DataDirBusy):
        raise
    except Exception as e:
        if stop.is_set():  # a server start cut short by the same Ctrl-C (pg_ctl is in our process group)
            raise DemoInterrupted(f"{type(e).__name__}: {e}") from e
        raise


def _run(
    settings: Settings, opts: DemoOptions, stop: threading.Event, echo: Callable[[str], None], console: Console | None
) -> dict[str, Any]:
    city = load_city(settings.city_file)
    echo(f"starting: PostgreSQL and broker ({'embedded' if not settings.database_url else 'configured'})")
    with services(settings, embedded=True) as svc:
        _check(stop)
        _import_registry(settings, svc, city)
        inventory = _import_base_year(svc)
        logins = _demo_users(svc)
        _check(stop)
        # As `lccm ingest` runs, with alerts on the event clock: the demo replays the recent past at speed, and on
        # the wall clock every alert of the replay would be recorded as late.
        demo = settings.model_copy(update={"alert_clock": "event"})
        metrics = IngestMetrics()
        worker = ingest_process(demo, svc, client_id=f"{settings.mqtt_client_id}-demo", metrics=metrics)
        worker.start()
        monitor = _monitoring(settings, svc, worker, metrics)
        with _api_server(settings, svc) as api_url, contextlib.ExitStack() as later:
            if monitor is not None:
                later.callback(monitor.stop)
            status = _status(city, api_url, svc, opts, worker, stop, monitor.url if monitor else None)
            try:
                _check(stop)
                echo(f"API: {api_url}  (web pages: {api_url}/, OpenAPI: {api_url}/docs)")
                echo(f"log in at {api_url}/login (or POST {api_url}/auth/login): "
                     + ", ".join(f"{u['username']} / {u['password']}" for u in logins))  # fmt: skip
                echo(f"broker: {status.broker}")
                if monitor is not None:
                    echo(f"ingest metrics: {monitor.url}/metrics  (health: {monitor.url}/health/ready)")
                truth = _simulate(city, _sim_config(settings, svc, opts), status, opts.live, echo, console)
                echo(
                    "stopping (Ctrl-C again forces it): simulator done; ingest, API, broker and database follow"
                    if stop.is_set()
                    else f"simulator done after {opts.duration_s:g} s; ingest commits what the broker holds"
                )
            finally:
                _stop_ingest(worker, stop)
        elapsed = time.monotonic() - status.started
        ended_by = "signal" if stop.is_set() else "error" if "error" in truth else "duration"
        return {**_summary(svc, worker, truth, elapsed), "ended_by": ended_by, "inventory": inventory,
                "alerts": _alert_summary(svc), "logins": logins}  # fmt: skip


DEMO_ORGANISATION = "lampang"


def _demo_users(svc: Services) -> list[dict[str, str]]:
    """One local account per role in the demo city, each with a new random password every run (printed, so the
    login shown always works, and no password is known before the demo prints it)."""
    import getpass
    import secrets

    from lccm.api.auth import accounts
    from lccm.api.principal import Role
    from lccm.store import audit, identity

    logins = []
    with psycopg.connect(svc.database_url) as conn:
        change = accounts.Change(audit.Actor("cli:demo", f"lccm demo ({getpass.getuser()})", None), "lccm demo")
        for role in Role:
            username, password = f"demo-{role.value.replace('_', '-')}", secrets.token_urlsafe(12)
            name = f"Demo {role.value.replace('_', ' ')}"
            if identity.get_user(conn, username) is None:
                accounts.add_user(conn, change, username=username, display_name=name, password=password,
                                  organisation=DEMO_ORGANISATION, roles=[role], sites=None)  # fmt: skip
            else:
                accounts.update_user(conn, change, username, organisation_id=None, password=password, disabled=False)
            logins.append({"username": username, "password": password, "role": role.value})
    return logins


def _sim_config(settings: Settings, svc: Services, opts: DemoOptions) -> SimConfig:
    span = timedelta(seconds=opts.duration_s * opts.speed) if opts.duration_s else UNBOUNDED_REPLAY
    return SimConfig(
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


def _status(
    city: City,
    api_url: str,
    svc: Services,
    opts: DemoOptions,
    worker: Ingest,
    stop: threading.Event,
    metrics_url: str | None,
) -> DemoStatus:
    return DemoStatus(
        city=city.name,
        api_url=api_url,
        broker=f"{svc.mqtt_host}:{svc.mqtt_port} ({svc.broker.kind if svc.broker else 'external'})",
        database=svc.database.kind if svc.database else "external",
        speed=opts.speed,
        stats=worker.loop.stats,
        stop=stop,
        metrics_url=metrics_url,
    )


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    """Log how long a step of the stop took (INFO: `lccm -v demo`)."""
    began = time.monotonic()
    yield
    log.info("stopped %s in %.2f s", name, time.monotonic() - began)


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise DemoInterrupted("stopped during start-up")


def _simulate(
    city: City, cfg: SimConfig, status: DemoStatus, live: bool, echo: Callable[[str], None], console: Console | None
) -> dict[str, Any]:
    """Run the simulator with progress on show; its ground-truth summary, or the error that ended it."""
    if live:
        panel = LivePanel(status, console or Console())
        showing: contextlib.AbstractContextManager[None] = panel.showing()
        progress = status.on_sim
    else:
        showing, progress = contextlib.nullcontext(), PlainLines(status, echo).on_sim
    with showing:
        try:
            truth: dict[str, Any] = run_simulation(city, cfg, stop_event=status.stop, progress=progress).summary()
        except OSError as e:  # the broker went away or stopped acknowledging (TimeoutError, ConnectionError)
            echo(f"simulator stopped: {e}")
            truth = {"error": str(e)}
    return truth


def _stop_ingest(worker: Ingest, stop: threading.Event) -> None:
    """Ingest drains, then the workers downstream of it stop (the supervisor's order). At the end of a --duration run
    they work off what is queued; after Ctrl-C each only finishes its step (at most WORKER_STOP_S) and leaves the
    rest in its queue table for the next run."""
    with _step("ingest drain"):
        _drain(worker, stop)
    with _step("workers"):
        if stop.is_set():
            worker.stop(drain_workers=False, timeout_s=WORKER_STOP_S)
        else:
            worker.stop()


def _drain(worker: Ingest, stop: threading.Event) -> None:
    """Let ingest commit what the broker has for it, bounded; a Ctrl-C shortens the wait to DRAIN_ON_STOP_S."""
    if not stop.is_set():
        worker.wait_idle(1.0, timeout_s=DRAIN_AT_END_S, until=stop)
    if stop.is_set():
        worker.wait_idle(0.5, timeout_s=DRAIN_ON_STOP_S)


@contextlib.contextmanager
def _only_run(data_dir: Path) -> Iterator[None]:
    """One demo per data folder: its broker configuration, logs and database files have fixed names."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(f"another lccm demo is running on {data_dir}; stop it or set LCCM_DATA_DIR") from None
        yield


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
    from lccm.imports.registry import parse_registry_csv
    from lccm.store.devices import import_registry

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


def _monitoring(settings: Settings, svc: Services, worker: Ingest, metrics: IngestMetrics) -> MonitoringServer | None:
    """The ingest's /metrics and /health as `lccm ingest` serves them; on a free port if the configured one is taken
    (a demo beside a running ingest: unlike `lccm ingest`, the demo has no operator expecting that port)."""
    ready = watch_ingest(metrics, worker, svc.database_url)
    try:
        return start_monitoring(settings, metrics.registry, ready)
    except MonitoringUnavailable:
        log.info("port %s is taken; the demo's metrics move to a free port", settings.metrics_port)
        return start_monitoring(settings.model_copy(update={"metrics_port": free_port()}), metrics.registry, ready)


@contextlib.contextmanager
def _api_server(settings: Settings, svc: Services) -> Iterator[str]:
    import uvicorn

    from lccm.api.app import create_app

    port = settings.api_port or free_port()
    with contextlib.suppress(TimeoutError):
        wait_for_port(settings.api_host, port, timeout_s=0.2)
        port = free_port()  # something already answers on the configured port
    # Plain HTTP on this machine: a Secure session cookie would never come back, unless asked for explicitly.
    secure = settings.session_cookie_secure if "session_cookie_secure" in settings.model_fields_set else False
    app_settings = settings.model_copy(update={"database_url": svc.database_url, "session_cookie_secure": secure})
    app = create_app(app_settings, live_worker=live_worker(app_settings))
    # A browser's keep-alive connection must not hold up the stop: open requests get one second to finish.
    config = uvicorn.Config(app, host=settings.api_host, port=port, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="lccm-api", daemon=True)
    thread.start()
    wait_for_port(settings.api_host, port, timeout_s=15)
    try:
        yield f"http://{settings.api_host}:{port}"
    finally:
        with _step("API"):
            app.state.live_hub.close()  # the live feed's streams never end by themselves
            server.should_exit = True
            thread.join(timeout=3)


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
        "conflicts": stats.conflicts,
        "dead_letters": {reason: n for reason, n in dead},
        "energy_kwh": next((a for name, a, _ in energy if name == "energy"), 0.0),
        "fuel_l": next((a for name, a, _ in energy if name == "fuel"), 0.0),
        "kgco2e": round(sum(kg for _, _, kg in energy), 3),
        "elapsed_s": round(elapsed_s, 1),
        "broker": svc.broker.kind if svc.broker else "external",
        "database": svc.database.kind if svc.database else "external",
        "simulator": truth,
    }
