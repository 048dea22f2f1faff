"""A test publisher: paho, QoS 1, with a bounded window of outstanding messages (paho stalls past 65,535)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Publisher:
    def __init__(
        self, host: str, port: int, client_id: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5, window: int = 1000
    ):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.client.connect(host, port)
        self.client.loop_start()
        self._window = window
        self._pending: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self._pending.append(self.client.publish(topic, payload, qos=1, retain=retain))
        if len(self._pending) >= self._window:
            self.flush()

    def flush(self) -> None:
        for info in self._pending:
            info.wait_for_publish(timeout=30)
            assert info.is_published(), "broker did not acknowledge a QoS 1 publish"
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


# MQTT framing by hand, as the specification writes it (MQTT 3.1.1 and 5, section 1.5): for tests that send or parse
# packets without a client library.
def varint(n: int) -> bytes:
    """A variable byte integer (remaining lengths, property lengths)."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def str16(s: str | bytes) -> bytes:
    """A UTF-8 string or binary data with its two-byte length first."""
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b
