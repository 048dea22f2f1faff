"""Process wiring: resolve the services, build an ingest process from its parts and supervise its workers.

:func:`ingest_process` is ``lccm ingest`` (the CLI, the demo and the database-outage test all call it): one
connection pool shared by the workers (the stream sink keeps one connection of its own), and one supervised worker
per background job, in pipeline order: ``stream`` (MQTT in -> committed batches -> acks), ``updaters`` (energy,
samples, AQI), ``alerts`` (the evaluator), ``notify-dispatch`` (paged alert events from the database to the
channels), the connection watchers ``mqtt-in`` and ``alert-publisher`` (paho runs the network I/O; they report
a broker that stays away and restart nothing paho does not), and ``leases`` (this process's share of the device
partitions, which the updaters claim their work in: stream/partitions.py).

``LCCM_INGEST_ROLE`` lets a process run part of that (:func:`role_process`): ``stream`` (the MQTT source, the stream
and what its commit hook feeds, no leases) or ``derived`` (no MQTT: leases and the updaters), so the two scale apart
in processes of their own (docs/partitions.md#roles)."""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg_pool import ConnectionPool

from lccm.alerts import Notifications, build_notifications, default_rules_file, load_rules_file
from lccm.engine.factors import SOURCE_CLASSES, TGO_FACTORS
from lccm.engine.timebase import bkk_us
from lccm.extras import require_extra
from lccm.imports.registry import city_slug
from lccm.ingest.codec import Limits
from lccm.ingest.decoder import RegistryHolder, make_decoder
from lccm.ingest.mqtt import MqttConfig, MqttSource
from lccm.ingest.registry import Metric, Registry, UnitRow
from lccm.services import Broker, Database, start_broker, start_database
from lccm.settings import Settings
from lccm.store import catalog
from lccm.store.alerts import StoredAqiIndex, metric_ids, sync_file_rules
from lccm.store.connect import Connect
from lccm.store.energy import sync_factor_registry
from lccm.store.leases import ensure_partitions
from lccm.store.maintenance import analyze_stale
from lccm.store.migrate import migrate
from lccm.store.writer import DEFAULT_LATE_HORIZON_US, Progress, ReadingColumns, WriteResult, write_batch
from lccm.stream.alerts import AlertEvaluator, IndexSource
from lccm.stream.aqi import AqiUpdater
from lccm.stream.batch import BatchBuilder, FlushPolicy
from lccm.stream.days import DayUpdater
from lccm.stream.energy import EnergyUpdater
from lccm.stream.inbox import ByteBoundedInbox
from lccm.stream.loop import BatchObserver, CommitHook, StreamLoop
from lccm.stream.partitions import Leases
from lccm.stream.samples import SampleUpdater
from lccm.stream.updaters import Updaters
from lccm.workers import Backoff, Supervisor, Worker

if TYPE_CHECKING:
    from lccm.metrics import IngestMetrics

log = logging.getLogger(__name__)


def load_registry(conn: psycopg.Connection) -> Registry:
    metrics = [Metric(m.id, m.name, m.unit, m.kind, m.min_value, m.max_value) for m in catalog.metrics(conn)]
    units = [UnitRow(u.metric_id, u.unit, u.key_suffix, u.scale) for u in catalog.metric_units(conn)]
    ids: dict[str, int] = {}
    cities: dict[str, str | None] = {}
    slugs: dict[str, str | None] = {}  # one slug object per city, not per device
    for d in catalog.devices(conn):
        ids[d.device_id] = d.id
        if d.city not in slugs:
            slugs[d.city] = city_slug(d.city)
        cities[d.device_id] = slugs[d.city]
    return Registry.build(ids, metrics, units, cities)


class DbSink:
    """Writes batches on one connection, reconnecting after a failure (the stream loop retries the batch)."""

    def __init__(
        self, url: str, late_horizon_us: int = DEFAULT_LATE_HORIZON_US, *, alerts: bool = True,
        progress: Progress | None = None,
    ) -> None:  # fmt: skip
        self._url = url
        self._late_horizon_us = late_horizon_us
        self._alerts = alerts  # queue batches for the alert evaluator (alert_queue)
        self._progress = progress  # this process's row in ingest_progress
        self._conn: psycopg.Connection | None = None

    def __call__(self, batch: BatchBuilder, cols: ReadingColumns) -> WriteResult:
        conn = self._connection()
        try:
            return write_batch(
                conn, cols, batch.dead_letters, batch.statuses, late_horizon_us=self._late_horizon_us,
                alerts=self._alerts, progress=self._progress,
            )  # fmt: skip
        except psycopg.OperationalError:
            self.close()
            raise

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


@dataclass
class Services:
    database_url: str
    mqtt_host: str
    mqtt_port: int
    mqtt_protocol: str
    database: Database | None = None
    broker: Broker | None = None

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.database is not None:
            self.database.stop()


class NotConfigured(Exception):
    """A server the command needs is not configured (only ``lccm demo`` starts embedded ones)."""

    def __init__(self, variable: str, what: str) -> None:
        super().__init__(f"{variable} is not set: {what}")
        self.variable = variable


def require_embeddable(settings: Settings, *, broker: bool) -> None:
    """The demo's embedded servers come from the ``demo`` extra: check for it before starting any, so a missing
    package stops the command with one line instead of leaving a half-started database behind."""
    if not settings.database_url:
        require_extra("demo", "pgserver", "the embedded PostgreSQL of `lccm demo`", "or set LCCM_DATABASE_URL")
    if broker and not settings.mqtt_host and shutil.which("mosquitto") is None:
        require_extra(
            "demo", "amqtt", "the embedded MQTT broker of `lccm demo` (no mosquitto installed)", "or set LCCM_MQTT_HOST"
        )


def require_configured(settings: Settings, *, broker: bool) -> None:
    """Raise NotConfigured naming the first missing variable. A production process must never start a private
    database or broker of its own because a setting was left empty: its data would land where nobody looks."""
    if not settings.database_url:
        raise NotConfigured("LCCM_DATABASE_URL", "set it to the PostgreSQL URL, e.g. postgresql://lccm@db/lccm")
    if broker and not settings.mqtt_host:
        raise NotConfigured("LCCM_MQTT_HOST", "set it to the MQTT broker's host name (and LCCM_MQTT_PORT)")


@contextlib.contextmanager
def services(settings: Settings, *, with_broker: bool = True, embedded: bool = False) -> Iterator[Services]:
    """The configured servers, migrated and ready; NotConfigured if one is missing. With ``embedded`` (the demo
    only), a private database and broker start where none is configured. Without a broker (commands that only need
    the database) none is required."""
    if embedded:
        require_embeddable(settings, broker=with_broker)
    else:
        require_configured(settings, broker=with_broker)
    db = None if settings.database_url else start_database(settings.data_dir)
    broker = None if settings.mqtt_host or not with_broker else start_broker(settings.data_dir)
    svc = Services(
        database_url=settings.database_url or (db.url if db else ""),
        mqtt_host=settings.mqtt_host or (broker.host if broker else ""),
        mqtt_port=settings.mqtt_port if settings.mqtt_host else (broker.port if broker else 0),
        mqtt_protocol=settings.mqtt_protocol if settings.mqtt_host else (broker.protocol if broker else "auto"),
        database=db,
        broker=broker,
    )
    try:
        with psycopg.connect(svc.database_url) as conn:
            migrate(conn, retention_days=settings.retention_days, compress_after_days=settings.compress_after_days)
            sync_factor_registry(conn, *factor_rows())
        yield svc
    finally:
        svc.stop()


def factor_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """engine/factors.py (the one source of factors and source classes) as rows for the store's tables."""
    factors = [
        (f.key, f.kgco2e_per_unit, f.unit, f.source, f.valid_from, f.valid_to, f.description) for f in TGO_FACTORS
    ]
    classes = [
        (c.key, c.factor_key, c.scope, c.cfo_category, c.gpc_ref, c.metric_id, c.description) for c in SOURCE_CLASSES
    ]
    return factors, classes


def connector(database: Connect | str) -> Connect:
    """A Connect for a pool's ``connection`` (processes) or, given a URL, a new connection each time (one-off
    commands and tests)."""
    return functools.partial(psycopg.connect, database) if isinstance(database, str) else database


def worker_pool(settings: Settings, database_url: str) -> ConnectionPool:
    """The connection pool a process's workers share (sized by LCCM_DB_POOL_MIN/MAX). Each connection is checked as
    it is handed out, so one broken by a database outage is discarded and replaced, not handed to a worker; a
    worker that finds no connection within LCCM_DB_POOL_TIMEOUT_S fails its step and backs off. The pool's own
    reconnect attempts back off exponentially too and start over after ``reconnect_timeout``: at twice the
    workers' backoff cap, a database that comes back is found within about one cap, not minutes later."""
    pool = ConnectionPool(
        database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout=settings.db_pool_timeout_s,
        reconnect_timeout=2 * settings.worker_backoff_cap_s,
        check=ConnectionPool.check_connection,
        name="lccm-workers",
        open=False,
    )
    pool.open(wait=False)
    return pool


def energy_updater(settings: Settings, database: Connect | str, *, leases: Leases | None = None) -> EnergyUpdater:
    return EnergyUpdater(
        connector(database),
        base_year_us=(bkk_us(settings.emission_base_year), bkk_us(settings.emission_base_year + 1)),
        default_bound_kw=settings.meter_default_bound_kw,
        default_bound_lph=settings.meter_default_bound_lph,
        bound_history_days=settings.meter_bound_history_days,
        cell_budget=settings.energy_cell_budget,
        leases=leases,
    )


def updaters(settings: Settings, database: Connect | str, *, leases: Leases | None = None) -> Updaters:
    """Every derived-data updater (energy and emissions, samples, lamps, AQI hours, reading days), as ``lccm ingest``
    runs them: with ``leases``, each claims work of its process's partitions only; without, of every device (one
    process alone, ``lccm recompute``, tests)."""
    connect = connector(database)
    return Updaters(
        energy_updater(settings, connect, leases=leases),
        SampleUpdater(connect, grace_us=settings.streetlight_grace_min * 60_000_000, leases=leases),
        AqiUpdater(connect, settings.aqi_settings(), leases=leases),
        DayUpdater(connect, leases=leases),
    )


def partition_leases(settings: Settings, database: Connect | str, *, owner: str | None = None) -> Leases:
    """This process's leases on the device partitions, after recording the partition count in the database at
    first start (PartitionCountMismatch if it has another)."""
    connect = connector(database)
    with connect() as conn:
        ensure_partitions(conn, settings.partitions)
    return Leases(connect, settings.partitions, settings.partition_lease_s, owner=owner)


def alert_evaluator(
    settings: Settings,
    database: Connect | str,
    *,
    index_source: IndexSource | None = None,
    leases: Leases | None = None,
) -> AlertEvaluator:
    """The alert evaluator as ``lccm ingest`` runs it, after syncing the rule file into the database (an invalid
    file stops start-up with every problem named). Index rules read the stored hourly AQI unless told otherwise.
    With ``leases``, it evaluates the devices of its process's partitions only."""  # fmt: skip
    connect = connector(database)
    with connect() as conn:
        rules = load_rules_file(settings.alert_rules_file or default_rules_file(), metric_keys=metric_ids(conn))
        report = sync_file_rules(conn, [r.definition() for r in rules])
    log.info("alert rules: %s", report)
    return AlertEvaluator(
        connect,
        clock=settings.alert_clock,  # type: ignore[arg-type]  # checked by the settings' pattern
        late_after_s=settings.alert_late_after_s,
        catchup_s=settings.alert_catchup_s,
        history_bytes=settings.alert_history_bytes,
        index_source=index_source if index_source is not None else StoredAqiIndex(),
        leases=leases,
    )


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database, migrated; NotConfigured without LCCM_DATABASE_URL. Yields its URL."""
    with services(settings, with_broker=False) as svc:
        yield svc.database_url


# A database whose schema is not the code's (a table or column missing) does not heal by retrying: the worker fails
# at once, `lccm ingest` exits 1 and its restart migrates (services() does) before it starts again.
SCHEMA_ERRORS = (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)


def worker(settings: Settings, name: str, step: Any, **kw: Any) -> Worker:
    """A supervised worker with the process's retry and health settings."""
    return Worker(
        name,
        step,
        backoff=Backoff(settings.worker_backoff_base_s, settings.worker_backoff_cap_s),
        unhealthy_after_s=settings.worker_unhealthy_after_s,
        fatal=SCHEMA_ERRORS,
        **kw,
    )


def live_worker(settings: Settings) -> Callable[[str, Any], Worker]:
    """The API's live-feed worker factory (api/app.py create_app ``live_worker``): supervised like every worker."""
    return lambda name, step: worker(settings, name, step)


ROLES = ("all", "stream", "derived")

# The role whose processes run the alert evaluator and notification dispatch: the evaluator claims its partitions'
# alert_queue rows as the updaters claim theirs, so it runs where the leases are (dispatch stays beside the
# evaluator, which pokes it).
ALERTS_ROLE = "derived"


def runs(role: str, part: str) -> bool:
    """Whether a process of ``role`` runs ``part`` ("stream" or "derived") of the work."""
    if role not in ROLES:
        raise ValueError(f"unknown ingest role {role!r}: one of {', '.join(ROLES)}")
    return role in ("all", part)


@dataclass
class Process:
    """One ``lccm ingest`` process: the supervisor of its workers, and what they were given (``stop`` closes the
    pool and the notification channels). A ``derived`` process is only this; :class:`Ingest` adds the stream."""

    supervisor: Supervisor
    pool: ConnectionPool | None = None
    evaluator: AlertEvaluator | None = None
    notifications: Notifications | None = None

    def start(self) -> None:
        """Connect what the process reads from (MqttError if the broker cannot be reached), then start the
        workers."""
        try:
            self._connect()
            self.supervisor.start()
        except BaseException:
            self.stop()  # closes the pool and the channels it was given
            raise

    def _connect(self) -> None:
        pass

    @property
    def error(self) -> str | None:
        """Why a worker is unhealthy, for the first such worker; None while every running worker is healthy."""
        for s in self.supervisor.statuses():
            if not s.healthy and s.state != "stopped":
                return f"{s.name} {s.state}: {s.last_error}"
        return None

    def stop(self, drain_s: float = 0.0, *, drain_workers: bool = True, timeout_s: float = 60.0) -> None:
        """Stop. The workers stop upstream first, each draining what the one before handed on (bounded: what is left
        stays in the database); without drain_workers (a Ctrl-C) each only finishes its step, waited for at most
        timeout_s."""
        try:
            self.supervisor.stop(timeout_s, drain=drain_workers)
        finally:
            self._close()

    def _close(self) -> None:
        if self.notifications is not None:
            self.notifications.close()
        if self.pool is not None:
            self.pool.close()


@dataclass(kw_only=True)
class Ingest(Process):
    """A process with the stream: the MQTT source, the stream loop and its sink besides the workers (roles ``all``
    and ``stream``)."""

    source: MqttSource
    loop: StreamLoop
    sink: DbSink

    def _connect(self) -> None:
        self.source.start()

    def stop(self, drain_s: float = 0.0, *, drain_workers: bool = True, timeout_s: float = 60.0) -> None:
        """Stop as :meth:`Process.stop`; with drain_s, first wait until the inbox has been quiet that long (tests,
        demo end)."""
        if drain_s:
            self.wait_idle(drain_s)
        super().stop(drain_workers=drain_workers, timeout_s=timeout_s)

    def _close(self) -> None:
        try:
            self.source.stop()
            self.sink.close()
        finally:
            super()._close()

    def wait_idle(self, quiet_s: float, timeout_s: float = 120.0, until: threading.Event | None = None) -> bool:
        """Block until no message has arrived for quiet_s and everything received is committed (True), or until
        timeout_s has passed or `until` is set (False)."""
        deadline = time.monotonic() + timeout_s
        last = (-1, -1)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and not (until is not None and until.is_set()):
            now_state = (self.source.received, self.loop.stats.messages)
            if now_state != last:
                last, quiet_since = now_state, time.monotonic()
            elif now_state[0] == now_state[1] and time.monotonic() - quiet_since >= quiet_s:
                return True
            time.sleep(0.05)
        return False


def needs_broker(settings: Settings) -> bool:
    """Whether a process of LCCM_INGEST_ROLE connects to the broker: the stream reads it, and alert notifications
    publish to it (a ``derived`` process, while the evaluator runs with the stream, does neither)."""
    role = settings.ingest_role
    return runs(role, "stream") or (settings.alerts_enabled and runs(role, ALERTS_ROLE))


def role_process(settings: Settings, svc: Services, **kw: Any) -> Process:
    """The process ``lccm ingest`` runs for LCCM_INGEST_ROLE: :func:`ingest_process` for ``all`` and ``stream``,
    :func:`derived_process` for ``derived`` (``kw`` as they take it). Not started: call ``start()``."""
    if runs(settings.ingest_role, "stream"):
        return ingest_process(settings, svc, **kw)
    return derived_process(settings, svc, **kw)


def ingest_process(
    settings: Settings,
    svc: Services,
    *,
    client_id: str | None = None,
    recipients: Sequence[Any] | None = None,
    index_source: IndexSource | None = None,
    clock: Callable[[], float] | None = None,
    metrics: IngestMetrics | None = None,
) -> Ingest:
    """Everything ``lccm ingest`` runs with the stream, wired as it runs it, all on one connection pool: the stream,
    with role ``all`` the updaters under partition leases, and (LCCM_ALERTS_ENABLED) in the role of
    :data:`ALERTS_ROLE` the alert evaluator with notification dispatch. With ``metrics``, batches and deliveries are
    counted there. Not started: call ``start()``."""
    if not runs(settings.ingest_role, "stream"):
        raise ValueError(f"an ingest process of role {settings.ingest_role!r} has no stream: use derived_process")
    pool = worker_pool(settings, svc.database_url)
    try:
        parts = _parts(settings, svc, pool, recipients=recipients, index_source=index_source, metrics=metrics)
        observe = metrics.observe_batch if metrics is not None else None
        return build_ingest(settings, svc, client_id=client_id, clock=clock, pool=pool, observe=observe, **parts)
    except BaseException:
        pool.close()
        raise


def derived_process(
    settings: Settings,
    svc: Services,
    *,
    recipients: Sequence[Any] | None = None,
    index_source: IndexSource | None = None,
    metrics: IngestMetrics | None = None,
    **_stream: Any,
) -> Process:
    """A process of role ``derived``: no MQTT source and no stream, its partition leases and the updaters claiming
    their work in them (and, with LCCM_ALERTS_ENABLED, the evaluator and dispatch: :data:`ALERTS_ROLE`).
    ``_stream`` takes the stream's own arguments (client id, clock) and ignores them, so :func:`role_process` passes
    one set."""
    pool = worker_pool(settings, svc.database_url)
    try:
        parts = _parts(settings, svc, pool, recipients=recipients, index_source=index_source, metrics=metrics)
        # Nothing commits readings here, so the commit hooks are never called: the updaters and the evaluator find
        # their work by polling their queues (the workers' idle time, 1 s).
        _hooks, workers = _downstream(settings, **parts)
        return Process(Supervisor(workers), pool, parts["evaluator"], parts["notifications"])
    except BaseException:
        pool.close()
        raise


def _parts(
    settings: Settings,
    svc: Services,
    pool: ConnectionPool,
    *,
    recipients: Sequence[Any] | None,
    index_source: IndexSource | None,
    metrics: IngestMetrics | None,
) -> dict[str, Any]:
    """The derived-data parts a process of LCCM_INGEST_ROLE runs, on ``pool``: updaters and leases (roles ``all`` and
    ``derived``), evaluator and notifications (LCCM_ALERTS_ENABLED, in the role of :data:`ALERTS_ROLE`). A process
    that runs no updaters takes no leases: the leases' fair share counts the processes that hold them."""
    role = settings.ingest_role
    notes = None
    try:
        evaluator = None
        if settings.alerts_enabled and runs(role, ALERTS_ROLE):
            notes = build_notifications(
                settings, pool.connection, mqtt_host=svc.mqtt_host, mqtt_port=svc.mqtt_port, recipients=recipients,
                on_delivery=metrics.on_delivery if metrics is not None else None,
            )  # fmt: skip
            if metrics is not None:
                metrics.track_channels(notes.dispatcher.channels)
        leases = partition_leases(settings, pool.connection) if runs(role, "derived") else None
        derived = updaters(settings, pool.connection, leases=leases) if leases is not None else None
        if notes is not None and leases is not None:  # it claims alert_queue rows in the leased partitions
            evaluator = alert_evaluator(settings, pool.connection, index_source=index_source, leases=leases)
    except BaseException:
        if notes is not None:
            notes.close()
        raise
    # Where the updaters run, the planner statistics of the tables they join are kept (_analyze).
    statistics = pool.connection if derived is not None else None
    return {
        "derived": derived, "leases": leases, "evaluator": evaluator, "notifications": notes, "statistics": statistics
    }  # fmt: skip


def build_ingest(
    settings: Settings,
    svc: Services,
    *,
    client_id: str | None = None,
    on_commit: Sequence[CommitHook] = (),
    clock: Callable[[], float] | None = None,
    observe: BatchObserver | None = None,
    pool: ConnectionPool | None = None,
    derived: Updaters | None = None,
    leases: Leases | None = None,
    evaluator: AlertEvaluator | None = None,
    notifications: Notifications | None = None,
    statistics: Connect | None = None,
) -> Ingest:
    """The stream from its parts, and a worker for each of the given derived-data updaters, partition leases,
    planner statistics, evaluator and notifications (:func:`ingest_process` gives those of its role; tests may run
    the stream alone).
    ``observe`` sees every committed batch (the metrics' histograms). The ingest owns what it is given: ``stop``
    closes the notifications and the pool."""
    connect: Connect = pool.connection if pool is not None else functools.partial(psycopg.connect, svc.database_url)

    def reload() -> Registry:
        with connect() as conn:
            return load_registry(conn)

    def fingerprint() -> tuple[object, ...]:
        with connect() as conn:
            return catalog.registry_fingerprint(conn)

    holder = RegistryHolder(reload, probe=fingerprint)
    limits = Limits(
        max_payload_bytes=settings.max_payload_bytes,
        max_readings=settings.max_readings_per_message,
        future_tolerance_s=settings.future_tolerance_s,
        topic_root=settings.mqtt_topic_root,
    )
    inbox = ByteBoundedInbox(settings.inbox_bytes)
    source = MqttSource(
        MqttConfig(
            host=svc.mqtt_host,
            port=svc.mqtt_port,
            client_id=client_id or settings.mqtt_client_id,
            username=settings.mqtt_username,
            password=settings.mqtt_password.get_secret_value(),
            share_group=settings.mqtt_share_group,
            topic_root=settings.mqtt_topic_root,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            protocol=svc.mqtt_protocol,
            keepalive_s=settings.mqtt_keepalive_s,
        ),
        inbox,
    )
    # Progress is held back while messages wait in the inbox: more batches are coming.
    progress = Progress(client_id or settings.mqtt_client_id, waiting=lambda: not inbox.empty())
    sink = DbSink(
        svc.database_url, settings.late_horizon_s * 1_000_000, alerts=settings.alerts_enabled, progress=progress
    )
    hooks, downstream = _downstream(
        settings, derived=derived, leases=leases, evaluator=evaluator, notifications=notifications,
        statistics=statistics, mqtt_in=source.check,
    )  # fmt: skip
    loop = StreamLoop(
        inbox=inbox,
        decode=make_decoder(holder, limits),
        sink=sink,
        ack=source.ack,
        policy=FlushPolicy(settings.batch_max_readings, settings.batch_max_wait_s),
        dedup_cache_bytes=settings.dedup_cache_bytes,
        on_commit=[*hooks, *on_commit],
        clock=clock or time.monotonic,
        observe=observe,
        in_flight=settings.batches_in_flight,
    )
    stream = [worker(settings, "stream", loop.step, drain=loop.finish, idle_s=0.0)]
    if settings.batches_in_flight:
        # After the stream: stopped after it, so its drain writes the batch the stream's drain handed over.
        stream.append(worker(settings, "stream-writer", loop.write_step, drain=loop.write_pending, idle_s=0.0))
    supervisor = Supervisor([*stream, *downstream])
    return Ingest(supervisor, pool, evaluator, notifications, source=source, loop=loop, sink=sink)


def _downstream(
    settings: Settings,
    *,
    derived: Updaters | None,
    leases: Leases | None,
    evaluator: AlertEvaluator | None,
    notifications: Notifications | None,
    statistics: Connect | None = None,
    mqtt_in: Callable[[], None] | None = None,
) -> tuple[list[CommitHook], list[Worker]]:
    """The workers of the derived-data parts given, in pipeline order (they follow the stream, when there is one),
    and the commit hooks that wake them (their work is in the queues the batch's transaction wrote)."""
    hooks: list[CommitHook] = []
    workers: list[Worker] = []
    gained: list[Callable[[], None]] = []  # a dead process's queued work waits in the partitions just taken
    if derived is not None:
        w = worker(settings, "updaters", _then_idle(derived.drain), drain=derived.drain)
        hooks.append(w.poke)
        gained.append(w.poke)
        workers.append(w)
    if evaluator is not None:
        alerts = worker(settings, "alerts", _then_idle(evaluator.drain), drain=evaluator.drain)
        hooks.append(alerts.poke)
        gained.append(alerts.poke)
        workers.append(alerts)
    if leases is not None and gained:

        def poke_gained() -> None:
            for poke in gained:
                poke()

        leases.on_gained = poke_gained
    dispatch = None
    if notifications is not None:
        dispatch = worker(
            settings, "notify-dispatch", notifications.step, drain=notifications.dispatch_pending,
            idle_s=settings.notify_tick_s,
        )  # fmt: skip
        workers.append(dispatch)
        if evaluator is not None:
            evaluator.on_paged = dispatch.poke
    if mqtt_in is not None:
        workers.append(worker(settings, "mqtt-in", _then_idle(lambda _: mqtt_in())))
    if notifications is not None and notifications.publisher is not None:
        publisher = notifications.publisher
        workers.append(worker(settings, "alert-publisher", _then_idle(lambda _: publisher.check())))
    if statistics is not None and settings.analyze_check_s:
        workers.append(
            worker(
                settings, "statistics", lambda _: _analyze(statistics, settings.analyze_min_interval_s),
                idle_s=settings.analyze_check_s,
            )
        )  # fmt: skip
    if leases is not None:
        # Last: started first (the updaters find their partitions soon), stopped last (after the updaters' drain),
        # when its drain gives the leases back so the other processes take them over at once.
        workers.append(worker(settings, "leases", leases.tick, drain=leases.release_all, idle_s=leases.every_s))
    return hooks, workers


def _analyze(connect: Connect, min_interval_s: float) -> None:
    with connect() as conn:
        analyzed = analyze_stale(conn, min_interval_s)
    if analyzed:
        log.debug("analyzed %s", ", ".join(analyzed))


def _then_idle(run: Callable[[Callable[[], bool]], object]) -> Callable[[Callable[[], bool]], None]:
    """A step that runs ``run`` and then waits the worker's idle time (or a poke), whatever ``run`` returned."""

    def step(stopping: Callable[[], bool]) -> None:
        run(stopping)

    return step
