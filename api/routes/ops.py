"""Operations: health (``/health``, ``/health/live``, ``/health/ready``), ``/metrics`` and the dead-letter table."""

from __future__ import annotations

import base64
import logging
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lccm.api import cursors
from lccm.api.deps import Conn, Cursor, From, Pool, To, check_range
from lccm.api.principal import CurrentPrincipal
from lccm.api.schemas import (
    DeadLetterOut,
    DeadLetterPage,
    DeadLetterSummary,
    HealthOut,
    LiveOut,
    ReadyOut,
    ReasonCountOut,
)
from lccm.store import migrate, queries

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])

# A health probe must answer quickly even when the pool would wait its full timeout for a connection.
HEALTH_TIMEOUT_S = 2.0
_DEAD_LETTER_CURSOR = "dead_letters"


@router.get("/health/live", response_model=LiveOut)
def live() -> LiveOut:
    """The process answers (a hung process does not: restart it). No database access."""
    return LiveOut(status="live")


@router.get("/health/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
def ready(pool: Pool) -> ReadyOut | JSONResponse:
    """Ready to serve: the database answers and its schema is the one this code ships (no pending migration).
    503 with the reasons otherwise."""
    try:
        with pool.connection(timeout=min(HEALTH_TIMEOUT_S, pool.timeout)) as conn:
            version = migrate.schema_version(conn)
    except psycopg.Error as exc:
        log.warning("readiness: the database cannot be reached: %s", exc)
        reason = f"the database cannot be reached: {type(exc).__name__}"
        return _not_ready(ReadyOut(status="not_ready", checks={"database": "unreachable"}, reasons=[reason]))
    checks: dict[str, object] = {"database": "ok", "schema": "current" if version.current else "behind"}
    if version.unknown:
        checks["schema_unknown_migrations"] = version.unknown
    if version.problem:
        checks["schema_pending_migrations"] = version.pending
        return _not_ready(ReadyOut(status="not_ready", checks=checks, reasons=[version.problem]))
    return ReadyOut(status="ready", checks=checks, reasons=[])


def _not_ready(body: ReadyOut) -> JSONResponse:
    return JSONResponse(status_code=503, content=body.model_dump(mode="json"))


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text exposition of the API's own registry (requests by route and status, latency, process)."""
    authorize = request.app.state.metrics_authorize
    if authorize is not None and not authorize({k.lower(): v for k, v in request.headers.items()}):
        return JSONResponse(status_code=401, content={"detail": "not authorised to read metrics"})
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(pool: Pool) -> HealthOut | JSONResponse:
    try:
        with pool.connection(timeout=min(HEALTH_TIMEOUT_S, pool.timeout)) as conn:
            info = queries.store_health(conn)
    except psycopg.Error as exc:
        return _unhealthy(exc)
    return HealthOut(
        status="ok",
        database_reachable=True,
        layout=info.layout,
        readings_estimate=info.readings_estimate,
        last_received_at=info.last_received_at,
    )


def _unhealthy(exc: psycopg.Error) -> JSONResponse:
    # OperationalError (PoolTimeout included) means no connection could be had; anything else means the database
    # answered but is not usable by us, typically a schema that was never migrated.
    reachable = not isinstance(exc, psycopg.OperationalError)
    log.warning("health: database %s: %s", "unusable" if reachable else "unreachable", exc)
    detail = f"database error: {type(exc).__name__}" if reachable else "the database cannot be reached"
    down = HealthOut(status="unavailable", database_reachable=reachable, detail=detail)
    return JSONResponse(status_code=503, content=down.model_dump(mode="json"))


def _dead_letter_out(row: queries.DeadLetter) -> DeadLetterOut:
    try:
        payload, encoding = row.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(row.payload).decode("ascii"), "base64"
    return DeadLetterOut(
        id=row.id,
        received_at=row.received_at,
        topic=row.topic,
        reason=row.reason,
        detail=row.detail,
        device_ref=row.device_ref,
        payload=payload,
        payload_encoding=encoding,  # type: ignore[arg-type]  # one of the two literals above
        payload_bytes=len(row.payload),
    )


def _topic_root(request: Request) -> str:
    root: str = request.app.state.topic_root
    return root


TopicRoot = Annotated[str, Depends(_topic_root)]


@router.get("/dead-letters", response_model=DeadLetterPage)
def dead_letters(
    conn: Conn,
    principal: CurrentPrincipal,
    topic_root: TopicRoot,
    reason: Annotated[str | None, Query(description="refusal reason, e.g. bad_json, unknown_device")] = None,
    start: From = None,
    end: To = None,
    # Payloads run up to 256 KiB each, so pages are smaller than for readings.
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> DeadLetterPage:
    """Refused messages of the caller's organisation, newest first, filtered by reason and receive time [from, to).
    A message belongs to the organisation of the device its topic names, else to the organisation whose city its
    topic's <city> level is; one with neither is listed to nobody."""
    check_range(start, end)
    before = None
    if cursor:
        us, ident = cursors.decode(_DEAD_LETTER_CURSOR, cursor, (int, int))
        before = (cursors.from_us(int(us)), int(ident))
    rows = queries.dead_letters_page(
        conn, scope=principal.scope, topic_root=topic_root, reason=reason, start=start, end=end, before=before,
        limit=limit + 1,
    )  # fmt: skip
    page, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        next_cursor = cursors.encode(_DEAD_LETTER_CURSOR, cursors.to_us(page[-1].received_at), page[-1].id)
    return DeadLetterPage(items=[_dead_letter_out(r) for r in page], next_cursor=next_cursor)


@router.get("/dead-letters/summary", response_model=DeadLetterSummary)
def dead_letter_summary(
    conn: Conn, principal: CurrentPrincipal, topic_root: TopicRoot, start: From = None, end: To = None
) -> DeadLetterSummary:
    """Counts of the caller's organisation's refused messages by reason, with receive time [from, to)."""
    check_range(start, end)
    rows = queries.dead_letter_summary(conn, scope=principal.scope, topic_root=topic_root, start=start, end=end)
    reasons = [ReasonCountOut.model_validate(r) for r in rows]
    return DeadLetterSummary(total=sum(r.count for r in reasons), reasons=reasons)
