"""The MQTT alert topic: ingest's publisher against the test session's real broker, received by a real paho
subscriber."""

from __future__ import annotations

import json
import os
import pwd
import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lccm.ingest.alerts import AlertPublisherError, MqttAlertPublisher
from lccm.notify.dispatch import Dispatcher
from lccm.notify.model import Address, AlertMessage, Notification, Recipient
from lccm.notify.outbox import MemoryOutbox
from lccm.services import Broker, free_port, wait_for_port

ACL = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "acl"


class Subscriber:
    def __init__(self, broker: Broker, topic_filter: str, auth: tuple[str, str] | None = None) -> None:
        self.messages: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK"

    def get(self, timeout: float = 10.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker: Broker, topic_root: str) -> Iterator[Subscriber]:
    s = Subscriber(broker, f"{topic_root}/+/alerts/#")
    yield s
    s.close()


@pytest.fixture
def publisher(broker: Broker, topic_root: str) -> Iterator[MqttAlertPublisher]:
    p = MqttAlertPublisher(
        broker.host, broker.port, f"alerts-{uuid.uuid4().hex[:8]}", topic_root=topic_root, protocol=broker.protocol
    )
    with p:
        yield p


ALERT = AlertMessage(
    alert_id="A-9",
    rule_key="so2_15min_egat",
    dedup_key="mm-03/so2",
    city="lampang",
    site_id="mm-03",
    metric="so2",
    severity="critical",  # type: ignore[arg-type]
    transition="raised",  # type: ignore[arg-type]
    event_time=datetime(2026, 1, 20, 23, 10, tzinfo=UTC),  # 06:10 on 21 Jan in Bangkok
    value=0.16,
    threshold=0.15,
    unit="ppm",
    site_name_th="สถานีแม่เมาะ 3",
    site_name_en="Mae Moh station 3",
)


def note(alert: AlertMessage) -> Notification:
    return Notification(
        "5d7e0f42-1111-5222-8333-444455556666", "alert", "x", "en", "s", "b", (alert,), alert.event_time
    )


def test_dispatched_alert_arrives_on_the_severity_topic(
    broker: Broker, topic_root: str, subscriber: Subscriber, publisher: MqttAlertPublisher
) -> None:
    bus = Recipient("ops-bus", (Address("mqtt", ""),), language="both")
    dispatcher = Dispatcher([bus], [publisher], MemoryOutbox())
    [record] = dispatcher.dispatch(ALERT).deliveries
    assert record.ok and record.channel == "mqtt", record

    msg = subscriber.get()
    assert msg.topic == f"{topic_root}/lampang/alerts/critical"
    assert msg.qos == 1 and not msg.retain
    doc = json.loads(msg.payload.decode("utf-8"))
    assert doc["alert"] == ALERT.to_dict()
    assert doc["kind"] == "alert" and doc["notification_id"] == record.notification_id
    assert doc["subject"] == (
        "[วิกฤต] แจ้งเตือนใหม่: ซัลเฟอร์ไดออกไซด์ (SO2) ที่ สถานีแม่เมาะ 3"
        " / [Critical] Raised: Sulphur dioxide (SO2) at Mae Moh station 3"
    )
    assert "เวลา 21 ม.ค. 2569 06:10 น." in doc["text"]
    if broker.kind == "mosquitto":
        assert publisher.protocol_used == "5"


def test_address_can_carry_its_own_topic_template(
    topic_root: str, subscriber: Subscriber, publisher: MqttAlertPublisher
) -> None:
    note = Notification(
        "5d7e0f42-1111-5222-8333-444455556666", "alert", "x", "en", "s", "b", (ALERT,), ALERT.event_time
    )
    outcome = publisher.send(Address("mqtt", "{root}/{city}/alerts/{severity}/{site_id}"), note)
    assert outcome.ok and outcome.detail == "1 message(s) acknowledged"
    assert subscriber.get().topic == f"{topic_root}/lampang/alerts/critical/mm-03"

    bad = publisher.send(Address("mqtt", "{root}/{city}/alerts/{building}"), note)
    assert not bad.ok and "uses a field other than" in bad.error
    wild = publisher.send(Address("mqtt", "{root}/+/alerts"), note)
    assert not wild.ok and "not a valid publish topic" in wild.error
    with pytest.raises(queue.Empty):
        subscriber.get(timeout=0.3)


def test_unreachable_broker_and_unstarted_publisher() -> None:
    dead = MqttAlertPublisher("127.0.0.1", free_port(), "alerts-dead", protocol="5", connect_timeout_s=1)
    with pytest.raises(AlertPublisherError, match="cannot connect to MQTT broker"):
        dead.start()
    note = Notification(
        "5d7e0f42-1111-5222-8333-444455556666", "alert", "x", "en", "s", "b", (ALERT,), ALERT.event_time
    )
    outcome = dead.send(Address("mqtt", ""), note)
    assert not outcome.ok and outcome.error == "alert publisher is not started"


def test_production_acl_lets_the_ingest_publish_alerts_and_only_lccm_alerts_read_them(tmp_path: Path) -> None:
    """deploy/mosquitto/acl on a real Mosquitto with passwords: the ingest's publisher reaches the alert reader;
    a device may not forge an alert, and the alert reader sees no device data."""
    exe = shutil.which("mosquitto")
    passwd = shutil.which("mosquitto_passwd")
    if exe is None or passwd is None:
        pytest.skip("mosquitto and mosquitto_passwd are needed for the ACL test")
    users = {"lccm-ingest": "ingest-pw", "lccm-alerts": "alerts-pw", "LPG-TH-01-M1": "device-pw"}
    pw_file = tmp_path / "passwords"
    pw_file.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    subprocess.run([passwd, "-U", str(pw_file)], check=True)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw_file}\n"
        f"acl_file {ACL}\npersistence false\n"
        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"  # as root it would drop to 'mosquitto', who cannot read tmp
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, timeout_s=10)
        broker = Broker("127.0.0.1", port, "mosquitto")
        reader = Subscriber(broker, "lccm/v1/#", auth=("lccm-alerts", users["lccm-alerts"]))
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="LPG-TH-01-M1")
        device.username_pw_set("LPG-TH-01-M1", users["LPG-TH-01-M1"])
        device.connect("127.0.0.1", port)
        device.loop_start()
        device.publish("lccm/v1/lampang/LPG-TH-01-M1/up", b'{"energy_kwh": 1}', qos=1).wait_for_publish(5)
        forged = device.publish("lccm/v1/lampang/alerts/critical", b'{"forged": true}', qos=1)
        forged.wait_for_publish(5)
        publisher = MqttAlertPublisher(
            "127.0.0.1", port, "lccm-ingest-1-alerts", username="lccm-ingest", password=users["lccm-ingest"]
        )
        with publisher:
            outcome = publisher.send(Address("mqtt", ""), note(ALERT))
        assert outcome.ok, outcome
        msg = reader.get(timeout=10)
        assert msg.topic == "lccm/v1/lampang/alerts/critical"
        assert json.loads(msg.payload)["alert"] == ALERT.to_dict()
        with pytest.raises(queue.Empty):  # neither the device's reading nor its forged alert reached the reader
            reader.get(timeout=1.0)
        device.disconnect()
        device.loop_stop()
        reader.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
