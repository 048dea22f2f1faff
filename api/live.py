"""The live feed's engine room: one poller per API process reads what changed, one hub fans it out.

``LivePoller.step`` is a supervised worker's step (lccm/workers.py; the composition root wraps it, api/ may not
import it): every ``live_poll_s`` it reads, in one connection, every site's live power (store/live.py, the same
figures as GET /sites/{code}/live), the alert events recorded since the last step and the AQI hours computed since
then, and hands the changes to :class:`LiveHub`. The hub keeps one bounded queue per subscriber on the subscriber's
event loop and routes each event to the subscribers whose scope holds its site and whose roles may read its kind.
Polling costs three queries per interval whatever the number of subscribers; a subscriber costs a queue.

Bounds: at most ``max_subscribers`` streams at once (one more is refused, 503); a subscriber whose queue holds
``queue_events`` undelivered events is a slow client: it is dropped (its stream ends, the browser reconnects), never
buffered without end. The last ``replay_events`` alert events stay in memory, so a client reconnecting with
``Last-Event-ID`` gets the alert events it missed (in its scope); power is sent whole on every connection, so it
needs no replay; AQI hours are not replayed (the next hour brings the next update; GET /aqi/current has the rest).

Alert events are read by id and AQI hours by computation time. An id or a time taken by a transaction that commits
after a later one was read would be missed; the AQI read looks back ``AQI_OVERLAP`` and skips what it sent, the alert
writers are short transactions (a miss there is possible but rare; GET /alerts stays the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from psycopg_pool import ConnectionPool

from lccm.api.policy import policy_for
from lccm.api.principal import Principal, Scope
from lccm.store import live as store

log = logging.getLogger(__name__)

EventName = Literal["power", "alert", "aqi"]
# Which JSON route's policy gives each kind of event: a caller receives the events of the routes they may read.
KIND_ROUTES: dict[EventName, tuple[str, str]] = {
    "power": ("GET", "/sites/{site_code}/live"),
    "alert": ("GET", "/alerts"),
    "aqi": ("GET", "/aqi/history"),
}
STALE_CADENCES = 3  # as GET /sites/{code}/live (api/routes/energy.py)
AQI_OVERLAP = timedelta(seconds=60)
READ_LIMIT = 5_000  # rows per kind per step; the rest comes in the next step


def kinds_for(principal: Principal) -> frozenset[EventName]:
    """The event kinds the caller's roles may read (api/policy.py)."""
    found = set()
    for kind, (method, path) in KIND_ROUTES.items():
        policy = policy_for(method, path)
        if policy is not None and policy.allows(principal.roles):
            found.add(kind)
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    name: EventName
    data: dict[str, Any]
    organisation_id: int
    site_id: int
    id: str | None = None  # alert events only: the alert event's id, for Last-Event-ID


@dataclass(eq=False)
class Subscriber:
    scope: Scope
    kinds: frozenset[EventName]
    loop: asyncio.AbstractEventLoop
    limit: int
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=asyncio.Queue)
    dropped: bool = False

    def wants(self, event: LiveEvent) -> bool:
        return (
            event.name in self.kinds
            and event.organisation_id == self.scope.organisation_id
            and self.scope.allows_site(event.site_id)
        )

    def end(self) -> None:
        """On the subscriber's loop: end the stream after what is queued (the process is stopping)."""
        if not self.dropped:
            self.dropped = True
            self.queue.put_nowait(None)

    def offer(self, events: list[LiveEvent]) -> None:
        """On the subscriber's loop: queue the events, or drop a subscriber that has fallen ``limit`` behind."""
        if self.dropped:
            return
        for event in events:
            if self.queue.qsize() >= self.limit:
                self.dropped = True
                while not self.queue.empty():
                    self.queue.get_nowait()
                self.queue.put_nowait(None)  # ends the stream
                log.warning("live feed: dropped a subscriber %d events behind", self.limit)
                return
            self.queue.put_nowait(event)


class TooManySubscribers(Exception):
    pass


class LiveHub:
    """The subscribers of one process, the latest power of every site, and the recent alert events."""

    def __init__(self, *, max_subscribers: int, queue_events: int, replay_events: int) -> None:
        self.max_subscribers = max_subscribers
        self.queue_events = queue_events
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._power: dict[int, LiveEvent] = {}  # site id -> latest power event
        self._replay: deque[LiveEvent] = deque(maxlen=replay_events)
        self._closed = False

    def subscribe(self, principal: Principal, last_event_id: str | None) -> Subscriber:
        """A new subscriber on the running loop, its queue primed with the power of its sites and the alert events
        after ``last_event_id``; TooManySubscribers when the process has its maximum."""
        sub = Subscriber(principal.scope, kinds_for(principal), asyncio.get_running_loop(), self.queue_events)
        after = _event_number(last_event_id)
        with self._lock:
            if self._closed:
                raise TooManySubscribers("the process is stopping")
            if len(self._subscribers) >= self.max_subscribers:
                raise TooManySubscribers(f"the live feed has its maximum of {self.max_subscribers} subscribers")
            primer = list(self._power.values())
            if after is not None:
                primer += [e for e in self._replay if e.id is not None and int(e.id) > after]
            self._subscribers.add(sub)
        sub.offer([e for e in primer if sub.wants(e)])
        return sub

    def close(self) -> None:
        """End every stream (callable from any thread): the server is stopping, and would otherwise wait for streams
        that never end by themselves. Later subscribers are refused (503)."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
        for sub in subscribers:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nothing to end
                sub.loop.call_soon_threadsafe(sub.end)

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def remember_alerts(self, events: Iterable[LiveEvent]) -> None:
        with self._lock:
            self._replay.extend(events)

    def publish(self, events: list[LiveEvent]) -> None:
        """From the poller's thread: record, then hand each subscriber its share on its own loop."""
        if not events:
            return
        with self._lock:
            for e in events:
                if e.name == "power":
                    self._power[e.site_id] = e
                elif e.name == "alert":
                    self._replay.append(e)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            mine = [e for e in events if sub.wants(e)]
            if mine and not sub.dropped:
                try:
                    sub.loop.call_soon_threadsafe(sub.offer, mine)
                except RuntimeError:  # its loop has closed: the stream is gone
                    self.unsubscribe(sub)


def _event_number(last_event_id: str | None) -> int | None:
    if last_event_id is None:
        return None
    try:
        return int(last_event_id.strip())
    except ValueError:
        return None  # not one of ours: nothing to replay


class Supervised(Protocol):
    """What api/ needs of a supervised worker (lccm/workers.py Worker)."""

    def start(self) -> None: ...
    def stop(self, timeout_s: float = 60.0, *, drain: bool = True) -> bool: ...


# The composition root's factory: a name and a step -> a supervised worker (lccm/runtime.py ``worker``).
WorkerFactory = Callable[[str, Callable[[Callable[[], bool]], float | None]], Supervised]


class LivePoller:
    """The step of the process's one live-feed worker: read what changed, publish it to the hub."""

    def __init__(self, pool: ConnectionPool, hub: LiveHub, *, poll_s: float, clock: Callable[[], datetime]) -> None:
        self._pool = pool
        self._hub = hub
        self._poll_s = poll_s
        self._clock = clock
        self._power: dict[int, tuple[float | None, int]] = {}
        self._alert_after: int | None = None
        self._aqi_since: datetime | None = None
        self._aqi_sent: set[tuple[str, str, datetime, datetime]] = set()

    def step(self, stopping: Callable[[], bool]) -> float:
        with self._pool.connection() as conn:
            if self._alert_after is None:  # first step: replay memory from the recent past, nothing sent yet
                last = store.last_alert_event_id(conn)
                recent = store.alert_changes(conn, after_id=max(0, last - READ_LIMIT), limit=READ_LIMIT)
                self._hub.remember_alerts(_alert_event(a) for a in recent)
                self._alert_after = max([last, *(a.event_id for a in recent)])
                self._aqi_since = store.latest_aqi_computation(conn) or datetime.now(UTC)
            as_of = self._clock()
            events = self._power_events(store.sites_power(conn, as_of=as_of, stale_cadences=STALE_CADENCES), as_of)
            changes = store.alert_changes(conn, after_id=self._alert_after, limit=READ_LIMIT)
            if changes:
                self._alert_after = changes[-1].event_id
            events += [_alert_event(a) for a in changes]
            events += self._aqi_events(conn)
        self._hub.publish(events)
        return self._poll_s

    def _power_events(self, rows: list[store.SitePower], as_of: datetime) -> list[LiveEvent]:
        found = []
        for r in rows:
            now = (r.power_w, r.power_devices)
            if self._power.get(r.site_id) != now:
                self._power[r.site_id] = now
                data = {"site_code": r.site_code, "power_w": r.power_w, "power_devices": r.power_devices,
                        "as_of": as_of.isoformat()}  # fmt: skip
                found.append(LiveEvent("power", data, r.organisation_id, r.site_id))
        return found

    def _aqi_events(self, conn: Any) -> list[LiveEvent]:
        assert self._aqi_since is not None
        rows = store.aqi_hours_since(conn, since=self._aqi_since - AQI_OVERLAP, limit=READ_LIMIT)
        found = []
        for r in rows:
            key = (r.station, r.index_key, r.hour_start, r.computed_at)
            if key in self._aqi_sent:
                continue
            self._aqi_sent.add(key)
            data = {"station": r.station, "site_code": r.site_code, "index": r.index_key,
                    "hour_start": r.hour_start.isoformat(), "aqi": r.aqi, "category": r.category,
                    "responsible": r.responsible, "status": r.status}  # fmt: skip
            found.append(LiveEvent("aqi", data, r.organisation_id, r.site_id))
        if rows:
            self._aqi_since = max(self._aqi_since, rows[-1].computed_at)
        horizon = self._aqi_since - AQI_OVERLAP
        self._aqi_sent = {k for k in self._aqi_sent if k[3] > horizon}
        return found


def _alert_event(a: store.AlertChange) -> LiveEvent:
    data = {"event_id": a.event_id, "alert_id": a.alert_id, "kind": a.kind, "at": a.at.isoformat(),
            "site_code": a.site_code, "device_id": a.device_id, "rule_key": a.rule_key, "signal": a.signal,
            "severity": a.severity, "state": a.state, "value": a.value, "actor": a.actor}  # fmt: skip
    return LiveEvent("alert", data, a.organisation_id, a.site_id, id=str(a.event_id))
