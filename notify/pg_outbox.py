"""The durable Outbox on PostgreSQL (tables of store/migrations/008_notify.sql).

Each call runs on a connection from ``connect`` (entered with ``with``): a pooled connection for one short
transaction, or, when the caller binds one (lccm/alerts.py), the open transaction in which the dispatch
worker sends one alert event, records every outcome and marks the event notified, so all of that commits together
or not at all. A crash between a send and the commit repeats that send after the restart; LINE's retry key and the
webhook delivery id (the same on every attempt) let the receiver drop the repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import orjson
import psycopg

from lccm.notify.model import AlertMessage, DeliveryRecord, Notification, as_utc
from lccm.notify.outbox import HeldItem

_HELD = "SELECT recipient, reason, release_at, held_at, alert FROM notify_held WHERE released_at IS NULL"


class PgOutbox:
    def __init__(self, connect: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]) -> None:
        self._connect = connect

    def hold(self, item: HeldItem) -> bool:
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO notify_held (recipient, message_id, reason, release_at, held_at, event_time, alert)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    item.recipient, item.alert.message_id, item.reason, as_utc(item.release_at, "release_at"),
                    as_utc(item.held_at, "held_at"), item.alert.event_time, _json(item.alert.to_dict()),
                ),
            )  # fmt: skip
            return cur.rowcount == 1

    def due(self, now: datetime) -> list[HeldItem]:
        return self._held(" AND release_at <= %s", (as_utc(now),))

    def release(self, items: Sequence[HeldItem]) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE notify_held SET released_at = now() FROM unnest(%s::text[], %s::text[]) AS t(r, m)"
                " WHERE recipient = t.r AND message_id = t.m",
                ([i.recipient for i in items], [i.alert.message_id for i in items]),
            )

    def pending(self, recipient: str | None = None) -> list[HeldItem]:
        if recipient is None:
            return self._held("", ())
        return self._held(" AND recipient = %s", (recipient,))

    def next_release(self) -> datetime | None:
        with self._connect() as conn:
            row = conn.execute("SELECT min(release_at) FROM notify_held WHERE released_at IS NULL").fetchone()
        return row[0] if row else None

    def record(self, rec: DeliveryRecord) -> None:
        note = None if rec.notification is None else _json(rec.notification.to_dict())
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO notify_deliveries (notification_id, kind, recipient, channel, address, ok, attempts,"
                " error, detail, at, alert_ids, notification) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    rec.notification_id, rec.kind, rec.recipient, rec.channel, rec.to, rec.ok, rec.attempts,
                    rec.error, rec.detail, as_utc(rec.at), list(rec.alert_ids), note,
                ),
            )  # fmt: skip

    def delivered(self, notification_id: str, channel: str, to: str) -> bool:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM notify_deliveries WHERE ok AND notification_id = %s AND channel = %s AND address = %s",
                (notification_id, channel, to),
            ).fetchone()
        return row is not None

    def deliveries(self, failed_only: bool = False) -> list[DeliveryRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT notification_id, kind, recipient, channel, address, ok, attempts, error, detail, at,"
                " alert_ids, notification FROM notify_deliveries WHERE NOT %s OR NOT ok ORDER BY id",
                (failed_only,),
            ).fetchall()
        return [_record(r) for r in rows]

    def retryable(self, failed_before: datetime, max_failures: int) -> list[DeliveryRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                "WITH f AS (SELECT notification_id, channel, address, count(*) AS n, max(id) AS last_id"
                "  FROM notify_deliveries WHERE NOT ok GROUP BY notification_id, channel, address)"
                " SELECT d.notification_id, d.kind, d.recipient, d.channel, d.address, d.ok, d.attempts, d.error,"
                " d.detail, d.at, d.alert_ids, d.notification FROM f JOIN notify_deliveries d ON d.id = f.last_id"
                " WHERE f.n < %s AND d.at <= %s AND d.notification IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
                "  notify_deliveries o WHERE o.ok AND o.notification_id = d.notification_id AND o.channel = d.channel"
                "  AND o.address = d.address) ORDER BY d.id",
                (max_failures, as_utc(failed_before)),
            ).fetchall()
        return [_record(r) for r in rows]

    def _held(self, where: str, params: tuple[Any, ...]) -> list[HeldItem]:
        with self._connect() as conn:
            rows = conn.execute(f"{_HELD}{where} ORDER BY event_time, recipient, message_id", params).fetchall()
        return [
            HeldItem(r, reason, release, held, AlertMessage.from_dict(alert))
            for r, reason, release, held, alert in rows
        ]


def _record(r: tuple[Any, ...]) -> DeliveryRecord:
    note = None if r[11] is None else _notification(r[11])
    return DeliveryRecord(
        notification_id=r[0], kind=r[1], recipient=r[2], channel=r[3], to=r[4], ok=r[5], attempts=r[6], error=r[7],
        detail=r[8], at=r[9], alert_ids=tuple(r[10]), notification=note,
    )  # fmt: skip


def _json(d: dict[str, Any]) -> str:
    return orjson.dumps(d).decode()


def _notification(d: dict[str, Any]) -> Notification:
    return Notification(
        id=d["id"], kind=d["kind"], recipient=d["recipient"], language=d["language"], subject=d["subject"],
        body=d["text"], alerts=tuple(AlertMessage.from_dict(a) for a in d["alerts"]),
        created_at=datetime.fromisoformat(d["created_at"]),
    )  # fmt: skip
