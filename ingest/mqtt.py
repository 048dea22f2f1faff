"""The only module that touches paho-mqtt on the receiving side.

MQTT 5 first: a persistent session (clean start off, a session expiry), a plain subscription for a single worker
or a shared subscription so several ingest workers split the load (share_group), a receive maximum that bounds
what the broker pushes before we ack, and manual acks sent only after the batch holding the message is committed.
Brokers that speak nothing newer than 3.1.1 (the embedded amqtt broker) get a persistent session (clean session
off) and a plain subscription.

Only a plain subscription survives a broker restart on mosquitto: no 2.0 release (2.0.11 in CI and the demo, 2.0.20
in compose) writes shared subscriptions to its persistence file, so after a restart a worker's session comes back
without its subscription and everything published before the worker resubscribes is dropped ("no matching
subscribers", still PUBACKed to the device). Hence the single worker's default of no share group
(docs/durability.md).

Each message becomes a ``RawMessage`` at once; its ack token is (connection generation, packet id). Tokens from a
connection that has since dropped are not acked: the broker redelivers those messages on the new connection, and
the database key makes the second copy a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lccm.ingest.topic import subscription_filters
from lccm.stream.loop import MessageQueue, RawMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    client_id: str
    username: str = ""
    password: str = ""
    share_group: str = ""  # "": one worker, plain subscription (durable across broker restarts)
    topic_root: str = "lccm/v1"
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 20_000
    protocol: str = "auto"  # auto, 5, 3.1.1
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0


# The share group the ingest used by default before a single worker subscribed plainly: a persistent session made
# then still holds that subscription while the broker runs, and would deliver every message twice.
FORMER_DEFAULT_SHARE_GROUP = "lccm-ingest"


def subscriptions(topic_root: str, share_group: str, mqtt5: bool) -> tuple[list[str], list[str]]:
    """The filters to subscribe, and the other form's filters to drop from a persistent session that a worker of
    the other kind (single or shared) left behind."""
    plain = subscription_filters(topic_root)
    if not mqtt5:
        return plain, []
    if share_group:
        return [f"$share/{share_group}/{f}" for f in plain], plain
    return plain, [f"$share/{FORMER_DEFAULT_SHARE_GROUP}/{f}" for f in plain]


class MqttError(RuntimeError):
    """The broker could not be reached or refused us."""


class _Client(mqtt.Client):
    """paho's client, except that a PINGRESP late while the broker's publishes keep arriving does not drop the
    connection.

    Under sustained overload every message we receive costs the broker one PUBACK from us to read, and mosquitto
    reads one packet of a connection per turn of its event loop: our PINGREQ waits behind thousands of our own
    PUBACKs (in paho's out queue, our send buffer and the broker's), so its PINGRESP comes seconds late. paho's
    ``loop_misc`` closes the connection when a PINGRESP has not come within one keep-alive of its PINGREQ, even while
    data flows -- every keep-alive under overload, each time with a reconnect and the redelivery of everything
    unacknowledged. Bytes arriving from the broker show it alive, so the PINGRESP's deadline moves with them; a
    broker that goes silent still gets one keep-alive, as before. The broker's own check is unaffected: it hears
    from us with every PUBACK it reads."""

    def loop_misc(self) -> mqtt.MQTTErrorCode:
        now = time.monotonic()
        with self._msgtime_mutex:
            heard_s = now - self._last_bytes_received
        if self._ping_t > 0 and heard_s < self._keepalive:
            self._ping_t = now
        return super().loop_misc()


def _now_us() -> int:
    return time.time_ns() // 1000


class MqttSource:
    def __init__(self, cfg: MqttConfig, inbox: MessageQueue, clock_us: Callable[[], int] = _now_us) -> None:
        self._cfg = cfg
        self._inbox = inbox
        self._clock_us = clock_us
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._subscribed = threading.Event()
        self._connack: ReasonCode | int | None = None
        self._lock = threading.Lock()
        self.protocol_used: str | None = None
        self.received = 0

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (MQTT 5, falling back to 3.1.1 when allowed), subscribe, and start the network thread."""
        order = {"auto": ["5", "3.1.1"], "5": ["5"], "3.1.1": ["3.1.1"]}[self._cfg.protocol]
        last_error = ""
        for proto in order:
            ok, last_error = self._try_connect(proto)
            if ok:
                self.protocol_used = proto
                log.info("ingest connected to %s:%s with MQTT %s", self._cfg.host, self._cfg.port, proto)
                if proto == "5" and self._cfg.share_group:
                    log.warning(
                        "shared subscription $share/%s: on mosquitto a broker restart drops it, and messages published"
                        " before every worker has reconnected are lost (docs/durability.md); one worker without a"
                        " share group is durable",
                        self._cfg.share_group,
                    )
                return
        raise MqttError(f"cannot connect to MQTT broker {self._cfg.host}:{self._cfg.port}: {last_error}")

    def stop(self) -> None:
        client = self._client
        if client is not None:
            client.disconnect()
            client.loop_stop()
            self._client = None

    @property
    def connections(self) -> int:
        """Connections made to the broker so far: 1 while the first never dropped."""
        return self._generation

    def check(self) -> None:
        """Raise MqttError unless connected (paho's network thread reconnects by itself; the ``mqtt-in`` worker calls
        this, so a broker that stays away shows as an unhealthy stage with the reason)."""
        client = self._client
        if client is None:
            raise MqttError("the MQTT source is not started")
        if not client.is_connected():
            raise MqttError(f"not connected to broker {self._cfg.host}:{self._cfg.port}; paho is reconnecting")

    def _try_connect(self, proto: str) -> tuple[bool, str]:
        client = self._make_client(proto)
        self._subscribed.clear()
        self._connack = None
        try:
            if proto == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self._cfg.session_expiry_s
                props.ReceiveMaximum = min(self._cfg.receive_maximum, 65_535)
                client.connect(
                    self._cfg.host, self._cfg.port, self._cfg.keepalive_s, clean_start=False, properties=props
                )
            else:
                client.connect(self._cfg.host, self._cfg.port, self._cfg.keepalive_s)
        except OSError as e:
            return False, f"{type(e).__name__}: {e}"
        client.loop_start()
        if self._subscribed.wait(self._cfg.connect_timeout_s):
            self._client = client
            return True, ""
        client.loop_stop()
        client.disconnect()
        return False, f"no subscription with MQTT {proto} (CONNACK {self._connack})"

    def _make_client(self, proto: str) -> mqtt.Client:
        if proto == "5":
            client = _Client(
                CallbackAPIVersion.VERSION2,
                client_id=self._cfg.client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
            )
        else:
            client = _Client(
                CallbackAPIVersion.VERSION2,
                client_id=self._cfg.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
            )
        if self._cfg.username:
            client.username_pw_set(self._cfg.username, self._cfg.password or None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    # -- callbacks (paho's network thread) -------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, flags: object, rc: ReasonCode, _props: object
    ) -> None:
        self._connack = rc
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        with self._lock:
            self._generation += 1
        filters, stale = subscriptions(self._cfg.topic_root, self._cfg.share_group, client.protocol == mqtt.MQTTv5)
        if stale:
            client.unsubscribe(stale)  # the broker answers "no subscription existed" when there is none: harmless
        client.subscribe([(f, 1) for f in filters])
        log.info("subscribed to %s (session present: %s)", filters, getattr(flags, "session_present", None))

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode], _p: object) -> None:
        failures = [rc for rc in rcs if rc.is_failure]
        if failures:
            log.error("subscription refused: %s", failures)
            return
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        # With the byte-bounded inbox, put waits while it is full: this thread stops reading (backpressure).
        self.received += 1
        token = (self._generation, msg.mid, msg.qos)
        self._inbox.put(RawMessage(msg.topic, bytes(msg.payload), self._clock_us(), token, bool(msg.retain)))

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _flags: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.warning("disconnected from broker (%s); paho reconnects", rc)

    # -- acks (the stream thread) ----------------------------------------------------------------------------

    def ack(self, tokens: Sequence[Hashable]) -> None:
        client = self._client
        if client is None:
            return
        generation = self._generation
        for token in tokens:
            gen, mid, qos = cast(tuple[int, int, int], token)
            if gen == generation and qos > 0:
                client.ack(mid, qos)
