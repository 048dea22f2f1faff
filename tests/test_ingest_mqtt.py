"""Ingest against a real broker and database: crash safety, MQTT 3.1.1 fallback, live registry reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from lccm.runtime import Services, build_ingest
from lccm.services import Broker, start_broker
from lccm.settings import Settings
from tests._mqtt import Publisher

T0 = 1795331100  # 2026-11-22T07:05:00Z


def _register(url: str, *device_ids: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city) VALUES ('S1', 'Town hall', 'building', 'lampang')"
            " ON CONFLICT DO NOTHING"
        )
        for d in device_ids:
            conn.execute(
                "INSERT INTO devices (device_id, site_id, kind, name, cadence_s)"
                " SELECT %s, id, 'electricity_meter', %s, 60 FROM sites WHERE site_code = 'S1'",
                (d, d),
            )


def _count(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT seq) FROM readings").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _wait_for(url: str, n: int, timeout_s: float = 60) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    got = _count(url)
    while got[0] < n and time.monotonic() < deadline:
        time.sleep(0.2)
        got = _count(url)
    return got


def _payload(i: int) -> str:
    # Times go backwards from T0 so none is in the future whatever the test machine's clock says.
    return json.dumps({"seq": i, "ts": T0 - i, "values": {"energy_kwh": float(i)}})


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
    fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    _register(fresh_db, "D1")
    env = dict(
        os.environ,
        LCCM_DATABASE_URL=fresh_db,
        LCCM_MQTT_HOST=broker.host,
        LCCM_MQTT_PORT=str(broker.port),
        LCCM_MQTT_TOPIC_ROOT=topic_root,
        LCCM_MQTT_CLIENT_ID=f"ingest-{topic_root.split('/')[0]}",
        LCCM_MQTT_SHARE_GROUP=f"g-{topic_root.split('/')[0]}",
        LCCM_DATA_DIR=str(tmp_path),
        LCCM_METRICS_PORT="0",  # no fixed port: other test runs share this machine
    )
    lccm = [sys.executable, "-m", "lccm", "-v", "ingest"]
    log = (tmp_path / "ingest.log").open("ab")
    proc = subprocess.Popen(lccm, env=env, stdout=log, stderr=subprocess.STDOUT)
    n = 20_000
    try:
        _wait_subscribed(tmp_path / "ingest.log")
        pub = Publisher(broker.host, broker.port, f"pub-{topic_root}")

        def send_all() -> None:
            for i in range(n):
                pub.publish(f"{topic_root}/lampang/D1/up", _payload(i))

        sender = threading.Thread(target=send_all)
        sender.start()
        while _count(fresh_db)[0] < 2000:  # let some batches commit, then kill in the middle of the stream
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = _count(fresh_db)[0]
        sender.join()
        pub.close()
        assert before < n, "the kill came too late to test anything"
        proc = subprocess.Popen(lccm, env=env, stdout=log, stderr=subprocess.STDOUT)
        total, distinct_seq = _wait_for(fresh_db, n)
        assert (total, distinct_seq) == (n, n), f"stored {total} ({distinct_seq} distinct) of {n}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


def _wait_subscribed(log_path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "ingest connected" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise TimeoutError(log_path.read_text(errors="replace")[-3000:])


def test_amqtt_broker_falls_back_to_mqtt_311_with_a_plain_subscription(fresh_db: str, tmp_path: Path) -> None:
    _register(fresh_db, "D1")
    amqtt = start_broker(tmp_path, prefer="amqtt")
    try:
        settings = Settings(database_url=fresh_db, data_dir=tmp_path)
        svc = Services(fresh_db, amqtt.host, amqtt.port, "auto")
        worker = build_ingest(settings, svc)
        worker.start()
        assert worker.source.protocol_used == "3.1.1"
        pub = Publisher(amqtt.host, amqtt.port, "pub311", protocol=mqtt.MQTTv311)
        for i in range(200):
            pub.publish("lccm/v1/lampang/D1/up", _payload(i))
        pub.close()
        assert _wait_for(fresh_db, 200, timeout_s=30) == (200, 200)
        worker.stop()
    finally:
        amqtt.stop()


def test_a_device_registered_while_running_is_accepted(fresh_db: str, broker: Broker, topic_root: str) -> None:
    _register(fresh_db, "D1")
    settings = Settings(database_url=fresh_db, mqtt_topic_root=topic_root, mqtt_share_group="", batch_max_wait_s=0.01)
    worker = build_ingest(settings, Services(fresh_db, broker.host, broker.port, "auto"), client_id=topic_root)
    worker.start()
    pub = Publisher(broker.host, broker.port, f"pub-{topic_root}")
    try:
        pub.publish(f"{topic_root}/lampang/NEW1/up", _payload(1))
        pub.flush()
        worker.wait_idle(0.3)
        _register(fresh_db, "NEW1")
        # A refused message makes the registry probe for changes, at most every 0.5 s (RegistryHolder's
        # probe_interval_s): past that, the next message from the device just registered finds it.
        time.sleep(0.6)
        pub.publish(f"{topic_root}/lampang/NEW1/up", _payload(2))
        pub.flush()
        worker.wait_idle(0.3)
    finally:
        pub.close()
        worker.stop()
    with psycopg.connect(fresh_db) as conn:
        dead = conn.execute("SELECT reason, device_ref, payload FROM dead_letters").fetchall()
        stored = conn.execute("SELECT seq FROM readings").fetchall()
    assert dead == [("unknown_device", "NEW1", _payload(1).encode())]
    assert stored == [(2,)]
