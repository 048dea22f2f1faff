"""Process wiring: resolve the services, build the ingest worker from its parts, run it in a thread."""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from lccm.alert_rules import default_rules_file, load_rules_file
from lccm.engine.aqi import AqiSettings
from lccm.engine.factors import SOURCE_CLASSES, TGO_FACTORS
from lccm.engine.timebase import bkk_us
from lccm.extras import require_extra
from lccm.ingest.codec import Limits
from lccm.ingest.decoder import RegistryHolder, make_decoder
from lccm.ingest.mqtt import MqttConfig, MqttSource
from lccm.ingest.registry import Metric, Registry, UnitRow
from lccm.services import Broker, Database, start_broker, start_database
from lccm.settings import Settings
from lccm.store import catalog
from lccm.store.alerts import StoredAqiIndex, metric_ids, sync_file_rules
from lccm.store.energy import sync_factor_registry
from lccm.store.migrate import migrate
from lccm.store.writer import DEFAULT_LATE_HORIZON_US, ReadingColumns, WriteResult, write_batch
from lccm.stream.alerts import AlertEvaluator, IndexSource, Notifier
from lccm.stream.aqi import AqiUpdater
from lccm.stream.batch import BatchBuilder, FlushPolicy
from lccm.stream.energy import EnergyUpdater
from lccm.stream.loop import BatchObserver, CommitHook, RawMessage, StreamLoop
from lccm.stream.samples import SampleUpdater
from lccm.stream.updaters import Updaters

log = logging.getLogger(__name__)


def load_registry(conn: psycopg.Connection) -> Registry:
    metrics = [Metric(m.id, m.name, m.unit, m.kind, m.min_value, m.max_value) for m in catalog.metrics(conn)]
    units = [UnitRow(u.metric_id, u.unit, u.key_suffix, u.scale) for u in catalog.metric_units(conn)]
    return Registry.build(catalog.device_ids(conn), metrics, units)


class DbSink:
    """Writes batches on one connection, reconnecting after a failure (the stream loop retries the batch)."""

    def __init__(self, url: str, late_horizon_us: int = DEFAULT_LATE_HORIZON_US) -> None:
        self._url = url
        self._late_horizon_us = late_horizon_us
        self._conn: psycopg.Connection | None = None

    def __call__(self, batch: BatchBuilder, cols: ReadingColumns) -> WriteResult:
        conn = self._connection()
        try:
            return write_batch(conn, cols, batch.dead_letters, batch.statuses, late_horizon_us=self._late_horizon_us)
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


def energy_updater(settings: Settings, database_url: str) -> EnergyUpdater:
    return EnergyUpdater(
        lambda: psycopg.connect(database_url),
        base_year_us=(bkk_us(settings.emission_base_year), bkk_us(settings.emission_base_year + 1)),
        default_bound_kw=settings.meter_default_bound_kw,
        default_bound_lph=settings.meter_default_bound_lph,
        bound_history_days=settings.meter_bound_history_days,
    )


def updaters(settings: Settings, database_url: str) -> Updaters:
    """Every derived-data updater (energy and emissions, samples, lamps), as ``lccm ingest`` runs them."""
    connect = functools.partial(psycopg.connect, database_url)
    return Updaters(
        energy_updater(settings, database_url),
        SampleUpdater(connect, grace_us=settings.streetlight_grace_min * 60_000_000),
        AqiUpdater(connect, AqiSettings(completeness=settings.aqi_completeness)),
    )


def alert_evaluator(
    settings: Settings,
    database_url: str,
    *,
    notify: Notifier | None = None,
    index_source: IndexSource | None = None,
) -> AlertEvaluator:
    """The alert evaluator as ``lccm ingest`` runs it, after syncing the rule file into the database (an invalid
    file stops start-up with every problem named). Index rules read the stored hourly AQI unless told otherwise."""
    with psycopg.connect(database_url) as conn:
        rules = load_rules_file(settings.alert_rules_file or default_rules_file(), metric_keys=metric_ids(conn))
        report = sync_file_rules(conn, [r.definition() for r in rules])
    log.info("alert rules: %s", report)
    return AlertEvaluator(
        functools.partial(psycopg.connect, database_url),
        clock=settings.alert_clock,  # type: ignore[arg-type]  # checked by the settings' pattern
        late_after_s=settings.alert_late_after_s,
        catchup_s=settings.alert_catchup_s,
        notify=notify,
        index_source=index_source if index_source is not None else StoredAqiIndex(),
    )


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database, migrated; NotConfigured without LCCM_DATABASE_URL. Yields its URL."""
    with services(settings, with_broker=False) as svc:
        yield svc.database_url


@dataclass
class IngestWorker:
    source: MqttSource
    loop: StreamLoop
    sink: DbSink
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> None:
        self.source.start()
        self._thread = threading.Thread(target=self._run, name="lccm-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop.run(self._stop.is_set)
        except BaseException as e:  # surfaced to the caller through .error and the log
            self.error = e
            log.exception("stream loop died")

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop; with drain_s, first wait until the inbox has been quiet that long (tests, demo end)."""
        if drain_s:
            self.wait_idle(drain_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.source.stop()
        self.sink.close()

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


def build_ingest(
    settings: Settings,
    svc: Services,
    *,
    client_id: str | None = None,
    on_commit: Sequence[CommitHook] = (),
    clock: Callable[[], float] | None = None,
    observe: BatchObserver | None = None,
) -> IngestWorker:
    def reload() -> Registry:
        with psycopg.connect(svc.database_url) as conn:
            return load_registry(conn)

    holder = RegistryHolder(reload)
    limits = Limits(
        max_payload_bytes=settings.max_payload_bytes,
        max_readings=settings.max_readings_per_message,
        future_tolerance_s=settings.future_tolerance_s,
        topic_root=settings.mqtt_topic_root,
    )
    inbox: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
    source = MqttSource(
        MqttConfig(
            host=svc.mqtt_host,
            port=svc.mqtt_port,
            client_id=client_id or settings.mqtt_client_id,
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            share_group=settings.mqtt_share_group,
            topic_root=settings.mqtt_topic_root,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            protocol=svc.mqtt_protocol,
        ),
        inbox,
    )
    sink = DbSink(svc.database_url, settings.late_horizon_s * 1_000_000)
    loop_kwargs = {} if clock is None else {"clock": clock}
    loop = StreamLoop(
        inbox=inbox,
        decode=make_decoder(holder, limits),
        sink=sink,
        ack=source.ack,
        policy=FlushPolicy(settings.batch_max_readings, settings.batch_max_wait_s),
        dedup_window_keys=settings.dedup_window_keys,
        on_commit=on_commit,
        observe=observe,
        **loop_kwargs,  # type: ignore[arg-type]
    )
    return IngestWorker(source=source, loop=loop, sink=sink)
