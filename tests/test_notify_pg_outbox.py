"""The PostgreSQL Outbox behaves exactly like the in-memory one: the same script of holds, releases and delivery
records runs against both (the memory outbox is the reference), and the PostgreSQL one survives a new instance
(a restart)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from lccm.notify.model import AlertMessage, DeliveryRecord, Notification, Severity, TransitionKind
from lccm.notify.outbox import HeldItem, MemoryOutbox, Outbox
from lccm.notify.pg_outbox import PgOutbox

T = datetime(2026, 3, 10, 1, tzinfo=UTC)


def _alert(n: int) -> AlertMessage:
    return AlertMessage(
        alert_id=f"A-{n}", rule_key="pm25_24h", dedup_key=f"aq-{n}/pm25", city="lampang", site_id=f"aq-{n}",
        metric="pm25", severity=Severity.WARNING, transition=TransitionKind.RAISED, event_time=T + timedelta(minutes=n),
        value=40.0 + n, threshold=37.5, unit="ug/m3",
    )  # fmt: skip


def _script(outbox: Outbox) -> list[Any]:
    seen: list[Any] = []
    items = [HeldItem("duty", "quiet_hours", T + timedelta(hours=h), T, _alert(n)) for n, h in ((1, 2), (2, 1), (3, 5))]
    seen.append([outbox.hold(i) for i in items])
    seen.append(outbox.hold(items[0]))  # the same change again: refused
    seen.append(outbox.next_release())
    due = outbox.due(T + timedelta(hours=3))
    seen.append([i.alert.alert_id for i in due])
    outbox.release(due)
    seen.append(outbox.hold(items[0]))  # released ones are still remembered
    seen.append([(i.recipient, i.reason, i.alert.to_dict()) for i in outbox.pending()])
    seen.append(outbox.pending("nobody"))
    note = Notification("n-1", "alert", "duty", "th", "หัวข้อ", "ข้อความ", (_alert(1),), T)
    outbox.record(DeliveryRecord("n-1", "alert", "duty", "line", "U1", False, 3, "HTTP 500", "", T, ("A-1",), note))
    outbox.record(DeliveryRecord("n-1", "alert", "duty", "line", "U1", True, 1, "", "req-9", T, ("A-1",)))
    seen.append([outbox.delivered("n-1", "line", "U1"), outbox.delivered("n-1", "webhook", "U1")])
    failed = outbox.deliveries(failed_only=True)
    seen.append([(r.ok, r.attempts, r.error, r.notification) for r in failed])
    seen.append([(r.ok, r.detail, r.alert_ids) for r in outbox.deliveries()])
    # Failures kept for retry: n-1 was delivered after its failure, n-2 failed twice and still waits.
    note2 = Notification("n-2", "alert", "duty", "en", "subject", "text", (_alert(2),), T)
    for k in (1, 2):
        outbox.record(DeliveryRecord("n-2", "alert", "duty", "webhook", "https://h.test/a", False, 5, f"HTTP 503 #{k}",
                                     "", T + timedelta(minutes=k), ("A-2",), note2))  # fmt: skip
    retry = outbox.retryable(T + timedelta(minutes=5), 3)
    seen.append([(r.notification_id, r.channel, r.error, r.notification) for r in retry])
    seen.append(outbox.retryable(T + timedelta(minutes=1), 3))  # its last failure is newer than the cut-off
    seen.append(outbox.retryable(T + timedelta(minutes=5), 2))  # it has failed twice: no more retries
    return seen


def test_postgres_outbox_equals_the_memory_outbox(fresh_db: str) -> None:
    reference = _script(MemoryOutbox())
    assert reference[-3] == [("n-2", "webhook", "HTTP 503 #2", Notification(
        "n-2", "alert", "duty", "en", "subject", "text", (_alert(2),), T))] and reference[-2:] == [[], []]  # fmt: skip
    assert _script(PgOutbox(lambda: psycopg.connect(fresh_db))) == reference
    # A new instance (a restarted process) sees what the first one kept.
    again = PgOutbox(lambda: psycopg.connect(fresh_db))
    assert [i.alert.alert_id for i in again.pending()] == ["A-3"]
    assert again.delivered("n-1", "line", "U1")


def test_naive_times_are_refused(fresh_db: str) -> None:
    outbox = PgOutbox(lambda: psycopg.connect(fresh_db))
    with pytest.raises(ValueError, match="release_at"):
        outbox.hold(HeldItem("duty", "digest", datetime(2026, 3, 10), T, _alert(1)))
