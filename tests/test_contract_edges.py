"""Contract edges (issue 11, point 8) through a real Mosquitto, the ingest process and PostgreSQL: the whole topic
root is subscribed (any other topic under it is ``bad_topic``, the product's own alert and command topics are left
alone), the topic's city is checked against the registry (``city_mismatch``), RFC 8428's ``bver`` rule, an empty
payload is ``bad_payload``, and a retained bad message is recorded once however often it is redelivered.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from lccm.imports.registry import RESERVED_DEVICE_IDS, RegistryInvalid, city_slug, parse_registry_csv
from lccm.ingest import topic as ingest_topic
from lccm.ingest.alerts import DEFAULT_TOPIC, AlertPublisherError, alert_topic
from lccm.notify.model import AlertMessage
from lccm.services import Broker
from lccm.store.devices import import_registry
from tests._city import running_ingest
from tests._mqtt import Publisher

CSV = (
    "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"
    "HALL,City Hall,building,Lampang,M1,electricity_meter,Main meter,900\n"
    "KK1,Khon Kaen hall,building,Khon Kaen,K1,electricity_meter,Main meter,900\n"
)


def _register(url: str) -> None:
    with psycopg.connect(url) as conn:
        import_registry(conn, parse_registry_csv(CSV))


def _reading(ts_s: float, kwh: float = 1.0) -> bytes:
    return json.dumps({"ts": ts_s, "values": {"energy_kwh": kwh}}).encode()


def _dead_letters(url: str) -> list[tuple[str, str, bool]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT topic, reason, retained FROM dead_letters ORDER BY id").fetchall()
    return [(str(t), str(r), bool(k)) for t, r, k in rows]


def _alert(city: str) -> AlertMessage:
    from datetime import UTC, datetime

    return AlertMessage(
        alert_id="A-1", rule_key="r", dedup_key="d", city=city, site_id="HALL", metric="pm25",
        severity="critical", transition="raised",  # type: ignore[arg-type]
        event_time=datetime(2026, 11, 22, tzinfo=UTC), value=1.0, threshold=0.5, unit="ug/m3",
    )  # fmt: skip


def test_every_topic_under_the_root_is_stored_dead_lettered_or_left_alone(
    fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    _register(fresh_db)
    now = time.time() - 600
    root = topic_root
    senml_v11 = json.dumps([{"bver": 11, "bn": "M1:", "bt": now, "n": "energy", "u": "kWh", "v": 2}])
    senml_v10 = json.dumps([{"bver": 10, "bn": "M1:", "bt": now + 1, "n": "energy", "u": "kWh", "v": 3}])
    alert_at = alert_topic(DEFAULT_TOPIC, root, _alert("lampang"))  # as the product publishes it
    sent = [
        (f"{root}/lampang/M1/up", _reading(now), None),
        (f"{root}/khon-kaen/K1/up", _reading(now), None),  # 'Khon Kaen' in the registry
        (f"{root}/lampang/M1/telemetry", _reading(now + 2), "bad_topic"),
        (f"{root}/lampang/M1", _reading(now + 3), "bad_topic"),
        (root, _reading(now + 4), "bad_topic"),
        (f"{root}/Lampang/M1/up", _reading(now + 5), "bad_topic"),
        (f"{root}/chiang-mai/M1/up", _reading(now + 6), "city_mismatch"),
        (f"{root}/lampang/K1/up", _reading(now + 7), "city_mismatch"),
        (f"{root}/lampang/M1/up", b"", "bad_payload"),
        (f"{root}/lampang/M1/up", senml_v11.encode(), "unsupported_version"),
        (f"{root}/lampang/M1/up", senml_v10.encode(), None),
        (alert_at, b'{"kind": "alert"}', None),  # the product's own alert topic: not ingested
        (f"{root}/lampang/M1/cmd/reboot", b"now", None),  # commands to a device: not ingested
    ]
    worker, _ = running_ingest(fresh_db, broker, topic_root, tmp_path)
    pub = Publisher(broker.host, broker.port, f"pub-{root.split('/')[0]}")
    try:
        for topic, payload, _ in sent:
            pub.publish(topic, payload)
        pub.flush()
        assert worker.wait_idle(0.5)
    finally:
        pub.close()
        worker.stop()
    assert alert_at == f"{root}/lampang/alerts/critical"
    assert worker.source.received == len(sent), "every message under the root reached the ingest"
    assert [(t, r) for t, r, _ in _dead_letters(fresh_db)] == [(t, r) for t, _, r in sent if r is not None]
    assert worker.loop.stats.outbound == 2
    with psycopg.connect(fresh_db) as conn:
        stored = conn.execute(
            "SELECT d.device_id, r.value FROM readings r JOIN devices d ON d.id = r.device_id ORDER BY r.ts, d.id"
        ).fetchall()
    assert stored == [("M1", 1.0), ("K1", 1.0), ("M1", 3.0)]


def test_a_retained_bad_message_is_recorded_once_across_reconnects(
    fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    _register(fresh_db)
    root = topic_root
    bad_status = (f"{root}/lampang/M1/status", b"rebooting")
    bad_topic = (f"{root}/lampang/M1/state", b"online")
    pub = Publisher(broker.host, broker.port, f"pub-{root.split('/')[0]}")
    received = []
    try:
        for topic, payload in (bad_status, bad_topic):
            pub.publish(topic, payload, retain=True)
        pub.flush()
        for _ in range(3):  # three ingest runs = three subscriptions: the broker sends both retained messages each time
            worker, _ = running_ingest(fresh_db, broker, topic_root, tmp_path)
            try:
                deadline = time.monotonic() + 30
                while worker.source.received < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert worker.wait_idle(0.3)
            finally:
                worker.stop()
            received.append(worker.source.received)
        pub.publish(*bad_status)  # the device sends it again, live: a new event, recorded again
        pub.flush()
        worker, _ = running_ingest(fresh_db, broker, topic_root, tmp_path)
        try:
            deadline = time.monotonic() + 30
            while worker.source.received < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert worker.wait_idle(0.3)
        finally:
            worker.stop()
    finally:
        for topic, _ in (bad_status, bad_topic):
            pub.publish(topic, b"", retain=True)  # clear the retained messages for the other tests
        pub.close()
    assert received == [2, 2, 2], "each subscription was sent the retained messages again"
    letters = _dead_letters(fresh_db)
    assert sorted(letters[:2]) == sorted([(bad_status[0], "bad_status", True), (bad_topic[0], "bad_topic", True)])
    assert letters[2:] == [(bad_status[0], "bad_status", False)]


@pytest.mark.parametrize(
    ("city", "slug"),
    [("Lampang", "lampang"), ("Khon Kaen", "khon-kaen"), ("  Chiang  Mai ", "chiang-mai"), ("khon-kaen", "khon-kaen"),
     ("Hà Nội", "ha-noi"), ("Phra Nakhon Si Ayutthaya", "phra-nakhon-si-ayutthaya"), ("ลำปาง", None),
     ("ลำปาง Lampang", "lampang"), ("x" * 40, "x" * 32), ("a" * 31 + " b", "a" * 31)],
)  # fmt: skip
def test_city_slug(city: str, slug: str | None) -> None:
    assert city_slug(city) == slug


def test_the_registry_import_refuses_a_city_without_a_slug_and_the_reserved_device_id() -> None:
    header = "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"
    with pytest.raises(RegistryInvalid) as refused:
        parse_registry_csv(
            header + "S,Hall,building,ลำปาง,M1,electricity_meter,m,60\nT,Hall,building,X,alerts,lamp,l,60\n"
        )
    problems = {(e.row, e.column) for e in refused.value.errors}
    assert problems == {(2, "city"), (3, "device_id")}
    assert RESERVED_DEVICE_IDS == ingest_topic.RESERVED_DEVICE_IDS == {ingest_topic.ALERTS_LEVEL}


def test_an_alert_topic_template_under_the_root_must_use_the_reserved_level() -> None:
    alert = _alert("lampang")
    assert alert_topic("{root}/{city}/alerts/{severity}/{site_id}", "lccm/v1", alert) == (
        "lccm/v1/lampang/alerts/critical/HALL"
    )
    assert alert_topic("ops/{city}/{severity}", "lccm/v1", alert) == "ops/lampang/critical"  # outside the root
    for template in ("{root}/{city}/{site_id}/up", "{root}/{city}/{severity}", "{root}"):
        with pytest.raises(AlertPublisherError, match="the ingest would read it"):
            alert_topic(template, "lccm/v1", alert)
