"""The FastAPI application factory.

Routes are plain ``def`` functions on a synchronous ``psycopg_pool.ConnectionPool``: the store's functions
(``import_registry``, the writer, migrations) are synchronous psycopg, so the API reuses them as they are, and
FastAPI runs sync routes in its worker thread pool. The connection pool's ``max_size``, not the thread count,
bounds the load on PostgreSQL. A city's dashboards and operators make tens of requests per second at most, far
below where an event-loop driver would pay for its second copy of every query function.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import psycopg
from fastapi import Depends, FastAPI
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from lccm.api.auth.guard import AuthConfig, authorize, own_organisation
from lccm.api.auth.oidc import OidcConfig, OidcVerifier
from lccm.api.docs import install_docs
from lccm.api.errors import install_handlers
from lccm.api.limits import RequestLimits
from lccm.api.live import LiveHub, LivePoller, WorkerFactory
from lccm.api.observability import ApiMetrics, MetricsAuthorize, RequestContextMiddleware, metrics_token_guard
from lccm.api.openapi import install_openapi
from lccm.api.policy import check_complete
from lccm.api.routes import (
    alerts,
    aqi,
    assets,
    auth,
    baseline,
    conflicts,
    energy,
    inventory,
    live,
    ops,
    readings,
    registry,
    reports,
    rollups,
    users,
)
from lccm.api.validation import check_inputs
from lccm.api.web import ROUTERS as WEB_ROUTERS
from lccm.api.web.errors import install as install_page_errors
from lccm.imports.limits import InputLimits


class Settings(Protocol):
    """What the API reads of ``lccm.settings.Settings``. A protocol, because api/ may not import the composition
    root (tests/test_architecture.py); it passes its Settings object, which matches it."""

    @property
    def database_url(self) -> str: ...
    @property
    def db_pool_min(self) -> int: ...
    @property
    def db_pool_max(self) -> int: ...
    @property
    def comparison_min_coverage(self) -> float: ...
    @property
    def aqi_thai_colours_hex(self) -> tuple[str, str, str, str, str]: ...
    @property
    def api_max_json_bytes(self) -> int: ...
    @property
    def api_max_upload_bytes(self) -> int: ...
    @property
    def metrics_token(self) -> SecretStr | None: ...
    @property
    def oidc_issuer(self) -> str: ...
    @property
    def oidc_audience(self) -> str: ...
    @property
    def oidc_jwks_url(self) -> str: ...
    @property
    def oidc_roles_claim(self) -> str: ...
    @property
    def oidc_org_claim(self) -> str: ...
    @property
    def oidc_sites_claim(self) -> str: ...
    @property
    def public_aqi(self) -> bool: ...
    @property
    def session_ttl_s(self) -> float: ...
    @property
    def session_cookie_secure(self) -> bool: ...
    @property
    def login_lockout_after(self) -> int: ...
    @property
    def login_lockout_s(self) -> float: ...
    @property
    def mqtt_topic_root(self) -> str: ...
    @property
    def live_poll_s(self) -> float: ...
    @property
    def live_max_subscribers(self) -> int: ...
    @property
    def live_queue_events(self) -> int: ...
    @property
    def live_replay_events(self) -> int: ...
    @property
    def live_heartbeat_s(self) -> float: ...
    @property
    def live_stream_max_s(self) -> float: ...
    @property
    def web_map_tiles_url(self) -> str | None: ...
    @property
    def web_map_tiles_attribution(self) -> str: ...
    def input_limits(self) -> InputLimits: ...


def auth_config(settings: Settings) -> AuthConfig:
    oidc = None
    if settings.oidc_issuer:
        oidc = OidcVerifier(
            OidcConfig(
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                jwks_url=settings.oidc_jwks_url,
                roles_claim=settings.oidc_roles_claim,
                org_claim=settings.oidc_org_claim,
                sites_claim=settings.oidc_sites_claim,
            )
        )
    return AuthConfig(
        oidc=oidc,
        public_aqi=settings.public_aqi,
        session_ttl_s=settings.session_ttl_s,
        session_cookie_secure=settings.session_cookie_secure,
        login_lockout_after=settings.login_lockout_after,
        login_lockout_s=settings.login_lockout_s,
    )


def session_settings(conn: psycopg.Connection) -> None:
    """How the API's connections plan: each statement for its own parameters, and without JIT compilation.

    psycopg prepares a statement from its 6th run on a connection, and PostgreSQL switches a prepared statement to
    a generic plan (one for any parameters) after 5 more runs when it estimates that plan no dearer. For the pages'
    time-range queries it was far dearer: once a long-running ``lccm api`` had served a page about ten times, a site
    page went from ~0.1 s to over 1 s (benchmarks/web.py). Planning them afresh costs well under a millisecond.

    JIT: the overview's query over every device of the city is estimated above PostgreSQL's ``jit_above_cost`` and
    spent ~65 ms compiling itself for ~110 ms of work (EXPLAIN ANALYZE on a week of the demo city); the API's
    queries are lookups that never run long enough to repay a compilation."""
    conn.execute("SET plan_cache_mode = force_custom_plan")
    conn.execute("SET jit = off")
    conn.commit()  # the pool takes connections back idle


def _make_pool(settings: Settings) -> ConnectionPool:
    return ConnectionPool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        configure=session_settings,
        # Test each connection as it is handed out, so a restarted database costs one failed check, not one
        # failed request per stale pooled connection.
        check=ConnectionPool.check_connection,
        open=False,
        name="lccm-api",
    )


@dataclass(frozen=True, slots=True)
class LiveLimits:
    heartbeat_s: float
    stream_max_s: float


def create_app(
    settings: Settings,
    pool: ConnectionPool | None = None,
    *,
    metrics_authorize: MetricsAuthorize | None = None,
    live_worker: WorkerFactory | None = None,
) -> FastAPI:
    """Build the app. With ``pool`` given, the caller owns it (opens and closes it); otherwise the lifespan opens
    one from ``settings`` and closes it at shutdown. ``metrics_authorize`` guards ``/metrics`` (default: the
    LCCM_METRICS_TOKEN guard, open without a token). ``live_worker`` makes the supervised worker that polls for the
    live feed (api/live.py; the composition root passes lccm/runtime.py's): without it, GET /live/events streams
    heartbeats only. Every route answers to its policy (api/policy.py); an app with a route the policy table does
    not cover is refused (PolicyMissing)."""
    hub = LiveHub(
        max_subscribers=settings.live_max_subscribers,
        queue_events=settings.live_queue_events,
        replay_events=settings.live_replay_events,
    )

    @asynccontextmanager
    async def live_feed(using: ConnectionPool) -> AsyncIterator[None]:
        if live_worker is None:
            yield
            return
        poller = LivePoller(using, hub, poll_s=settings.live_poll_s, clock=lambda: datetime.now(UTC))
        worker = live_worker("live-feed", poller.step)
        worker.start()
        try:
            yield
        finally:
            worker.stop(10.0, drain=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, ConnectionPool]]:
        if pool is not None:
            async with live_feed(pool):
                yield {"pool": pool}
            return
        own = _make_pool(settings)
        # wait=False: the API starts even while the database is down; /health then reports 503 until it is back.
        own.open(wait=False)
        try:
            async with live_feed(own):
                yield {"pool": own}
        finally:
            own.close()

    app = FastAPI(
        title="Low Carbon City Monitor",
        summary="Live energy, emissions and air quality for Thai municipalities",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served from the package by api/docs.py, never from a CDN
        redoc_url=None,
        # Every route is authenticated and checked against its policy first (api/auth/guard.py), then its inputs
        # pass one check beyond their types: no NUL, no date outside 1900-2199, no number beyond what the database
        # holds (api/validation.py); then another organisation's /organisations/{code} is refused (404).
        dependencies=[Depends(authorize), Depends(check_inputs), Depends(own_organisation)],
    )
    install_handlers(app)
    install_page_errors(app)  # Forbidden and NotFound on a web page: a page, not JSON
    install_docs(app)
    metrics = ApiMetrics()
    app.state.metrics = metrics
    app.state.metrics_authorize = metrics_authorize or metrics_token_guard(settings.metrics_token)
    app.state.auth = auth_config(settings)
    # The baseline routes withhold figures drawn from too little data (reports/coverage.py).
    app.state.comparison_min_coverage = settings.comparison_min_coverage
    app.state.aqi_categories = aqi.categories_state(settings.aqi_thai_colours_hex)
    app.state.web_map_tiles_url = settings.web_map_tiles_url
    app.state.web_map_tiles_attribution = settings.web_map_tiles_attribution
    app.state.input_limits = settings.input_limits()
    # Dead letters are attributed to an organisation by their topic's <city> level, which follows the root.
    app.state.topic_root = settings.mqtt_topic_root
    app.state.live_hub = hub
    app.state.live_limits = LiveLimits(settings.live_heartbeat_s, settings.live_stream_max_s)
    # Bodies are bounded before anything reads them (api/limits.py).
    app.add_middleware(
        RequestLimits, json_bytes=settings.api_max_json_bytes, upload_bytes=settings.api_max_upload_bytes
    )
    # Outermost: the request id and the access line cover the error handlers' answers too.
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.include_router(ops.router)
    app.include_router(conflicts.router)
    app.include_router(registry.router)
    app.include_router(assets.router)
    app.include_router(readings.router)
    app.include_router(energy.router)
    app.include_router(rollups.router)
    app.include_router(aqi.router)
    app.include_router(inventory.router)
    app.include_router(baseline.router)
    app.include_router(reports.router)
    app.include_router(alerts.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(live.router)
    for web_router in WEB_ROUTERS:  # the web pages (api/web/), outside the OpenAPI document
        app.include_router(web_router)
    install_openapi(app)
    check_complete(app)
    return app
