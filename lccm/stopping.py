"""Ctrl-C for a process that owns servers: the first SIGINT (or SIGTERM) asks for an orderly stop, a second one
forces it, and so does an orderly stop that outlasts its grace.

The embedded servers run in sessions of their own (lccm/services.py), so a terminal's Ctrl-C, which goes to the
whole foreground process group, reaches only lccm; lccm stops them itself, in order. The forced stop must work
whatever the main thread is doing, so it runs in the signal handler (or the watchdog timer) and does only what is
safe there: signal the servers through their pid files, write one line with os.write, and leave with os._exit.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

FORCED_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C


class StopSignals:
    """`event` is set by the first SIGINT/SIGTERM; the second, or `grace_s` after the first, calls `force` (which
    kills the servers) and ends the process with exit code 130."""

    def __init__(self, grace_s: float, force: Callable[[], None], what: str = "") -> None:
        self.event = threading.Event()
        self._grace_s = grace_s
        self._force, self._what = force, what
        self._watchdog: threading.Timer | None = None
        self._armed = True

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)
        return self

    def disarm(self) -> None:
        """The servers are down: nothing left to force (the summary may take its time to print)."""
        self._armed = False
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            self.force(f"second {name}")
            return
        self.event.set()
        if self._armed:
            why = f"still stopping {self._grace_s:.0f} s after {name}"
            self._watchdog = threading.Timer(self._grace_s, self.force, (why,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def force(self, why: str) -> None:
        try:
            if self._armed:
                self._force()
        finally:
            restore_cursor = "\x1b[?25h" if os.isatty(2) else ""  # a live display hides it
            what = f": {self._what}" if self._armed and self._what else ""
            os.write(2, f"{restore_cursor}\nlccm: forced stop ({why}){what}\n".encode())
            os._exit(FORCED_EXIT_CODE)
