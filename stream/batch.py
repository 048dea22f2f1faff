"""A batch under construction, columnar, and the policy that says when to flush it.

The decoder appends straight into the column lists (one list append per value, no per-reading object); a message
is atomic, so ``mark``/``rollback`` undo a half-decoded one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from lccm.store.writer import NO_SEQ, DeadLetterRow, ReadingColumns, StatusRow

__all__ = ["BatchBuilder", "Clock", "DeadLetterRow", "FlushPolicy", "ReadingColumns", "StatusRow"]

Clock = Callable[[], float]  # monotonic seconds; injected so tests advance time instead of sleeping


@dataclass(slots=True)
class BatchBuilder:
    device_id: list[int] = field(default_factory=list)
    metric_id: list[int] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    received_at_us: list[int] = field(default_factory=list)
    dead_letters: list[DeadLetterRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    ack_tokens: list[Hashable] = field(default_factory=list)
    message_received_us: list[int] = field(default_factory=list)  # per message, for the receive-to-commit lag
    messages: int = 0
    outbound: int = 0  # the product's own outbound messages (alerts, commands) seen under the root, acked only
    opened_at: float | None = None

    def __len__(self) -> int:
        return len(self.device_id)

    def mark(self) -> int:
        return len(self.device_id)

    def rollback(self, mark: int) -> None:
        for col in (self.device_id, self.metric_id, self.ts_us, self.value, self.seq, self.received_at_us):
            del col[mark:]

    def fill_message_fields(self, mark: int, device_id: int, seq: int | None, received_at_us: int) -> None:
        """Device, seq and receive time are per message: write them once for the readings added since mark."""
        n = len(self.metric_id) - mark
        self.device_id.extend([device_id] * n)
        self.seq.extend([NO_SEQ if seq is None else seq] * n)
        self.received_at_us.extend([received_at_us] * n)

    def columns(self, keep: np.ndarray | None = None) -> ReadingColumns:
        cols = ReadingColumns(
            device_id=np.asarray(self.device_id, dtype=np.int32),
            metric_id=np.asarray(self.metric_id, dtype=np.int16),
            ts_us=np.asarray(self.ts_us, dtype=np.int64),
            value=np.asarray(self.value, dtype=np.float64),
            seq=np.asarray(self.seq, dtype=np.int64),
            received_at_us=np.asarray(self.received_at_us, dtype=np.int64),
        )
        if keep is None:
            return cols
        return ReadingColumns(
            device_id=cols.device_id[keep],
            metric_id=cols.metric_id[keep],
            ts_us=cols.ts_us[keep],
            value=cols.value[keep],
            seq=cols.seq[keep],
            received_at_us=cols.received_at_us[keep],
        )


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    max_readings: int
    max_wait_s: float

    def due(self, batch: BatchBuilder, now: float) -> bool:
        if batch.messages == 0:
            return False
        if len(batch) >= self.max_readings:
            return True
        return batch.opened_at is not None and now - batch.opened_at >= self.max_wait_s

    def wait_s(self, batch: BatchBuilder, now: float) -> float:
        """How long the loop may block waiting for the next message before this batch is due."""
        if batch.messages == 0 or batch.opened_at is None:
            return self.max_wait_s
        return max(0.0, self.max_wait_s - (now - batch.opened_at))
