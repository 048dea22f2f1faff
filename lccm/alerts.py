"""Alerts as ``lccm ingest`` and ``lccm demo`` run them: the files people write (the alert-rule file and the
recipients file), and notifications: one notifier per channel in use, the durable PostgreSQL outbox, and the step
of the ``notify-dispatch`` worker. The rest of the feature lives by stage: rules and the state machine in
``engine/alerts.py``, the evaluator in ``stream/alerts.py`` (built by ``lccm.runtime.alert_evaluator``), SQL in
``store/alerts.py``, the routes in ``api/routes/alerts.py``, channels in ``notify/`` and the MQTT alert topic in
``ingest/alerts.py`` (ingest/ is the stage that may import paho-mqtt); the words they share (kinds of change,
severities, states) in the leaf ``engine/alert_kinds.py``.

The alert-rule file (the shipped ``lccm/data/alert-rules.yaml``, or ``LCCM_ALERT_RULES_FILE``) is ``rules:``, a list
of rule mappings in the shape of ``engine.alerts.AlertRule`` (the API takes the same shape), validated by
``engine.alerts.parse_rules``: every problem at once, each naming its rule and field.

Durable by the outbox pattern: the alert evaluator writes the on-time raises and clears to page
(``alert_events.page``) in the transaction that records them, and nothing is handed on in memory. The dispatch
step reads the pending events from the database and, one event per transaction, claims it (``FOR UPDATE SKIP
LOCKED``: several ingest processes never take the same one), dispatches it to every recipient that wants it,
records every outcome in ``notify_deliveries`` (a failure keeps its message for redelivery) or holds it in
``notify_held`` (quiet hours, digests), and marks the event notified: all of it commits together or not at all. So
an event is never marked notified unless its channels took it, and after a database outage or a crash the worker
resumes from the database. At least once: a crash between a send and the commit sends it again with the same
notification id and delivery id (the event's identity, ``AlertMessage.message_id``), by which receivers drop it.

A slow channel (retries with backoff, a LINE Retry-After) holds up only the dispatch worker, never alert
evaluation. Everything is checked at start-up: a recipient whose channel is not configured stops the process with a
message that names the recipient and the setting.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg
import yaml

from lccm.engine.alert_kinds import Severity
from lccm.engine.alerts import AlertRule, AlertRulesInvalid, RuleError, parse_rules
from lccm.imports.registry import city_slug
from lccm.ingest.alerts import MqttAlertPublisher
from lccm.notify import (
    AlertMessage,
    DeliveryRecord,
    Dispatcher,
    LineNotifier,
    Notifier,
    NotifyConfigError,
    Recipient,
    SmtpConfig,
    SmtpNotifier,
    WebhookNotifier,
)
from lccm.notify.pg_outbox import PgOutbox
from lccm.settings import Settings
from lccm.store import alerts as st
from lccm.store.connect import Connect

log = logging.getLogger(__name__)

MQTT_ALL = "mqtt-alert-topic"  # the implicit recipient of notify_mqtt_all: every alert change on the alert topic
_SETTING_OF_CHANNEL = {"email": "LCCM_NOTIFY_SMTP_HOST and LCCM_NOTIFY_SMTP_SENDER", "line": "LCCM_NOTIFY_LINE_TOKEN"}


def load_rules_file(path: Path | str | Traversable, metric_keys: Collection[str] | None = None) -> list[AlertRule]:
    """Read and validate a rule file (YAML with a top-level ``rules:`` list); AlertRulesInvalid names every
    problem."""
    p = Path(path) if isinstance(path, str) else path
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise AlertRulesInvalid(str(p), [RuleError("-", "", f"cannot read the file: {e}")]) from e
    if not isinstance(doc, dict) or "rules" not in doc:
        raise AlertRulesInvalid(str(p), [RuleError("-", "rules", "the file needs a top-level 'rules:' list")])
    return parse_rules(doc["rules"], str(p), metric_keys)


def default_rules_file() -> Traversable:
    """The shipped rules (package data ``lccm/data/alert-rules.yaml``)."""
    return resources.files("lccm").joinpath("data", "alert-rules.yaml")


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


def alert_message(event: st.PagedEvent) -> AlertMessage:
    """The message about one alert event to page."""
    return AlertMessage(
        alert_id=str(event.alert_id),
        rule_key=event.rule_key,
        dedup_key=event.dedup_key,
        city=city_slug(event.city or "") or "unknown",  # the devices' topic city: one definition
        site_id=event.site_code or event.device_id or "-",
        metric=event.metric_name or event.signal,
        severity=event.severity,
        transition=event.kind,
        event_time=event.at,
        value=event.value,
        threshold=event.threshold,
        unit=event.unit or "",
        site_name_th=event.site_name_th or "",
        site_name_en=event.site_name_en or "",
        note_th=event.rule_name_th or "",
        note_en=event.rule_name_en or "",
        late=event.late,
    )


class _Connections:
    """The outbox's connections: the open dispatch transaction's while this thread holds one (so deliveries, holds
    and the notified mark commit together), else one of its own."""

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._local = threading.local()

    def __call__(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        conn = getattr(self._local, "conn", None)
        return contextlib.nullcontext(conn) if conn is not None else self._connect()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._connect() as conn, conn.transaction():
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None


class Notifications:
    """The dispatch side of alert notifications: ``step`` is the ``notify-dispatch`` worker's step."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        connections: _Connections,
        closers: Sequence[Callable[[], object]],
        *,
        publisher: MqttAlertPublisher | None = None,
        tick_s: float = 30.0,
        redeliver_after_s: float = 300.0,
        redeliver_max: int = 12,
    ) -> None:
        self.dispatcher = dispatcher
        self.publisher = publisher  # the MQTT alert topic's connection, watched by the alert-publisher worker
        self._connections = connections
        self._closers = list(closers)
        self._tick_s = tick_s
        self._redeliver_after_s = redeliver_after_s
        self._redeliver_max = redeliver_max
        self._redeliver_at = 0.0

    def step(self, stopping: Callable[[], bool] = lambda: False) -> float:
        """Dispatch every pending event, send held items that have come due, and (once a tick) re-send failed
        deliveries; returns how long the worker may sleep before held items come due."""
        self.dispatch_pending(stopping)
        with self._connections.transaction():
            now, due = self.dispatcher.now(), self.dispatcher.next_due()
            if due is not None and due <= now:
                self.dispatcher.run_due()
                due = self.dispatcher.next_due()
        if time.monotonic() >= self._redeliver_at:
            self._redeliver_at = time.monotonic() + self._tick_s
            with self._connections.transaction():
                cutoff = self.dispatcher.now() - timedelta(seconds=self._redeliver_after_s)
                self.dispatcher.redeliver(cutoff, self._redeliver_max)
        return self._tick_s if due is None else max(0.0, min(self._tick_s, (due - now).total_seconds()))

    def dispatch_pending(self, stopping: Callable[[], bool] = lambda: False) -> int:
        """Dispatch the events to page, oldest first, one transaction each (see the module's docstring)."""
        done = 0
        while not stopping():
            with self._connections.transaction() as conn:
                claimed = st.pending_notifications(conn, 1, claim=True)
                if not claimed:
                    return done
                self._dispatch(claimed[0])
                st.mark_notified(conn, [claimed[0].event_id])
            done += 1
        return done

    def _dispatch(self, event: st.PagedEvent) -> None:
        try:
            message = alert_message(event)
        except NotifyConfigError as e:  # data no message can be made of: recorded (and visible), not retried forever
            log.error("alert event %d cannot be sent: %s", event.event_id, e)
            self._record_unsendable(event, str(e))
            return
        self.dispatcher.dispatch(message)

    def _record_unsendable(self, event: st.PagedEvent, error: str) -> None:
        rec = DeliveryRecord(f"event-{event.event_id}", "alert", "-", "-", "-", False, 0, f"no message: {error}", "",
                             self.dispatcher.now(), (f"{event.alert_id}/{event.kind}",))  # fmt: skip
        PgOutbox(self._connections).record(rec)

    def close(self) -> None:
        for c in self._closers:
            try:
                c()
            except Exception as e:  # closing one channel must not keep the others open
                log.warning("closing a notifier failed: %s", e)


def build_notifications(
    settings: Settings,
    connect: Connect,
    *,
    mqtt_host: str,
    mqtt_port: int,
    recipients: Iterable[Recipient] | None = None,
    on_delivery: Callable[[DeliveryRecord], None] | None = None,
) -> Notifications:
    """Recipients (from ``settings.notify_recipients_file`` unless given), the channels they use and the PostgreSQL
    outbox on ``connect`` (the process's pool). Raises NotifyConfigError when a recipient needs an unconfigured
    channel. The MQTT alert publisher is connected here; run ``step`` in a worker."""
    people = list(recipients) if recipients is not None else _configured_recipients(settings)
    if settings.notify_mqtt_all:
        people.append(Recipient.from_dict({"name": MQTT_ALL, "language": "both", "mqtt": [""]}))
    channels = {a.channel for r in people for a in r.addresses}
    _check_channels(settings, people, channels)
    notifiers, closers = _notifiers(settings, channels, mqtt_host, mqtt_port)
    connections = _Connections(connect)
    bypass = Severity(settings.notify_bypass_severity)
    dispatcher = Dispatcher(people, notifiers, PgOutbox(connections), bypass=bypass, on_delivery=on_delivery)
    publisher = next((n for n in notifiers if isinstance(n, MqttAlertPublisher)), None)
    log.info("notifications: %d recipient(s) on %s", len(people), ", ".join(sorted(channels)) or "no channel")
    return Notifications(
        dispatcher, connections, closers, publisher=publisher, tick_s=settings.notify_tick_s,
        redeliver_after_s=settings.notify_redeliver_after_s, redeliver_max=settings.notify_redeliver_max,
    )  # fmt: skip


def _configured_recipients(settings: Settings) -> list[Recipient]:
    path = settings.notify_recipients_file
    return load_recipients(path) if path is not None else []


def _check_channels(settings: Settings, people: Sequence[Recipient], channels: set[str]) -> None:
    configured = {"webhook", "mqtt"}
    if settings.notify_smtp_host and settings.notify_smtp_sender:
        configured.add("email")
    if settings.notify_line_token.get_secret_value():
        configured.add("line")
    for channel in sorted(channels - configured):
        who = sorted(r.name for r in people if any(a.channel == channel for a in r.addresses))
        need = _SETTING_OF_CHANNEL.get(channel, f"a notifier for {channel!r}")
        raise NotifyConfigError(f"recipient(s) {', '.join(who)} use {channel} but {need} is not set")


def _notifiers(
    settings: Settings, channels: set[str], mqtt_host: str, mqtt_port: int
) -> tuple[list[Notifier], list[Callable[[], object]]]:
    notifiers: list[Notifier] = []
    closers: list[Callable[[], object]] = []
    if "webhook" in channels:
        webhook = WebhookNotifier()
        notifiers.append(webhook)
        closers.append(webhook.close)
    if "email" in channels:
        smtp = SmtpConfig(
            host=settings.notify_smtp_host, port=settings.notify_smtp_port, sender=settings.notify_smtp_sender,
            security=settings.notify_smtp_security,  # type: ignore[arg-type]  # checked by the settings' pattern
            username=settings.notify_smtp_username, password=settings.notify_smtp_password.get_secret_value(),
        )  # fmt: skip
        notifiers.append(SmtpNotifier(smtp))
    if "line" in channels:
        line = LineNotifier(settings.notify_line_token.get_secret_value(), base_url=settings.notify_line_base_url)
        notifiers.append(line)
        closers.append(line.close)
    if "mqtt" in channels:
        publisher = MqttAlertPublisher(
            mqtt_host, mqtt_port, f"{settings.mqtt_client_id}-alerts", topic_root=settings.mqtt_topic_root,
            username=settings.mqtt_username, password=settings.mqtt_password.get_secret_value(),
            protocol=settings.mqtt_protocol,
        )  # fmt: skip
        publisher.start()
        notifiers.append(publisher)
        closers.append(publisher.stop)
    return notifiers, closers
