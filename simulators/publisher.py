"""A small pool of MQTT publisher connections, gateway style, with a window of outstanding QoS 1 messages.

paho-mqtt 2.2 stalls past 65,535 unacknowledged QoS 1 messages, so each connection keeps at most `window` in
flight and the caller blocks until PUBACKs free room. PUBACKs are matched to messages by mid in the publishing
thread (the network thread only appends to a deque), which avoids the race where a PUBACK arrives before
publish() has returned its mid.

Every wait is bounded: by `ack_timeout_s` while running (a broker that acknowledges nothing for that long is an
error, not a reason to hang), and, once `stop_event` is set, by `stop_grace_s` counted from the stop (the broker may
already be gone; whatever is still unacknowledged then is reported as not acknowledged).
"""

from __future__ import annotations

import collections
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

AckCallback = Callable[[object, bool], None]


@dataclass
class _Conn:
    client: mqtt.Client
    acks: collections.deque[tuple[int, bool]] = field(default_factory=collections.deque)
    pending: dict[int, object] = field(default_factory=dict)
    wake: threading.Event = field(default_factory=threading.Event)
    connected: threading.Event = field(default_factory=threading.Event)
    connect_error: str | None = None


class PublisherPool:
    def __init__(
        self,
        host: str,
        port: int,
        protocol: str = "5",
        clients: int = 2,
        client_id_prefix: str = "lccm-sim",
        window: int = 1000,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        on_done: AckCallback | None = None,
        stop_event: threading.Event | None = None,
        ack_timeout_s: float = 30.0,
        stop_grace_s: float = 2.0,
    ) -> None:
        if protocol not in ("5", "3.1.1"):
            raise ValueError("protocol must be '5' or '3.1.1'")
        if not 1 <= window <= 60_000:
            raise ValueError("window must be between 1 and 60,000 (paho stalls past 65,535 outstanding)")
        self.host, self.port, self.protocol = host, port, protocol
        self.window = window
        self.keepalive_s = keepalive_s
        self.on_done = on_done
        self.ack_timeout_s, self.stop_grace_s = ack_timeout_s, stop_grace_s
        self._stop = stop_event
        self._stop_seen_at: float | None = None
        self._conns = [self._make(f"{client_id_prefix}-{i + 1}", username, password) for i in range(clients)]

    def _make(self, client_id: str, username: str | None, password: str | None) -> _Conn:
        v5 = self.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # paho resends unacknowledged QoS 1 messages after any reconnect, so a publisher loses nothing with a
            # clean 3.1.1 session; a persistent one would never expire on a stock Mosquitto (v5: see connect()).
            clean_session=None if v5 else True,
        )
        if username:
            client.username_pw_set(username, password)
        # No paho-side limit: our own window bounds what is in flight. A paho limit would cap throughput at its
        # default of 20, and larger limits cost a scan of every queued message per PUBACK (_update_inflight).
        client.max_inflight_messages_set(0)
        conn = _Conn(client)

        def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
            if reason.is_failure:
                conn.connect_error = str(reason)
            else:
                conn.connected.set()
            conn.wake.set()

        def on_disconnect(_c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
            conn.connected.clear()

        def on_publish(_c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
            conn.acks.append((mid, not reason.is_failure))
            conn.wake.set()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        return conn

    def connect(self, timeout_s: float = 10.0) -> None:
        for conn in self._conns:
            if self.protocol == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 600  # long enough to ride out a reconnect
                # A fresh session on the first connect, kept across automatic reconnects (in-flight QoS 1 survives).
                conn.client.connect(
                    self.host,
                    self.port,
                    self.keepalive_s,
                    clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=props,
                )
            else:
                conn.client.connect(self.host, self.port, self.keepalive_s)
            conn.client.loop_start()
        since = time.monotonic()
        for conn in self._conns:
            while not conn.connected.is_set():
                if conn.connect_error:
                    raise ConnectionError(f"MQTT connect refused: {conn.connect_error}")
                if self.stopping():
                    return  # the caller stops too; what it still publishes is reported as not acknowledged
                if self._expired(since, timeout_s):
                    raise TimeoutError(f"no CONNACK from {self.host}:{self.port} within {timeout_s} s")
                conn.wake.wait(0.05)
                conn.wake.clear()

    def stopping(self) -> bool:
        if self._stop is None or not self._stop.is_set():
            return False
        if self._stop_seen_at is None:
            self._stop_seen_at = time.monotonic()
        return True

    def _expired(self, since: float, timeout_s: float) -> bool:
        """Whether a wait that began at `since` and may last timeout_s is over (sooner once stopping)."""
        now = time.monotonic()
        if self.stopping():
            assert self._stop_seen_at is not None
            if now >= self._stop_seen_at + self.stop_grace_s:
                return True
        return now >= since + timeout_s

    def _conn_for(self, device_id: str) -> _Conn:
        # One device always on the same connection: MQTT keeps per-connection order, so per-device order holds.
        return self._conns[zlib.crc32(device_id.encode()) % len(self._conns)]

    def publish(self, device_id: str, topic: str, payload: bytes, retain: bool, token: object) -> bool:
        """Queue one QoS 1 message; blocks while this connection's window is full. False if paho refused it, or if
        the window stayed full until the stop's grace ran out. TimeoutError if no PUBACK freed room for
        ack_timeout_s while running."""
        conn = self._conn_for(device_id)
        since = time.monotonic()
        while len(conn.pending) >= self.window:
            if self._expired(since, self.ack_timeout_s):
                if self.stopping():
                    return False
                raise TimeoutError(
                    f"no PUBACK from {self.host}:{self.port} for {self.ack_timeout_s:.0f} s"
                    f" with {len(conn.pending):,} messages in flight"
                )
            self._wait(conn, 0.05)
        info = conn.client.publish(topic, payload, qos=1, retain=retain)
        # NO_CONN: paho keeps the message and sends it after the automatic reconnect.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return False
        conn.pending[info.mid] = token
        self._drain(conn)
        return True

    def _wait(self, conn: _Conn, timeout_s: float) -> None:
        conn.wake.wait(timeout_s)
        conn.wake.clear()
        self._drain(conn)

    def _drain(self, conn: _Conn) -> None:
        while conn.acks:
            mid, ok = conn.acks.popleft()
            token = conn.pending.pop(mid, None)
            if token is not None and self.on_done is not None:
                self.on_done(token, ok)

    def poll(self) -> None:
        for conn in self._conns:
            self._drain(conn)

    def outstanding(self) -> int:
        return sum(len(c.pending) for c in self._conns)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding PUBACKs (at most timeout_s, less once stopping); report the rest as not
        acknowledged. Returns how many were not."""
        since = time.monotonic()
        for conn in self._conns:
            while conn.pending and not self._expired(since, timeout_s):
                self._wait(conn, 0.05)
        missing = 0
        for conn in self._conns:
            for token in conn.pending.values():
                missing += 1
                if self.on_done is not None:
                    self.on_done(token, False)
            conn.pending.clear()
        return missing

    def close(self) -> None:
        for conn in self._conns:
            conn.client.disconnect()
            conn.client.loop_stop()
