"""Where held alerts wait and delivery outcomes are kept.

``Outbox`` is the protocol the dispatcher needs; ``MemoryOutbox`` implements it in memory (tests, a demo). A
production store (PostgreSQL) implements the same methods with two tables:

- held items, unique on (recipient, message_id): ``hold`` is an ``INSERT ... ON CONFLICT DO NOTHING`` that returns
  whether a row went in (an alert change reported twice is held once, even after it was released);
  ``due(now)`` selects unreleased rows with ``release_at <= now``; ``release`` sets a released-at time.
- delivery records (every attempt outcome, failures with the rendered notification so it can be re-sent), with an
  index on (notification_id, channel, address) for ``delivered``; ``retryable`` finds the failures to send again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from lccm.notify.model import AlertMessage, DeliveryRecord, as_utc

HoldReason = Literal["digest", "quiet_hours"]


@dataclass(frozen=True, slots=True)
class HeldItem:
    """One alert change held for one recipient until ``release_at`` (UTC)."""

    recipient: str
    reason: HoldReason
    release_at: datetime
    held_at: datetime
    alert: AlertMessage

    @property
    def key(self) -> tuple[str, str]:
        return self.recipient, self.alert.message_id


class Outbox(Protocol):
    def hold(self, item: HeldItem) -> bool:
        """Keep ``item``; False (and nothing kept) if the same (recipient, message_id) was held before."""
        ...

    def due(self, now: datetime) -> list[HeldItem]:
        """Unreleased items with ``release_at <= now``, oldest alert first."""
        ...

    def release(self, items: Sequence[HeldItem]) -> None:
        """Mark items as sent (they are no longer due)."""
        ...

    def pending(self, recipient: str | None = None) -> list[HeldItem]:
        """Unreleased items, for one recipient or all."""
        ...

    def next_release(self) -> datetime | None:
        """The earliest ``release_at`` of an unreleased item, to schedule the next ``run_due``."""
        ...

    def record(self, rec: DeliveryRecord) -> None:
        """Keep one delivery outcome."""
        ...

    def delivered(self, notification_id: str, channel: str, to: str) -> bool:
        """Whether this notification already reached this address (so a repeat is not sent twice)."""
        ...

    def deliveries(self, failed_only: bool = False) -> list[DeliveryRecord]:
        """Delivery outcomes in the order they happened."""
        ...

    def retryable(self, failed_before: datetime, max_failures: int) -> list[DeliveryRecord]:
        """The latest failure of each (notification, channel, address) that has not been delivered since, kept its
        notification, failed fewer than ``max_failures`` times, and last failed at or before ``failed_before``."""
        ...


class MemoryOutbox:
    """The in-memory Outbox: thread-safe, lost on restart (production uses a durable one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], HeldItem] = {}
        self._seen: set[tuple[str, str]] = set()
        self._records: list[DeliveryRecord] = []
        self._ok: set[tuple[str, str, str]] = set()

    def hold(self, item: HeldItem) -> bool:
        as_utc(item.release_at, "release_at")
        with self._lock:
            if item.key in self._seen:
                return False
            self._seen.add(item.key)
            self._held[item.key] = item
            return True

    def due(self, now: datetime) -> list[HeldItem]:
        now = as_utc(now)
        with self._lock:
            items = [i for i in self._held.values() if i.release_at <= now]
        return sorted(items, key=lambda i: (i.alert.event_time, i.recipient, i.alert.message_id))

    def release(self, items: Sequence[HeldItem]) -> None:
        with self._lock:
            for item in items:
                self._held.pop(item.key, None)

    def pending(self, recipient: str | None = None) -> list[HeldItem]:
        with self._lock:
            items = [i for i in self._held.values() if recipient is None or i.recipient == recipient]
        return sorted(items, key=lambda i: (i.alert.event_time, i.recipient, i.alert.message_id))

    def next_release(self) -> datetime | None:
        with self._lock:
            return min((i.release_at for i in self._held.values()), default=None)

    def record(self, rec: DeliveryRecord) -> None:
        with self._lock:
            self._records.append(rec)
            if rec.ok:
                self._ok.add((rec.notification_id, rec.channel, rec.to))

    def delivered(self, notification_id: str, channel: str, to: str) -> bool:
        with self._lock:
            return (notification_id, channel, to) in self._ok

    def deliveries(self, failed_only: bool = False) -> list[DeliveryRecord]:
        with self._lock:
            return [r for r in self._records if not (failed_only and r.ok)]

    def retryable(self, failed_before: datetime, max_failures: int) -> list[DeliveryRecord]:
        failed_before = as_utc(failed_before)
        with self._lock:
            failures: dict[tuple[str, str, str], list[DeliveryRecord]] = {}
            for r in self._records:
                if not r.ok:
                    failures.setdefault((r.notification_id, r.channel, r.to), []).append(r)
            return [
                runs[-1]
                for key, runs in failures.items()
                if key not in self._ok and len(runs) < max_failures and runs[-1].notification is not None
                and runs[-1].at <= failed_before
            ]  # fmt: skip
