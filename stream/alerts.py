"""The alert evaluator: after each committed batch, runs the touched series through their rules' state machines
(engine/alerts.py) on event time, writes alerts and their history, and marks the on-time raises and clears to page
(the dispatch worker sends them).

Work and crash safety. ``on_commit(cols)`` (a stream-loop commit hook) records, per (device, metric), the span of
event times the batch committed and the watermark it arrived under, and pokes the worker. Evaluation is driven by
the stored readings, not by the batch: each (rule, series) keeps a frontier (the newest sample it has seen) in
``alert_series_state``, and a run takes every stored reading after the frontier up to the newest span it was told
about. State, alerts, events and the frontier are written in one transaction, so a crash loses nothing and repeats
nothing: a batch replayed after a restart finds nothing beyond the frontier. Batches committed but never handed to
the evaluator (a crash between the commit and the hook) are found at start-up by ``catch_up``: one index probe per
series for readings beyond its frontier. Notifications are at least once: the events to page are written with the
alert, and marked notified only after the notifier took them (event ids let it drop a repeat).

Watermarks. With ``clock="wall"`` (production) a batch arrived under the wall clock at receipt: an alert whose
event time is more than ``late_after`` older is late (recorded, not paged): a device replaying six hours of
buffered data, or a whole backlog after an outage, does not page about the past. With ``clock="event"`` a batch
arrived under the city's event-time watermark (the newest event time committed so far): replays of the past
(simulations, benchmarks) page as if live, and only data behind the rest of the city is late.

Offline rules run on delivery: a device's clock is its newest data's event time when that data came on time, and
the watermark it arrived under when it came late (so a device replaying buffered hours, or with a clock far
behind, is delivering, not offline); a device is offline when the newest such clock of the city is more than N
cadences ahead of its own. They are not judged on a batch of old data (a backlog after an outage of this system,
wall clock), which says nothing about who is delivering now.

Readings that arrive behind their series' frontier (out of order) still enter the moving means of later samples,
but are not evaluated as samples themselves; they are counted in ``alert_progress.behind_frontier``.

Index rules (``index: aqi_th``) read the index series through :class:`IndexSource` (``StoredAqiIndex`` reads the
AQI updater's hourly rows); without one they are skipped (logged once). A device's index is read at its batches
once a period (an hour, for the stored AQI) has ended since its last evaluated sample, and again at each batch
until that period's value is there (the AQI updater runs beside us); ``request_index_check`` forces a read (after a
recompute, or at the end of a replay). An index sample arrived under the watermark of the batch that brought the
readings it was computed from: the evaluator keeps each device's recent (span, watermark) history for that, so an
index computed late is not judged late for it.

Several evaluators (one per ingest process) take turns: a run holds a transaction-level advisory lock and a process
that does not get it keeps its work for the next run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

import holidays as holiday_calendars
import numpy as np
import psycopg

from lccm.engine.alerts import (
    NO_TS,
    AlertRule,
    SeriesInfo,
    SeriesState,
    Transition,
    default_max_gap_us,
    evaluate,
    evaluate_offline,
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
HISTORY_SPANS = 4096  # per device: about two weeks of 5-minute batches
RULES_REFRESH_US = 1_000_000  # a rule written through the API applies within a second
Clock = Literal["wall", "event"]


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
class _Span:
    lo_us: int
    hi_us: int
    wm_us: int


@dataclass
class RunResult:
    series: int = 0
    transitions: int = 0
    raised: int = 0
    late: int = 0
    skipped: bool = False  # another evaluator held the lock
    runs: int = 0
    busy_s: float = 0.0  # wall time spent in runs
    max_run_s: float = 0.0


@dataclass
class _Work:
    """One run's view: the spans taken, and what the run decided, written at the end."""

    spans: dict[tuple[int, int], list[_Span]]
    seen: dict[int, int]  # device -> newest event time in the spans
    arrived: dict[int, int]  # device -> newest watermark its spans arrived under
    index_until: dict[int, int]
    index_forced: set[int]
    default_wm_us: int
    event_wm_us: int
    arrival_wm_us: int
    live: bool
    states: dict[tuple[str, int], tuple[dict[str, object], int | None]] = field(default_factory=dict)
    decided: list[_Decided] = field(default_factory=list)
    result: RunResult = field(default_factory=RunResult)
    behind: int = 0


@dataclass
class _Decided:
    """One (rule, series) after the machine ran: its new state, the alert it owns, its transitions with the value
    and threshold the alert shows."""

    rule: AlertRule
    info: SeriesInfo
    state: SeriesState
    alert_id: int | None
    out: list[tuple[Transition, float, float | None]]


def _try_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ALERT_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def thai_holidays(years: Iterable[int]) -> frozenset[date]:
    """Thai public holidays (the ``holidays`` package's Thailand calendar) of the given years."""
    return frozenset(holiday_calendars.Thailand(years=sorted(set(years))).keys())


class AlertEvaluator:
    def __init__(
        self,
        connect: Connect,
        *,
        clock: Clock = "wall",
        late_after_s: float = 900.0,
        catchup_s: float = 7 * 86400.0,
        on_paged: Callable[[], None] | None = None,
        index_source: IndexSource | None = None,
        notify_late: bool = False,
        wall_us: Callable[[], int] = lambda: time.time_ns() // 1000,
        device_refresh_s: float = 60.0,
    ) -> None:
        if clock not in ("wall", "event"):
            raise ValueError(f"clock must be 'wall' or 'event', not {clock!r}")
        self._connect = connect
        self._clock = clock
        self._late_after_us = int(late_after_s * US_PER_S)
        self._catchup_us = int(catchup_s * US_PER_S)
        self.on_paged = on_paged  # after a run committed alert changes: wakes the dispatcher
        self.index_source = index_source
        self._notify_late = notify_late  # also page late raises and clears (sent with transition "late")
        self._wall_us = wall_us
        self._device_refresh_us = int(device_refresh_s * US_PER_S)
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int], list[_Span]] = defaultdict(list)
        self._index_pending: dict[int, int] = {}  # device -> check its index series up to this event time
        self._index_forced: set[int] = set()  # devices whose index check was asked for (new index values)
        self._pending_seen: dict[int, int] = {}  # device -> newest event time of the pending spans
        self._pending_arrived: dict[int, int] = {}  # device -> newest watermark its pending spans arrived under
        self._arrived: dict[int, int] = {}  # device -> watermark its newest data arrived under (offline rules)
        self._arrival_wm_us = int(NO_TS)  # newest of those: the clock offline rules run on
        self._live = True  # the newest batch was not a backlog (wall clock): offline can be judged
        self._index_frontier: dict[tuple[str, int], int] = {}  # (rule, device) -> last index sample evaluated
        self._rules_at_us = int(NO_TS)
        self._history: dict[int, list[_Span]] = defaultdict(list)  # device -> recent spans and their watermarks
        self._event_wm_us = int(NO_TS)
        self._seen: dict[int, int] = {}
        self._devices: dict[int, SeriesInfo] = {}
        self._devices_at_us = int(NO_TS)
        self._metric_ids: dict[str, int] = {}
        self._rules: dict[str, tuple[int, AlertRule]] = {}
        self._holidays: dict[tuple[int, int], frozenset[date]] = {}
        self._warned: set[str] = set()
        self._prepared = False
        self._scopes: dict[tuple[str, int], list[int]] = {}  # (rule, version) -> its devices, sorted
        self._offline_raised: set[tuple[str, int]] = set()  # committed offline alerts still raised (a cache)
        self.totals = RunResult()

    # -- feeding -------------------------------------------------------------------------------------------------

    def on_commit(self, cols: ReadingColumns) -> None:
        """Stream-loop commit hook: remember what the batch touched and the watermark it arrived under. Cheap (the
        loop thread calls it); the work happens in ``run_once``."""
        if not len(cols):
            return
        order = np.lexsort((cols.metric_id, cols.device_id))
        dev, met, ts = cols.device_id[order], cols.metric_id[order], cols.ts_us[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(dev) != 0) | (np.diff(met) != 0)])
        lo, hi = np.minimum.reduceat(ts, starts), np.maximum.reduceat(ts, starts)
        with self._lock:
            self._event_wm_us = max(self._event_wm_us, int(ts.max()))
            wm = int(cols.received_at_us.max()) if self._clock == "wall" else self._event_wm_us
            for d, m, a, b in zip(dev[starts].tolist(), met[starts].tolist(), lo.tolist(), hi.tolist(), strict=True):
                self._pending[(d, m)].append(_Span(a, b, wm))
                self._index_pending[d] = max(self._index_pending.get(d, b), b)
                self._pending_seen[d] = max(self._pending_seen.get(d, b), b)
                c = self._device_clock(_Span(a, b, wm))
                self._pending_arrived[d] = max(self._pending_arrived.get(d, c), c)
                self._arrival_wm_us = max(self._arrival_wm_us, c)
                self._remember(d, _Span(a, b, wm))
            # A batch of old data (a backlog after an outage of this system) says nothing about which devices are
            # delivering now: offline waits until the stream is live again.
            self._live = self._clock == "event" or wm - int(ts.max()) <= self._late_after_us

    def _device_clock(self, span: _Span) -> int:
        """How far a device has delivered, for offline rules: its data's event time when the data came on time,
        the watermark it arrived under when it came late (a replay of buffered hours, a clock far behind): such a
        device is delivering now, whatever the age of what it delivers."""
        return span.hi_us if span.wm_us - span.hi_us <= self._late_after_us else span.wm_us

    def request_index_check(self, device_pks: Iterable[int] | None = None) -> None:
        """Check the index rules of these devices (default: every device seen) up to their newest data: call it
        after the index updater has committed new values."""
        with self._lock:
            for d in self._seen if device_pks is None else device_pks:
                if d in self._seen:
                    self._index_pending[d] = max(self._index_pending.get(d, self._seen[d]), self._seen[d])
                    self._index_forced.add(d)

    def _remember(self, d: int, span: _Span) -> None:
        hist = self._history[d]
        if hist and hist[-1].wm_us == span.wm_us:  # same batch, another metric: widen the entry
            last = hist[-1]
            hist[-1] = _Span(min(last.lo_us, span.lo_us), max(last.hi_us, span.hi_us), span.wm_us)
        else:
            hist.append(span)
        if len(hist) > HISTORY_SPANS:
            del hist[: len(hist) - HISTORY_SPANS]

    def has_work(self) -> bool:
        with self._lock:
            return bool(self._pending or self._index_pending or self._pending_seen or self._pending_arrived)

    # -- running -------------------------------------------------------------------------------------------------

    def prepare(self) -> int:
        """Load the watermark and what devices were last seen, then queue every series holding readings beyond its
        frontier (a crash between a commit and the hook). Returns the number of series queued."""
        with self._connect() as conn:
            stored = st.load_watermark(conn)
            with self._lock:
                self._event_wm_us = max(self._event_wm_us, stored if stored is not None else int(NO_TS))
            self._arrived = st.load_seen(conn)
            with self._lock:
                self._arrival_wm_us = max([self._arrival_wm_us, *self._arrived.values()])
            self._refresh(conn, force=True)
            now = self._event_wm_us if self._event_wm_us != NO_TS else self._wall_us()
            self._holidays_for(now, now)  # the holiday calendar's first load takes a second: not on a hot run
            queued = self._catch_up(conn)
        self._prepared = True
        return queued

    def run_once(self) -> RunResult:
        if not self._prepared:
            self.prepare()
        with self._lock:
            spans, self._pending = self._pending, defaultdict(list)
            index_until, self._index_pending = self._index_pending, {}
            forced, self._index_forced = self._index_forced, set()
            seen, self._pending_seen = self._pending_seen, {}
            arrived, self._pending_arrived = self._pending_arrived, {}
            event_wm, arrival_wm, live = self._event_wm_us, self._arrival_wm_us, self._live
        default_wm = self._wall_us() if self._clock == "wall" else event_wm
        work = _Work(dict(spans), seen, arrived, index_until, forced, default_wm, event_wm, arrival_wm, live)
        started = time.perf_counter()
        try:
            with self._connect() as conn, conn.transaction():
                if not _try_lock(conn):
                    self._requeue(work)
                    return RunResult(skipped=True)
                self._evaluate(conn, work)
        except BaseException:
            self._requeue(work)
            raise
        if work.result.transitions and self.on_paged is not None:
            self.on_paged()
        for d, t in work.seen.items():
            self._seen[d] = max(self._seen.get(d, int(NO_TS)), t)
        for d, t in work.arrived.items():
            self._arrived[d] = max(self._arrived.get(d, int(NO_TS)), t)
        for dec in work.decided:
            if dec.rule.index is not None:
                self._index_frontier[(dec.rule.key, dec.info.device_pk)] = dec.state.last_ts_us
            if dec.rule.kind == "offline":
                key = (dec.rule.key, dec.info.device_pk)
                if dec.state.phase == "raised":
                    self._offline_raised.add(key)
                else:
                    self._offline_raised.discard(key)
        work.result.runs, work.result.busy_s = 1, time.perf_counter() - started
        work.result.max_run_s = work.result.busy_s
        self._add_totals(work.result)
        return work.result

    def drain(self, stop: Callable[[], bool] = lambda: False) -> RunResult:
        """Run until nothing is pending (and at least once, for offline checks)."""
        total = RunResult()
        while True:
            r = self.run_once()
            for name in ("series", "transitions", "raised", "late", "runs", "busy_s"):
                setattr(total, name, getattr(total, name) + getattr(r, name))
            if stop() or not self.has_work():
                return total
            if r.skipped:
                time.sleep(0.05)

    def _requeue(self, work: _Work) -> None:
        with self._lock:
            for key, items in work.spans.items():
                self._pending[key][:0] = items
            for d, until in work.index_until.items():
                self._index_pending[d] = max(self._index_pending.get(d, until), until)
            for d, t in work.seen.items():
                self._pending_seen[d] = max(self._pending_seen.get(d, t), t)
            for d, t in work.arrived.items():
                self._pending_arrived[d] = max(self._pending_arrived.get(d, t), t)
            self._index_forced |= work.index_forced

    def _add_totals(self, r: RunResult) -> None:
        t = self.totals
        t.series, t.transitions, t.raised = t.series + r.series, t.transitions + r.transitions, t.raised + r.raised
        t.late = t.late + r.late
        t.runs, t.busy_s, t.max_run_s = t.runs + r.runs, t.busy_s + r.busy_s, max(t.max_run_s, r.max_run_s)

    # -- context -------------------------------------------------------------------------------------------------

    def _refresh(self, conn: psycopg.Connection, force: bool = False) -> None:
        now = self._wall_us()
        if force or now - self._devices_at_us > self._device_refresh_us:
            self._devices = {
                d.id: SeriesInfo(
                    d.id, d.device_id, d.site_code, d.kind, d.site_kind, d.cadence_s * US_PER_S, d.lat, d.lon,
                    frozenset(d.tags),
                )
                for d in st.device_rows(conn)
            }  # fmt: skip
            self._devices_at_us = now
            self._metric_ids = st.metric_ids(conn)
            self._scopes = {}
            self._offline_raised = set(st.raised_series(conn))
        if not force and now - self._rules_at_us < RULES_REFRESH_US:
            return
        self._rules_at_us = now
        rules: dict[str, tuple[int, AlertRule]] = {}
        for row in st.list_rules(conn):
            cached = self._rules.get(row.key)
            if cached is not None and cached[0] == row.version:
                rules[row.key] = cached
                continue
            try:
                rules[row.key] = (row.version, AlertRule.model_validate(row.definition))
            except ValueError as e:  # validated on the way in; only a hand-edited row gets here
                self._warn_once(f"rule:{row.key}:{row.version}", f"alert rule {row.key} is invalid, skipped: {e}")
        self._rules = rules

    def _active_rules(self) -> list[AlertRule]:
        return [r for _, r in self._rules.values() if r.enabled]

    def _index_due(self, rule: AlertRule, d: int, work: _Work) -> bool:
        """Whether a device's index may hold a sample not yet evaluated: asked for, or (for a source with a known
        period, such as hourly AQI) a period has ended since the last sample evaluated."""
        until = work.index_until.get(d)
        if until is None:
            return False
        period = getattr(self.index_source, "period_us", None)
        last = self._index_frontier.get((rule.key, d))
        if d in work.index_forced or not period or last is None:
            return True
        return (until // period) * period > last

    def _scope(self, rule: AlertRule) -> list[int]:
        """The devices a rule watches, computed once per rule version and device refresh."""
        key = (rule.key, self._rules[rule.key][0] if rule.key in self._rules else 0)
        if key not in self._scopes:
            self._scopes[key] = sorted(d for d, info in self._devices.items() if rule.scope.matches(info))
        return self._scopes[key]

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _holidays_for(self, ts_lo_us: int, ts_hi_us: int) -> frozenset[date]:
        years = (datetime.fromtimestamp(ts_lo_us / 1e6).year - 1, datetime.fromtimestamp(ts_hi_us / 1e6).year + 1)
        if years not in self._holidays:
            self._holidays[years] = thai_holidays(range(years[0], years[1] + 1))
        return self._holidays[years]

    # -- catch-up ------------------------------------------------------------------------------------------------

    def _catch_up(self, conn: psycopg.Connection) -> int:
        base = self._event_wm_us if self._event_wm_us != NO_TS else self._wall_us()
        horizon = base - self._catchup_us
        pairs: dict[tuple[int, int], int] = {}
        rules = self._active_rules()
        states = st.load_states(
            conn, *zip(*[(r.key, d) for r in rules for d in self._devices], strict=True)
        ) if rules and self._devices else {}  # fmt: skip
        for rule in rules:
            metric = self._metric_ids.get(rule.metric or "")
            for d, info in self._devices.items():
                if not rule.scope.matches(info):
                    continue
                frontier = SeriesState.from_json(states.get((rule.key, d), ({}, None))[0]).last_ts_us
                after = frontier if frontier != NO_TS else horizon
                metrics = [metric] if metric is not None else (
                    list(self._metric_ids.values()) if rule.kind == "offline" and d not in self._arrived else []
                )  # fmt: skip
                for m in metrics:
                    pairs[(d, m)] = min(pairs.get((d, m), after), after)
        found = st.newest_after(conn, [d for d, _ in pairs], [m for _, m in pairs], list(pairs.values()))
        wm = (
            self._wall_us() if self._clock == "wall" else max(self._event_wm_us, max((h for *_, h in found), default=0))
        )
        with self._lock:
            for d, m, lo, hi in found:
                self._pending[(d, m)].append(_Span(lo, hi, wm))
                self._index_pending[d] = max(self._index_pending.get(d, hi), hi)
                self._pending_seen[d] = max(self._pending_seen.get(d, hi), hi)
                # When this data arrived is unknown (before the restart): the device delivered up to its time.
                self._pending_arrived[d] = max(self._pending_arrived.get(d, hi), hi)
                self._arrival_wm_us = max(self._arrival_wm_us, hi)
                self._remember(d, _Span(lo, hi, wm))
                self._event_wm_us = max(self._event_wm_us, hi)
        return len(found)

    # -- evaluation ----------------------------------------------------------------------------------------------

    def _evaluate(self, conn: psycopg.Connection, work: _Work) -> None:
        self._refresh(conn, force=any(d not in self._devices for d, _ in work.spans))
        rules = self._active_rules()
        metric_jobs: list[tuple[AlertRule, int, int]] = []  # (rule, device, metric)
        index_jobs: list[tuple[AlertRule, int]] = []
        offline_jobs: list[tuple[AlertRule, int]] = []
        by_metric: dict[int, set[int]] = defaultdict(set)
        for d, metric in work.spans:
            by_metric[metric].add(d)
        for rule in rules:
            if rule.kind == "offline":
                offline_jobs += self._offline_candidates(rule, work)
            elif rule.index is not None:
                if self.index_source is None:
                    self._warn_once(f"index:{rule.key}", f"rule {rule.key} needs an index source for {rule.index}")
                    continue
                index_jobs += [(rule, d) for d in self._scope(rule) if self._index_due(rule, d, work)]
            else:
                m = self._metric_ids.get(rule.metric or "")
                if m is None:
                    self._warn_once(f"metric:{rule.key}", f"rule {rule.key}: no metric {rule.metric} in the catalogue")
                    continue
                touched = by_metric.get(m, set())
                metric_jobs += [(rule, d, m) for d in self._scope(rule) if d in touched]
        keys = [(r.key, d) for r, d, _ in metric_jobs] + [(r.key, d) for r, d in index_jobs + offline_jobs]
        work.states = st.load_states(conn, [k for k, _ in keys], [d for _, d in keys]) if keys else {}
        self._run_metric_jobs(conn, work, metric_jobs)
        for rule, d in index_jobs:
            self._run_index_job(conn, work, rule, d)
        for rule, d in offline_jobs:
            self._run_offline_job(conn, work, rule, d)
        self._write(conn, work)
        st.save_seen(conn, work.arrived)
        if work.event_wm_us != NO_TS:
            st.save_progress(conn, work.event_wm_us, work.behind)

    def _state(self, work: _Work, rule: AlertRule, d: int) -> tuple[SeriesState, int | None]:
        raw, alert_id = work.states.get((rule.key, d), ({}, None))
        return SeriesState.from_json(raw), alert_id

    def _run_metric_jobs(self, conn: psycopg.Connection, work: _Work, jobs: list[tuple[AlertRule, int, int]]) -> None:
        if not jobs:
            return
        # One window per series: from the earliest frontier (minus the longest averaging window) any rule needs.
        need: dict[tuple[int, int], tuple[int, int]] = {}
        for rule, d, m in jobs:
            after = self._frontier(work, rule, d, work.spans[(d, m)])
            window = int(rule.average.window_s * US_PER_S) if rule.average is not None else 0
            until = max(s.hi_us for s in work.spans[(d, m)])
            lo, hi = need.get((d, m), (after - window, until))
            need[(d, m)] = (min(lo, after - window), max(hi, until))
        keys = list(need)
        idx, ts, val = st.series_readings(
            conn, [d for d, _ in keys], [m for _, m in keys], [need[k][0] for k in keys], [need[k][1] for k in keys]
        )
        bounds = np.searchsorted(idx, np.arange(len(keys) + 1))
        where = {k: (int(bounds[i]), int(bounds[i + 1])) for i, k in enumerate(keys)}
        for rule, d, m in jobs:
            a, b = where[(d, m)]
            self._run_series(conn, work, rule, d, ts[a:b], val[a:b], work.spans[(d, m)])

    def _frontier(self, work: _Work, rule: AlertRule, d: int, spans: list[_Span]) -> int:
        state, _ = self._state(work, rule, d)
        if state.last_ts_us != NO_TS:
            work.behind += sum(1 for s in spans if s.lo_us <= state.last_ts_us)
            return state.last_ts_us
        return min(s.lo_us for s in spans) - 1

    def _run_series(
        self,
        conn: psycopg.Connection,
        work: _Work,
        rule: AlertRule,
        d: int,
        ts: np.ndarray,
        val: np.ndarray,
        spans: list[_Span],
    ) -> None:
        info = self._devices[d]
        state, alert_id = self._state(work, rule, d)
        frontier = state.last_ts_us if state.last_ts_us != NO_TS else min(s.lo_us for s in spans) - 1
        first = int(np.searchsorted(ts, frontier, side="right"))
        if first >= len(ts):
            return
        values, known = sample_values(rule, ts, val, first, cadence_us=info.cadence_us, state=state)
        samples = ts[first:]
        sched = self._schedule(rule, info, samples)
        new, out = evaluate(
            rule, state, samples, values, known, sched, self._sample_wm(samples, spans, work.default_wm_us),
            max_gap_us=default_max_gap_us(rule, info.cadence_us), late_after_us=self._late_after_us,
        )  # fmt: skip
        new = with_flat_carry(rule, new, val[first:], values)
        readings = (samples, val[first:]) if rule.kind in ("flatline", "out_of_range") else None
        self._commit_series(conn, work, rule, info, new, alert_id, out, readings)

    def _run_index_job(self, conn: psycopg.Connection, work: _Work, rule: AlertRule, d: int) -> None:
        assert self.index_source is not None and rule.index is not None
        with self._lock:
            history = list(self._history.get(d, ()))
        state, alert_id = self._state(work, rule, d)
        until = work.index_until[d]
        frontier = state.last_ts_us
        if frontier == NO_TS:  # a new series: from the first data this process saw, at most catch-up old
            first = min((s.lo_us for s in history), default=until)
            frontier = min(first - 1, until - self._catchup_us)
        ts, val = self.index_source.index_series(conn, rule.index, d, frontier, until)
        ts, val = np.asarray(ts, dtype=np.int64), np.asarray(val, dtype=np.float64)
        if not len(ts):
            return
        info = self._devices[d]
        new, out = evaluate(
            rule, state, ts, val, np.isfinite(val), self._schedule(rule, info, ts),
            self._sample_wm(ts, history, work.default_wm_us),
            max_gap_us=default_max_gap_us(rule, info.cadence_us), late_after_us=self._late_after_us,
        )  # fmt: skip
        self._commit_series(conn, work, rule, info, new, alert_id, out, None)

    def _offline_candidates(self, rule: AlertRule, work: _Work) -> list[tuple[AlertRule, int]]:
        """Devices whose offline state may change now: overdue ones (while the stream is live), and raised ones with
        new data. Offline runs on arrival: a device's clock is the watermark its newest data arrived under, so a
        device replaying buffered hours, or one whose clock is behind, is delivering and not offline. Devices
        never seen are not judged (nothing tells "not installed yet" from "offline")."""
        assert rule.after_cadences is not None
        out = []
        for d in self._scope(rule):
            last = max(self._arrived.get(d, int(NO_TS)), work.arrived.get(d, int(NO_TS)))
            if last == NO_TS:
                continue
            if (rule.key, d) in self._offline_raised:
                if d in work.arrived:  # data again: clears
                    out.append((rule, d))
            elif work.live and work.arrival_wm_us - last > rule.after_cadences * self._devices[d].cadence_us:
                out.append((rule, d))
        return out

    def _run_offline_job(self, conn: psycopg.Connection, work: _Work, rule: AlertRule, d: int) -> None:
        info = self._devices[d]
        state, alert_id = self._state(work, rule, d)
        last = max(self._arrived.get(d, int(NO_TS)), work.arrived.get(d, int(NO_TS)))
        if state.phase == "raised" and last <= state.seen_us:
            return  # still offline, already raised: nothing to write
        late_ref = self._wall_us() if self._clock == "wall" else work.event_wm_us
        new, out = evaluate_offline(
            rule, state, seen_us=last, cadence_us=info.cadence_us, watermark_us=work.arrival_wm_us,
            late_ref_us=late_ref, late_after_us=self._late_after_us, resumed_us=self._resumed(work, d),
        )  # fmt: skip
        if new != state:
            self._commit_series(conn, work, rule, info, new, alert_id, out, None)

    def _resumed(self, work: _Work, d: int) -> int | None:
        """When a device's data came back in this run: its first new reading if on time, else its arrival."""
        first = [
            s.lo_us if s.wm_us - s.hi_us <= self._late_after_us else s.wm_us
            for (dd, _), spans in work.spans.items() if dd == d for s in spans
        ]  # fmt: skip
        return min(first, default=None)

    def _schedule(self, rule: AlertRule, info: SeriesInfo, ts: np.ndarray) -> np.ndarray:
        if rule.schedule.when == "always" or not len(ts):
            return np.ones(len(ts), dtype=bool)
        if rule.schedule.when in ("sun_up", "sun_down") and (info.lat is None or info.lon is None):
            self._warn_once(f"sun:{rule.key}:{info.device}", f"rule {rule.key}: site {info.site} has no lat/lon")
            return np.zeros(len(ts), dtype=bool)
        days = self._holidays_for(int(ts[0]), int(ts[-1]))
        return schedule_mask(rule.schedule, ts, holidays=days, lat=info.lat, lon=info.lon)

    @staticmethod
    def _sample_wm(ts: np.ndarray, spans: list[_Span], default_us: int) -> np.ndarray:
        """The watermark each sample arrived under: that of the first span (by newest event time) reaching it."""
        ordered = sorted(spans, key=lambda s: s.hi_us)
        his = np.array([s.hi_us for s in ordered], dtype=np.int64)
        wms = np.array([s.wm_us for s in ordered] + [default_us], dtype=np.int64)
        return wms[np.searchsorted(his, ts, side="left")]

    # -- writing -------------------------------------------------------------------------------------------------

    def _commit_series(
        self,
        conn: psycopg.Connection,
        work: _Work,
        rule: AlertRule,
        info: SeriesInfo,
        state: SeriesState,
        alert_id: int | None,
        out: list[Transition],
        readings: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        shown = [(tr, *self._shown_value(rule, info, tr, readings)) for tr in out]
        work.decided.append(_Decided(rule, info, state, alert_id, shown))

    def _write(self, conn: psycopg.Connection, work: _Work) -> None:
        """Apply every transition of the run in event-time order (so the device that crossed first owns a shared
        dedup key, whatever the batches held), then store each series' state with the alert it owns."""
        order = sorted(
            ((tr.at_us, dec.rule.key, dec.info.device_pk, i, j) for i, dec in enumerate(work.decided)
             for j, (tr, _, _) in enumerate(dec.out)),
        )  # fmt: skip
        r = work.result
        for *_, i, j in order:
            dec = work.decided[i]
            tr, value, threshold = dec.out[j]
            dec.alert_id = self._apply(conn, dec.rule, dec.info, tr, dec.alert_id, value, threshold)
            r.transitions, r.raised, r.late = r.transitions + 1, r.raised + (tr.kind != "cleared"), r.late + tr.late
        r.series += len(work.decided)
        st.save_states(conn, [(d.rule.key, d.info.device_pk, d.state.to_json(), d.alert_id) for d in work.decided])

    def _shown_value(
        self, rule: AlertRule, info: SeriesInfo, tr: Transition, readings: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[float, float | None]:
        """What the alert shows: the reading itself for flatline / out of range (the machine saw a run length or a
        distance), the threshold in the signal's unit."""
        if rule.kind == "offline":
            assert rule.after_cadences is not None
            return tr.value, rule.after_cadences * info.cadence_us / US_PER_S
        raise_c, _ = rule.conditions()
        if readings is None:
            return tr.value, raise_c.value
        ts, val = readings
        reading = float(val[min(int(np.searchsorted(ts, tr.at_us)), len(val) - 1)])
        if rule.kind == "out_of_range":
            assert rule.range is not None
            return reading, rule.range[1] if reading > rule.range[1] else rule.range[0]
        return reading, raise_c.value

    def _apply(
        self,
        conn: psycopg.Connection,
        rule: AlertRule,
        info: SeriesInfo,
        tr: Transition,
        alert_id: int | None,
        value: float,
        threshold: float | None,
    ) -> int | None:
        d = info.device_pk
        if tr.kind == "cleared":
            if alert_id is not None:
                st.clear_alert(
                    conn, alert_id, tr.at_us, value, tr.reason, tr.peak, d, tr.late, page_late=self._notify_late
                )
            return alert_id
        if tr.kind == "reopened" and alert_id is not None and st.alert_state(conn, alert_id) == "cleared":
            dedup = rule.dedup(info)
            if st.active_alert(conn, rule.key, dedup) is None:
                st.reopen_alert(conn, alert_id, tr.at_us, value, d, tr.late)
                return alert_id
        dedup = rule.dedup(info)
        active = st.active_alert(conn, rule.key, dedup)
        if active is not None:  # another series with the same dedup key owns the alert
            st.add_event(conn, active, "duplicate", tr.at_us, value, d, late=tr.late)
            return None
        return st.insert_alert(
            conn,
            st.NewAlert(
                rule.key, dedup, d, rule.signal, rule.severity, tr.started_us, tr.at_us, value, threshold, tr.late
            ),
            page_late=self._notify_late,
        )
