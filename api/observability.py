"""The API's own observability: request ids, one access-log line per request, and its Prometheus registry.

api/ may not import the composition root, so this module holds what the API needs itself:
- :data:`REQUEST_ID`, a context variable set for the life of each request (FastAPI runs sync routes in worker
  threads under a copy of the request's context, so route code and the store see it too);
- :class:`RequestIdFilter`, the logging filter that puts it on every record as ``record.request_id`` (the
  composition root passes it to the one logging set-up, lccm/logs.py, which writes it in JSON lines);
- :class:`RequestContextMiddleware`, a pure ASGI middleware: accepts a sane incoming ``X-Request-ID`` or makes
  one, returns it in the response header, writes the access line and counts the request;
- :class:`ApiMetrics`, the app's own registry (never prometheus_client's global one, so several apps can live
  in one process: tests, the demo).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: ContextVar[str | None] = ContextVar("lccm_request_id", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from a client or a proxy as is: bounded, and nothing that could forge a log line or a header.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}")
_QUIET_PATHS = ("/health", "/metrics")  # probes and scrapes every few seconds: logged at DEBUG only
UNMATCHED = "<unmatched>"  # the route label of a 404: raw paths would give every scanner its own series

# Who may read /metrics: request headers (lower-case names) -> allowed. None: anyone who reaches the API.
MetricsAuthorize = Callable[[Mapping[str, str]], bool]

access_log = logging.getLogger("lccm.api.access")
log = logging.getLogger(__name__)


def metrics_token_guard(token: SecretStr | None) -> MetricsAuthorize | None:
    """/metrics for a scraper sending ``Authorization: Bearer <LCCM_METRICS_TOKEN>``; no token: open (the API's and
    the ingest's monitoring server alike)."""
    if token is None or not token.get_secret_value():
        return None
    expected = f"Bearer {token.get_secret_value()}".encode()

    def authorize(headers: Mapping[str, str]) -> bool:
        return hmac.compare_digest(headers.get("authorization", "").encode(), expected)

    return authorize


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` from the current request (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def accept_request_id(value: str | None) -> str:
    """The incoming id if it is sane, else a new one."""
    if value and _SANE_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class ApiMetrics:
    LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.requests = Counter(
            "lccm_api_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "lccm_api_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template",
            ["method", "route"],
            buckets=self.LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = accept_request_id(incoming)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it starts a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("ascii"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Unhandled (the error handlers answered everything they know): logged here, inside the request's
            # context, so the traceback carries its request id; the server's error middleware answers 500.
            log.exception("unhandled error answering %s %s", scope["method"], scope.get("path", ""))
            raise
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(scope["method"], route, status, seconds)
            _log_access(scope, status, seconds)
            REQUEST_ID.reset(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return str(value.decode("ascii"))
            except UnicodeDecodeError:
                return None
    return None


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    path = scope.get("path", "")
    level = logging.DEBUG if path.startswith(_QUIET_PATHS) and status < 500 else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    extra: dict[str, Any] = {
        "method": scope["method"],
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
    }
    access_log.log(level, "%s %s %d %.1f ms", scope["method"], path, status, seconds * 1000, extra=extra)
