"""Readings: the latest value per metric, and time-range pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lccm.api import cursors
from lccm.api.deps import Conn, Cursor, From, To, check_range
from lccm.api.errors import DeviceNotFound, InvalidParameter, SiteNotFound
from lccm.api.principal import CurrentPrincipal, Scope
from lccm.api.schemas import DeviceLatestOut, LatestValueOut, ReadingOut, ReadingPage, SiteLatestOut
from lccm.store import queries

router = APIRouter(tags=["readings"])

_READINGS_CURSOR = "readings"


def _device(conn: Conn, device_id: str, scope: Scope) -> queries.Device:
    device = queries.get_device(conn, device_id, scope=scope)
    if device is None:
        raise DeviceNotFound(device_id)
    return device


@router.get(
    "/devices/{device_id}/latest", response_model=DeviceLatestOut, responses={404: {"description": "unknown device"}}
)
def device_latest(device_id: str, conn: Conn, principal: CurrentPrincipal) -> DeviceLatestOut:
    """The latest value of each metric by event time (a late-arriving older reading never replaces it)."""
    device = _device(conn, device_id, principal.scope)
    values = queries.latest_for_device(conn, device.id, scope=principal.scope)
    return DeviceLatestOut(device_id=device_id, values=[LatestValueOut.model_validate(v) for v in values])


@router.get("/latest", response_model=SiteLatestOut, responses={404: {"description": "unknown site"}})
def site_latest(site_code: str, conn: Conn, principal: CurrentPrincipal) -> SiteLatestOut:
    """The latest value of each metric of every device of a site, by event time."""
    site = queries.get_site(conn, site_code, scope=principal.scope)
    if site is None:
        raise SiteNotFound(site_code)
    values = queries.latest_for_site(conn, site.id, scope=principal.scope)
    return SiteLatestOut(site_code=site_code, values=[LatestValueOut.model_validate(v) for v in values])


@router.get(
    "/devices/{device_id}/readings",
    response_model=ReadingPage,
    responses={404: {"description": "unknown device"}},
)
def device_readings(
    device_id: str,
    conn: Conn,
    principal: CurrentPrincipal,
    start: From = None,
    end: To = None,
    metric: Annotated[str | None, Query(description="metric name from the catalogue, e.g. energy")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Cursor = None,
) -> ReadingPage:
    """Readings in [from, to), ordered by metric then event time, in pages joined by ``next_cursor``."""
    check_range(start, end)
    device = _device(conn, device_id, principal.scope)
    metric_id = _metric_id(conn, metric)
    after = None
    if cursor:
        m, us = cursors.decode(_READINGS_CURSOR, cursor, (int, int))
        after = (int(m), cursors.from_us(int(us)))
    rows = queries.readings_page(
        conn, device_pk=device.id, metric_id=metric_id, start=start, end=end, after=after, limit=limit + 1,
        scope=principal.scope,
    )  # fmt: skip
    page, more = rows[:limit], len(rows) > limit
    next_cursor = None
    if more:
        next_cursor = cursors.encode(_READINGS_CURSOR, page[-1].metric_id, cursors.to_us(page[-1].ts))
    return ReadingPage(device_id=device_id, items=[ReadingOut.model_validate(r) for r in page], next_cursor=next_cursor)


def _metric_id(conn: Conn, name: str | None) -> int | None:
    if name is None:
        return None
    metric = queries.get_metric(conn, name)
    if metric is None:
        known = ", ".join(m.name for m in queries.list_metrics(conn))
        raise InvalidParameter("metric", f"unknown metric {name!r}; known metrics: {known}")
    return metric.id
