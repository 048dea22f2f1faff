"""Alert notifications as ``lccm ingest`` and ``lccm demo`` run them: recipients from a YAML file, one notifier per
channel in use, the durable PostgreSQL outbox, and a dispatch thread fed by the alert evaluator.

The evaluator hands each on-time raise and clear (:class:`stream.alerts.AlertTransition`) to :meth:`Notifications.
__call__`, which turns it into a :class:`notify.AlertMessage` and queues it for the dispatch thread: a slow channel
(retries with backoff, a LINE Retry-After) never holds up alert evaluation. ``close`` delivers what was queued.
Everything is checked at start-up: a recipient whose channel is not configured stops the process with a message that
names the recipient and the setting.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml

from lccm.ingest.alert_publisher import MqttAlertPublisher
from lccm.notify import (
    AlertMessage,
    DeliveryRecord,
    Dispatcher,
    DispatchWorker,
    LineNotifier,
    Notifier,
    NotifyConfigError,
    Recipient,
    Severity,
    SmtpConfig,
    SmtpNotifier,
    Transition,
    WebhookNotifier,
)
from lccm.notify.pg_outbox import PgOutbox
from lccm.settings import Settings
from lccm.stream.alerts import AlertTransition

log = logging.getLogger(__name__)

MQTT_ALL = "mqtt-alert-topic"  # the implicit recipient of notify_mqtt_all: every alert change on the alert topic
_SETTING_OF_CHANNEL = {"email": "LCCM_NOTIFY_SMTP_HOST and LCCM_NOTIFY_SMTP_SENDER", "line": "LCCM_NOTIFY_LINE_TOKEN"}


def load_recipients(path: Path) -> list[Recipient]:
    """Recipients from YAML: a list of recipient mappings, or ``{recipients: [...]}``. Every problem is reported with
    the recipient's name or position; names must be unique."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise NotifyConfigError(f"{path}: cannot read the recipients file: {e}") from None
    items = doc.get("recipients") if isinstance(doc, dict) else doc
    if items is None:
        return []
    if not isinstance(items, list):
        raise NotifyConfigError(f"{path}: expected a list of recipients (or 'recipients: [...]')")
    out: list[Recipient] = []
    problems: list[str] = []
    for i, item in enumerate(items, 1):
        label = item.get("name") if isinstance(item, dict) and item.get("name") else f"#{i}"
        try:
            if not isinstance(item, dict):
                raise NotifyConfigError(f"a recipient is a mapping of fields, not {type(item).__name__}")
            out.append(Recipient.from_dict(item))
        except NotifyConfigError as e:
            problems.append(f"recipient {label}: {e}")
    names = [r.name for r in out]
    problems += [f"recipient name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise NotifyConfigError(f"{path}: " + "; ".join(problems))
    return out


def alert_message(tr: AlertTransition) -> AlertMessage:
    """The notify package's view of one alert change (late changes are sent as ``late``)."""
    return AlertMessage(
        alert_id=str(tr.alert_id),
        rule_key=tr.rule_key,
        dedup_key=tr.dedup_key,
        city=_city_slug(tr.city),
        site_id=tr.site_code or tr.device_id or "-",
        metric=tr.metric_name or tr.signal,
        severity=Severity(tr.severity),
        transition=Transition.LATE if tr.late else Transition(tr.kind),
        event_time=tr.at,
        value=tr.value,
        threshold=tr.threshold,
        unit=tr.unit or "",
        site_name_th=tr.site_name_th or "",
        site_name_en=tr.site_name_en or "",
        note_th=tr.rule_name_th or "",
        note_en=tr.rule_name_en or "",
    )


def _city_slug(city: str | None) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", (city or "").strip().lower()).strip("-")[:32]
    return slug or "unknown"


class Notifications:
    """The alert evaluator's notifier: ``notifications(transition)`` queues the change for dispatch."""

    def __init__(self, dispatcher: Dispatcher, worker: DispatchWorker, closers: Sequence[Any]) -> None:
        self.dispatcher = dispatcher
        self._worker = worker
        self._closers = list(closers)

    def __call__(self, tr: AlertTransition) -> None:
        self._worker.submit(alert_message(tr))

    @property
    def errors(self) -> int:
        return self._worker.errors

    def close(self, timeout_s: float = 60.0) -> None:
        self._worker.stop(timeout_s)
        for c in self._closers:
            try:
                c()
            except Exception as e:  # closing one channel must not keep the others open
                log.warning("closing a notifier failed: %s", e)


def build_notifications(
    settings: Settings,
    database_url: str,
    *,
    mqtt_host: str,
    mqtt_port: int,
    recipients: Iterable[Recipient] | None = None,
    on_delivery: Callable[[DeliveryRecord], None] | None = None,
) -> Notifications:
    """Recipients (from ``settings.notify_recipients_file`` unless given), the channels they use, the PostgreSQL
    outbox and a started dispatch thread. Raises NotifyConfigError when a recipient needs an unconfigured channel."""
    people = list(recipients) if recipients is not None else _configured_recipients(settings)
    if settings.notify_mqtt_all:
        people.append(Recipient.from_dict({"name": MQTT_ALL, "language": "both", "mqtt": [""]}))
    channels = {a.channel for r in people for a in r.addresses}
    _check_channels(settings, people, channels)
    notifiers, closers = _notifiers(settings, channels, mqtt_host, mqtt_port)
    outbox = PgOutbox(functools.partial(psycopg.connect, database_url, autocommit=True))
    dispatcher = Dispatcher(
        people, notifiers, outbox, bypass=Severity(settings.notify_bypass_severity), on_delivery=on_delivery
    )
    worker = DispatchWorker(dispatcher, tick_s=settings.notify_tick_s)
    worker.start()
    log.info("notifications: %d recipient(s) on %s", len(people), ", ".join(sorted(channels)) or "no channel")
    return Notifications(dispatcher, worker, closers)


def _configured_recipients(settings: Settings) -> list[Recipient]:
    path = settings.notify_recipients_file
    return load_recipients(path) if path is not None else []


def _check_channels(settings: Settings, people: Sequence[Recipient], channels: set[str]) -> None:
    configured = {"webhook", "mqtt"}
    if settings.notify_smtp_host and settings.notify_smtp_sender:
        configured.add("email")
    if settings.notify_line_token:
        configured.add("line")
    for channel in sorted(channels - configured):
        who = sorted(r.name for r in people if any(a.channel == channel for a in r.addresses))
        need = _SETTING_OF_CHANNEL.get(channel, f"a notifier for {channel!r}")
        raise NotifyConfigError(f"recipient(s) {', '.join(who)} use {channel} but {need} is not set")


def _notifiers(
    settings: Settings, channels: set[str], mqtt_host: str, mqtt_port: int
) -> tuple[list[Notifier], list[Any]]:
    notifiers: list[Notifier] = []
    closers: list[Any] = []
    if "webhook" in channels:
        webhook = WebhookNotifier()
        notifiers.append(webhook)
        closers.append(webhook.close)
    if "email" in channels:
        smtp = SmtpConfig(
            host=settings.notify_smtp_host, port=settings.notify_smtp_port, sender=settings.notify_smtp_sender,
            security=settings.notify_smtp_security,  # type: ignore[arg-type]  # checked by the settings' pattern
            username=settings.notify_smtp_username, password=settings.notify_smtp_password,
        )  # fmt: skip
        notifiers.append(SmtpNotifier(smtp))
    if "line" in channels:
        line = LineNotifier(settings.notify_line_token, base_url=settings.notify_line_base_url)
        notifiers.append(line)
        closers.append(line.close)
    if "mqtt" in channels:
        publisher = MqttAlertPublisher(
            mqtt_host, mqtt_port, f"{settings.mqtt_client_id}-alerts", topic_root=settings.mqtt_topic_root,
            username=settings.mqtt_username, password=settings.mqtt_password, protocol=settings.mqtt_protocol,
        )  # fmt: skip
        publisher.start()
        notifiers.append(publisher)
        closers.append(publisher.stop)
    return notifiers, closers
