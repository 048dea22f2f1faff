"""The loop that turns inbound messages into committed batches, then acknowledges them.

Order of a flush, and why: decode (done as messages arrive) -> dedup against the batch and the recent window ->
write readings, dead letters and statuses in one transaction -> only then remember the keys and ack the messages.
A crash anywhere before the ack means the broker redelivers, and the database's key makes the replay a no-op, so
nothing is lost and nothing is stored twice.

The in-memory dedup drops only exact repeats: the same (device, metric, event time) *and* the same value, which is
what a QoS 1 redelivery or a device's resend is. A different value for a key already seen is a correction or a
conflict: it goes on to the database, which keeps the first value and records the second in ``reading_conflicts``
(store/writer.py; docs/contract.md#duplicates-and-corrections). The cache is bounded in bytes (stream/dedup.py, 32
bytes per reading, ``LCCM_DEDUP_CACHE_BYTES``); what it has forgotten the database's key catches.

Overlap (``in_flight`` >= 1, as ``lccm ingest`` runs it): ``flush`` hands the deduplicated batch to a second
worker, which runs :meth:`StreamLoop.write_step` (write, commit, ack, in hand-off order), and the stream thread goes
on decoding the next batch while the database stores this one; at most ``in_flight`` batches wait or are being
written, so a slow database stops the stream thread at the hand-off and then backpressure does the rest. The keys of
a batch handed off are remembered at once, so the next batch is deduplicated against it before it commits: the
writer writes it before any later batch (retrying it until it commits), and the later batch's acks come after its
commit, so an exact repeat dropped in memory is stored by the time its message is acked. ``in_flight=0`` writes in
``flush`` itself (one thread: tests, tools).

Backpressure: the inbox is bounded in bytes of queued payloads (stream/inbox.py, ``LCCM_INBOX_BYTES``): when it is
full the MQTT network thread waits before it reads more, and the broker keeps the rest (we ack only after commit,
and MQTT's receive maximum bounds what it pushes unacknowledged). If the database is down a flush raises and keeps
its batch; the worker running ``step`` (lccm/workers.py, stage ``stream``) retries it with backoff, and the unacked
messages stay with the broker.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from lccm.store.writer import ReadingColumns, WriteResult
from lccm.stream.batch import BatchBuilder, Clock, FlushPolicy
from lccm.stream.dedup import Keys, RecentReadings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    payload: bytes
    received_at_us: int
    token: Hashable  # handed back to the source's ack function once the message is committed
    retained: bool = False  # the broker delivered it as a retained message (at subscription), not as it was sent


class MessageQueue(Protocol):
    """What the stream loop takes messages from and the MQTT source puts them in: ``queue.SimpleQueue``, or the
    byte-bounded inbox of production (stream/inbox.py)."""

    def put(self, item: RawMessage) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> RawMessage: ...

    def get_nowait(self) -> RawMessage: ...


Decoder = Callable[[BatchBuilder, RawMessage], None]
Sink = Callable[[BatchBuilder, ReadingColumns], WriteResult]
Acker = Callable[[Sequence[Hashable]], None]
CommitHook = Callable[[ReadingColumns], None]


@dataclass(frozen=True, slots=True)
class BatchCommitted:
    """What one committed batch measured, for the metrics (an observer sees it after the ack)."""

    messages: int
    readings: int  # offered to the database after in-memory dedup
    stored: int
    write_s: float  # the successful write's duration, transaction and commit included (no retries, no backoff)
    received_at_us: np.ndarray  # per message: when the ingest received it from the broker (wall clock)
    committed_at_us: int  # wall clock just after the commit


BatchObserver = Callable[[BatchCommitted], None]


def _wall_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class _Ready:
    """A batch handed to the writer: decoded, deduplicated, its keys already remembered."""

    batch: BatchBuilder
    cols: ReadingColumns


HANDOFF_WAIT_S = 0.05  # how long a hand-off or the writer waits for the other side before its step returns


class DeviceSet:
    """The devices seen, one byte per device id (a numpy mask grown as ids come): a set of Python
    ints took about 70 bytes a device, 7 MB at 100,000 devices."""

    def __init__(self) -> None:
        self._seen = np.zeros(0, dtype=bool)
        self._count = 0

    def update(self, device_ids: Iterable[int] | np.ndarray) -> None:
        ids = np.unique(np.asarray(list(device_ids) if not isinstance(device_ids, np.ndarray) else device_ids))
        if not len(ids):
            return
        if int(ids[-1]) >= len(self._seen):
            grown = np.zeros(max(int(ids[-1]) + 1, 2 * len(self._seen)), dtype=bool)
            grown[: len(self._seen)] = self._seen
            self._seen = grown
        ids = ids.astype(np.int64)
        self._count += int(np.count_nonzero(~self._seen[ids]))
        self._seen[ids] = True

    def __len__(self) -> int:
        return self._count

    def __contains__(self, device_id: object) -> bool:
        return isinstance(device_id, int) and 0 <= device_id < len(self._seen) and bool(self._seen[device_id])


@dataclass
class StreamStats:
    messages: int = 0
    readings_in: int = 0  # decoded from messages, before dedup
    readings_stored: int = 0
    duplicates_dropped: int = 0  # in memory, before the database
    duplicates_in_db: int = 0  # found by the database key (redelivery after a restart)
    conflicts: int = 0  # a second, different value for a stored reading: recorded in reading_conflicts
    outbound: int = 0  # the product's own outbound messages under the topic root (alerts, commands): acked only
    batches: int = 0
    write_retries: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    statuses: int = 0
    devices_seen: DeviceSet = field(default_factory=DeviceSet)
    first_commit_at: float | None = None
    last_commit_at: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "readings_stored": self.readings_stored,
            "duplicates_dropped": self.duplicates_dropped + self.duplicates_in_db,
            "conflicts": self.conflicts,
            "batches": self.batches,
            "write_retries": self.write_retries,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "devices_seen": len(self.devices_seen),
        }


class StreamLoop:
    def __init__(
        self,
        *,
        inbox: MessageQueue,
        decode: Decoder,
        sink: Sink,
        ack: Acker,
        policy: FlushPolicy,
        dedup_cache_bytes: int,  # Settings.dedup_cache_bytes: the one default lives there
        clock: Clock = time.monotonic,
        on_commit: Sequence[CommitHook] = (),
        observe: BatchObserver | None = None,
        wall_us: Callable[[], int] = _wall_us,
        in_flight: int = 0,
    ) -> None:
        self._inbox = inbox
        self._decode = decode
        self._sink = self._timed(sink)
        self._last_write_s = 0.0
        self._observe = observe
        self._wall_us = wall_us
        self._ack = ack
        self._policy = policy
        self._clock = clock
        self._recent = RecentReadings(dedup_cache_bytes)
        self._on_commit = tuple(on_commit)
        self._batch = BatchBuilder()
        self.stats = StreamStats()
        if in_flight < 0:
            raise ValueError("in_flight must be 0 (write in flush) or more")
        self._in_flight = in_flight
        self._ready: deque[_Ready] = deque()
        self._handoff = threading.Condition()

    # -- driving -------------------------------------------------------------------------------------------

    def step(self, *_: object) -> None:
        """Wait for at most the time left before the current batch is due, take what arrived, flush if due."""
        timeout = self._policy.wait_s(self._batch, self._clock())
        with contextlib.suppress(queue.Empty):
            self.accept(self._inbox.get(timeout=timeout))
        self.pump()
        self.flush_if_due()

    def finish(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """At stop: take what has arrived and flush it (once; if that fails the broker redelivers it). With a
        writer, hand it over (waiting for room until ``stopping()``): the writer's drain writes it."""
        self.pump()
        while self.flush() is None and self._in_flight and self._batch.messages and not stopping():
            pass

    def pump(self, limit: int = 100_000) -> int:
        """Take every message already waiting (never blocks)."""
        taken = 0
        while taken < limit and len(self._batch) < self._policy.max_readings:
            try:
                self.accept(self._inbox.get_nowait())
            except queue.Empty:
                break
            taken += 1
        return taken

    def accept(self, msg: RawMessage) -> None:
        if self._batch.messages == 0:
            self._batch.opened_at = self._clock()
        self._decode(self._batch, msg)
        self._batch.messages += 1
        self._batch.ack_tokens.append(msg.token)
        self._batch.message_received_us.append(msg.received_at_us)

    def flush_if_due(self) -> WriteResult | None:
        if self._policy.due(self._batch, self._clock()):
            return self.flush()
        return None

    # -- flushing -------------------------------------------------------------------------------------------

    def flush(self) -> WriteResult | None:
        """Write the batch (``in_flight=0``: returns what was written), or hand it to the writer (returns None; the
        batch stays if the writer has no room within HANDOFF_WAIT_S)."""
        batch = self._batch
        if batch.messages == 0:
            return None
        if self._in_flight:
            self._hand_off(batch)
            return None
        all_cols = batch.columns()
        keep, keys = self._dedup(all_cols)
        cols = all_cols if keep is None else all_cols.take(keep)
        try:
            result = self._sink(batch, cols)
        except Exception:
            self.stats.write_retries += 1  # the batch stays; the next flush (the worker's retry) writes it
            raise
        committed_at_us = self._wall_us()
        self._recent.remember(keys)
        self._ack(batch.ack_tokens)
        self._batch = BatchBuilder()
        self._committed(batch, cols, result, committed_at_us)
        return result

    def _hand_off(self, batch: BatchBuilder) -> None:
        with self._handoff:
            if len(self._ready) >= self._in_flight and not self._handoff.wait_for(
                lambda: len(self._ready) < self._in_flight, HANDOFF_WAIT_S
            ):
                return
        # Only this thread adds to the hand-off: the room found stays.
        all_cols = batch.columns()
        keep, keys = self._dedup(all_cols)
        self._recent.remember(keys)
        ready = _Ready(batch, all_cols if keep is None else all_cols.take(keep))
        self._batch = BatchBuilder()
        with self._handoff:
            self._ready.append(ready)
            self._handoff.notify_all()

    def write_step(self, *_: object) -> float | None:
        """The writer's step (``in_flight`` >= 1): write the oldest batch handed over, commit, then ack it. If the
        write fails the batch stays first, and the worker's retry writes it again."""
        with self._handoff:
            if not self._ready and not self._handoff.wait_for(lambda: bool(self._ready), HANDOFF_WAIT_S):
                return 0.0
            ready = self._ready[0]
        try:
            result = self._sink(ready.batch, ready.cols)
        except Exception:
            self.stats.write_retries += 1
            raise
        committed_at_us = self._wall_us()
        self._ack(ready.batch.ack_tokens)
        with self._handoff:  # committed and acked: whatever follows, never written again
            self._ready.popleft()
            self._handoff.notify_all()
        self._committed(ready.batch, ready.cols, result, committed_at_us)
        return 0.0

    def write_pending(self, stopping: Callable[[], bool] = lambda: False) -> None:
        """The writer's drain at stop: every batch handed over, in order (what is left is redelivered)."""
        while self._ready and not stopping():
            self.write_step()

    def _committed(self, batch: BatchBuilder, cols: ReadingColumns, result: WriteResult, committed_at_us: int) -> None:
        """After the commit and the ack: count, then tell the hooks and the observer."""
        self._account(batch, cols, result, dropped=len(batch) - len(cols))
        for hook in self._on_commit:
            hook(cols)
        self._report(batch, cols, result, committed_at_us)

    def _timed(self, sink: Sink) -> Sink:
        """The sink, remembering how long its last successful call took (the commit latency of the metrics)."""

        def write(batch: BatchBuilder, cols: ReadingColumns) -> WriteResult:
            start = self._clock()
            result = sink(batch, cols)
            self._last_write_s = self._clock() - start
            return result

        return write

    def _report(self, batch: BatchBuilder, cols: ReadingColumns, result: WriteResult, committed_at_us: int) -> None:
        if self._observe is None:
            return
        seen = BatchCommitted(
            messages=batch.messages,
            readings=len(cols),
            stored=result.inserted,
            write_s=self._last_write_s,
            received_at_us=np.asarray(batch.message_received_us, dtype=np.int64),
            committed_at_us=committed_at_us,
        )
        try:
            self._observe(seen)
        except Exception:  # a metrics bug must never stop ingest; the batch is committed and acked already
            log.exception("batch observer failed")

    def _dedup(self, all_cols: ReadingColumns) -> tuple[np.ndarray | None, Keys]:
        """Drop the exact repeats (same reading, same value) within the batch and of recent batches."""
        keys = Keys.of(all_cols)
        fresh = keys.first_occurrences() & ~self._recent.contains(keys)
        if fresh.all():
            return None, keys
        keep = np.flatnonzero(fresh)
        return keep, keys.take(keep)

    @property
    def dedup_cache(self) -> RecentReadings:
        return self._recent

    def _account(self, batch: BatchBuilder, cols: ReadingColumns, result: WriteResult, dropped: int) -> None:
        s = self.stats
        s.messages += batch.messages
        s.readings_in += len(batch)
        s.readings_stored += result.inserted
        s.duplicates_dropped += dropped
        s.duplicates_in_db += result.duplicates
        s.conflicts += result.conflicts
        s.outbound += batch.outbound
        s.batches += 1
        s.statuses += len(batch.statuses)
        s.dead_letters.update(d.reason for d in batch.dead_letters)
        s.devices_seen.update(cols.device_id)
        now = self._clock()
        if s.first_commit_at is None:
            s.first_commit_at = now
        s.last_commit_at = now
