"""The loop that turns inbound messages into committed batches, then acknowledges them.

Order of a flush, and why: decode (done as messages arrive) -> dedup against the batch and the recent window ->
write readings, dead letters and statuses in one transaction -> only then remember the keys and ack the messages.
A crash anywhere before the ack means the broker redelivers, and the database's key makes the replay a no-op, so
nothing is lost and nothing is stored twice.

Backpressure: the inbox is unbounded in code but bounded in practice by MQTT's receive maximum (the broker sends at
most that many unacknowledged messages, and we ack only after commit). If the database is down a flush raises and
keeps its batch; the worker running ``step`` (lccm/workers.py, stage ``stream``) retries it with backoff, and the
unacked messages stay with the broker.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lccm.store.writer import ReadingColumns, WriteResult
from lccm.stream.batch import BatchBuilder, Clock, FlushPolicy

log = logging.getLogger(__name__)

Key = tuple[int, int, int]  # (device, metric, event time in microseconds)


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    payload: bytes
    received_at_us: int
    token: Hashable  # handed back to the source's ack function once the message is committed


Decoder = Callable[[BatchBuilder, RawMessage], None]
Sink = Callable[[BatchBuilder, ReadingColumns], WriteResult]
Acker = Callable[[Sequence[Hashable]], None]
CommitHook = Callable[[ReadingColumns], None]


class RecentKeys:
    """Keys committed in the last few batches, to drop redelivered readings before they reach the database."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._keys: set[Key] = set()
        self._generations: deque[list[Key]] = deque()

    def __contains__(self, key: Key) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def remember(self, keys: list[Key]) -> None:
        self._keys.update(keys)
        self._generations.append(keys)
        while len(self._keys) > self._capacity and len(self._generations) > 1:
            for key in self._generations.popleft():
                self._keys.discard(key)


@dataclass
class StreamStats:
    messages: int = 0
    readings_stored: int = 0
    duplicates_dropped: int = 0  # in memory, before the database
    duplicates_in_db: int = 0  # found by the database key (redelivery after a restart)
    batches: int = 0
    write_retries: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    statuses: int = 0
    devices_seen: set[int] = field(default_factory=set)
    first_commit_at: float | None = None
    last_commit_at: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "readings_stored": self.readings_stored,
            "duplicates_dropped": self.duplicates_dropped + self.duplicates_in_db,
            "batches": self.batches,
            "write_retries": self.write_retries,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "devices_seen": len(self.devices_seen),
        }


class StreamLoop:
    def __init__(
        self,
        *,
        inbox: queue.SimpleQueue[RawMessage],
        decode: Decoder,
        sink: Sink,
        ack: Acker,
        policy: FlushPolicy,
        clock: Clock = time.monotonic,
        dedup_window_keys: int = 2_000_000,
        on_commit: Sequence[CommitHook] = (),
    ) -> None:
        self._inbox = inbox
        self._decode = decode
        self._sink = sink
        self._ack = ack
        self._policy = policy
        self._clock = clock
        self._recent = RecentKeys(dedup_window_keys)
        self._on_commit = tuple(on_commit)
        self._batch = BatchBuilder()
        self.stats = StreamStats()

    # -- driving -------------------------------------------------------------------------------------------

    def step(self, *_: object) -> None:
        """Wait for at most the time left before the current batch is due, take what arrived, flush if due."""
        timeout = self._policy.wait_s(self._batch, self._clock())
        with contextlib.suppress(queue.Empty):
            self.accept(self._inbox.get(timeout=timeout))
        self.pump()
        self.flush_if_due()

    def finish(self, *_: object) -> None:
        """At stop: take what has arrived and flush it (once; if that fails the broker redelivers it)."""
        self.pump()
        self.flush()

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

    def flush_if_due(self) -> WriteResult | None:
        if self._policy.due(self._batch, self._clock()):
            return self.flush()
        return None

    # -- flushing -------------------------------------------------------------------------------------------

    def flush(self) -> WriteResult | None:
        batch = self._batch
        if batch.messages == 0:
            return None
        keep, keys = self._dedup(batch)
        cols = batch.columns(keep)
        try:
            result = self._sink(batch, cols)
        except Exception:
            self.stats.write_retries += 1  # the batch stays; the next flush (the worker's retry) writes it
            raise
        self._recent.remember(keys)
        self._ack(batch.ack_tokens)
        self._account(batch, cols, result, dropped=len(batch) - len(cols))
        self._batch = BatchBuilder()
        for hook in self._on_commit:
            hook(cols)
        return result

    def _dedup(self, batch: BatchBuilder) -> tuple[np.ndarray | None, list[Key]]:
        recent = self._recent
        seen: set[Key] = set()
        keep_list: list[bool] = []
        keys: list[Key] = []
        for key in zip(batch.device_id, batch.metric_id, batch.ts_us, strict=True):
            fresh = key not in seen and key not in recent
            keep_list.append(fresh)
            if fresh:
                seen.add(key)
                keys.append(key)
        if len(keys) == len(keep_list):
            return None, keys
        return np.asarray(keep_list, dtype=bool), keys

    def _account(self, batch: BatchBuilder, cols: ReadingColumns, result: WriteResult, dropped: int) -> None:
        s = self.stats
        s.messages += batch.messages
        s.readings_stored += result.inserted
        s.duplicates_dropped += dropped
        s.duplicates_in_db += result.duplicates
        s.batches += 1
        s.statuses += len(batch.statuses)
        s.dead_letters.update(d.reason for d in batch.dead_letters)
        s.devices_seen.update(np.unique(cols.device_id).tolist())
        now = self._clock()
        if s.first_commit_at is None:
            s.first_commit_at = now
        s.last_commit_at = now
