"""Alert notifications: one ``Notifier`` interface, channels (webhook, e-mail, LINE; MQTT lives in ingest/),
Thai/English texts, quiet hours and daily digests. Imports nothing of the project but the city's time zone and
calendar, ``lccm.engine.timebase`` (tests/test_architecture.py)."""

from lccm.notify.dispatch import Dispatcher, DispatchReport, decide
from lccm.notify.line import LineNotifier
from lccm.notify.model import (
    BANGKOK,
    Address,
    AlertMessage,
    DeliveryRecord,
    Notification,
    Notifier,
    NotifyConfigError,
    QuietHours,
    Recipient,
    SendOutcome,
    Severity,
    TransitionKind,
)
from lccm.notify.outbox import HeldItem, MemoryOutbox, Outbox
from lccm.notify.render import render_alert, render_digest
from lccm.notify.retry import RetryPolicy
from lccm.notify.smtp import SmtpConfig, SmtpNotifier
from lccm.notify.webhook import WebhookNotifier, sign

__all__ = [
    "BANGKOK",
    "Address",
    "AlertMessage",
    "DeliveryRecord",
    "DispatchReport",
    "Dispatcher",
    "HeldItem",
    "LineNotifier",
    "MemoryOutbox",
    "Notification",
    "Notifier",
    "NotifyConfigError",
    "Outbox",
    "QuietHours",
    "Recipient",
    "RetryPolicy",
    "SendOutcome",
    "Severity",
    "SmtpConfig",
    "SmtpNotifier",
    "TransitionKind",
    "WebhookNotifier",
    "decide",
    "render_alert",
    "render_digest",
    "sign",
]
