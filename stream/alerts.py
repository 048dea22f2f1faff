"""The alert evaluator: claims the committed batches of its process's device partitions, runs the touched series
through their rules' state machines (engine/alerts.py) on event time, writes alerts and their history, and marks the
on-time raises and clears to page (the notify-dispatch worker sends them).

Parts, each with one job, held by :class:`AlertEvaluator` (which only claims, runs and counts):

- :class:`Pending` and :class:`DeliveryClock` (:func:`claimed_work`): what a run claimed from the hand-over, and how
  far event time has got overall and per device;
- :class:`RuleCache`, :class:`DeviceCache`, :class:`Schedules`: the rules, the devices they watch, where their
  schedules hold;
- :class:`MetricJobs`, :class:`IndexJobs`, :class:`OfflineJobs`: the three kinds of evaluation;
- :class:`AlertWriter`: what a run decided, written to the store.

Work and crash safety. The writer queues, per (device, metric) of every committed batch, the span of event times
it committed and the batch's newest event time and newest receipt in ``alert_queue``, in the readings' own
transaction (store/writer.py ``alert_lines``: lines of its one queueing statement; migration 022); the commit hook
only wakes the worker. A run
holds its process's leases (``Leases.hold``, FOR KEY SHARE), claims the queue rows of devices in those partitions in
commit order, and deletes them in the transaction that writes what it decided. Evaluation is driven by the stored
readings, not by the batch: each (rule, series) keeps a frontier (the newest sample it has seen) in
``alert_series_state``, and a run takes every stored reading after the frontier up to the newest span it claimed.
Rows, state, alerts, events, frontiers and device clocks move in one transaction, so a crash loses nothing and
repeats nothing, and a batch committed but not yet evaluated waits in the queue (no start-up catch-up). No global
lock: two processes never evaluate one device (its partition's lease), and they share nothing else they write.
Notifications are at least once: the events to page are written with the alert, and marked notified only after the
notifier took them.

Clocks. Per device, the first and newest event time committed, the delivery clock of offline rules and the index
rules' span history are rows of ``alert_device_clock``, read by the run that touches the device and written back in
its transaction by the owner of the device's partition (:class:`DeliveryClock` lives for one run): a partition
taken over continues where its last owner committed. The event-time watermark and the newest delivery clock move on
with the rows each evaluator claims, from the maxima over that table at start-up; offline rules take the lower of
the latter and the slowest ingest process's progress (``ingest_progress``). No row is updated by every writer or
every evaluator.

Watermarks: the rule that makes the alert sequence independent of process count and batch grouping. A reading is
judged (late or not) under the watermark its batch arrived under, fixed by the batch and its commit order, never by
which process evaluates it or when. With ``clock="wall"`` (production) that is the batch's receipt time (stamped by
the process that received it): an alert whose event time is more than ``late_after`` older is late (recorded, not
paged): a device replaying six hours of buffered data, or a whole backlog after an outage, does not page about the
past. With ``clock="event"`` it is the running maximum of the batches' newest event time in commit order (the queue
rows' ids) over the rows this evaluator claims, never another evaluator's progress: replays of the past
(simulations, benchmarks) page as if live, and only data behind the rest of the city is late. Lateness is when data
arrived: a process killed with messages in flight gets them again later, and they may be late where they would not
have been. Once every reading is stored and evaluated, what is raised and cleared, and when, follows from the stored
readings alone, whoever received them and however they were grouped: each series runs from its frontier, and a
reading stored behind it makes the series run again from a checkpoint, its recorded alerts corrected to that run
(``revise`` below). Offline rules are the exception:
they judge delivery, so whether a silence about as long as the rule's limit raises one depends on when the data
arrived (docs/partitions.md#alerts).

Readings behind a series' frontier (a station that sent its newest reading first and replays its buffer after, or
a redelivered batch) are evaluated too: the series is run again from a checkpoint, a state kept from before them
(``alert_series_state.state -> 'checkpoints'``, about 11 states spaced by age, back to ``catchup_s``), over every
stored reading up to the frontier, under the watermark the late readings arrived under, and ``engine.alerts.revise``
corrects what was recorded to that run: recorded alerts are re-timed, merged (one episode recorded as two) or
withdrawn (no such episode), each with a 'revised' event and never paged (but the clear of an alert a correction
ends, as a clear is); an alert nobody recorded is recorded by replaying its transitions, late (not paged) when it
lies more than ``late_after`` behind that watermark. The checkpoints keep the series' alert at their instant, which a
run again continues. A redelivered batch finds what was recorded and changes nothing (docs/partitions.md#revisions).
Readings more than ``catchup_s`` behind the frontier, or older than every checkpoint, are stored but not evaluated
(counted in ``RunResult.unevaluated`` and logged). Index rules are not run again: readings behind their frontier
revise stored index hours (the AQI updater) that the evaluator has passed and does not read again.

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

Several evaluators (one per ingest process) share the partitions through the leases (stream/partitions.py); without
leases (one process alone, tests) an evaluator claims every device's work.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any, Literal, Protocol

import holidays as holiday_calendars
import numpy as np
import psycopg

from lccm.engine.alert_kinds import AlertState, ClearReason, TransitionKind
from lccm.engine.alerts import (
    NO_TS,
    AlertRecord,
    AlertRule,
    Correction,
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
from lccm.store.leases import Held
from lccm.store.writer import us_to_datetime
from lccm.stream.partitions import Leases, held_partitions

log = logging.getLogger(__name__)

SPAN_BYTES = 16  # a kept span: its newest event time and its watermark, int64 each
# An ingest process not heard from for this long (dead, or without messages) no longer holds offline rules back.
WRITERS_HEARD_S = 60.0
CLAIM_LIMIT = 20_000  # hand-over rows a run claims at most (what a run holds in memory is bounded by it)
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
    corrected: int = 0  # recorded alerts re-timed, merged or withdrawn by those runs again
    unevaluated: int = 0  # series with readings behind their frontier beyond the checkpoints kept
    skipped: bool = False  # the process held no partition
    claimed: int = 0  # hand-over rows claimed
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


def thai_holidays(years: Iterable[int]) -> frozenset[date]:
    """Thai public holidays (the ``holidays`` package's Thailand calendar) of the given years."""
    return frozenset(holiday_calendars.Thailand(years=sorted(set(years))).keys())


# --- what committed batches told us ---------------------------------------------------------------------------


class DeliveryClock:
    """How far event time has got, as one run sees it: the city's event-time watermark, the watermark each claimed
    batch arrived under, the delivery clock of offline rules (each device's, and the newest of them), and per device
    the first and newest event time it committed and, for devices an index rule watches, its recent spans' (newest
    event time, watermark) pairs.

    Built for each run from the stored clocks (``alert_device_clock``, migration 022) of the devices it touches, and
    the city's maxima over every device; what the run changed is written back in its transaction (:meth:`changed`).
    Nothing of it outlives the run, so a partition taken over by another process continues exactly.

    A device's spans are kept only while an index rule may still need them (:meth:`prune` drops those its index rules
    have passed) and at most ``history_bytes`` of them (16 bytes a span, the oldest dropped first); a device no index
    rule watches keeps none."""

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
        self._seen: dict[int, tuple[int, int]] = {}  # device -> (first, newest) event time committed
        self._delivered: dict[int, int] = {}  # device -> its delivery clock
        self._history: dict[int, array[int]] = {}  # device -> flat (newest event time, watermark) per span
        self._changed: set[int] = set()
        self._spans_changed: set[int] = set()  # written apart: most devices keep none

    def load(self, stored: st.StoredClocks) -> None:
        """The stored clocks of the devices the run touches (before any :meth:`remember`)."""
        for d, first, newest, delivered in zip(
            stored.device_id.tolist(), stored.first_us.tolist(), stored.newest_us.tolist(),
            stored.delivered_us.tolist(), strict=True,
        ):  # fmt: skip
            self._seen[d] = (first, newest)
            self._delivered[d] = delivered
        for d, spans in stored.spans.items():
            if spans and (self.index_devices is None or d in self.index_devices):
                self._history[d] = array("q", spans)

    def batch_watermarks(self, newest_us: np.ndarray, received_us: np.ndarray) -> np.ndarray:
        """The watermark each claimed row's batch arrived under (rows in commit order): its receipt (wall clock), or
        the running maximum of the batches' newest event time (event clock). The newest batch says whether the
        stream is live: a batch of old data (a backlog after an outage of this system) says nothing about which
        devices are delivering now, so offline waits until the stream is live again."""
        if not len(newest_us):
            return np.zeros(0, np.int64)
        running = np.maximum.accumulate(np.maximum(newest_us, self.event_wm_us))
        self.event_wm_us = int(running[-1])
        wm = received_us if self.clock == "wall" else running
        self.live = self.clock == "event" or int(wm[-1]) - int(newest_us[-1]) <= self.late_after_us
        return wm

    def delivery_clocks(self, hi_us: np.ndarray, wm_us: np.ndarray) -> np.ndarray:
        """How far a device has delivered with each span, for offline rules: its data's event time when the data
        came on time, the watermark it arrived under when it came late (a replay of buffered hours, a clock far
        behind): such a device is delivering now, whatever the age of what it delivers."""
        return np.where(wm_us - hi_us <= self.late_after_us, hi_us, wm_us)

    def remember(self, d: int, span: Span, delivered_us: int) -> None:
        """One span of a device, with the delivery clock it gave (:meth:`remember_claimed` takes a run's all)."""
        self.arrival_wm_us = max(self.arrival_wm_us, delivered_us)
        self._see(d, span.lo_us, span.hi_us, delivered_us)
        if self.index_devices is None or d in self.index_devices:
            self._keep_span(d, span.hi_us, span.wm_us)

    def remember_claimed(self, pending: Pending, device_id: np.ndarray, hi_us: np.ndarray, wm_us: np.ndarray) -> None:
        """:meth:`remember` of every span a run claimed: the times per device as ``pending`` sums them up (a
        minimum and maxima: the order of the spans does not matter), the span history of the devices index rules
        watch span by span from the claimed rows in commit order (``device_id``, ``hi_us``, ``wm_us``)."""
        p = pending
        for d, first, newest, delivered in zip(
            p.devices.tolist(), p.first_us.tolist(), p.newest_us.tolist(), p.delivered_us.tolist(), strict=True
        ):
            self._see(d, first, newest, delivered)
        if len(p.devices):
            self.arrival_wm_us = max(self.arrival_wm_us, int(p.delivered_us.max()))
        if self.index_devices is not None:
            keep = np.isin(device_id, np.fromiter(self.index_devices, np.int64, len(self.index_devices)))
            device_id, hi_us, wm_us = device_id[keep], hi_us[keep], wm_us[keep]
        for d, hi, wm in zip(device_id.tolist(), hi_us.tolist(), wm_us.tolist(), strict=True):
            self._keep_span(d, hi, wm)

    def _see(self, d: int, lo_us: int, hi_us: int, delivered_us: int) -> None:
        first, newest = self._seen.get(d, (lo_us, hi_us))
        self._seen[d] = (min(first, lo_us), max(newest, hi_us))
        self._delivered[d] = max(self._delivered.get(d, delivered_us), delivered_us)
        self._changed.add(d)

    def _keep_span(self, d: int, hi_us: int, wm_us: int) -> None:
        self._spans_changed.add(d)
        hist = self._history.get(d)
        if hist is None:
            hist = self._history[d] = array("q")
        if hist and hist[-1] == wm_us:  # same batch, another metric: widen the entry
            hist[-2] = max(hist[-2], hi_us)
        else:
            hist.extend((hi_us, wm_us))
        if len(hist) > 2 * self.history_spans:
            del hist[: len(hist) - 2 * self.history_spans]

    def prune(self, d: int, upto_us: int) -> None:
        """Drop the spans of ``d`` that no index sample after ``upto_us`` can need (those ending at or before it:
        a sample takes the watermark of the first span, by newest event time, reaching it)."""
        hist = self._history.get(d)
        if not hist:
            return
        kept = [(hi, wm) for hi, wm in zip(hist[::2], hist[1::2], strict=True) if hi > upto_us]
        if len(kept) == len(hist) // 2:
            return
        self._changed.add(d)
        self._spans_changed.add(d)
        if not kept:
            del self._history[d]
        else:
            self._history[d] = array("q", [v for pair in kept for v in pair])

    def keep_history_of(self, devices: frozenset[int]) -> None:
        """Keep spans only for these devices (those index rules watch) from now on."""
        self.index_devices = devices
        for d in [d for d in self._history if d not in devices]:
            del self._history[d]
            self._changed.add(d)
            self._spans_changed.add(d)

    def history(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(newest event time, watermark) of the device's spans kept."""
        flat = np.frombuffer(self._history.get(d, array("q")), dtype=np.int64).reshape(-1, 2).copy()
        return flat[:, 0], flat[:, 1]

    def first_seen(self, d: int) -> int | None:
        seen = self._seen.get(d)
        return None if seen is None else seen[0]

    def newest(self) -> dict[int, int]:
        """Device -> the newest event time it has committed (of the devices this run knows)."""
        return {d: newest for d, (_, newest) in self._seen.items()}

    def nbytes(self) -> int:
        """An estimate of what the per-device state takes (dict slots, tuples, ints and arrays)."""
        return 200 * len(self._seen) + sum(64 + 8 * len(h) + 100 for h in self._history.values())

    @property
    def devices(self) -> int:
        """Devices that have committed something (of those this run knows)."""
        return len(self._seen)

    def changed(self) -> list[st.DeviceClockRow]:
        """The clocks of the devices this run moved, to be written in its transaction."""
        out = []
        for d in sorted(self._changed):
            if d in self._seen:
                spans = list(self._history.get(d, ())) if d in self._spans_changed else None
                out.append(st.DeviceClockRow(d, *self._seen[d], self._delivered[d], spans))
        return out


def sample_watermarks(ts: np.ndarray, spans: list[Span], default_us: int) -> np.ndarray:
    """The watermark each sample arrived under: that of the first span (by newest event time) reaching it."""
    his = np.array([s.hi_us for s in spans], dtype=np.int64)
    wms = np.array([s.wm_us for s in spans], dtype=np.int64)
    return watermarks_at(ts, his, wms, default_us)


def watermarks_at(ts: np.ndarray, his: np.ndarray, wms: np.ndarray, default_us: int) -> np.ndarray:
    order = np.argsort(his, kind="stable")
    wm = np.append(wms[order], np.int64(default_us))
    return wm[np.searchsorted(his[order], ts, side="left")]


def _empty() -> np.ndarray:
    return np.zeros(0, np.int64)


@dataclass
class Pending:
    """The work of one run: the spans claimed from the hand-over, columnar (int64 arrays) and ordered by series
    (device, metric) then commit order, summed up per device (first and newest event time, newest delivery clock);
    index checks asked for, and per device the newest delivery clock of its spans.

    Columnar because a claim takes each batch's every series (a thousand for 200 meters) and most of them are watched
    by no metric rule: a Python object per span cost the evaluator more than anything else it did. :meth:`spans`
    makes the objects of the series a rule runs on."""

    device_id: np.ndarray = field(default_factory=_empty)
    metric_id: np.ndarray = field(default_factory=_empty)
    lo_us: np.ndarray = field(default_factory=_empty)
    hi_us: np.ndarray = field(default_factory=_empty)
    wm_us: np.ndarray = field(default_factory=_empty)
    devices: np.ndarray = field(default_factory=_empty)  # the devices with spans, ascending
    first_us: np.ndarray = field(default_factory=_empty)  # per device: its spans' first event time
    newest_us: np.ndarray = field(default_factory=_empty)  # ... their newest
    delivered_us: np.ndarray = field(default_factory=_empty)  # ... their newest delivery clock
    index_until: dict[int, int] = field(default_factory=dict)  # device -> check its index series up to here
    index_forced: set[int] = field(default_factory=set)  # devices whose index check was asked for
    arrived: dict[int, int] = field(default_factory=dict)  # device -> newest delivery clock of its spans

    def __post_init__(self) -> None:
        self._series = _series_key(self.device_id, self.metric_id)

    def __bool__(self) -> bool:
        return bool(len(self.device_id) or self.index_until or self.arrived)

    @classmethod
    def of(
        cls, device_id: np.ndarray, metric_id: np.ndarray, lo_us: np.ndarray, hi_us: np.ndarray, wm_us: np.ndarray,
        delivered_us: np.ndarray,
    ) -> Pending:  # fmt: skip
        """The work of spans given in commit order, with the watermark and delivery clock of each."""
        order = np.lexsort((np.arange(len(device_id)), metric_id, device_id))  # by series, then commit order
        d = device_id[order]
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]]) if len(d) else _empty()
        devices = d[starts]
        per_device = (
            np.minimum.reduceat(lo_us[order], starts) if len(d) else _empty(),
            np.maximum.reduceat(hi_us[order], starts) if len(d) else _empty(),
            np.maximum.reduceat(delivered_us[order], starts) if len(d) else _empty(),
        )
        pending = cls(d, metric_id[order], lo_us[order], hi_us[order], wm_us[order], devices, *per_device)
        pending.index_until = dict(zip(devices.tolist(), per_device[1].tolist(), strict=True))
        pending.arrived = dict(zip(devices.tolist(), per_device[2].tolist(), strict=True))
        return pending

    def check_index(self, d: int, until_us: int, *, forced: bool = False) -> None:
        self.index_until[d] = max(self.index_until.get(d, until_us), until_us)
        if forced:
            self.index_forced.add(d)

    def devices_of(self, metric: int) -> set[int]:
        """The devices with spans of this metric."""
        return set(self.device_id[self.metric_id == metric].tolist())

    def spans(self, d: int, m: int) -> list[Span]:
        """The spans of one series, in commit order."""
        key = _series_key(np.array([d], np.int64), np.array([m], np.int64))
        a, b = np.searchsorted(self._series, key[0], "left"), np.searchsorted(self._series, key[0], "right")
        return [
            Span(lo, hi, wm)
            for lo, hi, wm in zip(
                self.lo_us[a:b].tolist(), self.hi_us[a:b].tolist(), self.wm_us[a:b].tolist(), strict=True
            )
        ]

    def rows_of(self, d: int) -> slice:
        """Where the spans of a device are in the arrays (empty if it has none)."""
        return slice(int(np.searchsorted(self.device_id, d, "left")), int(np.searchsorted(self.device_id, d, "right")))


def _series_key(device_id: np.ndarray, metric_id: np.ndarray) -> np.ndarray:
    """One int64 per (device, metric), ordered as the pairs are (a metric id is a smallint)."""
    return device_id.astype(np.int64) * 65_536 + (metric_id.astype(np.int64) + 32_768)


@dataclass(frozen=True, slots=True)
class Watermarks:
    """The delivery clock as a run takes it."""

    event_us: int
    arrival_us: int
    live: bool


def claimed_work(rows: st.QueuedRows, clock: DeliveryClock) -> Pending:
    """The run's work from the claimed hand-over rows, in the order they were committed: each row's watermark is
    the running maximum of the batches' newest event time (event clock), or its batch's receipt (wall clock). The
    batch's own newest data counts as delivered too, whichever partition its device is in: the offline rules' clock
    is the city's as the batches tell it, not only this process's devices'."""
    wm = clock.batch_watermarks(rows.batch_newest_us, rows.batch_received_us)
    delivered = clock.delivery_clocks(rows.hi_us, wm)
    pending = Pending.of(rows.device_id, rows.metric_id, rows.lo_us, rows.hi_us, wm, delivered)
    clock.remember_claimed(pending, rows.device_id, rows.hi_us, wm)
    if len(rows):
        newest = clock.delivery_clocks(rows.batch_newest_us, wm)
        clock.arrival_wm_us = max(clock.arrival_wm_us, int(newest.max()))
    return pending


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
        self._scope_sets: dict[tuple[str, RuleOwner], frozenset[int]] = {}

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
        self._scopes, self._scope_sets = {}, {}
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

    def watched(self, rule: AlertRule, owner: RuleOwner, among: Collection[int]) -> list[int]:
        """The devices of ``among`` the rule watches, ascending: a run's few devices are not found by going through
        every device a rule watches (a city's meters), nor the other way round."""
        scope = self.scope(rule, owner)
        if len(among) >= len(scope):
            return [d for d in scope if d in among]
        key = (rule.key, owner)
        watched = self._scope_sets.get(key)
        if watched is None:
            watched = self._scope_sets[key] = frozenset(scope)
        return sorted(d for d in among if d in watched)


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
class Correct:
    """A recorded alert corrected once readings behind its series' frontier are known (engine.alerts.Correction),
    with the clear that ends it as the alert shows it, if the correction ends an active alert."""

    correction: Correction
    cleared: Apply | None


Change = Apply | Correct


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

    def owns(self, alert_id: int | None) -> None:
        """The series' alert once its changes are written, kept in its state and in the checkpoint at its frontier
        (0: none): a run again from that checkpoint continues it (engine.alerts.revise)."""
        self.alert_id = alert_id
        self.state = replace(self.state, alert_id=alert_id or 0)
        if self.checkpoints:
            self.checkpoints = tuple(
                self.state if c.last_ts_us == self.state.last_ts_us else c for c in self.checkpoints
            )


@dataclass
class Run:
    """One run's view: the work taken, the watermarks then, the stored states it loaded, and what it decided."""

    pending: Pending
    marks: Watermarks
    default_wm_us: int  # the watermark of a sample no span reaches (wall clock, or the event watermark)
    clock: DeliveryClock  # the clocks of the devices this run touches (written back with its decisions)
    states: dict[StateKey, tuple[dict[str, Any], int | None]] = field(default_factory=dict)
    decided: list[Decided] = field(default_factory=list)
    result: RunResult = field(default_factory=RunResult)
    behind: dict[int, int] = field(default_factory=dict)  # device -> spans that reached behind its frontier

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


def recorded_alert(row: st.RecordedRow, device_pk: int) -> RecordedAlert:
    record = AlertRecord(
        row.started_us, row.raised_us, math.nan if row.raised_value is None else row.raised_value, row.peak,
        row.cleared_us, row.cleared_value, row.reason, row.flaps,
    )  # fmt: skip
    return RecordedAlert(row.alert_id, row.device_pk == device_pk, record)


def revision_note(c: Correction) -> str:
    """What a correction changed, for the alert's history: the old and the new times (UTC), and why."""
    why = "readings that arrived behind the series' frontier"
    if c.new is None and c.merged_into is not None:
        return f"merged into alert {c.merged_into}: one episode once {why} are known"
    if c.new is None:
        return f"withdrawn: no such episode once {why} are known"
    fields = (("started", "started_us"), ("raised", "raised_us"), ("cleared", "cleared_us"))
    changed = [
        f"{name} {_utc(getattr(c.old, attr))} -> {_utc(getattr(c.new, attr))}"
        for name, attr in fields if getattr(c.old, attr) != getattr(c.new, attr)
    ]  # fmt: skip
    if c.old.flaps != c.new.flaps:
        changed.append(f"reopened {c.old.flaps} -> {c.new.flaps} times")
    if not changed:
        changed.append("values")
    return f"re-timed by {why}: {'; '.join(changed)}"


def _utc(us: int | None) -> str:
    return "active" if us is None else us_to_datetime(us).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def __init__(self, devices: DeviceCache, schedules: Schedules, late_after_us: int, horizon_us: int) -> None:
        self._devices = devices
        self._schedules = schedules
        self._late_after_us = late_after_us
        self._horizon_us = horizon_us

    def jobs(self, rules: RuleCache, run: Run, warn: _Once) -> list[tuple[AlertRule, int, int]]:
        by_metric: dict[int, set[int]] = {}
        out = []
        for rule in rules.active():
            if rule.kind == "offline" or rule.index is not None:
                continue
            m = self._devices.metric_ids.get(rule.metric or "")
            if m is None:
                warn(f"metric:{rule.key}", f"rule {rule.key}: no metric {rule.metric} in the catalogue")
                continue
            touched = by_metric.get(m)
            if touched is None:
                touched = by_metric[m] = run.pending.devices_of(m)
            out += [(rule, d, m) for d in self._devices.watched(rule, rules.owner(rule), touched)]
        return out

    def run(self, conn: psycopg.Connection, run: Run, jobs: list[tuple[AlertRule, int, int]]) -> None:
        if not jobs:
            return
        plans = [self._plan(run, rule, d, m) for rule, d, m in jobs]
        # One window per series: from the earliest start (minus the longest averaging window) any rule needs.
        need: dict[tuple[int, int], tuple[int, int]] = {}
        for p in plans:
            window = int(p.rule.average.window_s * US_PER_S) if p.rule.average is not None else 0
            # Up to the frontier at least: readings behind it are run again with every stored reading after them.
            until = max(p.frontier_us, max(s.hi_us for s in p.spans))
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
        spans = run.pending.spans(d, m)
        checkpoints = checkpoints_from_json(raw.get("checkpoints"))
        if live.last_ts_us == NO_TS:  # a new series: its start is its first checkpoint
            frontier = min(s.lo_us for s in spans) - 1
            start = replace(SeriesState(), last_ts_us=frontier)
            return _Series(rule, d, m, live, alert_id, spans, frontier, (start,), None, int(NO_TS))
        behind = [s for s in spans if s.lo_us <= live.last_ts_us]
        if behind:
            run.behind[d] = run.behind.get(d, 0) + len(behind)
        oldest = live.last_ts_us - self._horizon_us
        revise_from = checkpoint_before(checkpoints, min(s.lo_us for s in behind), oldest_us=oldest) if behind else None
        if behind and revise_from is None:
            run.result.unevaluated += 1
        late_wm = max((s.wm_us for s in behind), default=int(NO_TS))
        return _Series(rule, d, m, live, alert_id, spans, live.last_ts_us, checkpoints, revise_from, late_wm)

    def _run_series(self, conn: psycopg.Connection, run: Run, p: _Series, ts: np.ndarray, val: np.ndarray) -> None:
        rule, info = p.rule, self._devices.devices[p.device]
        state, checkpoints, alert_id = p.live, p.checkpoints, p.alert_id
        changes: list[Change] = []
        readings = (ts, val)
        if p.revise_from is not None:
            state, changes, alert_id = self._revise(conn, p, info, ts, val)
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
        run.decided.append(Decided(rule, info, state, alert_id, changes, kept))

    def _revise(
        self, conn: psycopg.Connection, p: _Series, info: SeriesInfo, ts: np.ndarray, val: np.ndarray
    ) -> tuple[SeriesState, list[Change], int | None]:
        """Run the series again from the checkpoint to the frontier, with every reading stored now, under the
        watermark the late readings arrived under; reconcile with what was recorded (engine.alerts.revise): the
        state to carry on from, the changes to write, the series' alert once the corrections are written."""
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
        readings = (ts, val)

        def shown(tr: Transition) -> Apply:
            return shown_value(rule, info, tr, readings)

        since = start.last_ts_us if start.cleared_us == NO_TS else min(start.last_ts_us, start.cleared_us)
        rows = st.recorded_alerts(conn, rule.key, rule.dedup(info), since, start.alert_id or None)
        recorded = [recorded_alert(row, p.device) for row in rows]
        # The alerts are compared as they show their values (a flatline's reading, not its run length).
        rev = revise(
            start, rerun_state, [replace(tr, value=shown(tr).value) for tr in rerun], recorded, owned_alert=p.alert_id
        )
        changes: list[Change] = [
            Correct(c, None if c.cleared_by is None else shown(c.cleared_by)) for c in rev.corrections
        ]
        changes += [shown(tr) for tr in rev.replay]
        return rev.state, changes, rev.alert_id


class IndexJobs:
    """Index rules (``index: aqi_th``): the index series of the devices whose batches may have completed a period
    (an hour of AQI) since their last evaluated sample, or whose check was asked for."""

    def __init__(
        self, source: IndexSource | None, devices: DeviceCache, schedules: Schedules, late_after_us: int,
        catchup_us: int,
    ) -> None:  # fmt: skip
        self.source = source
        self._devices = devices
        self._schedules = schedules
        self._late_after_us = late_after_us
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
            due = self._devices.watched(rule, rules.owner(rule), run.pending.index_until.keys())
            out += [(rule, d) for d in due if self._due(rule, d, run)]
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
        his, wms = run.clock.history(d)
        first_seen = run.clock.first_seen(d)
        _, state, alert_id = run.state(rule, d)
        until = run.pending.index_until[d]
        frontier = state.last_ts_us
        if frontier == NO_TS:  # a new series: from the first data the device committed, at most catch-up old
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

    def prune(self, run: Run) -> None:
        """Drop the spans every index rule of a device has passed, with the frontiers this run decided (no sample
        they take from now on can need them): before the run writes the clocks back."""
        frontier = dict(self._frontier)
        touched = set()
        for dec in run.decided:
            if dec.rule.index is not None:
                frontier[(dec.rule.key, dec.info.device_pk)] = dec.state.last_ts_us
                touched.add(dec.info.device_pk)
        for d in touched:
            frontiers = [frontier.get((key, d)) for key in self._watching.get(d, ())]
            if frontiers and all(f is not None and f != NO_TS for f in frontiers):
                run.clock.prune(d, min(f for f in frontiers if f is not None))

    def committed(self, decided: Iterable[Decided]) -> None:
        """Remember the index frontiers a run committed (a frontier only moves on, so one remembered from before a
        partition went elsewhere and came back is behind, never ahead: it asks for a read too many, never too
        few)."""
        for dec in decided:
            if dec.rule.index is not None:
                self._frontier[(dec.rule.key, dec.info.device_pk)] = dec.state.last_ts_us

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

    def __init__(
        self, devices: DeviceCache, late_after_us: int, clock: Clock, wall_us: Callable[[], int]
    ) -> None:  # fmt: skip
        self._devices = devices
        self._late_after_us = late_after_us
        self._clock: Clock = clock
        self._wall_us = wall_us
        self.delivered: dict[int, int] = {}  # device -> its delivery clock, as committed (alert_device_clock)
        self._raised: set[StateKey] = set()  # committed offline alerts still raised (a cache)
        self._held: Held | None = None  # the partitions the caches are of (None: every device)
        self._partitions: frozenset[int] = frozenset()
        self._synced: tuple[tuple[int, ...] | None, int] | None = None

    def sync(self, conn: psycopg.Connection, held: Held | None, gains: int) -> None:
        """Load the caches again for the partitions held now, when they are not those of the last run (or some were
        taken again since, ``gains``): another process may have moved their devices' clocks meanwhile."""
        key = (None if held is None else tuple(held.partitions), gains)
        if key == self._synced:
            return
        self._held = held
        self._partitions = frozenset(held.partitions) if held is not None else frozenset()
        self.delivered = st.delivered_in(conn, held)
        self.load(conn)
        self._synced = key

    def load(self, conn: psycopg.Connection) -> None:
        self._raised = set(st.raised_series(conn, self._held))

    def _mine(self, d: int) -> bool:
        return self._held is None or d % self._held.count in self._partitions

    def jobs(self, rules: RuleCache, run: Run) -> list[tuple[AlertRule, int]]:
        """Devices whose offline state may change now: overdue ones (while the stream is live), and raised ones with
        new data. Devices never seen are not judged (nothing tells "not installed yet" from "offline")."""
        out = []
        for rule in rules.active():
            if rule.kind != "offline":
                continue
            assert rule.after_cadences is not None
            owner = rules.owner(rule)
            # While the stream is not live only a raised series with data again can change, so only the devices with
            # data are looked at; while it is, any device may be overdue.
            scope = self._devices.scope(rule, owner) if run.marks.live else (
                self._devices.watched(rule, owner, run.pending.arrived.keys())
            )  # fmt: skip
            for d in scope:
                last = self._last(run, d)
                if last == NO_TS or not self._mine(d):
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
        late_ref = self._wall_us() if self._clock == "wall" else run.marks.event_us
        new, out = evaluate_offline(
            rule, state, seen_us=last, cadence_us=info.cadence_us, watermark_us=run.marks.arrival_us,
            late_ref_us=late_ref, late_after_us=self._late_after_us, resumed_us=self._resumed(run, d),
        )  # fmt: skip
        if new != state:
            run.decided.append(Decided(rule, info, new, alert_id, [shown_value(rule, info, tr, None) for tr in out]))

    def _resumed(self, run: Run, d: int) -> int | None:
        """When a device's data came back in this run: its first new reading if on time, else its arrival. On time
        is judged by the span's first reading, not its last: a replayed backlog comes in batches of any size, and a
        batch whose last reading is recent must not make its first one, hours old, the time the device came back."""
        rows = run.pending.rows_of(d)
        lo, wm = run.pending.lo_us[rows], run.pending.wm_us[rows]
        return int(np.where(wm - lo <= self._late_after_us, lo, wm).min()) if len(lo) else None

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
        r = run.result
        # Corrections first: a withdrawn or merged alert makes way for the alerts the transitions then record.
        for dec in run.decided:
            for ch in dec.changes:
                if isinstance(ch, Correct):
                    self._correct(conn, dec, ch)
                    r.corrected += 1
        order = sorted(
            (ch.at_us, dec.rule.key, dec.info.device_pk, i, j)
            for i, dec in enumerate(run.decided) for j, ch in enumerate(dec.changes) if isinstance(ch, Apply)
        )  # fmt: skip
        for *_, i, j in order:
            dec = run.decided[i]
            ch = dec.changes[j]
            assert isinstance(ch, Apply)
            dec.alert_id = self._apply(conn, dec, ch)
            self._count(r, ch.tr)
        peaks = []
        for dec in run.decided:
            dec.owns(dec.alert_id)
            if dec.alert_id is not None and dec.state.phase in ("raised", "clearing") and dec.state.peak is not None:
                peaks.append((dec.alert_id, dec.state.peak))
        st.set_peaks(conn, peaks)  # an active alert shows its peak so far
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
            ch.value, ch.threshold, tr.late, tr.peak,
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
        st.lock_dedup_key(conn, dec.rule.key, dedup)  # the key's devices may be in another process's partitions
        if tr.kind == TransitionKind.REOPENED and alert_id is not None and self._reopenable(conn, alert_id, dec):
            st.reopen_alert(conn, alert_id, tr.at_us, ch.value, d, tr.late, tr.peak)
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

    def _correct(self, conn: psycopg.Connection, dec: Decided, ch: Correct) -> None:
        c, d = ch.correction, dec.info.device_pk
        note = revision_note(c)
        if c.new is None:
            reason = ClearReason.WITHDRAWN if c.merged_into is None else ClearReason.MERGED
            st.withdraw_alert(conn, c.alert_id, reason, d, note)
            return
        n = c.new
        new = st.Retimed(
            n.started_us, n.raised_us, n.raised_value, n.peak, n.cleared_us, n.cleared_value, n.reason, n.flaps
        )
        st.retime_alert(conn, c.alert_id, new, d, note, None if ch.cleared is None else self._clear(ch.cleared))


# --- the evaluator --------------------------------------------------------------------------------------------


class AlertEvaluator:
    """Claims the hand-over of its process's partitions (all of them without ``leases``), evaluates, and writes
    alerts, series states and device clocks in the claim's transaction (see the module's docstring)."""

    def __init__(
        self,
        connect: Connect,
        *,
        clock: Clock = "wall",
        late_after_s: float = 900.0,
        catchup_s: float = 7 * 86400.0,
        history_bytes: int = 65_536,
        claim_limit: int = CLAIM_LIMIT,
        on_paged: Callable[[], None] | None = None,
        index_source: IndexSource | None = None,
        wall_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        device_refresh_s: float = 60.0,
        leases: Leases | None = None,
    ) -> None:
        if clock not in ("wall", "event"):
            raise ValueError(f"clock must be 'wall' or 'event', not {clock!r}")
        self._connect = connect
        self._leases = leases  # None: every partition (one process alone, tests)
        self._wall_us = wall_us
        self._clock: Clock = clock
        self._late_after_us = int(late_after_s * US_PER_S)
        self._history_bytes = history_bytes
        self._claim_limit = claim_limit
        self._catchup_us = int(catchup_s * US_PER_S)
        self.on_paged = on_paged  # after a run committed alert changes: wakes the dispatcher
        self._warn = _Once()
        self._rules = RuleCache(wall_us, self._warn)
        self._devices = DeviceCache(wall_us, int(device_refresh_s * US_PER_S))
        self._schedules = Schedules(self._warn)
        self._metric = MetricJobs(self._devices, self._schedules, self._late_after_us, self._catchup_us)
        self._index = IndexJobs(index_source, self._devices, self._schedules, self._late_after_us, self._catchup_us)
        self._offline = OfflineJobs(self._devices, self._late_after_us, clock, wall_us)
        self._writer = AlertWriter()
        self._index_watched: frozenset[int] | None = None
        self._forced: set[int] | None = set()  # index checks asked for (None: every device)
        self._forced_lock = threading.Lock()
        # How far this evaluator's claims have taken the watermarks (docs/partitions.md#alerts): they only move on,
        # with the claimed rows, from the city's stored clocks at start-up.
        self._live = True  # the newest batch evaluated was not a backlog (wall clock): offline can be judged
        self._event_wm_us = int(NO_TS)
        self._arrival_wm_us = int(NO_TS)
        self._prepared = False
        self.totals = RunResult()

    @property
    def index_source(self) -> IndexSource | None:
        return self._index.source

    # -- asking --------------------------------------------------------------------------------------------------

    def request_index_check(self, device_pks: Iterable[int] | None = None) -> None:
        """Check the index rules of these devices (default: every device seen, of this process's partitions) up to
        their newest data at the next run: call it after the index updater has committed new values."""
        with self._forced_lock:
            if device_pks is None or self._forced is None:
                self._forced = None
            else:
                self._forced |= set(device_pks)

    def _take_forced(self) -> set[int] | None:
        with self._forced_lock:
            forced, self._forced = self._forced, set()
            return forced

    def _put_back_forced(self, forced: set[int] | None) -> None:
        if forced is None or forced:
            self.request_index_check(forced)

    def has_work(self) -> bool:
        """Whether the hand-over holds work of this process's partitions, or an index check was asked for."""
        with self._forced_lock:
            if self._forced is None or self._forced:
                return True
        held = None if self._leases is None else Held(self._leases.count, self._leases.held)
        if held is not None and not held.partitions:
            return False
        with self._connect() as conn:
            return st.queued(conn, held)

    # -- running -------------------------------------------------------------------------------------------------

    def prepare(self) -> int:
        """Load the rules, devices and the holiday calendar before the first run (the calendar's first load takes a
        second: not on a hot run). Returns the rows waiting in the hand-over (every partition's)."""
        with self._connect() as conn:
            self._refresh(conn, force=True)
            event_us, arrival_us = st.city_clocks(conn)
            self._event_wm_us = max(self._event_wm_us, int(NO_TS) if event_us is None else event_us)
            self._arrival_wm_us = max(self._arrival_wm_us, int(NO_TS) if arrival_us is None else arrival_us)
            now = event_us if event_us is not None else self._wall_us()
            self._schedules.holidays(now, now)
            waiting = st.count_queued(conn)
        self._prepared = True
        return waiting

    def run_once(self) -> RunResult:
        if not self._prepared:
            self.prepare()
        started = time.perf_counter()
        forced = self._take_forced()
        try:
            with self._connect() as conn, conn.transaction():
                held = held_partitions(conn, self._leases)
                if held is not None and not held.partitions:
                    self._put_back_forced(forced)
                    return RunResult(skipped=True)
                self._refresh(conn, force=False)
                self._offline.sync(conn, held, 0 if self._leases is None else self._leases.gains)
                queued = st.claim_queued(conn, self._claim_limit, held)
                run = self._run(conn, queued, forced, held)
                self._evaluate(conn, run)
                self._index.prune(run)
                st.save_device_clocks(conn, run.clock.changed())
                count = 1 if held is None else held.count
                by_partition: dict[int, int] = defaultdict(int)
                for d, n in run.behind.items():
                    by_partition[d % count] += n
                st.add_behind(conn, dict(by_partition))
        except BaseException:
            self._put_back_forced(forced)
            raise
        if queued:
            self._live = run.marks.live
        self._event_wm_us, self._arrival_wm_us = run.clock.event_wm_us, run.clock.arrival_wm_us
        if run.result.transitions and self.on_paged is not None:
            self.on_paged()
        self._index.committed(run.decided)
        self._offline.committed(run)
        if run.result.unevaluated:
            log.warning(
                "%d series got readings more than %.0f s behind their frontier (or older than every checkpoint):"
                " those readings are stored but not evaluated", run.result.unevaluated, self._catchup_us / US_PER_S,
            )  # fmt: skip
        run.result.claimed = len(queued)
        run.result.runs, run.result.busy_s = 1, time.perf_counter() - started
        run.result.max_run_s = run.result.busy_s
        self.totals.add(run.result)
        return run.result

    def drain(self, stop: Callable[[], bool] = lambda: False) -> RunResult:
        """Run until the hand-over of this process's partitions is empty (and at least once, for offline checks)."""
        total = RunResult()
        while True:
            r = self.run_once()
            total.add(r)
            if stop() or r.skipped or r.claimed < self._claim_limit:
                return total

    def _run(self, conn: psycopg.Connection, queued: st.QueuedRows, forced: set[int] | None,
             held: Held | None) -> Run:  # fmt: skip
        """The run's work and clocks: the device clocks of what it claimed (and of the index checks asked for) as
        stored, then the claimed rows in commit order, moving the watermarks on from where the last run left them."""
        clock = DeliveryClock(self._clock, self._late_after_us, self._history_bytes)
        clock.index_devices = self._index_watched
        clock.live = self._live
        clock.event_wm_us, clock.arrival_wm_us = self._event_wm_us, self._arrival_wm_us
        newest = st.newest_in(conn, held) if forced is None else {}
        asked = set(newest) if forced is None else forced
        clock.load(st.device_clocks(conn, sorted(set(queued.device_id.tolist()) | asked)))
        pending = claimed_work(queued, clock)
        known = clock.newest()
        for d in asked:
            if d in known and (held is None or d % held.count in held.partitions):
                pending.check_index(d, known[d], forced=True)
        # Offline rules judge silence against the slowest ingest process: a device whose data waits in another
        # process's backlog (its batches commit later than this one's) is not silent.
        slowest = st.slowest_writer(conn, WRITERS_HEARD_S)
        arrival = clock.arrival_wm_us if slowest is None else min(clock.arrival_wm_us, slowest)
        marks = Watermarks(clock.event_wm_us, arrival, clock.live)
        default_wm = self._wall_us() if self._clock == "wall" else marks.event_us
        return Run(pending, marks, default_wm, clock)

    def _refresh(self, conn: psycopg.Connection, *, force: bool = False) -> None:
        devices = self._devices.refresh(conn, force=force)
        if devices:
            self._offline.load(conn)
        if self._rules.refresh(conn, force=force) or devices:
            self._index_watched = self._index.watch(self._rules)

    def _evaluate(self, conn: psycopg.Connection, run: Run) -> None:
        if any(d not in self._devices.devices for d in run.pending.devices.tolist()):
            self._refresh(conn, force=True)
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
