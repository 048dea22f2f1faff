"""The day counter: drains ``day_queue`` (written by the batch writer with the readings) and brings each device's
``reading_days`` row up to date (store/reading_days.py), off the stream's write path. It runs with the other
derived-data updaters (stream/updaters.py), claims only devices of its process's partitions, and claims and counts
in one transaction: if anything fails, the queue rows come back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lccm.store import reading_days
from lccm.store.connect import Connect
from lccm.stream.energy import UpdateResult, drain
from lccm.stream.partitions import Leases, held_partitions


@dataclass(frozen=True, slots=True)
class DayUpdater:
    connect: Connect
    claim_limit: int = 20_000
    leases: Leases | None = None  # None: every partition (one process, `lccm recompute`, tests)

    def run_once(self) -> UpdateResult:
        """One claim: the (device, day) pairs taken, and as many reading_days rows written."""
        with self.connect() as conn, conn.transaction():
            held = held_partitions(conn, self.leases)
            if held is not None and not held.partitions:
                return UpdateResult(0, 0)
            days = reading_days.claim(conn, self.claim_limit, held)
            reading_days.count_claimed(conn, *days)
        return UpdateResult(len(days[0]), len(days[0]))

    def drain(self, stop: Callable[[], bool] = lambda: False) -> UpdateResult:
        return drain(self.run_once, stop)
