"""Sustained overload on a real mosquitto with a short keep-alive: the ingest keeps its one session.

A raw QoS 1 publisher (a socket, no client library: it publishes far faster than the ingest commits) sends a burst
that takes the ingest many keep-alives to drain. Every message the ingest receives costs the broker one of our
PUBACKs to read, one packet per turn of its loop, so our PINGREQ waits behind thousands of them and its PINGRESP
comes seconds late; paho alone then dropped the connection every keep-alive (ingest/mqtt.py ``_Client``), each time
with a reconnect and the redelivery of everything unacknowledged. Checked: one connection from start to end, the
broker never closed or timed out the ingest's session, every message stored once, and the overload real (the
ingest still committing several keep-alives after the last publish was acknowledged by the broker).

Each message carries READINGS_PER_MESSAGE readings: with the lean receiving path the ingest drains messages of one
reading about as fast as this publisher sends them, so the overload comes from the database's work, as it does
for a deployed ingest behind a city's batched meters.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import psycopg
import pytest

from lccm.runtime import Services, build_ingest
from lccm.services import start_broker
from lccm.settings import Settings
from tests._mqtt import str16, varint

KEEPALIVE_S = 1
MESSAGES = 60_000
READINGS_PER_MESSAGE = 30


def _flood(host: str, port: int, topic: str, t0: int) -> float:
    """Publish MESSAGES QoS 1 messages as fast as the socket takes them; return when the broker has acknowledged
    every one (monotonic time)."""
    sock = socket.create_connection((host, port), timeout=30)
    body = str16("MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + str16(f"flood-{t0}")
    sock.sendall(b"\x10" + varint(len(body)) + body)
    assert sock.recv(4)[:2] == b"\x20\x02"
    acked = [0]

    def read_acks() -> None:  # PUBACKs are 4 bytes each; the broker acks in order
        pending = 0
        while acked[0] < MESSAGES:
            data = sock.recv(65_536)
            if not data:
                return
            pending += len(data)
            acked[0] += pending // 4
            pending %= 4

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    packets = []
    for i in range(MESSAGES):
        records = [
            {"ts": t0 + i * READINGS_PER_MESSAGE + k, "values": {"energy_kwh": float(i * READINGS_PER_MESSAGE + k)}}
            for k in range(READINGS_PER_MESSAGE)
        ]
        payload = json.dumps({"seq": i, "records": records}).encode()
        var = str16(topic) + (i % 65_535 + 1).to_bytes(2, "big") + payload
        packets.append(b"\x32" + varint(len(var)) + var)
    for k in range(0, MESSAGES, 1000):
        sock.sendall(b"".join(packets[k : k + 1000]))
    reader.join(120)
    done = time.monotonic()
    sock.sendall(b"\xe0\x00")
    sock.close()
    assert acked[0] == MESSAGES
    return done


@pytest.mark.slow
def test_a_short_keepalive_holds_through_sustained_overload(fresh_db: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city) VALUES ('S1', 'Town hall', 'building', 'lampang')"
        )
        conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s)"
            " SELECT 'D1', id, 'electricity_meter', 'D1', 60 FROM sites WHERE site_code = 'S1'"
        )
    broker = start_broker(tmp_path / "broker", persist=False)
    root = "ovl/v1"
    settings = Settings(database_url=fresh_db, mqtt_topic_root=root, mqtt_keepalive_s=KEEPALIVE_S)
    worker = build_ingest(settings, Services(fresh_db, broker.host, broker.port, "5"), client_id="overloaded")
    try:
        worker.start()
        t0 = int(time.time()) - 2 * MESSAGES * READINGS_PER_MESSAGE
        published = _flood(broker.host, broker.port, f"{root}/lampang/D1/up", t0)
        assert worker.wait_idle(2 * KEEPALIVE_S, timeout_s=180)
        last_commit = worker.loop.stats.last_commit_at
        connections = worker.source.connections
    finally:
        worker.stop()
        broker.stop()
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT seq) FROM readings").fetchone()
    print(f"\noverload: the ingest committed for {last_commit - published if last_commit else 0:.1f} s after the broker"
          f" acknowledged the last of {MESSAGES} messages; {connections} connection(s)")  # fmt: skip
    assert row == (MESSAGES * READINGS_PER_MESSAGE, MESSAGES)
    assert last_commit is not None and last_commit - published > 3 * KEEPALIVE_S, "no sustained overload"
    assert connections == 1
    assert broker.log_path is not None
    dropped = [
        line
        for line in broker.log_path.read_text().splitlines()
        if "overloaded" in line and ("timeout" in line or "closed its connection" in line)
    ]
    assert dropped == []
