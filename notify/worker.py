"""A thread that owns the dispatcher, so slow channels never stall the caller.

A channel may take many seconds (retries with backoff, a Retry-After of minutes); the stream loop that produces
alerts hands them over with ``submit`` and goes on. The worker dispatches in arrival order and calls ``run_due``
whenever held items have come due (checked at least every ``tick_s``). ``stop`` delivers what was submitted first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from lccm.notify.dispatch import Dispatcher
from lccm.notify.model import AlertMessage

log = logging.getLogger(__name__)

_STOP = object()


class DispatchWorker:
    def __init__(self, dispatcher: Dispatcher, tick_s: float = 30.0) -> None:
        self._dispatcher = dispatcher
        self._tick_s = tick_s
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="notify-dispatch", daemon=True)
        self.errors = 0  # dispatch/run_due calls that raised (each is logged with its traceback)
        self._quiet_until = 0.0  # after run_due raised, wait a tick before trying again (no busy loop)

    def start(self) -> None:
        self._thread.start()

    def submit(self, alert: AlertMessage) -> None:
        self._inbox.put(alert)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Finish what was submitted, then end the thread."""
        self._inbox.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("notify worker still busy after %.0f s; %d item(s) queued", timeout_s, self._inbox.qsize())

    def _run(self) -> None:
        while True:
            self._run_due_if_due()
            try:
                item = self._inbox.get(timeout=self._wait_s())
            except queue.Empty:
                continue
            if item is _STOP:
                self._run_due_if_due()
                return
            assert isinstance(item, AlertMessage)
            try:
                self._dispatcher.dispatch(item)
            except Exception:
                self.errors += 1
                log.exception("dispatching %s failed", item.message_id)

    def _wait_s(self) -> float:
        due = self._dispatcher.next_due()
        if due is None or time.monotonic() < self._quiet_until:
            return self._tick_s
        return min(self._tick_s, max(0.0, (due - self._dispatcher.now()).total_seconds()))

    def _run_due_if_due(self) -> None:
        due = self._dispatcher.next_due()
        if due is None or due > self._dispatcher.now() or time.monotonic() < self._quiet_until:
            return
        try:
            self._dispatcher.run_due()
        except Exception:
            self.errors += 1
            self._quiet_until = time.monotonic() + self._tick_s
            log.exception("sending held notifications failed")
