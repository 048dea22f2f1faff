"""``GET /conflicts``: second values for stored readings, kept for review (docs/contract.md#duplicates-and-corrections).

A device that sends another value for a (device, metric, event time) already stored does not change it (first
wins); the offered value is listed here so a person can see it and decide.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lccm.api import cursors
from lccm.api.deps import Conn, Cursor, From, To, check_range
from lccm.api.errors import DeviceNotFound, InvalidParameter
from lccm.api.principal import CurrentPrincipal
from lccm.api.schemas_conflicts import ConflictOut, ConflictPage
from lccm.store import conflicts, queries

router = APIRouter(tags=["operations"])

_CONFLICT_CURSOR = "conflicts"


@router.get("/conflicts", response_model=ConflictPage, responses={404: {"description": "unknown device"}})
def list_conflicts(
    conn: Conn,
    principal: CurrentPrincipal,
    device_id: Annotated[str | None, Query(description="external device id, as in the topic")] = None,
    metric: Annotated[str | None, Query(description="metric name from the catalogue, e.g. energy")] = None,
    start: From = None,
    end: To = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> ConflictPage:
    """Readings offered again with another value than the stored one, newest first by receive time [from, to)."""
    check_range(start, end)
    device_pk = None
    if device_id is not None:
        device = queries.get_device(conn, device_id, scope=principal.scope)
        if device is None:
            raise DeviceNotFound(device_id)
        device_pk = device.id
    metric_id = None
    if metric is not None:
        found = queries.get_metric(conn, metric)
        if found is None:
            known = ", ".join(m.name for m in queries.list_metrics(conn))
            raise InvalidParameter("metric", f"unknown metric {metric!r}; known metrics: {known}")
        metric_id = found.id
    before = None
    if cursor:
        us, ident = cursors.decode(_CONFLICT_CURSOR, cursor, (int, int))
        before = (cursors.from_us(int(us)), int(ident))
    rows = conflicts.conflicts_page(
        conn, device_pk=device_pk, metric_id=metric_id, start=start, end=end, before=before, limit=limit + 1,
        scope=principal.scope,
    )  # fmt: skip
    page, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        next_cursor = cursors.encode(_CONFLICT_CURSOR, cursors.to_us(page[-1].received_at), page[-1].id)
    return ConflictPage(items=[ConflictOut.model_validate(r) for r in page], next_cursor=next_cursor)
