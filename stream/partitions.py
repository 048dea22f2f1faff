"""Device partitions shared by the ingest processes through leases in PostgreSQL (docs/partitions.md).

Every ingest process runs one :class:`Leases` (stage ``leases``, a supervised worker): at each step it records its
heartbeat, renews its leases and moves towards its fair share, ``ceil(partitions / workers alive)``: it gives up
its highest partitions above the share (so a worker that joins finds them free) and takes free or expired ones
below it. A worker that dies stops renewing: its partitions are free once its leases expire (``lease_s``, on
PostgreSQL's clock) and the others take them over.

The updaters and the alert evaluator ask :meth:`Leases.hold` at the start of each claim transaction: it locks the
partitions this process still holds (``FOR KEY SHARE``), and the claim takes only queue rows of devices in them. A
lease cannot be taken over while such a transaction is open, and a worker whose lease has expired claims nothing
for that partition, so no two processes ever derive one device's state at the same time, and a worker that lost a
lease cannot commit stale derived state for it.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

import psycopg

from lccm.store import leases as st
from lccm.store.connect import Connect
from lccm.store.leases import Held

log = logging.getLogger(__name__)

# How often the leases worker looks, between its steps, whether the fair shares may have changed (a worker joined or
# left, or partitions it may take came free): one small query. With only the steps (every third of the lease, 3.3 s
# by default) a joining process waited up to two of them for its share, one for the holder to give it up and one to
# take it, and the partitions given up were derived by nobody in between: 4.4 s of a 12 s benchmark run once.
CHECK_S = 0.5


def new_owner() -> str:
    """A name no other worker has, now or after a restart: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leases:
    """One process's leases on the device partitions (see the module's docstring)."""

    def __init__(
        self,
        connect: Connect,
        partitions: int,
        lease_s: float,
        *,
        owner: str | None = None,
        on_gained: Callable[[], None] | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._connect = connect
        self.count = partitions
        self.lease_s = lease_s
        self.owner = owner or new_owner()
        self.on_gained = on_gained  # new partitions: their queued work waits for the updaters (a poke)
        self._lock = threading.Lock()
        self._held: list[int] = []
        self.gains = 0  # steps that took partitions: their devices' cached state may have moved meanwhile
        self._alive = 0  # workers alive at the last step
        self._short = False  # the last step ended below the fair share
        self._due = 0.0  # time.monotonic() of the next step (tick)

    @property
    def held(self) -> list[int]:
        """The partitions this process held at its last step."""
        with self._lock:
            return list(self._held)

    @property
    def every_s(self) -> float:
        """How often the worker steps: three renewals per lease time, so one late step loses nothing."""
        return self.lease_s / 3

    def step(self, stopping: Callable[[], bool] = lambda: False) -> float:
        """Heartbeat, renew, then give up the surplus above the fair share or take free partitions up to it."""
        with self._connect() as conn:
            with conn.transaction():
                alive = st.beat(conn, self.owner, self.lease_s)
            with conn.transaction():
                held = st.renew(conn, self.owner, self.lease_s)
            share = math.ceil(self.count / alive)
            gained: list[int] = []
            if len(held) > share:
                with self._lock:  # new claims lock only what is kept: the release waits for the claims in flight
                    self._held = held[:share]
                with conn.transaction():
                    gone = st.release(conn, self.owner, held[share:])
                held = [p for p in held if p not in set(gone)]
                log.info("leases: gave up %d partition(s) (%d worker(s) alive, share %d)", len(gone), alive, share)
            elif len(held) < share and not stopping():
                with conn.transaction():
                    gained = st.take(conn, self.owner, self.lease_s, share - len(held))
                held = sorted(held + gained)
                if gained:
                    self.gains += 1
                    log.info("leases: took %d partition(s), now %d (%d worker(s) alive)", len(gained), len(held), alive)
        with self._lock:
            self._held = held
            self._alive, self._short = alive, len(held) < share
        if gained and self.on_gained is not None:
            self.on_gained()
        return self.every_s

    def tick(self, stopping: Callable[[], bool] = lambda: False) -> float:
        """The leases worker's step: :meth:`step` every :attr:`every_s`, and at once when a look at the workers
        alive and the free partitions (every :data:`CHECK_S`) says the shares may have changed: another worker
        counts now (a joiner's surplus to give up) or no longer does, or this one is below its share and
        partitions are free (given up for it, or expired). Returns the seconds until the next tick."""
        if time.monotonic() >= self._due or self._unsettled():
            self.step(stopping)
            self._due = time.monotonic() + self.every_s
        return max(0.0, min(CHECK_S, self._due - time.monotonic()))

    def _unsettled(self) -> bool:
        with self._connect() as conn:
            alive, free = st.standing(conn, self.lease_s)
        with self._lock:
            return alive != self._alive or (self._short and free > 0)

    def release_all(self, _stopping: Callable[[], bool] = lambda: False) -> None:
        """At stop: the leases go back at once (another worker takes them without waiting for them to expire)."""
        with self._lock:
            self._held = []
        with self._connect() as conn, conn.transaction():
            st.forget(conn, self.owner)

    def hold(self, conn: psycopg.Connection) -> Held:
        """In the caller's transaction: the partitions this process still holds, locked until it ends."""
        return Held(self.count, st.hold(conn, self.owner, self.held))


def held_partitions(conn: psycopg.Connection, leases: Leases | None) -> Held | None:
    """The partitions an updater's or the evaluator's transaction may claim in (locked until it ends), or None for
    all of them (no leases: one process, ``lccm recompute``, tests). The first statement of every claim transaction:
    it also switches PostgreSQL's JIT off for the transaction."""
    # The claims' statements are many small index probes per queued series, planned from unnest() arrays of unknown
    # length: their cost estimates pass jit_above_cost, and compiling them took longer than running them (bucket
    # ranges: 0.5-0.7 of 0.6-1.2 s per claim of 200 meters, benchmarks/README.md#the-derived-works-cpu-per-reading).
    conn.execute("SET LOCAL jit = off")
    return None if leases is None else leases.hold(conn)
