"""The ingest's lean MQTT receiving path (ingest/mqtt.py ``_Client``): PUBLISH packets parsed in place, the messages
of one read handed over together, the acks of a batch in one write.

The parser is checked against packets framed here by hand from the MQTT 3.1.1 and 5 specifications (independent
of paho's and of ours); the whole path against a real mosquitto: what a paho publisher sends (MQTT 5 properties,
QoS 0 and 1, a retained message, payloads from empty to 250 kB, more than one read holds) arrives intact and in
order, the acks reach the broker (a new connection of the same session gets nothing again), and what was not acked
comes again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lccm.ingest.mqtt import RECV_BYTES, MqttConfig, MqttSource, _fixed_header, _publish
from lccm.services import Broker
from lccm.stream.inbox import ByteBoundedInbox
from lccm.stream.loop import RawMessage
from tests._mqtt import str16, varint


def _packet(topic: bytes, payload: bytes, qos: int, mid: int, retain: bool, props: bytes | None) -> bytes:
    """A PUBLISH as the specifications frame it; ``props`` None for MQTT 3.1.1 (no property block)."""
    var = str16(topic) + (mid.to_bytes(2, "big") if qos else b"")
    if props is not None:
        var += varint(len(props)) + props
    body = var + payload
    return bytes([0x30 | qos << 1 | int(retain)]) + varint(len(body)) + body


# MQTT 5 properties: message expiry interval (0x02, four bytes), a user property (0x26, two strings).
PROPS = b"\x02" + (3600).to_bytes(4, "big") + b"\x26" + str16(b"k") + str16(b"v" * 200)


@pytest.mark.parametrize(
    ("qos", "mid", "retain", "props", "payload"),
    [
        (1, 513, True, PROPS, b'{"ts": 1, "values": {"energy_kwh": 1.5}}'),
        (1, 65535, False, b"", b"x" * 200),  # MQTT 5 without properties: a zero-length block
        (0, 0, False, None, b"y" * 20_000),  # MQTT 3.1.1, a three-byte remaining length
        (1, 7, False, None, b""),
    ],
)
def test_a_publish_is_parsed_into_topic_payload_packet_id_qos_and_retain(
    qos: int, mid: int, retain: bool, props: bytes | None, payload: bytes
) -> None:
    raw = _packet(b"lccm/v1/lampang/M1/up", payload, qos, mid, retain, props)
    body_len = len(raw) - 1 - len(varint(len(raw)))  # no body here is near a length-byte boundary
    assert len(varint(body_len)) == len(raw) - 1 - body_len
    buf = bytearray(b"junk" + raw + b"\x30")  # the packet between others' bytes
    start, length = _fixed_header(buf, 4, len(buf))
    assert (start, length) == (4 + len(raw) - body_len, body_len)
    body = bytes(buf[start : start + length])
    assert _publish(raw[0], body, mqtt5=props is not None) == ("lccm/v1/lampang/M1/up", payload, mid, qos, retain)


def test_an_incomplete_packet_waits_and_an_overlong_length_is_an_error() -> None:
    raw = _packet(b"a/b", b"z" * 300, 1, 1, False, b"")
    for cut in (1, 2, len(raw) - 1):  # the type byte alone, half the length, all but the last byte
        assert _fixed_header(bytearray(raw[:cut]), 0, cut) == (-1, 0)
    assert _fixed_header(bytearray(raw), 0, len(raw))[0] == 3  # type byte, two length bytes
    overlong = bytearray(b"\x30\xff\xff\xff\xff\x01")
    assert _fixed_header(overlong, 0, len(overlong)) == (-2, 0)


def test_what_paho_must_handle_is_left_to_it() -> None:
    assert _publish(0x34, _packet(b"a/b", b"p", 2, 9, False, b"")[2:], mqtt5=True) is None  # QoS 2
    assert _publish(0x32, _packet(b"", b"p", 1, 9, False, b"\x23\x00\x01")[2:], mqtt5=True) is None  # topic alias
    assert _publish(0x32, b"\x00\x05ab", mqtt5=False) is None  # shorter than its topic length says


class _Received:
    """The inbox's receiving end, drained by a thread: what arrived, in order."""

    def __init__(self) -> None:
        self.inbox = ByteBoundedInbox(64 * 2**20)
        self.messages: list[RawMessage] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.inbox.get(timeout=0.05))
            except Exception:
                continue

    def wait_for(self, n: int, timeout_s: float = 30) -> list[RawMessage]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _source(broker: Broker, root: str, client_id: str, received: _Received) -> MqttSource:
    cfg = MqttConfig(host=broker.host, port=broker.port, client_id=client_id, topic_root=root, protocol="5")
    source = MqttSource(cfg, received.inbox)
    source.start()
    return source


def _publisher(broker: Broker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _send(client: mqtt.Client, sent: list[tuple[str, bytes, int, bool]]) -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 3600
    props.UserProperty = [("source", "test"), ("note", "n" * 100)]
    infos = [client.publish(t, p, qos=q, retain=r, properties=props) for t, p, q, r in sent]
    for info in infos:
        info.wait_for_publish(timeout=30)


def test_every_message_arrives_intact_in_order_and_acks_reach_the_broker(broker: Broker, topic_root: str) -> None:
    topic = f"{topic_root}/lampang/M1/up"
    retained = (f"{topic_root}/lampang/M2/status", b"online", 1, True)
    sizes = [0, 1, 127, 128, 16_383, 16_384, 250_000] + [60] * 6000  # 250 kB alone is most of one read
    sent = [(f"{topic_root}/lampang/M{i}/up", bytes([65 + i % 26]) * n, i % 2, False) for i, n in enumerate(sizes)]
    assert sum(len(p) for _, p, _, _ in sent) > 2 * RECV_BYTES
    pub = _publisher(broker)
    _send(pub, [retained])  # before the subscription: delivered from the broker's retained store
    received = _Received()
    source = _source(broker, topic_root, "lean-1", received)
    try:
        _send(pub, sent)
        got = received.wait_for(1 + len(sent))
        assert len(got) == 1 + len(sent)
        first = got[0]
        assert (first.topic, first.payload, first.retained) == (retained[0], retained[1], True)
        # MQTT orders the messages of one QoS; mosquitto may pass a QoS 0 message before a QoS 1 one queued earlier.
        for qos in (0, 1):
            arrived = [(m.topic, m.payload, m.retained) for m in got[1:] if (cast(int, m.token) >> 16) & 3 == qos]
            assert arrived == [(t, p, False) for t, p, q, _ in sent if q == qos]
        assert source.received == 1 + len(sent)
        source.ack([m.token for m in got])
        time.sleep(0.5)  # let the network thread write the acks before the connection closes
    finally:
        source.stop()
    # The same session again: everything was acked, so nothing comes back but the retained message (sent anew at
    # every subscription).
    again = _Received()
    source = _source(broker, topic_root, "lean-1", again)
    try:
        _send(pub, [(topic, b"after", 1, False)])
        again.wait_for(2)
        time.sleep(1.0)
        assert sorted((m.payload, m.retained) for m in again.messages) == [(b"after", False), (b"online", True)]
        source.ack([m.token for m in again.messages])
        time.sleep(0.5)
    finally:
        source.stop()
        pub.disconnect()
        pub.loop_stop()
        received.close()
        again.close()


def test_what_was_not_acked_comes_again_on_the_next_connection(broker: Broker, topic_root: str) -> None:
    topic = f"{topic_root}/lampang/M1/up"
    pub = _publisher(broker)
    first = _Received()
    source = _source(broker, topic_root, "lean-2", first)
    try:
        _send(pub, [(topic, str(i).encode(), 1, False) for i in range(100)])
        got = first.wait_for(100)
        assert len(got) == 100
        source.ack([m.token for m in got[:60]])  # the first 60 only, as a committed batch would be
        time.sleep(0.5)
    finally:
        source.stop()
    second = _Received()
    source = _source(broker, topic_root, "lean-2", second)
    try:
        again = second.wait_for(40)
        assert sorted(int(m.payload) for m in again) == list(range(60, 100))
        source.ack([m.token for m in again])
        time.sleep(0.5)
    finally:
        source.stop()
        pub.disconnect()
        pub.loop_stop()
        first.close()
        second.close()


def test_a_group_of_messages_waits_for_room_for_all_of_it(tmp_path: Path) -> None:
    """put_many: one read's messages are admitted together once they fit; a group larger than the budget only into
    an empty inbox (as a single large message is)."""
    msg = RawMessage("t", b"p" * 1000, 0, 0)
    size = 1000 + 1 + 256
    inbox = ByteBoundedInbox(10 * size)
    inbox.put_many([msg] * 8)
    done = threading.Event()

    def put_four() -> None:
        inbox.put_many([msg] * 4)
        done.set()

    t = threading.Thread(target=put_four)
    t.start()
    assert not done.wait(0.2)  # 8 + 4 > 10: waits
    inbox.get_nowait()
    assert not done.wait(0.2)  # 7 + 4 > 10: still waits
    inbox.get_nowait()
    assert done.wait(5)  # 6 + 4 fits
    t.join(5)
    assert inbox.qsize() == 10 and inbox.queued_bytes == 10 * size
    for _ in range(10):
        inbox.get_nowait()
    inbox.put_many([msg] * 30)  # larger than the budget, into an empty inbox
    assert inbox.qsize() == 30
