"""Route alert changes to recipients and their channels; quiet hours and daily digests.

The rule, per recipient that wants the alert (severity at or above its minimum, city/site/metric filters), judged
at the time of dispatch (not the alert's event time: quiet hours are about when a person is disturbed):

1. severity at or above ``bypass`` (default: critical) -> sent at once on every channel, whatever the hour;
2. else, digest on -> held for the daily digest, sent at the next ``digest_hour`` (Bangkok) as one message;
3. else, inside quiet hours -> held, sent as one summary message when the quiet window ends;
4. else -> sent at once.

``run_due()`` sends what has come due: all due items of one recipient go out as one message (a digest if any of
them was held for the digest, else a quiet-hours summary), then they are released. Call it from a timer; the next
time it has work is ``next_due()``. A digest or summary goes out at its hour even if that hour lies inside the
recipient's quiet hours: the recipient chose it.

Every delivery outcome is recorded in the outbox and failures are logged; a failed notification is kept in its
record so ``resend`` can deliver it later (``redeliver`` sends every such failure again, a bounded number of
times). The same alert change dispatched twice reaches each address once: notification ids are derived from the
content, and the outbox knows what was delivered and what was held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time
from typing import Literal

from lccm.notify.model import (
    AlertMessage,
    DeliveryRecord,
    Notification,
    NotificationKind,
    Notifier,
    NotifyConfigError,
    Recipient,
    Severity,
    as_utc,
    next_local_time,
    notification_id,
)
from lccm.notify.outbox import HeldItem, HoldReason, Outbox
from lccm.notify.render import render_alert, render_digest

log = logging.getLogger(__name__)

Decision = Literal["send", "digest", "quiet_hours"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def decide(
    recipient: Recipient, alert: AlertMessage, now: datetime, bypass: Severity = Severity.CRITICAL
) -> tuple[Decision, datetime | None]:
    """What happens to ``alert`` for ``recipient`` at ``now``: send now, or hold until the returned time (UTC)."""
    if alert.severity.rank >= bypass.rank:
        return "send", None
    if recipient.digest:
        return "digest", next_local_time(now, time(recipient.digest_hour))
    if recipient.quiet_hours is not None and recipient.quiet_hours.contains(now):
        return "quiet_hours", recipient.quiet_hours.end_after(now)
    return "send", None


@dataclass
class DispatchReport:
    """What one ``dispatch`` did: deliveries made now and items held for later."""

    deliveries: list[DeliveryRecord] = field(default_factory=list)
    held: list[HeldItem] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        recipients: Iterable[Recipient],
        notifiers: Iterable[Notifier],
        outbox: Outbox,
        clock: Callable[[], datetime] = utc_now,
        bypass: Severity = Severity.CRITICAL,
        on_delivery: Callable[[DeliveryRecord], None] | None = None,
    ) -> None:
        self._notifiers = {n.channel: n for n in notifiers}
        self._on_delivery = on_delivery  # sees every recorded outcome (the metrics count failures by channel)
        self._outbox = outbox
        self._clock = clock
        self._bypass = Severity(bypass)
        self._run_lock = threading.Lock()
        self._recipients: dict[str, Recipient] = {}
        self.set_recipients(recipients)

    def set_recipients(self, recipients: Iterable[Recipient]) -> None:
        """Replace the recipient list (settings reload). Items already held keep their release time."""
        by_name: dict[str, Recipient] = {}
        for r in recipients:
            if r.name in by_name:
                raise NotifyConfigError(f"recipient name {r.name!r} is used twice")
            by_name[r.name] = r
        missing = sorted({a.channel for r in by_name.values() for a in r.addresses} - set(self._notifiers))
        if missing:
            raise NotifyConfigError(f"no notifier for channel(s) {missing}; have {sorted(self._notifiers)}")
        self._recipients = by_name

    @property
    def channels(self) -> list[str]:
        return sorted(self._notifiers)

    def now(self) -> datetime:
        return as_utc(self._clock(), "clock()")

    # -- alerts in ---------------------------------------------------------------------------------------------

    def dispatch(self, alert: AlertMessage) -> DispatchReport:
        now = self.now()
        report = DispatchReport()
        for recipient in self._recipients.values():
            if not recipient.wants(alert):
                continue
            decision, release_at = decide(recipient, alert, now, self._bypass)
            if decision == "send":
                note = self._alert_notification(recipient, alert, now)
                report.deliveries += self._deliver(recipient, note)
                continue
            assert release_at is not None
            item = HeldItem(recipient.name, _reason(decision), release_at, now, alert)
            if self._outbox.hold(item):
                report.held.append(item)
                log.info("held %s for %s until %s (%s)", alert.message_id, recipient.name, release_at, decision)
        return report

    # -- digests and quiet-hours summaries ---------------------------------------------------------------------

    def run_due(self) -> list[DeliveryRecord]:
        """Send everything held that has come due, one message per recipient."""
        with self._run_lock:
            now = self.now()
            by_recipient: dict[str, list[HeldItem]] = {}
            for item in self._outbox.due(now):
                by_recipient.setdefault(item.recipient, []).append(item)
            records: list[DeliveryRecord] = []
            for name, items in by_recipient.items():
                records += self._send_held(name, items, now)
                self._outbox.release(items)
            return records

    def next_due(self) -> datetime | None:
        return self._outbox.next_release()

    def _send_held(self, name: str, items: list[HeldItem], now: datetime) -> list[DeliveryRecord]:
        recipient = self._recipients.get(name)
        kind: NotificationKind = "digest" if any(i.reason == "digest" for i in items) else "quiet_hours"
        alerts = tuple(i.alert for i in items)
        note_id = notification_id(name, [kind, *(a.message_id for a in alerts)])
        if recipient is None:
            # Held for someone since removed from the settings: say so loudly, keep the alerts in the record.
            error = f"recipient {name!r} is no longer configured; {len(alerts)} held alert(s) not delivered"
            log.error(error)
            rec = DeliveryRecord(note_id, kind, name, "-", "-", False, 0, error, "", now, _ids(alerts))
            self._record(rec)
            return [rec]
        subject, body = render_digest(alerts, recipient.language, kind, now)
        note = Notification(note_id, kind, name, recipient.language, subject, body, alerts, now)
        return self._deliver(recipient, note)

    # -- delivery ----------------------------------------------------------------------------------------------

    def _alert_notification(self, recipient: Recipient, alert: AlertMessage, now: datetime) -> Notification:
        subject, body = render_alert(alert, recipient.language)
        note_id = notification_id(recipient.name, ["alert", alert.message_id])
        return Notification(note_id, "alert", recipient.name, recipient.language, subject, body, (alert,), now)

    def _deliver(self, recipient: Recipient, note: Notification) -> list[DeliveryRecord]:
        records = []
        for address in recipient.addresses:
            if self._outbox.delivered(note.id, address.channel, address.to):
                log.info("%s already reached %s %s; not sent again", note.id, address.channel, address.to)
                continue
            notifier = self._notifiers[address.channel]
            try:
                outcome = notifier.send(address, note)
                ok, attempts, error, detail = outcome.ok, outcome.attempts, outcome.error, outcome.detail
            except Exception as e:  # a bug in a channel must not stop the other channels; it is recorded
                log.exception("notifier %s raised", address.channel)
                ok, attempts, error, detail = False, 1, f"{type(e).__name__}: {e}", ""
            rec = DeliveryRecord(
                note.id,
                note.kind,
                recipient.name,
                address.channel,
                address.to,
                ok,
                attempts,
                error,
                detail,
                self.now(),
                _ids(note.alerts),
                None if ok else note,
            )
            self._record(rec)
            if not ok:
                log.error(
                    "%s to %s via %s %s failed: %s", note.kind, recipient.name, address.channel, address.to, error
                )
            records.append(rec)
        return records

    def _record(self, rec: DeliveryRecord) -> None:
        self._outbox.record(rec)
        if self._on_delivery is not None:
            try:
                self._on_delivery(rec)
            except Exception:  # counting must not turn a delivery into a failure
                log.exception("delivery observer failed")

    def resend(self, failed: DeliveryRecord) -> DeliveryRecord:
        """Try a failed delivery again on its channel and address (by hand, or from a retry job)."""
        if failed.notification is None:
            raise ValueError("this record carries no notification to re-send (it was delivered)")
        recipient = self._recipients.get(failed.recipient)
        if recipient is None:
            raise NotifyConfigError(f"recipient {failed.recipient!r} is no longer configured")
        addresses = tuple(a for a in recipient.addresses if (a.channel, a.to) == (failed.channel, failed.to))
        if not addresses:
            raise NotifyConfigError(f"{failed.recipient!r} no longer has {failed.channel} address {failed.to!r}")
        records = self._deliver(replace(recipient, addresses=addresses), failed.notification)
        if not records:  # already delivered meanwhile
            return replace(failed, ok=True, attempts=0, error="", detail="already delivered", at=self.now())
        return records[0]

    def redeliver(self, failed_before: datetime, max_failures: int) -> list[DeliveryRecord]:
        """Send again every failed delivery the outbox has kept for retry (:meth:`Outbox.retryable`); a failure that
        cannot be retried any more (its recipient or address is gone) is recorded without its message, which ends
        its retries."""
        records = []
        for failed in self._outbox.retryable(as_utc(failed_before, "failed_before"), max_failures):
            try:
                records.append(self.resend(failed))
            except NotifyConfigError as e:
                log.error("cannot re-send %s to %s via %s: %s", failed.notification_id, failed.recipient,
                          failed.channel, e)  # fmt: skip
                rec = replace(failed, attempts=0, error=str(e), detail="", at=self.now(), notification=None)
                self._outbox.record(rec)
                records.append(rec)
        return records


def _reason(decision: Decision) -> HoldReason:
    return "digest" if decision == "digest" else "quiet_hours"


def _ids(alerts: Iterable[AlertMessage]) -> tuple[str, ...]:
    return tuple(a.message_id for a in alerts)
