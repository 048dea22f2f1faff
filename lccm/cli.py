"""The ``lccm`` command line: the composition root's front door.

Settings are built once here (``Settings()`` reads LCCM_* from the environment) and passed down.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import psycopg
import typer
from psycopg_pool import ConnectionPool
from pydantic import ValidationError

from lccm.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    import uvicorn

    from lccm.dashboards import ThaiScale

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "ingest.heartbeat"
HEARTBEAT_EVERY_S = 10
HEARTBEAT_MAX_AGE_S = 60

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Low Carbon City Monitor")

try:  # the registry sub-commands live beside the CLI
    import lccm.cli_assets  # noqa: F401  # adds `devices dates` and `devices site-dates` to devices_app
    from lccm.cli_devices import devices_app

    app.add_typer(devices_app, name="devices", help="Import and list sites and devices")
except ImportError:  # pragma: no cover - only while the module is being written
    pass

from lccm.cli_broker import broker_app  # noqa: E402

app.add_typer(broker_app, name="broker", help="MQTT broker identities: service roles, the ingest, alert readers")

from lccm.cli_inventory import activity_app, inventory_app  # noqa: E402

app.add_typer(inventory_app, name="inventory", help="CFO inventories: base-year import, items, device mappings")
app.add_typer(activity_app, name="activity", help="Manual activity data (LPG, refrigerants, waste, water, paper)")

from lccm.cli_report import report_app  # noqa: E402

app.add_typer(report_app, name="report", help="Annual reports: TGO CFO report and GPC table (CSV, JSON, HTML)")

from lccm.cli_baseline import baseline_app  # noqa: E402

app.add_typer(baseline_app)  # compare, projection, kpis, targets: at the top level

from lccm.cli_identity import apikeys_app, audit_command, organisations_app, users_app  # noqa: E402

app.add_typer(users_app, name="users", help="Local accounts: add, list, disable, enable, passwd, roles")
app.add_typer(apikeys_app, name="apikeys", help="API keys for machine clients: create, list, revoke")
app.add_typer(organisations_app, name="organisations", help="Organisations of this deployment")
app.command("audit")(audit_command)


dashboards_app = typer.Typer(help="Grafana dashboards as code", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")


def thai_scale(settings: Settings) -> ThaiScale:
    """The Thai AQI categories for the dashboards, with the colours of LCCM_AQI_THAI_COLOURS_HEX."""
    from lccm.dashboards import ThaiScale
    from lccm.engine.aqi_tables import THAI_GOOD_CATEGORIES, thai_categories

    return ThaiScale.of(thai_categories(settings.aqi_thai_colours_hex), THAI_GOOD_CATEGORIES)


@dashboards_app.command("write")
def dashboards_write(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Folder for Grafana's file provisioning")],
) -> None:
    """Write every dashboard's JSON model as <uid>.json (the committed copies: deploy/grafana/dashboards)."""
    from lccm.dashboards import write_all

    for path in write_all(directory, thai_scale(_settings(ctx))):
        typer.echo(str(path))


@dashboards_app.command("push")
def dashboards_push(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="Grafana's base URL")],
    token: Annotated[str, typer.Option(envvar="GRAFANA_TOKEN", help="Service-account token (or GRAFANA_TOKEN)")],
    folder_uid: Annotated[str | None, typer.Option(help="Grafana folder uid")] = None,
) -> None:
    """Create or overwrite the dashboards through Grafana's HTTP API (a Grafana without file provisioning)."""
    from lccm.extras import require_extra

    require_extra("grafana", "grafana_client", "`lccm dashboards push`")
    from lccm.dashboards import build_all, push

    for answer in push(url, token, build_all(thai_scale(_settings(ctx))), folder_uid=folder_uid):
        typer.echo(json.dumps(answer))


def _settings(ctx: typer.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = Settings()
    settings: Settings = obj["settings"]
    return settings


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log at DEBUG level (default LCCM_LOG_LEVEL)")
    ] = False,
) -> None:
    settings = _settings(ctx)
    command = ctx.invoked_subcommand
    level = settings.log_level
    if command == "demo" and "log_level" not in settings.model_fields_set:
        level = "WARNING"  # the demo's terminal shows its own progress; LCCM_LOG_LEVEL or -v shows the logs
    _configure_logging(settings, "DEBUG" if verbose else level, command)


def _configure_logging(settings: Settings, level: str, command: str | None) -> None:
    """The one logging set-up (lccm/logs.py); the API's request-id filter joins it for `lccm api`."""
    from lccm.logs import configure
    from lccm.workers import StageFilter

    extra: list[logging.Filter] = [StageFilter()]
    if command == "api":
        from lccm.api.observability import RequestIdFilter

        extra.append(RequestIdFilter())
    configure(fmt=settings.log_format, level=level, default_stage=command or "lccm", filters=extra)


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Create or upgrade the database schema (LCCM_DATABASE_URL)."""
    from lccm.runtime import database

    settings = _settings(ctx)
    with database(settings) as url:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT layout, detail FROM store_layout").fetchone()
        typer.echo(f"schema up to date; readings layout: {row[0] if row else '?'} ({row[1] if row else ''})")


@app.command()
def ingest(ctx: typer.Context) -> None:
    """Run the ingest worker: MQTT in, batches committed to PostgreSQL, then acked, and the derived data. With
    LCCM_INGEST_ROLE=stream or derived, only that part (docs/partitions.md#roles). Stops on SIGTERM/SIGINT."""
    from lccm.metrics import IngestMetrics
    from lccm.monitoring import monitor_ingest
    from lccm.runtime import Ingest, needs_broker, role_process, services
    from lccm.store.leases import PartitionCountMismatch
    from lccm.workers import write_heartbeat

    settings = _settings(ctx)
    stop = _stop_event()
    with services(settings, with_broker=needs_broker(settings)) as svc:
        metrics = IngestMetrics()
        try:
            process = role_process(settings, svc, metrics=metrics)
        except PartitionCountMismatch as e:
            typer.echo(str(e), err=True)
            raise typer.Exit(2) from None
        process.start()
        if isinstance(process, Ingest):
            typer.echo(f"ingesting from {svc.mqtt_host}:{svc.mqtt_port} (MQTT {process.source.protocol_used})")
        else:
            typer.echo("deriving: no MQTT source, the updaters claim the work of this process's partitions")
        # /metrics, /health/live, /health/ready on LCCM_METRICS_HOST/PORT
        monitor = monitor_ingest(settings, metrics, process, svc.database_url)
        last_retention = 0.0
        heartbeat = settings.data_dir / HEARTBEAT_FILE
        try:
            while True:
                stats = process.loop.stats.as_dict() if isinstance(process, Ingest) else None
                doc = write_heartbeat(heartbeat, process.supervisor, stream=stats)
                if stats is not None:
                    typer.echo(json.dumps(stats))
                # A failed worker is not retried by design (e.g. the schema is missing): let the orchestrator restart
                # us; unacknowledged messages wait in the broker.
                failed = [w for w in doc["workers"] if w["state"] == "failed"]
                if failed:
                    typer.echo(f"worker(s) failed: {failed}", err=True)
                    raise typer.Exit(1)
                if time.monotonic() - last_retention > 3600:
                    last_retention = time.monotonic()
                    _retention(process.pool, settings.retention_days, settings.late_horizon_s)
                if stop.wait(HEARTBEAT_EVERY_S):
                    break
        finally:
            if monitor is not None:
                monitor.stop()
            process.stop()


def _retention(pool: ConnectionPool | None, retention_days: int, late_horizon_s: int) -> None:
    from lccm.store.maintenance import apply_retention

    if pool is None:
        return
    try:
        with pool.connection() as conn:
            deleted = apply_retention(conn, retention_days, late_horizon_s)
        if deleted:
            log.info("retention: deleted %d readings older than %d days", deleted, retention_days)
    except psycopg.Error as e:  # retention can wait for the next hour; ingest must go on
        log.warning("retention job failed: %s", e)


def _stopping_server(config: uvicorn.Config, on_stop: Callable[[], None]) -> uvicorn.Server:
    """uvicorn's server, which first ends the live feed's streams when asked to stop: they never end by themselves,
    and uvicorn waits for open requests before it stops."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            on_stop()
            super().handle_exit(sig, frame)

    return Server(config)


@app.command()
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default: LCCM_API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: LCCM_API_PORT)")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from lccm.api.app import create_app
    from lccm.runtime import database, live_worker

    settings = _settings(ctx)
    with database(settings) as url:
        app_settings = settings.model_copy(update={"database_url": url})
        # log_config=None keeps lccm/logs.py's set-up for uvicorn's loggers too; the access line is the API's own
        # (api/observability.py: request id, route, duration), so uvicorn's is off.
        web_app = create_app(app_settings, live_worker=live_worker(app_settings))
        config = uvicorn.Config(
            web_app,
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_config=None,
            access_log=False,
            # Open requests get this long to finish at a stop (the live feed's streams are ended first, below).
            timeout_graceful_shutdown=5,
        )
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it stopped for, as uvicorn.run
            _stopping_server(config, web_app.state.live_hub.close).run()


@app.command()
def simulate(
    ctx: typer.Context,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second; 0 = as fast as possible")] = 60.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many wall-clock seconds")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same city")] = 42,
    faults: Annotated[bool, typer.Option("--faults/--no-faults", help="Inject the city file's faults")] = True,
    start: Annotated[str | None, typer.Option(help="Simulated start, ISO 8601 with offset")] = None,
    end: Annotated[str | None, typer.Option(help="Simulated end (replay a range), ISO 8601 with offset")] = None,
    export_devices: Annotated[Path | None, typer.Option(help="Write the device registry CSV and exit")] = None,
    truth: Annotated[Path | None, typer.Option(help="Write the ground truth (JSON lines) here at the end")] = None,
) -> None:
    """Run the virtual city against the configured broker (LCCM_MQTT_HOST)."""
    from lccm.simulators.city import load_city
    from lccm.simulators.run import SimConfig, run_simulation

    settings = _settings(ctx)
    city = load_city(settings.city_file)
    if export_devices is not None:
        city.devices_csv(export_devices)
        typer.echo(f"wrote {export_devices}")
        return
    if not settings.mqtt_host:
        raise typer.BadParameter("set LCCM_MQTT_HOST (and LCCM_MQTT_PORT) to the broker to publish to")
    cfg = SimConfig(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        protocol="5" if settings.mqtt_protocol == "auto" else settings.mqtt_protocol,
        seed=seed,
        start=_parse_time(start) if start else datetime.now(UTC),
        end=_parse_time(end) if end else None,
        speed=speed or None,
        duration_s=duration,
        faults=faults,
        topic_root=settings.mqtt_topic_root,
    )
    stop = _stop_event()
    gt = run_simulation(city, cfg, stop_event=stop)
    if truth is not None:
        gt.write_jsonl(truth)
    typer.echo(json.dumps(gt.summary()))


# An orderly stop after Ctrl-C that takes longer than this is forced: the demo is gone within 10 s of a Ctrl-C.
DEMO_FORCE_AFTER_S = 8.0


@app.command()
def demo(
    ctx: typer.Context,
    duration: Annotated[float | None, typer.Option(help="Run this many seconds, then print a summary and exit")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object")] = False,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second while replaying the past")] = 600.0,
    seed: Annotated[int, typer.Option(help="Random seed of the virtual city")] = 42,
    faults: Annotated[bool, typer.Option("--faults/--no-faults", help="Inject faults")] = True,
) -> None:
    """The demo city end to end: embedded services, registry import, ingest, API and the simulator. Ctrl-C stops
    it (servers included) and prints the summary; a second Ctrl-C forces the stop."""
    import functools
    import sys

    from rich.console import Console

    from lccm.demo import DataDirBusy, DemoInterrupted, DemoOptions, run_demo
    from lccm.demo_progress import summary_table
    from lccm.services import kill_embedded
    from lccm.stopping import StopSignals

    settings = _settings(ctx)
    embedded = {"database": not settings.database_url, "broker": not settings.mqtt_host}
    signals = StopSignals(
        DEMO_FORCE_AFTER_S,
        functools.partial(kill_embedded, settings.data_dir, **embedded),
        what="the embedded servers were killed" if any(embedded.values()) else "",
    ).install()
    live = not as_json and sys.stdout.isatty() and sys.stderr.isatty()
    # Piped to a file or a CI log, rich would lay the summary out in 80 columns and fold every login in two.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
    try:
        summary = run_demo(
            settings,
            DemoOptions(duration_s=duration, speed=speed, seed=seed, faults=faults, live=live),
            stop=signals.event,
            echo=(lambda line: console.print(line, markup=False))
            if live
            else (lambda line: typer.echo(line, err=as_json)),
            console=console,
        )
    except DemoInterrupted as e:
        typer.echo(
            f"lccm demo: stopped before the demo was running ({e}); the servers it had started are stopped", err=True
        )
        raise typer.Exit(130) from None
    except DataDirBusy as e:
        typer.echo(f"lccm demo: {e}", err=True)
        raise typer.Exit(2) from None
    finally:
        signals.disarm()  # the servers are stopped: a slow terminal must not turn the summary into a forced stop
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        console.print(summary_table(summary))
    if summary["ended_by"] == "error":
        raise typer.Exit(1)


@app.command()
def recompute(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", help="Start, ISO 8601 with offset (e.g. 2026-01-01T00:00+07:00)")],
    end: Annotated[str, typer.Option("--to", help="End (exclusive), ISO 8601 with offset")],
) -> None:
    """Rebuild energy, emissions, sample rollups and lamp time for a range from raw readings, exactly as the live
    path computes them; late readings inside the range count as handled afterwards."""
    from lccm.engine.timebase import us_from_datetime
    from lccm.runtime import database, updaters
    from lccm.stream.updaters import recompute as run_recompute

    settings = _settings(ctx)
    lo, hi = us_from_datetime(_parse_time(start)), us_from_datetime(_parse_time(end))
    if hi <= lo:
        raise typer.BadParameter("--to must be after --from")
    with database(settings) as url:
        result = run_recompute(updaters(settings, url), functools.partial(psycopg.connect, url), lo, hi)
    typer.echo(json.dumps({"spans": result.spans, "buckets_written": result.buckets}))


@app.command()
def healthcheck(
    ctx: typer.Context,
    ingest: Annotated[
        bool,
        typer.Option(
            "--ingest",
            help=f"Also require a fresh ingest heartbeat (<{HEARTBEAT_MAX_AGE_S} s old) with every worker healthy",
        ),
    ] = False,
) -> None:
    """Exit 0 if the configured database and broker answer, 1 otherwise (for container health checks)."""
    from lccm.services import wait_for_port
    from lccm.workers import heartbeat_problems

    settings = _settings(ctx)
    problems = []
    if ingest:
        problems += heartbeat_problems(settings.data_dir / HEARTBEAT_FILE, HEARTBEAT_MAX_AGE_S)
    try:
        with psycopg.connect(settings.database_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1 FROM schema_migrations LIMIT 1")
    except psycopg.Error as e:
        problems.append(f"database: {e}")
    try:
        wait_for_port(settings.mqtt_host or "127.0.0.1", settings.mqtt_port, timeout_s=3)
    except TimeoutError as e:
        problems.append(f"broker: {e}")
    if problems:
        typer.echo("; ".join(problems), err=True)
        raise typer.Exit(1)
    typer.echo("ok")


def run() -> None:
    """The ``lccm`` console script: the typer app, with a missing server setting or extra reported as one line,
    exit 2."""
    from lccm.extras import MissingExtra
    from lccm.monitoring import MonitoringUnavailable
    from lccm.runtime import NotConfigured

    try:
        app(prog_name="lccm")
    except (NotConfigured, MissingExtra, MonitoringUnavailable) as e:
        typer.echo(f"lccm: {e}", err=True)
        raise SystemExit(2) from None
    except ValidationError as e:  # an LCCM_* variable with a value its setting refuses: name them, no traceback
        problems = "; ".join(f"LCCM_{'_'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in e.errors())
        typer.echo(f"lccm: invalid settings: {problems}", err=True)
        raise SystemExit(2) from None


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no UTC offset (e.g. 2026-03-01T00:00:00+07:00)")
    return value.astimezone(UTC)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop
