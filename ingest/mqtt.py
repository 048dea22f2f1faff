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

Each message becomes a ``RawMessage`` at once; its ack token is one int holding (connection generation, QoS,
packet id). Tokens from a connection that has since dropped are not acked: the broker redelivers those messages on
the new connection, and the database key makes the second copy a no-op.

The receiving path is paho's, made lean for messages of one reading (``_Client``): paho read each packet in three
or more ``recv`` calls with a ``select`` between packets, and built an ``MQTTMessage`` and an MQTT 5 ``Properties``
for each PUBLISH, and the callback put each message in the inbox under its lock, waking the stream thread: that
thread, not the database, bounded the ingest of single-reading messages (benchmarks/README.md). Here a read takes
what the socket holds, PUBLISH packets are parsed in place, and the messages of one read go to the inbox together;
the acks of a committed batch go out as one write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lccm.ingest.topic import subscription_filters
from lccm.stream.loop import RawMessage

if TYPE_CHECKING:
    from paho.mqtt.client import _InPacket  # paho's own type of it (defined for type checkers only)

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


class Inbox(Protocol):
    """Where the source puts what it receives: the byte-bounded inbox (stream/inbox.py), whose ``put_many`` waits
    while it is full."""

    def put_many(self, msgs: list[RawMessage]) -> None: ...


class MqttError(RuntimeError):
    """The broker could not be reached or refused us."""


# What one read from the broker's socket takes at most: a few thousand single-reading messages, or one at the
# contract's maximum size (a larger message is read in several).
RECV_BYTES = 256 * 1024
_PUBLISH = 0x30
# A token: the connection generation above bit 18, the QoS in bits 16-17, the packet id below (16 bits).
_GEN_SHIFT = 18
_QOS_SHIFT = 16
_PUBACK_HEADER = 0x4002 << 16  # PUBACK, remaining length 2 (MQTT 5: reason Success, no properties, may be left out)

# (topic, payload, packet id, QoS, retained)
Publish = tuple[str, bytes, int, int, bool]


def _paho_in_packet(command: int = 0, body: bytes | None = None) -> _InPacket:
    """paho 2.2's ``_in_packet``: a whole packet read (``body``), or none (its state between packets)."""
    return {
        "command": command, "have_remaining": int(body is not None), "remaining_count": [], "remaining_mult": 1,
        "remaining_length": len(body or b""), "packet": bytearray(body or b""), "to_process": 0, "pos": 0,
    }  # fmt: skip


class _Client(mqtt.Client):
    """paho's client with a leaner receiving path, and a PINGRESP late while the broker's publishes keep arriving
    not dropping the connection.

    Receiving: ``_packet_read`` (called by paho's loop when the socket is readable) takes up to RECV_BYTES in one
    ``recv`` and handles every complete packet in them, in order; the rest waits for the next read. A PUBLISH at
    QoS 0 or 1 is parsed here (topic, packet id, MQTT 5 properties skipped: we ask for none, and without a topic
    alias maximum of ours the broker sends no alias) and collected; the collected ones go to ``on_publishes`` as
    one list before any other packet is handled and at the end of the read. Every other packet (CONNACK, SUBACK,
    PINGRESP, DISCONNECT, a PUBLISH at QoS 2 or with an empty topic) goes through paho's own handler as before.
    This relies on paho 2.2's private ``_in_packet``/``_packet_handle``/``_packet_queue`` (pinned in
    constraints.txt): tests/test_mqtt_receive.py checks the parser against packets framed by hand and the whole path
    against a real mosquitto, as tests/test_ingest_mqtt.py and tests/test_ingest_overload.py run the ingest on it.

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

    def __init__(self, *args: Any, on_publishes: Callable[[list[Publish]], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_publishes = on_publishes
        self._rbuf = bytearray()
        self._rbuf_sock: object = None  # the socket the buffered bytes came from: a new connection starts empty

    def _packet_read(self) -> MQTTErrorCode:
        try:
            data = self._sock_recv(RECV_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            log.warning("failed to receive from the broker: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        if self._rbuf_sock is not self._sock:
            self._rbuf_sock, self._rbuf = self._sock, bytearray()
        buf = self._rbuf
        buf += data
        published: list[Publish] = []
        mqtt5 = self._protocol == mqtt.MQTTv5
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        pos, end = 0, len(buf)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            start, length = _fixed_header(buf, pos, end)
            if start < 0:
                if start == -2:
                    rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                break
            command, body = buf[pos], bytes(buf[start : start + length])
            pos = start + length
            publish = _publish(command, body, mqtt5) if command & 0xF0 == _PUBLISH else None
            if publish is not None:
                published.append(publish)
                continue
            if published:
                self._on_publishes(published)
                published = []
            rc = self._paho_handle(command, body)
            if self._sock is None:  # the packet ended the connection (a DISCONNECT): what follows is not ours
                pos = end
                break
        if published:
            self._on_publishes(published)
        del buf[:pos]
        return rc

    def _paho_handle(self, command: int, body: bytes) -> MQTTErrorCode:
        """One packet through paho's handlers, as its own ``_packet_read`` hands it over."""
        self._in_packet = _paho_in_packet(command, body)
        try:
            rc = self._packet_handle()
        except mqtt.MalformedPacket as exc:
            log.warning("malformed packet from the broker: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = _paho_in_packet()  # paho's state between packets, as its own reader leaves it
        return rc

    def ack_many(self, mids: np.ndarray) -> None:
        """PUBACK each packet id, in order, as one write (paho's ``ack`` queued a packet and woke its thread for
        each)."""
        if len(mids):
            blob = (mids.astype(np.uint32) | _PUBACK_HEADER).astype(">u4").tobytes()
            self._packet_queue(mqtt.PUBACK, blob, 0, 0)


def _fixed_header(buf: bytearray, pos: int, end: int) -> tuple[int, int]:
    """(where the packet's body starts, its length) for the packet at ``pos``; (-1, 0) when it is not all in
    ``buf[pos:end]`` yet, (-2, 0) for a remaining length longer than the protocol's four bytes."""
    length, mult, i = 0, 1, pos + 1
    while True:
        if i >= end:
            return -1, 0
        byte = buf[i]
        length += (byte & 0x7F) * mult
        i += 1
        if not byte & 0x80:
            break
        if i - pos > 4:
            return -2, 0
        mult *= 128
    return (i, length) if i + length <= end else (-1, 0)


def _publish(command: int, body: bytes, mqtt5: bool) -> Publish | None:
    """A PUBLISH at QoS 0 or 1 as (topic, payload, packet id, QoS, retained); None for what paho must handle (QoS
    2, an empty topic: a topic alias, or an error paho reports) or a packet too short to parse."""
    qos = (command >> 1) & 3
    n = len(body)
    if qos > 1 or n < 2:
        return None
    p = 2 + ((body[0] << 8) | body[1])
    topic = body[2:p]
    if not topic:
        return None
    mid = 0
    if qos:
        if p + 2 > n:
            return None
        mid = (body[p] << 8) | body[p + 1]
        p += 2
    if mqtt5:  # skip the properties: a variable byte integer of their length, then them
        plen, mult = 0, 1
        while True:
            if p >= n or mult > 128**3:
                return None
            byte = body[p]
            p += 1
            plen += (byte & 0x7F) * mult
            if not byte & 0x80:
                break
            mult *= 128
        p += plen
    if p > n:
        return None
    # An invalid UTF-8 topic (which a broker should refuse) is decoded with replacements: the codec refuses it.
    return topic.decode("utf-8", "replace"), body[p:], mid, qos, bool(command & 1)


def _now_us() -> int:
    return time.time_ns() // 1000


class MqttSource:
    def __init__(self, cfg: MqttConfig, inbox: Inbox, clock_us: Callable[[], int] = _now_us) -> None:
        self._cfg = cfg
        self._inbox = inbox
        self._clock_us = clock_us
        self._client: _Client | None = None
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

    def _make_client(self, proto: str) -> _Client:
        if proto == "5":
            client = _Client(
                CallbackAPIVersion.VERSION2,
                client_id=self._cfg.client_id,
                protocol=mqtt.MQTTv5,
                manual_ack=True,
                on_publishes=self._on_publishes,
            )
        else:
            client = _Client(
                CallbackAPIVersion.VERSION2,
                client_id=self._cfg.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
                manual_ack=True,
                on_publishes=self._on_publishes,
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

    def _on_publishes(self, publishes: list[Publish]) -> None:
        """The messages of one read from the socket, in order: one receive time, one put. The put waits while the
        inbox is full: this thread stops reading (backpressure)."""
        now_us = self._clock_us()
        gen = self._generation << _GEN_SHIFT
        self.received += len(publishes)
        self._inbox.put_many(
            [RawMessage(t, p, now_us, gen | (q << _QOS_SHIFT) | mid, r) for t, p, mid, q, r in publishes]
        )

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        """What paho's own handler delivers (the rare PUBLISH ``_Client`` leaves to it)."""
        self._on_publishes([(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain))])

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _flags: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.warning("disconnected from broker (%s); paho reconnects", rc)

    # -- acks (the stream thread) ----------------------------------------------------------------------------

    def ack(self, tokens: Sequence[Hashable]) -> None:
        """PUBACK the messages of the current connection, in order, in one write."""
        client = self._client
        if client is None or not tokens:
            return
        t = np.fromiter(cast(Sequence[int], tokens), dtype=np.int64, count=len(tokens))
        current = (t >> _GEN_SHIFT) == self._generation
        qos = (t >> _QOS_SHIFT) & 3
        client.ack_many(t[current & (qos == 1)] & 0xFFFF)
        for token in t[current & (qos == 2)]:  # we subscribe at QoS 1: the broker sends none at 2
            client.ack(int(token) & 0xFFFF, 2)
