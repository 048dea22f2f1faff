"""Prometheus metrics of the ingest process: every collector lives here; the stages only count or call back.

Where each figure comes from, and why that way:
- Counters of the stream (messages, readings in and stored, duplicates, dead letters by reason, batches, write
  retries) are read from the stream loop's own ``StreamStats`` at scrape time (:class:`StreamCollector`): the stage
  keeps one set of numbers, for its log line, the demo's panel and Prometheus alike.
- Per-batch distributions (readings per batch, commit latency, receive-to-commit lag) are observed by
  :meth:`IngestMetrics.observe_batch`, which the stream loop calls after each commit (``StreamLoop(observe=...)``).
  The lag is per message; a batch holds up to tens of thousands, so :class:`BulkHistogram` buckets them with one
  numpy call instead of one Python call each.
- Work-queue depths and the age of their oldest item (the updaters' lag) are read from PostgreSQL at scrape time by
  :class:`QueueCollector`, with bounded queries and a short cache, so a scrape storm or a huge backlog costs little.
- Worker health comes from a ``Callable[[], Iterable[WorkerStatusLike]]`` (the worker supervisor's ``statuses``).
- Notification outcomes by channel are counted by :meth:`IngestMetrics.on_delivery`, the dispatcher's
  ``on_delivery`` callback.

Every metric is named ``lccm_*``; :func:`metric_names` lists the series names a registry exposes (the operations
dashboard's test checks its PromQL against them).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from lccm.notify import DeliveryRecord
from lccm.stream.loop import BatchCommitted, StreamStats

log = logging.getLogger(__name__)

BATCH_READINGS_BUCKETS = (1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 50_000)
COMMIT_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Receipt to commit: the batch deadline (LCCM_BATCH_MAX_WAIT_S, 0.05 s) plus the write, up to a database outage.
LAG_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

# Rows a queue probe looks at: beyond this a depth reads as the cap, and the oldest item of an unindexed queue is
# the oldest among the rows looked at (the queues are drained in order, so it is near the true one).
QUEUE_PROBE_CAP = 100_000
QUEUE_CACHE_S = 5.0


def metric_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry's collectors expose (``_total``, ``_bucket`` ... included), samples or not."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


# --- distributions ------------------------------------------------------------------------------------------------


class BulkHistogram(Collector):
    """A Prometheus histogram fed whole arrays at once (thread-safe)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self.name, self.documentation = name, documentation
        self._upper = np.array([*sorted(buckets), math.inf], dtype=np.float64)
        self._counts = np.zeros(len(self._upper), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        if not len(values):
            return
        # Bucket i holds value <= upper[i] (Prometheus' "le"); searchsorted(left) finds the first such i.
        counts = np.bincount(np.searchsorted(self._upper, values, side="left"), minlength=len(self._upper))
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts).tolist(), self._sum
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=[(floatToGoString(le), c) for le, c in zip(self._upper.tolist(), cumulative, strict=True)],
            sum_value=total,
        )

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)


# --- stream counters ----------------------------------------------------------------------------------------------


class StreamCollector(Collector):
    """The stream loop's counters, read at scrape time. ``received`` is the MQTT source's count of messages taken
    from the broker (the difference to ``lccm_ingest_messages_total`` is in memory, not yet committed and acked)."""

    def __init__(self, stats: Callable[[], StreamStats], received: Callable[[], int]) -> None:
        self._stats = stats
        self._received = received

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        received = self._received()
        yield _counter("lccm_ingest_messages_received", "Messages received from the broker", received)
        yield _counter(
            "lccm_ingest_messages", "Messages committed (stored or dead-lettered) and acknowledged", s.messages
        )
        yield _gauge(
            "lccm_ingest_inflight_messages",
            "Messages received and not yet committed (waiting in memory; the broker redelivers them after a crash)",
            max(0, received - s.messages),
        )
        yield _counter("lccm_ingest_readings", "Readings decoded from committed messages, before dedup", s.readings_in)
        yield _counter("lccm_ingest_readings_stored", "Readings inserted into the database", s.readings_stored)
        duplicates = CounterMetricFamily(
            "lccm_ingest_duplicates", "Duplicate readings dropped, by where they were found", labels=["found_in"]
        )
        duplicates.add_metric(["memory"], s.duplicates_dropped)
        duplicates.add_metric(["database"], s.duplicates_in_db)
        yield duplicates
        yield _counter(
            "lccm_ingest_conflicts",
            "Second values for a stored reading: not stored (first wins), kept in reading_conflicts (GET /conflicts)",
            s.conflicts,
        )
        dead = CounterMetricFamily("lccm_ingest_dead_letters", "Messages refused, by reason", labels=["reason"])
        for reason, n in sorted(_snapshot(s.dead_letters).items()):
            dead.add_metric([reason], n)
        yield dead
        yield _counter("lccm_ingest_batches", "Batches committed", s.batches)
        yield _counter("lccm_ingest_write_retries", "Batch writes that failed and were retried", s.write_retries)
        yield _counter("lccm_ingest_statuses", "Device status messages stored", s.statuses)
        yield _counter(
            "lccm_ingest_outbound_messages",
            "The product's own messages under the topic root (alerts, device commands): acknowledged, not ingested",
            s.outbound,
        )

    def describe(self) -> Iterator[Metric]:
        return self.collect()  # no I/O: the same families, read from memory


def _snapshot(counts: dict[str, int]) -> dict[str, int]:
    # The stream thread may add a reason while a scrape reads; a plain dict copy is one step under the GIL.
    for _ in range(3):
        with contextlib.suppress(RuntimeError):
            return dict(counts)
    return {}


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


# --- work queues --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueProbe:
    """One work queue: ``sql`` returns (depth, oldest item's timestamp) over at most %(cap)s rows."""

    name: str
    worker: str  # who drains it
    sql: str


def _outbox(table: str) -> str:
    # No index on these outboxes (they are drained as a whole): the LIMIT bounds the scan.
    return f"SELECT count(*), min(queued_at) FROM (SELECT queued_at FROM {table} LIMIT %(cap)s) q"


QUEUES: tuple[QueueProbe, ...] = (
    QueueProbe("rollup_queue", "energy", _outbox("rollup_queue")),
    QueueProbe("sample_queue", "samples", _outbox("sample_queue")),
    QueueProbe("aqi_queue", "aqi", _outbox("aqi_queue")),
    QueueProbe("day_queue", "days", _outbox("day_queue")),
    # Alert changes to page that no notifier has taken yet (partial index alert_events_to_notify, oldest first).
    QueueProbe(
        "alert_events_to_notify",
        "alerts",
        "SELECT count(*), min(recorded_at) FROM (SELECT recorded_at FROM alert_events"
        " WHERE page AND notified_at IS NULL ORDER BY id LIMIT %(cap)s) q",
    ),
    # Held for quiet hours or a digest; the age is how long the oldest one is overdue (0 until its release time).
    QueueProbe(
        "notify_held",
        "notify",
        "SELECT count(*), min(release_at) FILTER (WHERE release_at <= now()) FROM (SELECT release_at FROM notify_held"
        " WHERE released_at IS NULL ORDER BY release_at LIMIT %(cap)s) q",
    ),
    # Failed deliveries that have not reached their address since (kept for a re-send).
    QueueProbe(
        "notify_undelivered",
        "notify",
        "SELECT count(*), min(at) FROM (SELECT d.at FROM notify_deliveries d WHERE NOT d.ok AND NOT EXISTS ("
        " SELECT 1 FROM notify_deliveries o WHERE o.ok AND o.notification_id = d.notification_id"
        " AND o.channel = d.channel AND o.address = d.address) LIMIT %(cap)s) q",
    ),
)

Connect = Callable[[], psycopg.Connection]


class QueueCollector(Collector):
    """Depth and oldest-item age of every work queue, read from the database at most every ``cache_s``."""

    def __init__(
        self,
        connect: Connect,
        *,
        cache_s: float = QUEUE_CACHE_S,
        cap: int = QUEUE_PROBE_CAP,
        queues: tuple[QueueProbe, ...] = QUEUES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._cache_s = cache_s
        self._cap = cap
        self._queues = queues
        self._clock = clock
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._rows: dict[str, tuple[int, float]] | None = None  # queue -> (depth, oldest age in seconds)

    def _read(self) -> dict[str, tuple[int, float]] | None:
        # One statement, one round trip: a scrape holds a connection for milliseconds.
        sql = " UNION ALL ".join(
            f"(SELECT %(q{i})s::text, d, extract(epoch FROM now() - t)::float8 FROM ({q.sql}) AS x(d, t))"
            for i, q in enumerate(self._queues)
        )
        params: dict[str, Any] = {"cap": self._cap, **{f"q{i}": q.name for i, q in enumerate(self._queues)}}
        try:
            with self._connect() as conn:
                rows = conn.execute(sql, params).fetchall()
        except psycopg.Error as e:
            log.warning("queue metrics: the database did not answer: %s", e)
            return None
        return {str(name): (int(depth), max(0.0, float(age or 0.0))) for name, depth, age in rows}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._cache_s:
                self._rows, self._read_at = self._read(), now
            rows = self._rows
        yield from self._families(rows)

    def describe(self) -> Iterator[Metric]:
        return self._families(None)

    def _families(self, rows: dict[str, tuple[int, float]] | None) -> Iterator[Metric]:
        labels = ["queue", "worker"]
        depth = GaugeMetricFamily(
            "lccm_queue_depth", f"Items waiting in each work queue (read up to {self._cap})", labels=labels
        )
        age = GaugeMetricFamily(
            "lccm_queue_oldest_age_seconds",
            "Age of the oldest waiting item (the lag of the worker that drains the queue); 0 when empty",
            labels=labels,
        )
        ok = GaugeMetricFamily("lccm_queue_probe_ok", "1 if the last read of the queue depths succeeded")
        for q in self._queues:
            if rows is not None and q.name in rows:
                depth.add_metric([q.name, q.worker], rows[q.name][0])
                age.add_metric([q.name, q.worker], rows[q.name][1])
        ok.add_metric([], 0 if rows is None else 1)
        yield depth
        yield age
        yield ok


# --- workers ------------------------------------------------------------------------------------------------------


class WorkerStatusLike(Protocol):
    """What the worker supervisor reports per worker (lccm.workers.WorkerStatus has these attributes)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def restarts(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_ok_age_s(self) -> float | None: ...


StatusSource = Callable[[], Iterable[WorkerStatusLike]]


class WorkerCollector(Collector):
    def __init__(self, statuses: StatusSource) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[Metric]:
        return self._families(list(self._statuses()))

    def describe(self) -> Iterator[Metric]:
        return self._families([])

    def _families(self, statuses: list[WorkerStatusLike]) -> Iterator[Metric]:
        up = GaugeMetricFamily("lccm_worker_up", "1 if the worker is healthy", labels=["stage"])
        restarts = CounterMetricFamily("lccm_worker_restarts", "Times the worker was restarted", labels=["stage"])
        last_ok = GaugeMetricFamily(
            "lccm_worker_last_ok_age_seconds", "Seconds since the worker last finished a run", labels=["stage"]
        )
        state = GaugeMetricFamily(
            "lccm_worker_state", "The worker's state (1 for the current one)", labels=["stage", "state"]
        )
        for s in statuses:
            up.add_metric([s.name], 1 if s.healthy else 0)
            restarts.add_metric([s.name], s.restarts)
            state.add_metric([s.name, s.state], 1)
            if s.last_ok_age_s is not None:
                last_ok.add_metric([s.name], s.last_ok_age_s)
        yield from (up, restarts, last_ok, state)


# --- the ingest process's registry --------------------------------------------------------------------------------


class IngestMetrics:
    """The ingest process's registry: the observers handed to the stages, and the scrape-time collectors.

    Each instance has its own registry (never prometheus_client's global one), so tests and the demo can build
    several side by side."""

    def __init__(self, *, channels: Iterable[str] = (), process: bool = True) -> None:
        self.registry = CollectorRegistry()
        if process:  # CPU, memory, open files, GC: what a stuck or leaking process shows first
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.batch_readings = Histogram(
            "lccm_ingest_batch_readings",
            "Readings per committed batch (after in-memory dedup)",
            buckets=BATCH_READINGS_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "lccm_ingest_commit_seconds",
            "Duration of a batch's successful write: readings, dead letters, outbox rows and the commit",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.commit_lag = BulkHistogram(
            "lccm_ingest_commit_lag_seconds",
            "Per message: from its receipt from the broker to the commit of its batch",
            LAG_SECONDS_BUCKETS,
        )
        self.registry.register(self.commit_lag)
        self.notify_deliveries = Counter(
            "lccm_notify_deliveries",
            "Notification deliveries attempted, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.notify_failures = Counter(
            "lccm_notify_failures",
            "Notification deliveries that failed (kept in notify_deliveries for a re-send), by channel",
            ["channel"],
            registry=self.registry,
        )
        self.track_channels(channels)

    def track_channels(self, channels: Iterable[str]) -> None:
        """Start the channels' notification series at 0, so rate() sees the first failure."""
        for channel in channels:
            self.notify_deliveries.labels(channel)
            self.notify_failures.labels(channel)

    # -- observers handed to the stages --

    def observe_batch(self, b: BatchCommitted) -> None:
        self.batch_readings.observe(b.readings)
        self.commit_seconds.observe(b.write_s)
        lag_s = np.maximum(b.committed_at_us - b.received_at_us, 0) / 1e6  # a clock step back is not negative lag
        self.commit_lag.observe_many(lag_s)

    def on_delivery(self, rec: DeliveryRecord) -> None:
        self.notify_deliveries.labels(rec.channel).inc()
        if not rec.ok:
            self.notify_failures.labels(rec.channel).inc()

    # -- scrape-time collectors --

    def watch_stream(self, stats: Callable[[], StreamStats], received: Callable[[], int]) -> None:
        self.registry.register(StreamCollector(stats, received))

    def watch_queues(self, connect: Connect, *, cache_s: float = QUEUE_CACHE_S) -> QueueCollector:
        collector = QueueCollector(connect, cache_s=cache_s)
        self.registry.register(collector)
        return collector

    def watch_workers(self, statuses: StatusSource) -> None:
        self.registry.register(WorkerCollector(statuses))
