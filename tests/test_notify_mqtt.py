"""The MQTT alert topic: ingest's publisher against the test session's real broker, received by a real paho
subscriber."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lccm.ingest.alerts import AlertPublisherError, MqttAlertPublisher
from lccm.ingest.broker_admin import BrokerAdminConfig
from lccm.mqtt_identity import IngestIdentity, add_alert_reader, open_identities
from lccm.notify.dispatch import Dispatcher
from lccm.notify.model import Address, AlertMessage, Notification, Recipient
from lccm.notify.outbox import MemoryOutbox
from lccm.services import Broker, free_port
from tests._prod_broker import prod_broker


class Subscriber:
    def __init__(
        self, broker: Broker, topic_filter: str, auth: tuple[str, str] | None = None, client_id: str = ""
    ) -> None:
        self.messages: queue.SimpleQueue[mqtt.MQTTMessage] = queue.SimpleQueue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}")
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


def test_production_broker_lets_the_ingest_publish_alerts_and_only_alert_readers_read_them() -> None:
    """The shipped broker configuration (tests/_prod_broker.py) with the identities `lccm broker setup`,
    `lccm broker add-reader` and `lccm devices import` create: the ingest's publisher reaches the alert reader; a
    device may not forge an alert, and the alert reader sees no device data."""
    with prod_broker() as real:
        admin_cfg = BrokerAdminConfig("127.0.0.1", real.port, "lccm-admin", real.admin_password)
        with open_identities(admin_cfg) as admin:
            admin.put_services(IngestIdentity("lccm/v1", "lccm-ingest", "lccm-ingest", "ingest-pw"))
            reader_user, reader_secret = add_alert_reader(admin, "control-room", "lccm/v1")
            admin.put_devices("lccm/v1", {"LPG-TH-01-M1": "device-pw"})
        broker = Broker("127.0.0.1", real.port, "mosquitto")
        reader = Subscriber(broker, "lccm/v1/+/alerts/#", auth=(reader_user, reader_secret), client_id=reader_user)
        device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="LPG-TH-01-M1")
        device.username_pw_set("LPG-TH-01-M1", "device-pw")
        device.connect("127.0.0.1", real.port)
        device.loop_start()
        device.publish("lccm/v1/lampang/LPG-TH-01-M1/up", b'{"energy_kwh": 1}', qos=1).wait_for_publish(5)
        forged = device.publish("lccm/v1/lampang/alerts/critical", b'{"forged": true}', qos=1)
        forged.wait_for_publish(5)
        publisher = MqttAlertPublisher(
            "127.0.0.1", real.port, "lccm-ingest-1-alerts", username="lccm-ingest", password="ingest-pw"
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
