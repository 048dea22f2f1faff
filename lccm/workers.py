"""Supervised workers: every background thread of a process is a :class:`Worker` held by a :class:`Supervisor`.

The composition root owns the threads. A stage exposes a step function (``step(stopping) -> seconds | None``: do
the work that is there, return how long it may wait before the next step) and, where it has one, a drain (the
work left at stop); it never starts a thread of its own.

A worker runs its step in a loop under a stable stage name: the thread's name, ``record.stage`` on every log
record emitted while it runs (:data:`STAGE` and :class:`StageFilter`), and the name in metrics and the heartbeat.
Every exception a step raises is caught, logged with the stage and counted; the step is then retried with
exponential backoff and equal jitter (tenacity, the project's one retry policy) until it succeeds or the worker is
stopped. A thread never dies silently: an error class the worker was told is fatal, or anything that escapes the
loop, puts it in state ``failed`` (unhealthy, logged, not retried).

Health rule: a worker is healthy while it is running, or backing off for less than ``unhealthy_after_s`` since the
first failure of the current run of failures; failed, stopped and never-started workers are not healthy. One
successful step makes a recovered worker healthy again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_when_event_set
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

log = logging.getLogger(__name__)

STAGE: ContextVar[str] = ContextVar("lccm_stage", default="")

Step = Callable[[Callable[[], bool]], float | None]
Drain = Callable[[Callable[[], bool]], object]


class StageFilter(logging.Filter):
    """Puts the stage of the worker emitting a record on it as ``record.stage`` (empty outside every worker: the log
    set-up then names the process's command, lccm/logs.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = STAGE.get()
        return True


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    name: str
    state: str  # new | running | backing-off | failed | stopped
    healthy: bool
    restarts: int  # steps retried after a failure and a backoff
    last_error: str | None
    last_ok_age_s: float | None  # since the last successful step


@dataclass(frozen=True, slots=True)
class Backoff:
    """The one retry policy's timing: the wait after failure n (1-based) is ``d/2 + uniform(0, d/2)`` with
    ``d = min(cap, base * 2**(n-1))``. Half is fixed, so retries never bunch at zero; the random half spreads the
    workers (and the processes) that all failed at once when the database went away."""

    base_s: float = 0.5
    cap_s: float = 15.0

    def wait(self) -> wait_base:
        half, cap = self.base_s / 2, self.cap_s / 2
        return wait_exponential(multiplier=half, max=cap) + wait_random_exponential(multiplier=half, max=cap)


class Worker:
    """One supervised background thread running ``step`` until stopped (see the module's docstring)."""

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        idle_s: float = 1.0,
        drain: Drain | None = None,
        drain_s: float = 10.0,
        backoff: Backoff = Backoff(),
        unhealthy_after_s: float = 60.0,
        fatal: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._step = step
        self._idle_s = idle_s
        self._drain = drain
        self._drain_s = drain_s
        self._backoff = backoff
        self._unhealthy_after_s = unhealthy_after_s
        self._fatal = fatal
        self._clock = clock
        self._stop = threading.Event()
        self._skip_drain = False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = "new"
        self._restarts = 0
        self._errors = 0
        self._last_error: str | None = None
        self._last_ok: float | None = None
        self._failing_since: float | None = None

    # -- control -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"worker {self.name} was started before")
        self._stop.clear()
        self._set(state="running")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def poke(self, *_: object) -> None:
        """Wake the worker now (its step has work); usable as a stream commit hook."""
        self._wake.set()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout_s: float = 60.0, *, drain: bool = True) -> bool:
        """Stop after the current step, then drain (for at most ``drain_s``; not at all without ``drain``: what is
        queued stays in the database for the next run); True if the thread ended in time."""
        self.request_stop(drain=drain)
        return self.join(timeout_s)

    def request_stop(self, *, drain: bool = True) -> None:
        """Ask the thread to stop after its current step (and its drain, unless ``drain`` is false); don't wait."""
        self._skip_drain = not drain
        self._stop.set()
        self._wake.set()

    def join(self, timeout_s: float) -> bool:
        """Wait for the thread to end; True if it did within timeout_s."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("worker %s did not stop within %.0f s", self.name, timeout_s)
            return False
        return True

    # -- state ---------------------------------------------------------------------------------------------------

    @property
    def native_id(self) -> int | None:
        """The OS thread id (per-thread CPU accounting in benchmarks)."""
        return None if self._thread is None else self._thread.native_id

    @property
    def errors(self) -> int:
        """Every exception caught, whatever became of it."""
        return self._errors

    def status(self) -> WorkerStatus:
        now = self._clock()
        with self._lock:
            state, since = self._state, self._failing_since
            healthy = state == "running" or (
                state == "backing-off" and since is not None and now - since <= self._unhealthy_after_s
            )
            if self._thread is not None and not self._thread.is_alive() and state not in ("failed", "stopped"):
                healthy = False  # cannot happen (the loop catches everything); never report a dead thread healthy
            age = None if self._last_ok is None else round(now - self._last_ok, 3)
            return WorkerStatus(self.name, state, healthy, self._restarts, self._last_error, age)

    def _set(self, **fields: Any) -> None:
        with self._lock:
            for k, v in fields.items():
                setattr(self, f"_{k}", v)

    # -- the thread ----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        STAGE.set(self.name)
        try:
            while not self._stop.is_set():
                wait = self._attempt()
                if self._stop.is_set():
                    break
                self._wake.wait(self._idle_s if wait is None else max(0.0, min(wait, self._idle_s)))
                self._wake.clear()
            self._run_drain()
            self._set(state="stopped")
        except BaseException as e:  # a fatal error class, or a bug in this loop: never die silently
            self._errors += 1
            log.critical("worker %s failed and will not be retried: %s", self.name, _describe(e), exc_info=True)
            self._set(state="failed", last_error=_describe(e))

    def _attempt(self) -> float | None:
        """One step, retried with backoff until it succeeds or the worker is stopped."""
        retrying = Retrying(
            retry=retry_if_exception(lambda e: not isinstance(e, self._fatal)),
            wait=self._backoff.wait(),
            stop=stop_when_event_set(self._stop),
            sleep=self._sleep,
            after=self._failed,
            before_sleep=self._backing_off,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    result = self._step(self._stop.is_set)
                outcome = attempt.retry_state.outcome
                if outcome is not None and not outcome.failed:
                    self._set(state="running", last_ok=self._clock(), failing_since=None)
                    return result
        except Exception as e:
            if not self._stop.is_set() or isinstance(e, self._fatal):
                raise
        return None  # stopped while failing: the drain gets its chance

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a stop cuts the backoff short

    def _failed(self, rs: RetryCallState) -> None:
        e = rs.outcome.exception() if rs.outcome is not None else None
        self._errors += 1
        with self._lock:
            self._last_error = _describe(e)
            first = self._failing_since is None
            if first:
                self._failing_since = self._clock()
        if self._stop.is_set():  # the process is shutting down (servers may go first): expected, not a fault
            log.info("worker %s: step ended by the stop (%s)", self.name, _describe(e))
            return
        # The traceback once per run of failures (a bug shows where it is), then one line per failure.
        log.warning("worker %s: step failed (%s)", self.name, _describe(e), exc_info=e if first else None)

    def _backing_off(self, rs: RetryCallState) -> None:
        wait = rs.next_action.sleep if rs.next_action is not None else 0.0
        with self._lock:
            self._state = "backing-off"
            self._restarts += 1
        log.info("worker %s: retrying in %.1f s (failure %d in a row)", self.name, wait, rs.attempt_number)

    def _run_drain(self) -> None:
        if self._drain is None or self._skip_drain:
            return
        deadline = self._clock() + self._drain_s
        try:
            self._drain(lambda: self._clock() > deadline)
        except Exception as e:  # bounded: what is left stays where it is (the database, the broker) for next time
            self._errors += 1
            self._set(last_error=_describe(e))
            log.warning("worker %s: drain at stop failed (%s); the work left waits for the next start", self.name,
                        _describe(e))  # fmt: skip


def _describe(e: BaseException | None) -> str:
    if e is None:
        return "unknown error"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class Supervisor:
    """A process's workers, in pipeline order (upstream first). ``start`` starts them downstream first, so no worker
    pokes one that is not running yet; ``stop`` stops them upstream first, so each drains what the one before it
    handed on."""

    def __init__(self, workers: Iterable[Worker] = ()) -> None:
        self._workers: list[Worker] = []
        for w in workers:
            self.add(w)

    def add(self, worker: Worker) -> Worker:
        if any(w.name == worker.name for w in self._workers):
            raise ValueError(f"a worker named {worker.name!r} is already supervised")
        self._workers.append(worker)
        return worker

    def __getitem__(self, name: str) -> Worker:
        for w in self._workers:
            if w.name == name:
                return w
        raise KeyError(name)

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._workers)

    def start(self) -> None:
        for w in reversed(self._workers):
            w.start()

    def stop(self, timeout_s: float = 60.0, *, drain: bool = True) -> bool:
        """With ``drain``, one worker after the other (each drains what the one before handed on, within timeout_s
        each). Without (a Ctrl-C), every worker is told at once and all of them get timeout_s together."""
        if drain:
            return all([w.stop(timeout_s, drain=True) for w in self._workers])
        for w in self._workers:
            w.request_stop(drain=False)
        deadline = time.monotonic() + timeout_s
        return all([w.join(max(0.0, deadline - time.monotonic())) for w in self._workers])

    def statuses(self) -> list[WorkerStatus]:
        return [w.status() for w in self._workers]

    def healthy(self) -> bool:
        return all(s.healthy for s in self.statuses())


# -- the heartbeat file (lccm ingest writes it, lccm healthcheck --ingest reads it) ---------------------------------


def write_heartbeat(path: Path, supervisor: Supervisor, **extra: Any) -> dict[str, Any]:
    """The supervisor's statuses as JSON, replaced atomically (a reader never sees half a file)."""
    statuses = supervisor.statuses()
    doc = {
        "at": datetime.now(UTC).isoformat(),
        "pid": os.getpid(),
        "healthy": all(s.healthy for s in statuses),
        "workers": [asdict(s) for s in statuses],
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)
    return doc


def heartbeat_problems(path: Path, max_age_s: float, now: float | None = None) -> list[str]:
    """What is wrong with an ingest process by its heartbeat: missing, stale, unreadable, or a worker unhealthy
    (each named with its state and last error). Empty when all is well."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return [f"ingest: no heartbeat at {path}"]
    if age > max_age_s:
        return [f"ingest: no heartbeat in {path} for {age:.0f} s"]
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(path.read_text(encoding="utf-8") or "{}")
        if not isinstance(doc, dict):
            return [f"ingest: heartbeat {path} is not a JSON object"]
        return [
            f"ingest: worker {w.get('name')} is unhealthy ({w.get('state')}, {w.get('restarts')} restart(s);"
            f" last error: {w.get('last_error')})"
            for w in doc.get("workers", [])
            if isinstance(w, dict) and not w.get("healthy", False)
        ]
    return [f"ingest: heartbeat {path} is not readable JSON"]
