"""The alert evaluator: after each committed batch, runs the touched series through their rules' state machines
(engine/alerts.py) on event time, writes alerts and their history, and marks the on-time raises and clears to page
(the notify-dispatch worker sends them).

Parts, each with one job, held by :class:`AlertEvaluator` (which only takes turns and counts):

- :class:`Inbox` (with :class:`Pending` and :class:`DeliveryClock`): what the commit hook hands over, and how far
  event time has got overall and per device;
- :class:`RuleCache`, :class:`DeviceCache`, :class:`Schedules`: the rules, the devices they watch, where their
  schedules hold;
- :class:`MetricJobs`, :class:`IndexJobs`, :class:`OfflineJobs`: the three kinds of evaluation;
- :class:`AlertWriter`: what a run decided, written to the store.

Work and crash safety. ``on_commit(cols)`` (a stream-loop commit hook) records, per (device, metric), the span of
event times the batch committed and the watermark it arrived under, and pokes the worker. Evaluation is driven by
the stored readings, not by the batch: each (rule, series) keeps a frontier (the newest sample it has seen) in
``alert_series_state``, and a run takes every stored reading after the frontier up to the newest span it was told
about. State, alerts, events and the frontier are written in one transaction, so a crash loses nothing and repeats
nothing. Batches committed but never handed to the evaluator (a crash between the commit and the hook) are found at
start-up by ``catch_up``: one index probe per series for readings beyond its frontier. Notifications are at least
once: the events to page are written with the alert, and marked notified only after the notifier took them.

Watermarks. With ``clock="wall"`` (production) a batch arrived under the wall clock at receipt: an alert whose
event time is more than ``late_after`` older is late (recorded, not paged): a device replaying six hours of
buffered data, or a whole backlog after an outage, does not page about the past. With ``clock="event"`` a batch
arrived under the city's event-time watermark (the newest event time committed so far): replays of the past
(simulations, benchmarks) page as if live, and only data behind the rest of the city is late.

Readings behind a series' frontier (a station that sent its newest reading first and replays its buffer after, or
a redelivered batch) are evaluated too: the series is run again from a checkpoint, a state kept from before them
(``alert_series_state.state -> 'checkpoints'``, about 11 states spaced by age, back to ``catchup_s``), over every
stored reading up to the frontier, under the watermark the late readings arrived under, and ``engine.alerts.revise``
reconciles that run with what was recorded: an episode nobody recorded becomes a cleared alert, late (not paged)
when it lies more than ``late_after`` behind that watermark; where the full data disagree with the live state about
the present, the series' alert is opened or cleared. A redelivered batch finds what was recorded and changes
nothing. Readings more than ``catchup_s`` behind the frontier, or older than every checkpoint, are stored but not
evaluated (counted in ``RunResult.unevaluated`` and logged). Index rules are not run again: readings behind their
frontier revise stored index hours (the AQI updater) that the evaluator has passed and does not read again.

Offline rules run on delivery: a device's clock is its newest data's event time when that data came on time, and
the watermark it arrived under when it came late (so a device replaying buffered hours, or with a clock far
behind, is delivering, not offline); a device is offline when the newest such clock of the city is more than N
cadences ahead of its own. They are not judged on a batch of old data (a backlog after an outage of this system,
wall clock), which says nothing about who is delivering now.

Index rules (``index: aqi_th``) read the index series through :class:`IndexSource` (``StoredAqiIndex`` reads the
AQI updater's hourly rows); without one they are skipped (logged once). A device's index is read at its batches
once a period (an hour, for the stored AQI) has ended since its last evaluated sample, and again at each batch
until that period's value is there (the AQI updater runs beside us); ``request_index_check`` forces a read (after a
recompute, or at the end of a replay). An index sample arrived under the watermark of the batch that brought the
readings it was computed from: the delivery clock keeps, for each device an index rule watches, the (newest event
time, watermark) of its batches after the index rules' frontier for that (16 bytes each, capped by
``history_bytes``), so an index computed late is not judged late for it.

Several evaluators (one per ingest process) take turns: a run holds a transaction-level advisory lock and a process
that does not get it keeps its work for the next run.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any, Literal, Protocol

import holidays as holiday_calendars
import numpy as np
import psycopg

from lccm.engine.alert_kinds import AlertState, TransitionKind
from lccm.engine.alerts import (
    NO_TS,
    AlertRule,
    RecordedAlert,
    SeriesInfo,
    SeriesState,
    Transition,
    checkpoint_before,
    checkpoints_from_json,
    checkpoints_to_json,
    default_max_gap_us,
    evaluate,
    evaluate_offline,
    keep_checkpoints,
    revise,
    sample_values,
    schedule_mask,
    with_flat_carry,
)
from lccm.engine.timebase import US_PER_S
from lccm.store import alerts as st
from lccm.store.connect import Connect
from lccm.store.writer import ReadingColumns

log = logging.getLogger(__name__)

ALERT_LOCK_KEY = 0x4C43414C  # "LCAL": one evaluator at a time across processes
SPAN_BYTES = 16  # a kept span: its newest event time and its watermark, int64 each
CATCH_UP_DEVICES = 2_000  # devices probed at a time at start-up
# A pending span as measured (tracemalloc; 340-410 bytes from 1,000 to 100,000 devices with one to four metrics):
# the Span and its ints, its list, the (device, metric) key and its dict slot, its share of the per-device dicts.
# 250 was assumed before, so a 32 MiB budget held 57 MB. tests/test_memory.py holds it to this.
PENDING_SPAN_BYTES = 450
RULES_REFRESH_US = 1_000_000  # a rule written through the API applies within a second
Clock = Literal["wall", "event"]
StateKey = tuple[str, int]  # (rule key, device)


class IndexSource(Protocol):
    """Where index rules read their series (the AQI engine implements it). A source may also have ``period_us``
    (its values come at multiples of it, e.g. one hour): the evaluator then asks only when a period has ended."""

    def index_series(
        self, conn: psycopg.Connection, index: str, device_pk: int, after_us: int, until_us: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ts_us ascending, value) of ``index`` at the device's station with after < ts <= until; NaN = could
        not be computed (incomplete data)."""
        ...


@dataclass(frozen=True, slots=True)
class Span:
    """Event times [lo, hi] of one series committed in one batch, and the watermark the batch arrived under."""

    lo_us: int
    hi_us: int
    wm_us: int


@dataclass
class RunResult:
    series: int = 0
    transitions: int = 0
    raised: int = 0
    late: int = 0
    revised: int = 0  # series run again from a checkpoint for readings behind their frontier
    unevaluated: int = 0  # series with readings behind their frontier beyond the checkpoints kept
    skipped: bool = False  # another evaluator held the lock
    runs: int = 0
    busy_s: float = 0.0  # wall time spent in runs
    max_run_s: float = 0.0

    def add(self, other: RunResult) -> None:
        for f in fields(self):
            if f.name not in ("skipped", "max_run_s"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.max_run_s = max(self.max_run_s, other.max_run_s)


class _Once:
    """Log a warning once per key (a rule that cannot run says so once, not at every batch)."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def __call__(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(message)


def _try_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ALERT_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def thai_holidays(years: Iterable[int]) -> frozenset[date]:
    """Thai public holidays (the ``holidays`` package's Thailand calendar) of the given years."""
    return frozenset(holiday_calendars.Thailand(years=sorted(set(years))).keys())


# --- what committed batches told us ---------------------------------------------------------------------------


class SeenTimes:
    """Per device, the first and newest event time it committed: two int64 arrays indexed by device id, grown as
    ids come (16 bytes a device id up to the highest; a dict of tuples took about 200 bytes a device)."""

    def __init__(self) -> None:
        self._first = np.zeros(0, np.int64)
        self._newest = np.zeros(0, np.int64)  # NO_TS: not seen
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._first.nbytes + self._newest.nbytes

    def add(self, d: int, lo_us: int, hi_us: int) -> None:
        if d >= len(self._newest):
            self._grow(d)
        if self._newest[d] == NO_TS:
            self._first[d], self._newest[d] = lo_us, hi_us
            self._count += 1
            return
        if lo_us < self._first[d]:
            self._first[d] = lo_us
        if hi_us > self._newest[d]:
            self._newest[d] = hi_us

    def _grow(self, d: int) -> None:
        size = max(d + 1, 2 * len(self._newest))
        for name in ("_first", "_newest"):
            old = getattr(self, name)
            new = np.full(size, NO_TS, np.int64)
            new[: len(old)] = old
            setattr(self, name, new)

    def first(self, d: int) -> int | None:
        if d >= len(self._newest) or self._newest[d] == NO_TS:
            return None
        return int(self._first[d])

    def newest(self) -> dict[int, int]:
        """Device -> the newest event time it has committed."""
        seen = np.flatnonzero(self._newest != NO_TS)
        return dict(zip(seen.tolist(), self._newest[seen].tolist(), strict=True))


class DeliveryClock:
    """How far event time has got: the city's event-time watermark, the watermark each batch arrived under, the
    delivery clock of offline rules (each device's, and the newest of them), and per device the first and newest
    event time it committed and, for devices an index rule watches, its recent spans' (newest event time, watermark)
    pairs. Changed under the inbox's lock.

    Memory: a device's spans are kept only while an index rule may still need them (:meth:`prune` drops those its
    index rules have passed) and at most ``history_bytes`` of them (16 bytes a span, the oldest dropped first); a
    device no index rule watches keeps none. What every device keeps is two event times (16 bytes,
    :class:`SeenTimes`)."""

    def __init__(self, clock: Clock, late_after_us: int, history_bytes: int = 65_536) -> None:
        if clock not in ("wall", "event"):
            raise ValueError(f"clock must be 'wall' or 'event', not {clock!r}")
        self.clock: Clock = clock
        self.late_after_us = late_after_us
        self.event_wm_us = int(NO_TS)  # the newest event time committed
        self.arrival_wm_us = int(NO_TS)  # the newest device clock: what offline rules run on
        self.live = True  # the newest batch was not a backlog (wall clock): offline can be judged
        self.history_spans = max(1, history_bytes // SPAN_BYTES)
        self.index_devices: frozenset[int] | None = None  # devices whose spans are kept; None: all (not known yet)
        self._seen = SeenTimes()  # device -> (first, newest) event time committed
        self._history: dict[int, array[int]] = {}  # device -> flat (newest event time, watermark) per span

    def batch_watermark(self, newest_us: int, received_us: int) -> int:
        """The watermark a batch arrived under; a batch of old data (a backlog after an outage of this system) says
        nothing about which devices are delivering now, so offline waits until the stream is live again."""
        self.event_wm_us = max(self.event_wm_us, newest_us)
        wm = received_us if self.clock == "wall" else self.event_wm_us
        self.live = self.clock == "event" or wm - newest_us <= self.late_after_us
        return wm

    def device_clock(self, span: Span) -> int:
        """How far a device has delivered, for offline rules: its data's event time when the data came on time,
        the watermark it arrived under when it came late (a replay of buffered hours, a clock far behind): such a
        device is delivering now, whatever the age of what it delivers."""
        return span.hi_us if span.wm_us - span.hi_us <= self.late_after_us else span.wm_us

    def remember(self, d: int, span: Span, delivered_us: int) -> None:
        self.arrival_wm_us = max(self.arrival_wm_us, delivered_us)
        self._seen.add(d, span.lo_us, span.hi_us)
        if self.index_devices is not None and d not in self.index_devices:
            return
        hist = self._history.get(d)
        if hist is None:
            hist = self._history[d] = array("q")
        if hist and hist[-1] == span.wm_us:  # same batch, another metric: widen the entry
            hist[-2] = max(hist[-2], span.hi_us)
        else:
            hist.extend((span.hi_us, span.wm_us))
        if len(hist) > 2 * self.history_spans:
            del hist[: len(hist) - 2 * self.history_spans]

    def prune(self, d: int, upto_us: int) -> None:
        """Drop the spans of ``d`` that no index sample after ``upto_us`` can need (those ending at or before it:
        a sample takes the watermark of the first span, by newest event time, reaching it)."""
        hist = self._history.get(d)
        if not hist:
            return
        kept = [(hi, wm) for hi, wm in zip(hist[::2], hist[1::2], strict=True) if hi > upto_us]
        if not kept:
            del self._history[d]
        elif len(kept) < len(hist) // 2:
            self._history[d] = array("q", [v for pair in kept for v in pair])

    def keep_history_of(self, devices: frozenset[int]) -> None:
        """Keep spans only for these devices (those index rules watch) from now on."""
        self.index_devices = devices
        for d in [d for d in self._history if d not in devices]:
            del self._history[d]

    def history(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(newest event time, watermark) of the device's spans kept."""
        flat = np.frombuffer(self._history.get(d, array("q")), dtype=np.int64).reshape(-1, 2).copy()
        return flat[:, 0], flat[:, 1]

    def first_seen(self, d: int) -> int | None:
        return self._seen.first(d)

    def newest(self) -> dict[int, int]:
        """Device -> the newest event time it has committed."""
        return self._seen.newest()

    def nbytes(self) -> int:
        """An estimate of what the per-device state takes (dict slots, tuples, ints and arrays)."""
        return self._seen.nbytes + sum(64 + 8 * len(h) + 100 for h in self._history.values())

    @property
    def devices(self) -> int:
        """Devices that have committed something."""
        return len(self._seen)


def sample_watermarks(ts: np.ndarray, spans: list[Span], default_us: int) -> np.ndarray:
    """The watermark each sample arrived under: that of the first span (by newest event time) reaching it."""
    his = np.array([s.hi_us for s in spans], dtype=np.int64)
    wms = np.array([s.wm_us for s in spans], dtype=np.int64)
    return watermarks_at(ts, his, wms, default_us)


def watermarks_at(ts: np.ndarray, his: np.ndarray, wms: np.ndarray, default_us: int) -> np.ndarray:
    order = np.argsort(his, kind="stable")
    wm = np.append(wms[order], np.int64(default_us))
    return wm[np.searchsorted(his[order], ts, side="left")]


@dataclass
class Pending:
    """Work handed over and not evaluated yet: spans per (device, metric), index checks asked for, and per device
    the newest delivery clock of its spans."""

    spans: defaultdict[tuple[int, int], list[Span]] = field(default_factory=lambda: defaultdict(list))
    index_until: dict[int, int] = field(default_factory=dict)  # device -> check its index series up to here
    index_forced: set[int] = field(default_factory=set)  # devices whose index check was asked for
    arrived: dict[int, int] = field(default_factory=dict)  # device -> newest delivery clock of its spans
    count: int = 0  # spans held (what the inbox's budget counts)

    def __bool__(self) -> bool:
        return bool(self.spans or self.index_until or self.arrived)

    def add(self, d: int, m: int, span: Span, delivered_us: int) -> None:
        self.spans[(d, m)].append(span)
        self.count += 1
        self.check_index(d, span.hi_us)
        self.arrived[d] = max(self.arrived.get(d, delivered_us), delivered_us)

    def check_index(self, d: int, until_us: int, *, forced: bool = False) -> None:
        self.index_until[d] = max(self.index_until.get(d, until_us), until_us)
        if forced:
            self.index_forced.add(d)

    def put_back(self, taken: Pending) -> None:
        """Work taken by a run that did not commit goes back, ahead of what came since."""
        self.count += taken.count
        for key, items in taken.spans.items():
            self.spans[key][:0] = items
        for d, until in taken.index_until.items():
            self.check_index(d, until)
        for d, t in taken.arrived.items():
            self.arrived[d] = max(self.arrived.get(d, t), t)
        self.index_forced |= taken.index_forced


@dataclass(frozen=True, slots=True)
class Watermarks:
    """The delivery clock as a run takes it."""

    event_us: int
    arrival_us: int
    live: bool


class Inbox:
    """What the commit hook (the stream loop's thread) hands to the runs (the alerts worker's thread), under one
    lock: the pending work and the delivery clock.

    The pending work is bounded by ``pending_bytes`` (``PENDING_SPAN_BYTES`` a span): past it the commit hook waits
    until a run takes the work (backpressure on the stream loop, up to ``wait_s``; the broker holds what the stream
    has not read). Waiting, not merging spans, keeps every sample's watermark, so the evaluator decides the same.
    After ``wait_s`` (an evaluator that cannot run: its worker failed) the batch is added anyway, and that is
    logged, so the stream never stops for the alerts."""

    def __init__(self, clock: DeliveryClock, pending_bytes: int = 16 * 2**20, wait_s: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._clock = clock
        self._pending = Pending()
        self.pending_spans = max(1, pending_bytes // PENDING_SPAN_BYTES)
        self._wait_s = wait_s
        self.waits = 0  # batches that waited for a run to take the pending work
        self.peak_spans = 0

    def _wait_for_room(self) -> None:
        """Under the lock: wait while the pending work is over its budget (at most ``wait_s``)."""
        if self._pending.count < self.pending_spans:
            return
        self.waits += 1
        deadline = time.monotonic() + self._wait_s
        while self._pending.count >= self.pending_spans:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("the alert evaluator has not taken its pending work for %.0f s: adding more", self._wait_s)
                return
            self._room.wait(left)

    @property
    def clock(self) -> DeliveryClock:
        return self._clock

    def add_batch(self, cols: ReadingColumns) -> None:
        order = np.lexsort((cols.metric_id, cols.device_id))
        dev, met, ts = cols.device_id[order], cols.metric_id[order], cols.ts_us[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(dev) != 0) | (np.diff(met) != 0)])
        lo, hi = np.minimum.reduceat(ts, starts), np.maximum.reduceat(ts, starts)
        with self._lock:
            self._wait_for_room()
            wm = self._clock.batch_watermark(int(ts.max()), int(cols.received_at_us.max()))
            for d, m, a, b in zip(dev[starts].tolist(), met[starts].tolist(), lo.tolist(), hi.tolist(), strict=True):
                span = Span(a, b, wm)
                delivered = self._clock.device_clock(span)
                self._pending.add(d, m, span, delivered)
                self._clock.remember(d, span, delivered)
            self.peak_spans = max(self.peak_spans, self._pending.count)

    def add_found(self, found: list[tuple[int, int, int, int]], wm_us: int) -> None:
        """Series holding readings the evaluator has not seen (catch-up at start-up): when they arrived is unknown
        (before the restart), so each device counts as delivered up to its newest."""
        with self._lock:
            for d, m, lo, hi in found:
                self._pending.add(d, m, Span(lo, hi, wm_us), hi)
                self._clock.remember(d, Span(lo, hi, wm_us), hi)
                self._clock.event_wm_us = max(self._clock.event_wm_us, hi)

    def check_index(self, device_pks: Iterable[int] | None) -> None:
        with self._lock:
            newest = self._clock.newest()
            for d in newest if device_pks is None else device_pks:
                if d in newest:
                    self._pending.check_index(d, newest[d], forced=True)

    def take(self) -> tuple[Pending, Watermarks]:
        with self._lock:
            taken, self._pending = self._pending, Pending()
            self._room.notify_all()
            c = self._clock
            return taken, Watermarks(c.event_wm_us, c.arrival_wm_us, c.live)

    def put_back(self, taken: Pending) -> None:
        with self._lock:
            self._pending.put_back(taken)

    def has_work(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def history(self, d: int) -> tuple[np.ndarray, np.ndarray, int | None]:
        """The device's spans kept (newest event time, watermark) and the first event time it committed."""
        with self._lock:
            return (*self._clock.history(d), self._clock.first_seen(d))

    def prune(self, upto: dict[int, int]) -> None:
        with self._lock:
            for d, t in upto.items():
                self._clock.prune(d, t)

    def keep_history_of(self, devices: frozenset[int]) -> None:
        with self._lock:
            self._clock.keep_history_of(devices)

    def restore(self, event_wm_us: int | None, delivered: dict[int, int]) -> None:
        """The watermark and the delivery clocks stored by the last run (start-up)."""
        with self._lock:
            c = self._clock
            c.event_wm_us = max(c.event_wm_us, int(NO_TS) if event_wm_us is None else event_wm_us)
            c.arrival_wm_us = max([c.arrival_wm_us, *delivered.values()])


# --- rules, devices, schedules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleOwner:
    """Whose a rule is (migration 015): an organisation's (``organisation``), or the file's for every organisation
    (None) except those in ``replaced_by``, which have a rule of their own with its key (enabled or not). Each
    device is watched by at most one rule of a key, so (rule key, device) stays the key of a series' state."""

    organisation: int | None
    version: int
    replaced_by: frozenset[int] = frozenset()

    def watches(self, device_organisation: int | None) -> bool:
        if self.organisation is not None:
            return device_organisation == self.organisation
        return device_organisation is None or device_organisation not in self.replaced_by


class RuleCache:
    """The rules, global and of every organisation, read from the store at most once a second (a rule written
    through the API applies within a second); each validated once per version."""

    def __init__(self, wall_us: Callable[[], int], warn: _Once) -> None:
        self._wall_us = wall_us
        self._warn = warn
        self._rules: dict[tuple[int | None, str], tuple[int, AlertRule]] = {}
        self._owners: dict[int, RuleOwner] = {}  # id() of a cached rule -> its owner
        self._read_us = int(NO_TS)

    def refresh(self, conn: psycopg.Connection, *, force: bool = False) -> bool:
        """Read the rules again if due (or forced); True when it did."""
        now = self._wall_us()
        if not force and now - self._read_us < RULES_REFRESH_US:
            return False
        self._read_us = now
        rows = st.list_rules(conn)
        rules: dict[tuple[int | None, str], tuple[int, AlertRule]] = {}
        for row in rows:
            at = (row.organisation_id, row.key)
            cached = self._rules.get(at)
            if cached is not None and cached[0] == row.version:
                rules[at] = cached
                continue
            try:
                rules[at] = (row.version, AlertRule.model_validate(row.definition))
            except ValueError as e:  # validated on the way in; only a hand-edited row gets here
                self._warn(f"rule:{row.key}:{row.version}", f"alert rule {row.key} is invalid, skipped: {e}")
        replaced: dict[str, set[int]] = defaultdict(set)
        for row in rows:
            if row.organisation_id is not None:
                replaced[row.key].add(row.organisation_id)
        self._rules = rules
        self._owners = {
            id(rule): RuleOwner(org, version, frozenset(replaced.get(key, ())) if org is None else frozenset())
            for (org, key), (version, rule) in rules.items()
        }
        return True

    def active(self) -> list[AlertRule]:
        return [r for _, r in self._rules.values() if r.enabled]

    def owner(self, rule: AlertRule) -> RuleOwner:
        """Whose the rule is and its version (a rule no longer cached: a global one of version 0)."""
        return self._owners.get(id(rule), RuleOwner(None, 0))


class _Shared:
    """One object per distinct value of a field (``shared(field, value)``), so that 100,000 devices on 1,000 sites
    hold 1,000 site codes, not 100,000 equal strings. Per field: 1 and 1.0 are equal keys in one dict."""

    def __init__(self) -> None:
        self._values: defaultdict[str, dict[Any, Any]] = defaultdict(dict)

    def __call__(self, field_name: str, value: Any) -> Any:
        return self._values[field_name].setdefault(value, value)


class DeviceCache:
    """The devices (what a rule needs to know of each), the metric catalogue's ids and the devices each rule
    watches; read again every ``refresh_us`` of wall time, and at once when a batch names a device not known yet."""

    def __init__(self, wall_us: Callable[[], int], refresh_us: int) -> None:
        self._wall_us = wall_us
        self._refresh_us = refresh_us
        self._read_us = int(NO_TS)
        self.devices: dict[int, SeriesInfo] = {}
        self.metric_ids: dict[str, int] = {}
        self.organisations: dict[int, int | None] = {}  # device -> its organisation
        self._scopes: dict[tuple[str, RuleOwner], list[int]] = {}  # (rule, owner and version) -> its devices, sorted

    def refresh(self, conn: psycopg.Connection, *, force: bool = False) -> bool:
        """Read the devices again if due (or forced); True when it did."""
        now = self._wall_us()
        if not force and now - self._read_us <= self._refresh_us:
            return False
        # Built from the rows as they stream in, with the values devices share (site, kinds, coordinates, cadence,
        # tags, organisation) held once: what stays per device is its SeriesInfo, its id and two dict slots.
        shared = _Shared()
        devices: dict[int, SeriesInfo] = {}
        organisations: dict[int, int | None] = {}
        for d in st.device_rows(conn):
            devices[d.id] = SeriesInfo(
                d.id, d.device_id, shared("site", d.site_code), shared("kind", d.kind),
                shared("site_kind", d.site_kind), shared("cadence", d.cadence_s * US_PER_S), shared("lat", d.lat),
                shared("lon", d.lon), shared("tags", frozenset(d.tags)),
            )  # fmt: skip
            organisations[d.id] = shared("organisation", d.organisation_id)
        self.devices, self.organisations = devices, organisations
        self.metric_ids = st.metric_ids(conn)
        self._scopes = {}
        self._read_us = now
        return True

    def scope(self, rule: AlertRule, owner: RuleOwner) -> list[int]:
        """The devices a rule watches (those its scope matches, of its organisation, or for a rule of the file of
        every organisation that does not replace it), computed once per rule version and device refresh."""
        key = (rule.key, owner)
        if key not in self._scopes:
            self._scopes[key] = sorted(
                d
                for d, info in self.devices.items()
                if owner.watches(self.organisations.get(d)) and rule.scope.matches(info)
            )
        return self._scopes[key]


class Schedules:
    """Where a rule's schedule holds: Thai public holidays (cached per span of years: the calendar's first load
    takes a second), sun times at the site."""

    def __init__(self, warn: _Once) -> None:
        self._warn = warn
        self._holidays: dict[tuple[int, int], frozenset[date]] = {}

    def mask(self, rule: AlertRule, info: SeriesInfo, ts: np.ndarray) -> np.ndarray:
        if rule.schedule.when == "always" or not len(ts):
            return np.ones(len(ts), dtype=bool)
        if rule.schedule.when in ("sun_up", "sun_down") and (info.lat is None or info.lon is None):
            self._warn(f"sun:{rule.key}:{info.device}", f"rule {rule.key}: site {info.site} has no lat/lon")
            return np.zeros(len(ts), dtype=bool)
        days = self.holidays(int(ts[0]), int(ts[-1]))
        return schedule_mask(rule.schedule, ts, holidays=days, lat=info.lat, lon=info.lon)

    def holidays(self, ts_lo_us: int, ts_hi_us: int) -> frozenset[date]:
        years = (datetime.fromtimestamp(ts_lo_us / 1e6).year - 1, datetime.fromtimestamp(ts_hi_us / 1e6).year + 1)
        if years not in self._holidays:
            self._holidays[years] = thai_holidays(range(years[0], years[1] + 1))
        return self._holidays[years]


# --- one run --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Apply:
    """A transition of the series' own alert (raise, reopen, clear), with the value and threshold the alert shows."""

    tr: Transition
    value: float
    threshold: float | None

    @property
    def at_us(self) -> int:
        return self.tr.at_us


@dataclass(frozen=True, slots=True)
class RecordPast:
    """An episode found in readings that arrived late, over before the frontier: recorded as a cleared alert."""

    raised: Apply
    cleared: Apply

    @property
    def at_us(self) -> int:
        return self.raised.at_us


Change = Apply | RecordPast


@dataclass
class Decided:
    """One (rule, series) after its run: the state to store (with the checkpoints of a metric rule), the alert it
    owns, and the changes to write."""

    rule: AlertRule
    info: SeriesInfo
    state: SeriesState
    alert_id: int | None
    changes: list[Change]
    checkpoints: tuple[SeriesState, ...] | None = None

    def state_json(self) -> dict[str, Any]:
        data = self.state.to_json()
        if self.checkpoints is not None:
            data["checkpoints"] = checkpoints_to_json(self.checkpoints)
        return data


@dataclass
class Run:
    """One run's view: the work taken, the watermarks then, the stored states it loaded, and what it decided."""

    pending: Pending
    marks: Watermarks
    default_wm_us: int  # the watermark of a sample no span reaches (wall clock, or the event watermark)
    states: dict[StateKey, tuple[dict[str, Any], int | None]] = field(default_factory=dict)
    decided: list[Decided] = field(default_factory=list)
    result: RunResult = field(default_factory=RunResult)
    behind: int = 0  # spans that reached behind their series' frontier

    def state(self, rule: AlertRule, d: int) -> tuple[dict[str, Any], SeriesState, int | None]:
        raw, alert_id = self.states.get((rule.key, d), ({}, None))
        return raw, SeriesState.from_json(raw), alert_id


def shown_value(
    rule: AlertRule, info: SeriesInfo, tr: Transition, readings: tuple[np.ndarray, np.ndarray] | None
) -> Apply:
    """What the alert shows: the reading itself for flatline / out of range (the machine saw a run length or a
    distance), the threshold in the signal's unit."""
    if rule.kind == "offline":
        assert rule.after_cadences is not None
        return Apply(tr, tr.value, rule.after_cadences * info.cadence_us / US_PER_S)
    raise_c, _ = rule.conditions()
    if readings is None or rule.kind not in ("flatline", "out_of_range"):
        return Apply(tr, tr.value, raise_c.value)
    ts, val = readings
    reading = float(val[min(int(np.searchsorted(ts, tr.at_us)), len(val) - 1)])
    if rule.kind == "out_of_range":
        assert rule.range is not None
        return Apply(tr, reading, rule.range[1] if reading > rule.range[1] else rule.range[0])
    return Apply(tr, reading, raise_c.value)


# --- the three kinds of evaluation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Series:
    """A metric rule on one series in one run: where its run starts (the frontier, or a checkpoint before
    readings that arrived behind it) and what it ran from."""

    rule: AlertRule
    device: int
    metric: int
    live: SeriesState
    alert_id: int | None
    spans: list[Span]
    frontier_us: int  # samples after it are new
    checkpoints: tuple[SeriesState, ...]
    revise_from: SeriesState | None  # readings behind the frontier: run again from this checkpoint
    late_wm_us: int  # the watermark those readings arrived under

    @property
    def start_us(self) -> int:
        return self.revise_from.last_ts_us if self.revise_from is not None else self.frontier_us


class MetricJobs:
    """Metric rules (threshold, flatline, out of range) over the stored readings of the series a run touched: from
    each series' frontier, and for readings that arrived behind it, again from a checkpoint before them."""

    def __init__(self, devices: DeviceCache, schedules: Schedules, clock: DeliveryClock, horizon_us: int) -> None:
        self._devices = devices
        self._schedules = schedules
        self._late_after_us = clock.late_after_us
        self._horizon_us = horizon_us

    def jobs(self, rules: RuleCache, run: Run, warn: _Once) -> list[tuple[AlertRule, int, int]]:
        by_metric: dict[int, set[int]] = defaultdict(set)
        for d, metric in run.pending.spans:
            by_metric[metric].add(d)
        out = []
        for rule in rules.active():
            if rule.kind == "offline" or rule.index is not None:
                continue
            m = self._devices.metric_ids.get(rule.metric or "")
            if m is None:
                warn(f"metric:{rule.key}", f"rule {rule.key}: no metric {rule.metric} in the catalogue")
                continue
            touched = by_metric.get(m, set())
            out += [(rule, d, m) for d in self._devices.scope(rule, rules.owner(rule)) if d in touched]
        return out

    def run(self, conn: psycopg.Connection, run: Run, jobs: list[tuple[AlertRule, int, int]]) -> None:
        if not jobs:
            return
        plans = [self._plan(run, rule, d, m) for rule, d, m in jobs]
        # One window per series: from the earliest start (minus the longest averaging window) any rule needs.
        need: dict[tuple[int, int], tuple[int, int]] = {}
        for p in plans:
            window = int(p.rule.average.window_s * US_PER_S) if p.rule.average is not None else 0
            until = max(s.hi_us for s in p.spans)
            lo, hi = need.get((p.device, p.metric), (p.start_us - window, until))
            need[(p.device, p.metric)] = (min(lo, p.start_us - window), max(hi, until))
        keys = list(need)
        idx, ts, val = st.series_readings(
            conn, [d for d, _ in keys], [m for _, m in keys], [need[k][0] for k in keys], [need[k][1] for k in keys]
        )
        bounds = np.searchsorted(idx, np.arange(len(keys) + 1))
        where = {k: (int(bounds[i]), int(bounds[i + 1])) for i, k in enumerate(keys)}
        for p in plans:
            a, b = where[(p.device, p.metric)]
            self._run_series(conn, run, p, ts[a:b], val[a:b])

    def _plan(self, run: Run, rule: AlertRule, d: int, m: int) -> _Series:
        raw, live, alert_id = run.state(rule, d)
        spans = run.pending.spans[(d, m)]
        checkpoints = checkpoints_from_json(raw.get("checkpoints"))
        if live.last_ts_us == NO_TS:  # a new series: its start is its first checkpoint
            frontier = min(s.lo_us for s in spans) - 1
            start = replace(SeriesState(), last_ts_us=frontier)
            return _Series(rule, d, m, live, alert_id, spans, frontier, (start,), None, int(NO_TS))
        behind = [s for s in spans if s.lo_us <= live.last_ts_us]
        run.behind += len(behind)
        oldest = live.last_ts_us - self._horizon_us
        revise_from = checkpoint_before(checkpoints, min(s.lo_us for s in behind), oldest_us=oldest) if behind else None
        if behind and revise_from is None:
            run.result.unevaluated += 1
        late_wm = max((s.wm_us for s in behind), default=int(NO_TS))
        return _Series(rule, d, m, live, alert_id, spans, live.last_ts_us, checkpoints, revise_from, late_wm)

    def _run_series(self, conn: psycopg.Connection, run: Run, p: _Series, ts: np.ndarray, val: np.ndarray) -> None:
        rule, info = p.rule, self._devices.devices[p.device]
        state, checkpoints = p.live, p.checkpoints
        changes: list[Change] = []
        readings = (ts, val)
        if p.revise_from is not None:
            state, changes = self._revise(conn, p, info, ts, val)
            # Checkpoints after the one it ran from were taken without the late readings: gone.
            start = p.revise_from
            checkpoints = (*(c for c in checkpoints if c.last_ts_us < start.last_ts_us), start)
            run.result.revised += 1
        first = int(np.searchsorted(ts, p.frontier_us, side="right"))
        if first >= len(ts) and p.revise_from is None:
            return
        if first < len(ts):
            values, known = sample_values(rule, ts, val, first, cadence_us=info.cadence_us, state=state)
            samples = ts[first:]
            wm = sample_watermarks(samples, p.spans, run.default_wm_us)
            state, out = evaluate(
                rule, state, samples, values, known, self._schedules.mask(rule, info, samples), wm,
                max_gap_us=default_max_gap_us(rule, info.cadence_us), late_after_us=self._late_after_us,
            )  # fmt: skip
            state = with_flat_carry(rule, state, val[first:], values)
            changes += [shown_value(rule, info, tr, readings) for tr in out]
        kept = keep_checkpoints(checkpoints, state, horizon_us=self._horizon_us)
        run.decided.append(Decided(rule, info, state, p.alert_id, changes, kept))

    def _revise(
        self, conn: psycopg.Connection, p: _Series, info: SeriesInfo, ts: np.ndarray, val: np.ndarray
    ) -> tuple[SeriesState, list[Change]]:
        """Run the series again from the checkpoint to the frontier, with every reading stored now, under the
        watermark the late readings arrived under; reconcile with what was recorded (engine.alerts.revise)."""
        assert p.revise_from is not None
        rule, start = p.rule, p.revise_from
        first = int(np.searchsorted(ts, start.last_ts_us, side="right"))
        last = int(np.searchsorted(ts, p.frontier_us, side="right"))
        values, known = sample_values(rule, ts[:last], val[:last], first, cadence_us=info.cadence_us, state=start)
        samples = ts[first:last]
        rerun_state, rerun = evaluate(
            rule, start, samples, values, known, self._schedules.mask(rule, info, samples),
            np.full(len(samples), p.late_wm_us, dtype=np.int64),
            max_gap_us=default_max_gap_us(rule, info.cadence_us), late_after_us=self._late_after_us,
        )  # fmt: skip
        rerun_state = with_flat_carry(rule, rerun_state, val[first:last], values)
        recorded = [RecordedAlert(*r) for r in st.recorded_alerts(conn, rule.key, rule.dedup(info), start.last_ts_us)]
        rev = revise(
            p.live, rerun_state, rerun, recorded, owned_alert=p.alert_id, watermark_us=p.late_wm_us,
            late_after_us=self._late_after_us,
        )  # fmt: skip
        readings = (ts, val)

        def shown(tr: Transition) -> Apply:
            return shown_value(rule, info, tr, readings)

        changes: list[Change] = [RecordPast(shown(r), shown(c)) for r, c in rev.past]
        if rev.present is not None:
            changes.append(shown(rev.present))
        return rev.state, changes


class IndexJobs:
    """Index rules (``index: aqi_th``): the index series of the devices whose batches may have completed a period
    (an hour of AQI) since their last evaluated sample, or whose check was asked for."""

    def __init__(
        self, source: IndexSource | None, devices: DeviceCache, schedules: Schedules, inbox: Inbox, catchup_us: int
    ) -> None:
        self.source = source
        self._devices = devices
        self._schedules = schedules
        self._inbox = inbox
        self._late_after_us = inbox.clock.late_after_us
        self._catchup_us = catchup_us
        self._frontier: dict[StateKey, int] = {}  # (rule, device) -> last index sample evaluated
        self._watching: dict[int, list[str]] = {}  # device -> the keys of the index rules watching it

    def jobs(self, rules: RuleCache, run: Run, warn: _Once) -> list[tuple[AlertRule, int]]:
        out = []
        for rule in rules.active():
            if rule.index is None:
                continue
            if self.source is None:
                warn(f"index:{rule.key}", f"rule {rule.key} needs an index source for {rule.index}")
                continue
            out += [(rule, d) for d in self._devices.scope(rule, rules.owner(rule)) if self._due(rule, d, run)]
        return out

    def _due(self, rule: AlertRule, d: int, run: Run) -> bool:
        """Whether a device's index may hold a sample not yet evaluated: asked for, or (for a source with a known
        period, such as hourly AQI) a period has ended since the last sample evaluated."""
        until = run.pending.index_until.get(d)
        if until is None:
            return False
        period = getattr(self.source, "period_us", None)
        last = self._frontier.get((rule.key, d))
        if d in run.pending.index_forced or not period or last is None:
            return True
        return (until // period) * period > last

    def run(self, conn: psycopg.Connection, run: Run, rule: AlertRule, d: int) -> None:
        assert self.source is not None and rule.index is not None
        his, wms, first_seen = self._inbox.history(d)
        _, state, alert_id = run.state(rule, d)
        until = run.pending.index_until[d]
        frontier = state.last_ts_us
        if frontier == NO_TS:  # a new series: from the first data this process saw, at most catch-up old
            first = until if first_seen is None else first_seen
            frontier = min(first - 1, until - self._catchup_us)
        ts, val = self.source.index_series(conn, rule.index, d, frontier, until)
        ts, val = np.asarray(ts, dtype=np.int64), np.asarray(val, dtype=np.float64)
        if not len(ts):
            return
        info = self._devices.devices[d]
        new, out = evaluate(
            rule, state, ts, val, np.isfinite(val), self._schedules.mask(rule, info, ts),
            watermarks_at(ts, his, wms, run.default_wm_us),
            max_gap_us=default_max_gap_us(rule, info.cadence_us), late_after_us=self._late_after_us,
        )  # fmt: skip
        run.decided.append(Decided(rule, info, new, alert_id, [shown_value(rule, info, tr, None) for tr in out]))

    def committed(self, decided: Iterable[Decided]) -> None:
        """Remember the index frontiers a run committed, and drop the spans every index rule of a device has
        passed (no sample they take from now on can need them)."""
        touched = set()
        for dec in decided:
            if dec.rule.index is not None:
                self._frontier[(dec.rule.key, dec.info.device_pk)] = dec.state.last_ts_us
                touched.add(dec.info.device_pk)
        upto = {}
        for d in touched:
            frontiers = [self._frontier.get((key, d)) for key in self._watching.get(d, ())]
            if frontiers and all(f is not None and f != NO_TS for f in frontiers):
                upto[d] = min(f for f in frontiers if f is not None)
        if upto:
            self._inbox.prune(upto)

    def watch(self, rules: RuleCache) -> frozenset[int]:
        """Which index rules watch each device (after a refresh of rules or devices); returns the devices."""
        watching: dict[int, list[str]] = defaultdict(list)
        for rule in rules.active():
            if rule.index is not None:
                for d in self._devices.scope(rule, rules.owner(rule)):
                    watching[d].append(rule.key)
        self._watching = dict(watching)
        return frozenset(watching)


class OfflineJobs:
    """Offline rules, on delivery: the devices whose offline state may change now."""

    def __init__(self, devices: DeviceCache, clock: DeliveryClock, wall_us: Callable[[], int]) -> None:
        self._devices = devices
        self._clock = clock
        self._wall_us = wall_us
        self.delivered: dict[int, int] = {}  # device -> its delivery clock, as committed (alert_device_seen)
        self._raised: set[StateKey] = set()  # committed offline alerts still raised (a cache)

    def load(self, conn: psycopg.Connection) -> None:
        self._raised = set(st.raised_series(conn))

    def jobs(self, rules: RuleCache, run: Run) -> list[tuple[AlertRule, int]]:
        """Devices whose offline state may change now: overdue ones (while the stream is live), and raised ones with
        new data. Devices never seen are not judged (nothing tells "not installed yet" from "offline")."""
        out = []
        for rule in rules.active():
            if rule.kind != "offline":
                continue
            assert rule.after_cadences is not None
            for d in self._devices.scope(rule, rules.owner(rule)):
                last = self._last(run, d)
                if last == NO_TS:
                    continue
                if (rule.key, d) in self._raised:
                    if d in run.pending.arrived:  # data again: clears
                        out.append((rule, d))
                elif run.marks.live and run.marks.arrival_us - last > rule.after_cadences * self._cadence(d):
                    out.append((rule, d))
        return out

    def _cadence(self, d: int) -> int:
        return self._devices.devices[d].cadence_us

    def _last(self, run: Run, d: int) -> int:
        return max(self.delivered.get(d, int(NO_TS)), run.pending.arrived.get(d, int(NO_TS)))

    def run(self, run: Run, rule: AlertRule, d: int) -> None:
        info = self._devices.devices[d]
        _, state, alert_id = run.state(rule, d)
        last = self._last(run, d)
        if state.phase == "raised" and last <= state.seen_us:
            return  # still offline, already raised: nothing to write
        late_ref = self._wall_us() if self._clock.clock == "wall" else run.marks.event_us
        new, out = evaluate_offline(
            rule, state, seen_us=last, cadence_us=info.cadence_us, watermark_us=run.marks.arrival_us,
            late_ref_us=late_ref, late_after_us=self._clock.late_after_us, resumed_us=self._resumed(run, d),
        )  # fmt: skip
        if new != state:
            run.decided.append(Decided(rule, info, new, alert_id, [shown_value(rule, info, tr, None) for tr in out]))

    def _resumed(self, run: Run, d: int) -> int | None:
        """When a device's data came back in this run: its first new reading if on time, else its arrival."""
        first = [
            s.lo_us if s.wm_us - s.hi_us <= self._clock.late_after_us else s.wm_us
            for (dd, _), spans in run.pending.spans.items() if dd == d for s in spans
        ]  # fmt: skip
        return min(first, default=None)

    def committed(self, run: Run) -> None:
        for d, t in run.pending.arrived.items():
            self.delivered[d] = max(self.delivered.get(d, int(NO_TS)), t)
        for dec in run.decided:
            if dec.rule.kind == "offline":
                key = (dec.rule.key, dec.info.device_pk)
                if dec.state.phase == "raised":
                    self._raised.add(key)
                else:
                    self._raised.discard(key)


# --- writing --------------------------------------------------------------------------------------------------


class AlertWriter:
    """Writes what a run decided: every change in event-time order (so the device that crossed first owns a shared
    dedup key, whatever the batches held), then each series' state with the alert it owns."""

    def write(self, conn: psycopg.Connection, run: Run) -> None:
        order = sorted(
            (ch.at_us, dec.rule.key, dec.info.device_pk, i, j)
            for i, dec in enumerate(run.decided) for j, ch in enumerate(dec.changes)
        )  # fmt: skip
        r = run.result
        for *_, i, j in order:
            dec = run.decided[i]
            ch = dec.changes[j]
            if isinstance(ch, Apply):
                dec.alert_id = self._apply(conn, dec, ch)
                self._count(r, ch.tr)
            else:
                self._record_past(conn, dec, ch)
                self._count(r, ch.raised.tr)
                self._count(r, ch.cleared.tr)
        r.series += len(run.decided)
        st.save_states(conn, [(d.rule.key, d.info.device_pk, d.state_json(), d.alert_id) for d in run.decided])

    @staticmethod
    def _count(r: RunResult, tr: Transition) -> None:
        r.transitions += 1
        r.raised += tr.kind != TransitionKind.CLEARED
        r.late += tr.late

    @staticmethod
    def _new_alert(dec: Decided, ch: Apply) -> st.NewAlert:
        rule, tr = dec.rule, ch.tr
        return st.NewAlert(
            rule.key, rule.dedup(dec.info), dec.info.device_pk, rule.signal, rule.severity, tr.started_us, tr.at_us,
            ch.value, ch.threshold, tr.late,
        )  # fmt: skip

    @staticmethod
    def _clear(ch: Apply) -> st.Clear:
        tr = ch.tr
        return st.Clear(tr.at_us, ch.value, tr.reason, tr.peak, tr.late)

    def _apply(self, conn: psycopg.Connection, dec: Decided, ch: Apply) -> int | None:
        tr, d, alert_id = ch.tr, dec.info.device_pk, dec.alert_id
        if tr.kind == TransitionKind.CLEARED:
            if alert_id is not None:
                st.clear_alert(conn, alert_id, self._clear(ch), d)
            return alert_id
        dedup = dec.rule.dedup(dec.info)
        if tr.kind == TransitionKind.REOPENED and alert_id is not None and self._reopenable(conn, alert_id, dec):
            st.reopen_alert(conn, alert_id, tr.at_us, ch.value, d, tr.late)
            return alert_id
        active = st.active_alert(conn, dec.rule.key, dedup)
        if active is not None:  # another series with the same dedup key owns the alert
            st.add_event(conn, active, TransitionKind.DUPLICATE, tr.at_us, ch.value, d, late=tr.late)
            return None
        return st.insert_alert(conn, self._new_alert(dec, ch))

    @staticmethod
    def _reopenable(conn: psycopg.Connection, alert_id: int, dec: Decided) -> bool:
        """The series' alert is cleared and no other alert of its dedup key is active."""
        cleared = st.alert_state(conn, alert_id) == AlertState.CLEARED
        return cleared and st.active_alert(conn, dec.rule.key, dec.rule.dedup(dec.info)) is None

    def _record_past(self, conn: psycopg.Connection, dec: Decided, ch: RecordPast) -> None:
        st.insert_alert(conn, self._new_alert(dec, ch.raised), self._clear(ch.cleared))


# --- the evaluator --------------------------------------------------------------------------------------------


class AlertEvaluator:
    def __init__(
        self,
        connect: Connect,
        *,
        clock: Clock = "wall",
        late_after_s: float = 900.0,
        catchup_s: float = 7 * 86400.0,
        history_bytes: int = 65_536,
        pending_bytes: int = 16 * 2**20,
        on_paged: Callable[[], None] | None = None,
        index_source: IndexSource | None = None,
        wall_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        device_refresh_s: float = 60.0,
    ) -> None:
        self._connect = connect
        self._wall_us = wall_us
        self._catchup_us = int(catchup_s * US_PER_S)
        self.on_paged = on_paged  # after a run committed alert changes: wakes the dispatcher
        self._warn = _Once()
        self._inbox = Inbox(DeliveryClock(clock, int(late_after_s * US_PER_S), history_bytes), pending_bytes)
        self._rules = RuleCache(wall_us, self._warn)
        self._devices = DeviceCache(wall_us, int(device_refresh_s * US_PER_S))
        self._schedules = Schedules(self._warn)
        clock_ = self._inbox.clock
        self._metric = MetricJobs(self._devices, self._schedules, clock_, self._catchup_us)
        self._index = IndexJobs(index_source, self._devices, self._schedules, self._inbox, self._catchup_us)
        self._offline = OfflineJobs(self._devices, clock_, wall_us)
        self._writer = AlertWriter()
        self._prepared = False
        self.totals = RunResult()

    @property
    def index_source(self) -> IndexSource | None:
        return self._index.source

    # -- feeding -------------------------------------------------------------------------------------------------

    def on_commit(self, cols: ReadingColumns) -> None:
        """Stream-loop commit hook: remember what the batch touched and the watermark it arrived under. Cheap (the
        loop thread calls it); the work happens in ``run_once``."""
        if len(cols):
            self._inbox.add_batch(cols)

    def request_index_check(self, device_pks: Iterable[int] | None = None) -> None:
        """Check the index rules of these devices (default: every device seen) up to their newest data: call it
        after the index updater has committed new values."""
        self._inbox.check_index(device_pks)

    def has_work(self) -> bool:
        return self._inbox.has_work()

    # -- running -------------------------------------------------------------------------------------------------

    def prepare(self) -> int:
        """Load the watermark and what devices were last seen, then queue every series holding readings beyond its
        frontier (a crash between a commit and the hook). Returns the number of series queued."""
        with self._connect() as conn:
            self._offline.delivered = st.load_seen(conn)
            self._inbox.restore(st.load_watermark(conn), self._offline.delivered)
            self._refresh(conn, force=True)
            wm = self._inbox.clock.event_wm_us
            now = wm if wm != NO_TS else self._wall_us()
            self._schedules.holidays(now, now)  # the holiday calendar's first load takes a second: not on a hot run
            queued = self._catch_up(conn)
        self._prepared = True
        return queued

    def run_once(self) -> RunResult:
        if not self._prepared:
            self.prepare()
        pending, marks = self._inbox.take()
        default_wm = self._wall_us() if self._inbox.clock.clock == "wall" else marks.event_us
        run = Run(pending, marks, default_wm)
        started = time.perf_counter()
        try:
            with self._connect() as conn, conn.transaction():
                if not _try_lock(conn):
                    self._inbox.put_back(pending)
                    return RunResult(skipped=True)
                self._evaluate(conn, run)
        except BaseException:
            self._inbox.put_back(pending)
            raise
        if run.result.transitions and self.on_paged is not None:
            self.on_paged()
        self._index.committed(run.decided)
        self._offline.committed(run)
        if run.result.unevaluated:
            log.warning(
                "%d series got readings more than %.0f s behind their frontier (or older than every checkpoint):"
                " those readings are stored but not evaluated", run.result.unevaluated, self._catchup_us / US_PER_S,
            )  # fmt: skip
        run.result.runs, run.result.busy_s = 1, time.perf_counter() - started
        run.result.max_run_s = run.result.busy_s
        self.totals.add(run.result)
        return run.result

    def drain(self, stop: Callable[[], bool] = lambda: False) -> RunResult:
        """Run until nothing is pending (and at least once, for offline checks)."""
        total = RunResult()
        while True:
            r = self.run_once()
            total.add(r)
            if stop() or not self.has_work():
                return total
            if r.skipped:
                time.sleep(0.05)

    def _refresh(self, conn: psycopg.Connection, *, force: bool = False) -> None:
        devices = self._devices.refresh(conn, force=force)
        if devices:
            self._offline.load(conn)
        if self._rules.refresh(conn, force=force) or devices:
            watched = self._index.watch(self._rules)
            if watched != self._inbox.clock.index_devices:
                self._inbox.keep_history_of(watched)

    def _evaluate(self, conn: psycopg.Connection, run: Run) -> None:
        self._refresh(conn, force=any(d not in self._devices.devices for d, _ in run.pending.spans))
        metric_jobs = self._metric.jobs(self._rules, run, self._warn)
        index_jobs = self._index.jobs(self._rules, run, self._warn)
        offline_jobs = self._offline.jobs(self._rules, run)
        keys = [(r.key, d) for r, d, _ in metric_jobs] + [(r.key, d) for r, d in index_jobs + offline_jobs]
        run.states = st.load_states(conn, [k for k, _ in keys], [d for _, d in keys]) if keys else {}
        self._metric.run(conn, run, metric_jobs)
        for rule, d in index_jobs:
            self._index.run(conn, run, rule, d)
        for rule, d in offline_jobs:
            self._offline.run(run, rule, d)
        self._writer.write(conn, run)
        st.save_seen(conn, run.pending.arrived)
        if run.marks.event_us != NO_TS:
            st.save_progress(conn, run.marks.event_us, run.behind)

    def _catch_up(self, conn: psycopg.Connection) -> int:
        """Queue every series holding readings beyond its frontier, back to ``catchup_s`` for a series without
        one. Devices are probed ``CATCH_UP_DEVICES`` at a time: what a probe holds (the stored states, the series to
        probe) is then bounded whatever the number of devices."""
        clock = self._inbox.clock
        base = clock.event_wm_us if clock.event_wm_us != NO_TS else self._wall_us()
        horizon = base - self._catchup_us
        rules = self._rules.active()
        scopes = [(rule, set(self._devices.scope(rule, self._rules.owner(rule)))) for rule in rules]
        every_metric = list(self._devices.metric_ids.values())
        devices = sorted(self._devices.devices)
        found: list[tuple[int, int, int, int]] = []
        for i in range(0, len(devices), CATCH_UP_DEVICES):
            chunk = devices[i : i + CATCH_UP_DEVICES]
            keys = [(rule.key, d) for rule, scope in scopes for d in chunk if d in scope]
            states = st.load_states(conn, *zip(*keys, strict=True)) if keys else {}
            pairs: dict[tuple[int, int], int] = {}
            for rule, scope in scopes:
                metric = self._devices.metric_ids.get(rule.metric or "")
                for d in chunk:
                    if d not in scope:
                        continue
                    frontier = SeriesState.from_json(states.get((rule.key, d), ({}, None))[0]).last_ts_us
                    after = frontier if frontier != NO_TS else horizon
                    offline_unseen = rule.kind == "offline" and d not in self._offline.delivered
                    for m in [metric] if metric is not None else (every_metric if offline_unseen else []):
                        pairs[(d, m)] = min(pairs.get((d, m), after), after)
            found += st.newest_after(conn, [d for d, _ in pairs], [m for _, m in pairs], list(pairs.values()))
        newest = max((h for *_, h in found), default=0)
        wm = self._wall_us() if clock.clock == "wall" else max(clock.event_wm_us, newest)
        self._inbox.add_found(found, wm)
        return len(found)
