"""A minimal MQTT subscriber that collects what the broker delivers: for tests and smoke checks.

It lives here so that tests can watch the broker without importing paho-mqtt themselves (only simulators/ and
ingest/ touch paho).
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Collector:
    """Subscribes to `topic` at QoS 1 and keeps (topic, payload) of every live message, in arrival order."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str = "lccm/#",
        protocol: str = "5",
        include_retained: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        self.include_retained = include_retained
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        )
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._ready.wait(timeout_s):
            self.close()
            raise TimeoutError(f"no SUBACK from {host}:{port} within {timeout_s} s")

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        # Messages delivered because they were retained earlier carry the retain flag; live ones do not.
        if self.include_retained or not m.retain:
            with self._lock:
                self.received.append((m.topic, bytes(m.payload)))

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def wait_for(self, count: int, timeout_s: float = 10.0, settle_s: float = 0.2) -> int:
        """Wait until `count` messages arrived (or the timeout), then `settle_s` more to catch any extra."""
        deadline = time.monotonic() + timeout_s
        while self.count() < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(settle_s)
        return self.count()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Collector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
