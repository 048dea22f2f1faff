"""GET /live/events: the live feed as Server-Sent Events, for the web pages and for integrators.

An ``async`` route on purpose (the API's routes are sync): a stream lives for minutes, and a thread of the pool per
open stream would starve the sync routes. The route reads nothing from the database; the process's one poller does
(api/live.py) and the hub hands each stream its share.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from lccm.api.errors import ApiError
from lccm.api.live import LiveHub, Subscriber, TooManySubscribers
from lccm.api.principal import CurrentPrincipal
from lccm.api.schemas_live import stream_openapi

router = APIRouter(tags=["live"])

RETRY_MS = 3000  # how long a browser waits before reconnecting a dropped stream

EXAMPLE = (
    "retry: 3000\n\n"
    "event: power\n"
    'data: {"site_code":"HALL","power_w":4200.0,"power_devices":1,"as_of":"2026-12-07T04:40:05.120+00:00"}\n\n'
    "id: 812\n"
    "event: alert\n"
    'data: {"event_id":812,"alert_id":57,"kind":"raised","at":"2026-12-07T04:30:00+00:00","site_code":"AQ1",'
    '"device_id":"AQ1-S","rule_key":"pm25-high","signal":"pm25_ugm3","severity":"warning","state":"open",'
    '"value":81.0,"actor":null}\n\n'
    "event: aqi\n"
    'data: {"station":"AQ1-S","site_code":"AQ1","index":"thai_pcd_2023","hour_start":"2026-12-07T04:00:00+00:00",'
    '"aqi":112.0,"category":3,"responsible":"pm25","status":"complete"}\n\n'
    ": heartbeat\n\n"
)


class FeedFull(ApiError):
    status_code = 503
    code = "live_feed_full"

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": "30"}


async def subscription(request: Request, principal: CurrentPrincipal) -> AsyncIterator[Subscriber]:
    """Subscribe before the stream starts (so a full feed is a 503, not a broken stream); unsubscribe after it.
    Last-Event-ID is read as the browser sends it (not a declared parameter: anything but an event id of ours just
    replays nothing)."""
    hub: LiveHub = request.app.state.live_hub
    try:
        sub = hub.subscribe(principal, request.headers.get("last-event-id"))
    except TooManySubscribers as e:
        raise FeedFull(str(e)) from e
    try:
        yield sub
    finally:
        hub.unsubscribe(sub)


@router.get(
    "/live/events",
    response_class=EventSourceResponse,
    responses={
        200: {"description": "an endless text/event-stream", "content": {"text/event-stream": {"example": EXAMPLE}}},
        503: {"description": "the process has its maximum of subscribers (LCCM_LIVE_MAX_SUBSCRIBERS); retry later"},
    },
    openapi_extra={"responses": {"200": {"content": {"text/event-stream": stream_openapi()}}}},
)
async def live_events(request: Request, sub: Annotated[Subscriber, Depends(subscription)]) -> AsyncIterator[
    ServerSentEvent
]:  # fmt: skip
    """Live power, alert changes and AQI updates as Server-Sent Events, in the caller's scope.

    Events (``event:`` name, ``data:`` one JSON object):

    - ``power`` (roles that may read GET /sites/{code}/live): a site's live power changed. ``{site_code,
      power_w, power_devices, as_of}``; ``power_w`` is the figure of GET /sites/{code}/live at ``as_of`` (null:
      no device's power is fresh). Every site in scope is sent once when the stream opens, then on each change.
    - ``alert`` (roles that may read GET /alerts): an alert was raised, reopened, acknowledged, cleared, closed or
      revised (re-timed, merged or withdrawn by the evaluator once readings that arrived late are known).
      ``{event_id, alert_id, kind, at, site_code, device_id, rule_key, signal, severity, state, value, actor}``;
      ``state`` is the alert's state when the event was read. Each carries ``id:`` (the event id): reconnect with
      ``Last-Event-ID`` to receive the alert events missed meanwhile (the process keeps the last
      LCCM_LIVE_REPLAY_EVENTS).
    - ``aqi`` (roles that may read GET /aqi/history): an AQI hour of a station was (re)computed. ``{station,
      site_code, index, hour_start, aqi, category, responsible, status}``; ``index`` is thai_pcd_2023,
      us_epa_2024 or us_epa_2024_nowcast, ``category`` the index's category number (0 = best), ``status`` complete,
      incomplete or withheld (then ``aqi`` is null), as GET /aqi/current says.

    A comment line (``: heartbeat``) comes every LCCM_LIVE_HEARTBEAT_S seconds without events, so proxies keep the
    stream open. The server polls every LCCM_LIVE_POLL_S seconds. A client that falls LCCM_LIVE_QUEUE_EVENTS events
    behind is disconnected (reconnect), and a stream ends after LCCM_LIVE_STREAM_MAX_S seconds (EventSource
    reconnects by itself, after ``retry`` ms).
    """
    limits = request.app.state.live_limits
    yield ServerSentEvent(retry=RETRY_MS, comment="lccm live feed")
    deadline = asyncio.get_running_loop().time() + limits.stream_max_s
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return
        try:
            event = await asyncio.wait_for(sub.queue.get(), timeout=min(limits.heartbeat_s, left))
        except TimeoutError:
            yield ServerSentEvent(comment="heartbeat")
            continue
        if event is None:  # dropped as a slow client
            return
        yield ServerSentEvent(event=event.name, data=event.data, id=event.id)
