"""The MQTT alert topic: notify's ``Notifier`` interface on paho-mqtt (only ingest/ may import paho).

Each alert change in a notification is published at QoS 1, not retained, to
``{root}/{city}/alerts/{severity}`` (``lccm/v1/chiang-mai/alerts/critical``), so a dashboard or a city operations
system subscribes to ``lccm/v1/+/alerts/#`` or only to ``.../alerts/critical``. ``{city}`` is the city slug of the
devices' topics (imports/registry.py ``city_slug``). The ingest subscribes to the whole root and receives these
too: ``alerts`` is a reserved topic level (ingest/topic.py), so it leaves them alone. A topic template that would put
an alert under the root anywhere else is refused, since the ingest would take it for a device's message. Payload
(UTF-8 JSON)::

    {"notification_id": ..., "kind": "alert"|"digest"|"quiet_hours", "alert": {AlertMessage.to_dict()},
     "subject": ..., "text": ...}

A send succeeds when the broker has acknowledged every publish (PUBACK) within ``publish_timeout_s``. While the
connection is down the publisher waits up to that long for paho to reconnect, then reports failure without
publishing. A publish that went out but was not acknowledged in time is reported failed, yet paho resends it after
a reconnect, so a subscriber may see it once more: (notification_id, alert.alert_id, alert.transition,
alert.event_time) identifies a message for dedup.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lccm.ingest.topic import is_outbound
from lccm.notify.model import Address, AlertMessage, Notification, SendOutcome

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "{root}/{city}/alerts/{severity}"
_FIELDS = {"root", "city", "severity", "site_id", "metric", "transition"}


class AlertPublisherError(RuntimeError):
    """The broker could not be reached, or a topic template is wrong."""


def alert_topic(template: str, root: str, alert: AlertMessage) -> str:
    """The topic of one alert change; refuses templates with unknown fields or MQTT wildcards."""
    try:
        topic = template.format(
            root=root,
            city=alert.city,
            severity=alert.severity.value,
            site_id=alert.site_id,
            metric=alert.metric,
            transition=alert.transition.value,
        )
    except (KeyError, IndexError, ValueError) as e:
        raise AlertPublisherError(f"topic template {template!r} uses a field other than {sorted(_FIELDS)}") from e
    if not topic or "+" in topic or "#" in topic or "\x00" in topic or "//" in topic:
        raise AlertPublisherError(f"alert topic {topic!r} (from {template!r}) is not a valid publish topic")
    if (topic == root or topic.startswith(root + "/")) and not is_outbound(topic, root):
        raise AlertPublisherError(
            f"alert topic {topic!r} (from {template!r}) is under {root!r} but not {root}/<city>/alerts/...:"
            " the ingest would read it as a device's message"
        )
    return topic


def alert_payload(note: Notification, alert: AlertMessage) -> bytes:
    doc = {
        "notification_id": note.id,
        "kind": note.kind,
        "alert": alert.to_dict(),
        "subject": note.subject,
        "text": note.body,
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


class MqttAlertPublisher:
    """``Notifier`` for channel ``mqtt``; the recipient address is a topic template, or empty for the default."""

    channel = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        topic_root: str = "lccm/v1",
        topic_template: str = DEFAULT_TOPIC,
        username: str = "",
        password: str = "",
        protocol: str = "auto",  # auto (MQTT 5, else 3.1.1), 5, 3.1.1
        publish_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        keepalive_s: int = 30,
    ) -> None:
        if protocol not in ("auto", "5", "3.1.1"):
            raise AlertPublisherError(f"protocol {protocol!r} is not auto, 5 or 3.1.1")
        self._host, self._port, self._client_id = host, port, client_id
        self._root = topic_root.rstrip("/")
        self._template = topic_template
        self._username, self._password = username, password
        self._protocol = protocol
        self._publish_timeout_s = publish_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._keepalive_s = keepalive_s
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()  # paho's publish is thread-safe; the lock keeps one send's publishes together
        self.protocol_used: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        order = {"auto": ["5", "3.1.1"], "5": ["5"], "3.1.1": ["3.1.1"]}[self._protocol]
        errors = []
        for proto in order:
            error = self._try_connect(proto)
            if not error:
                self.protocol_used = proto
                log.info("alert publisher connected to %s:%s with MQTT %s", self._host, self._port, proto)
                return
            errors.append(f"MQTT {proto}: {error}")
        raise AlertPublisherError(f"cannot connect to MQTT broker {self._host}:{self._port}: {'; '.join(errors)}")

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._connected.clear()

    def check(self) -> None:
        """Raise AlertPublisherError unless connected (paho reconnects by itself; the ``alert-publisher`` worker calls
        this, so a broker that stays away shows as an unhealthy stage with the reason)."""
        if self._client is None:
            raise AlertPublisherError("the alert publisher is not started")
        if not self._connected.is_set():
            raise AlertPublisherError(f"not connected to broker {self._host}:{self._port}; paho is reconnecting")

    def __enter__(self) -> MqttAlertPublisher:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _try_connect(self, proto: str) -> str:
        v5 = proto == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        if self._username:
            client.username_pw_set(self._username, self._password or None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._connected.clear()
        try:
            client.connect(self._host, self._port, self._keepalive_s)
        except OSError as e:
            return f"{type(e).__name__}: {e}"
        client.loop_start()
        if self._connected.wait(self._connect_timeout_s):
            self._client = client
            return ""
        client.loop_stop()
        client.disconnect()
        return f"no CONNACK accepted within {self._connect_timeout_s:.0f} s"

    def _on_connect(self, _c: mqtt.Client, _u: object, _flags: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.error("broker refused the alert publisher: %s", rc)
            return
        self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _flags: object, rc: ReasonCode, _p: object) -> None:
        self._connected.clear()
        if rc.is_failure:
            log.warning("alert publisher disconnected (%s); paho reconnects", rc)

    # -- Notifier ----------------------------------------------------------------------------------------------

    def send(self, to: Address, note: Notification) -> SendOutcome:
        if to.channel != self.channel:
            raise ValueError(f"MqttAlertPublisher got a {to.channel!r} address")
        client = self._client
        if client is None:
            return SendOutcome(False, 0, "alert publisher is not started")
        template = to.to or self._template
        try:
            messages = [(alert_topic(template, self._root, a), alert_payload(note, a)) for a in note.alerts]
        except AlertPublisherError as e:
            return SendOutcome(False, 0, str(e))
        deadline = time.monotonic() + self._publish_timeout_s
        with self._lock:
            if not self._connected.wait(self._publish_timeout_s):
                return SendOutcome(
                    False, 1, f"not connected to {self._host}:{self._port} for {self._publish_timeout_s:.0f} s"
                )
            infos = [
                client.publish(topic, payload, qos=1, properties=self._properties()) for topic, payload in messages
            ]
        return self._await(infos, [t for t, _ in messages], deadline)

    def _properties(self) -> Properties | None:
        if self.protocol_used != "5":
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.PayloadFormatIndicator = 1  # UTF-8
        return props

    @staticmethod
    def _await(infos: list[mqtt.MQTTMessageInfo], topics: list[str], deadline: float) -> SendOutcome:
        unacked = []
        for info, topic in zip(infos, topics, strict=True):
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as e:
                unacked.append(f"{topic}: {e}")
                continue
            if not info.is_published():
                unacked.append(f"{topic}: no PUBACK in time")
        if unacked:
            return SendOutcome(
                False, 1, f"{len(unacked)} of {len(infos)} publishes not acknowledged: {'; '.join(unacked)}"
            )
        return SendOutcome(True, 1, detail=f"{len(infos)} message(s) acknowledged")
