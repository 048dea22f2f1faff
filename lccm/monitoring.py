"""The ingest process's monitoring server: ``/metrics`` (Prometheus), ``/health/live`` and ``/health/ready``.

A small threaded WSGI server from the standard library (the ingest runs no web framework), on
``LCCM_METRICS_HOST:LCCM_METRICS_PORT`` (default 127.0.0.1:9108; port 0 = no server). ``/metrics`` is
prometheus_client's own WSGI app (content negotiation, OpenMetrics, gzip).

- ``/health/live``: 200 while the process serves requests (a hung process does not answer: restart it).
- ``/health/ready``: 200 when the database answers, its schema is the one this code ships (no pending migration),
  and every worker is healthy; otherwise 503. Both bodies are JSON with the checks and, when not ready, the reasons.

Access control: ``/metrics`` may be scraped from an internal network. ``authorize`` (request headers, lower-case
names -> allowed) is the hook for a token check; None lets everyone in, as today. The probes stay open.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg
from prometheus_client import CollectorRegistry, make_wsgi_app

from lccm.api.observability import metrics_token_guard
from lccm.metrics import IngestMetrics, StatusSource, WorkerStatusLike
from lccm.runtime import Ingest, Process
from lccm.settings import Settings
from lccm.store.migrate import schema_version

log = logging.getLogger(__name__)

Authorize = Callable[[Mapping[str, str]], bool]
Connect = Callable[[], psycopg.Connection]
PROBE_TIMEOUT_S = 2  # a probe answers within the orchestrator's timeout even while the database hangs


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not_ready", "checks": self.checks, "reasons": self.reasons}


def probe_connect(database_url: str) -> Connect:
    """Short-lived connections for probes and scrapes: bounded connect and statement time."""
    ms = PROBE_TIMEOUT_S * 1000

    def connect() -> psycopg.Connection:
        return psycopg.connect(
            database_url, connect_timeout=PROBE_TIMEOUT_S, autocommit=True, options=f"-c statement_timeout={ms}"
        )

    return connect


def database_readiness(connect: Connect) -> Readiness:
    """Reachable and migrated to this code's version (store.migrate.schema_version)."""
    try:
        with connect() as conn:
            version = schema_version(conn)
    except psycopg.Error as e:
        reason = f"the database cannot be reached: {type(e).__name__}"
        log.warning("readiness: %s: %s", reason, e)
        return Readiness(False, {"database": "unreachable"}, [reason])
    checks: dict[str, Any] = {"database": "ok", "schema": "current" if version.current else "behind"}
    if version.unknown:
        checks["schema_unknown_migrations"] = version.unknown
    if version.problem:
        return Readiness(False, {**checks, "schema_pending_migrations": version.pending}, [version.problem])
    return Readiness(True, checks)


def ingest_readiness(connect: Connect, statuses: StatusSource) -> Callable[[], Readiness]:
    """The ingest is ready when the database is (see above) and every worker is healthy."""

    def check() -> Readiness:
        db = database_readiness(connect)
        workers = list(statuses())
        sick = [w for w in workers if not w.healthy]
        checks = {**db.checks, "workers": {w.name: _worker(w) for w in workers}}
        reasons = db.reasons + [f"worker {w.name} is {w.state}: {w.last_error or 'unhealthy'}" for w in sick]
        return Readiness(db.ready and not sick, checks, reasons)

    return check


def _worker(w: WorkerStatusLike) -> dict[str, Any]:
    return {"state": w.state, "healthy": w.healthy, "restarts": w.restarts, "last_error": w.last_error}


def watch_ingest(metrics: IngestMetrics, ingest: Process, database_url: str) -> Callable[[], Readiness]:
    """Register the ingest's scrape-time collectors (stream counters of a process with the stream, work queues, its
    supervisor's workers) and return its readiness check. The per-batch observer and the delivery counter are passed
    at build time: ``ingest_process(metrics=metrics)``."""
    connect = probe_connect(database_url)
    statuses = ingest.supervisor.statuses
    if isinstance(ingest, Ingest):
        stream = ingest
        metrics.watch_stream(lambda: stream.loop.stats, lambda: stream.source.received)
    metrics.watch_queues(connect)
    metrics.watch_workers(statuses)
    return ingest_readiness(connect, statuses)


def monitor_ingest(
    settings: Settings, metrics: IngestMetrics, ingest: Process, database_url: str
) -> MonitoringServer | None:
    """The ingest's /metrics and /health on LCCM_METRICS_HOST/PORT, as ``lccm ingest`` and ``lccm demo`` serve it."""
    return start_monitoring(settings, metrics.registry, watch_ingest(metrics, ingest, database_url))


# --- the server ---------------------------------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the process's exit
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("monitoring: " + format, *args)


class MonitoringServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], Readiness],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        authorize: Authorize | None = None,
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._ready = ready
        self._authorize = authorize
        self._httpd = make_server(host, port, self.app, server_class=_Server, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._serve, name="lccm-monitoring", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> MonitoringServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        try:
            self._httpd.serve_forever(poll_interval=0.5)
        except Exception:  # never silent: the process still ingests, but nobody can watch it
            log.exception("monitoring server stopped")
            raise

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json(start_response, 405, {"detail": "GET only"})
        if path == "/metrics":
            if self._authorize is not None and not self._authorize(_headers(environ)):
                return _json(start_response, 401, {"detail": "not authorised to read metrics"})
            result: Iterable[bytes] = self._metrics(environ, start_response)
            return result
        if path == "/health/live":
            return _json(start_response, 200, {"status": "live"})
        if path == "/health/ready":
            try:
                readiness = self._ready()
            except Exception as e:  # a failing check is "not ready", with the reason, not a 500
                log.exception("readiness check failed")
                readiness = Readiness(False, {}, [f"readiness check failed: {type(e).__name__}: {e}"])
            return _json(start_response, 200 if readiness.ready else 503, readiness.body())
        return _json(start_response, 404, {"detail": f"no such path: {path}; try /metrics or /health/ready"})


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    out = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    if "CONTENT_TYPE" in environ:
        out["content-type"] = str(environ["CONTENT_TYPE"])
    return out


_REASON = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _json(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> Iterator[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {_REASON[status]}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")],
    )
    yield data


class MonitoringUnavailable(Exception):
    """The monitoring server cannot listen where the settings say (``lccm`` exits 2 with this message)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        super().__init__(
            f"cannot serve /metrics and /health on {host}:{port} ({error.strerror or error}): set LCCM_METRICS_PORT "
            "to a free port (each ingest process on a machine needs its own) or to 0 for no monitoring server"
        )


def start_monitoring(
    settings: Settings,
    registry: CollectorRegistry,
    ready: Callable[[], Readiness],
    *,
    authorize: Authorize | None = None,
) -> MonitoringServer | None:
    """The server on the configured address, started; None when LCCM_METRICS_PORT is 0."""
    if not settings.metrics_port:
        log.info("monitoring server off (LCCM_METRICS_PORT=0)")
        return None
    try:
        server = MonitoringServer(
            registry,
            ready,
            host=settings.metrics_host,
            port=settings.metrics_port,
            authorize=authorize or metrics_token_guard(settings.metrics_token),
        ).start()
    except OSError as e:  # an unwatched process is not what the operator configured: stop and say why
        raise MonitoringUnavailable(settings.metrics_host, settings.metrics_port, e) from None
    log.info("metrics and health on %s (/metrics, /health/live, /health/ready)", server.url)
    return server
