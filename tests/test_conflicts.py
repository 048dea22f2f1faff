"""Corrections are visible (issue 11, point 5): a second value for a stored (device, metric, time) leaves the stored
reading and everything derived from it as they are (first wins, docs/contract.md#duplicates-and-corrections), and
is kept once in ``reading_conflicts`` for ``GET /conflicts``; the same value again stays a silent no-op.

Against the real PostgreSQL, and end to end through a real Mosquitto, the ingest process and the energy updater.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import warnings
from collections.abc import Hashable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.imports.registry import parse_registry_csv
from lccm.ingest.codec import Limits
from lccm.ingest.decoder import RegistryHolder, make_decoder
from lccm.runtime import DbSink, energy_updater, factor_rows, load_registry
from lccm.services import Broker
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.writer import ReadingColumns, WriteResult, write_batch
from lccm.stream.batch import FlushPolicy
from lccm.stream.loop import RawMessage, StreamLoop
from tests._auth import admin_headers
from tests._city import running_ingest
from tests._mqtt import Publisher

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

T = 1_795_331_100  # 2026-11-22T07:05:00Z
QUARTER = 900
CSV = (
    "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s,rated_kw\n"
    "HALL,City Hall,building,Lampang,M1,electricity_meter,Main meter,900,100\n"
)


def _register(url: str) -> None:
    with psycopg.connect(url) as conn:
        import_registry(conn, parse_registry_csv(CSV))


def _cols(points: list[tuple[int, float]], seq: int = 7, received_s: int = T + 3600) -> ReadingColumns:
    n = len(points)
    return ReadingColumns(
        device_id=np.full(n, 1, np.int32),
        metric_id=np.full(n, 1, np.int16),
        ts_us=np.array([t * 1_000_000 for t, _ in points], np.int64),
        value=np.array([v for _, v in points], np.float64),
        seq=np.full(n, seq, np.int64),
        received_at_us=np.full(n, received_s * 1_000_000, np.int64),
    )


def _readings(conn: psycopg.Connection) -> list[tuple[int, float]]:
    rows = conn.execute("SELECT extract(epoch FROM ts)::bigint, value FROM readings ORDER BY ts").fetchall()
    return [(int(t), float(v)) for t, v in rows]


def _conflicts(conn: psycopg.Connection) -> list[tuple[int, float, float, int | None]]:
    rows = conn.execute(
        "SELECT extract(epoch FROM ts)::bigint, stored_value, offered_value, seq FROM reading_conflicts ORDER BY id"
    ).fetchall()
    return [(int(t), float(s), float(o), q) for t, s, o, q in rows]


def test_the_writer_keeps_the_first_value_and_records_each_other_value_once(fresh_db: str) -> None:
    _register(fresh_db)
    t0, t1, t2 = T, T + QUARTER, T + 2 * QUARTER
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        first = write_batch(conn, _cols([(t0, 100.0), (t1, 101.5)], seq=1))
        assert (first.inserted, first.duplicates, first.conflicts) == (2, 0, 0)
        batch = [
            (t1, 101.5),  # the same value again: a redelivery
            (t1, 150.0),  # another value for a stored reading
            (t1, 101.5 * (1 + 1e-12)),  # unit-conversion rounding of the same value: no conflict
            (t2, 103.0),  # new
            (t2, 104.0),  # a second value for the reading just before it in the same batch
        ]
        second = write_batch(conn, _cols(batch, seq=2))
        assert (second.inserted, second.duplicates, second.conflicts) == (1, 2, 2)
        assert _readings(conn) == [(t0, 100.0), (t1, 101.5), (t2, 103.0)]
        assert _conflicts(conn) == [(t1, 101.5, 150.0, 2), (t2, 103.0, 104.0, 2)]
        again = write_batch(conn, _cols(batch, seq=2))  # the whole batch redelivered
        assert (again.inserted, again.duplicates, again.conflicts) == (0, 5, 0)
        third = write_batch(conn, _cols([(t1, 99.0)], seq=3))  # a third value for t1 is recorded as well
        assert (third.inserted, third.duplicates, third.conflicts) == (0, 0, 1)
        assert _readings(conn) == [(t0, 100.0), (t1, 101.5), (t2, 103.0)]
        assert _conflicts(conn)[2:] == [(t1, 101.5, 99.0, 3)]


def _message(seq: int, ts: int, energy_kwh: float, token: Hashable) -> RawMessage:
    payload = json.dumps({"seq": seq, "ts": ts, "values": {"energy_kwh": energy_kwh}}).encode()
    return RawMessage("lccm/v1/lampang/M1/up", payload, (T + 3600) * 1_000_000, token)


def test_the_stream_drops_only_exact_repeats_in_memory_and_the_database_records_the_correction(fresh_db: str) -> None:
    _register(fresh_db)
    with psycopg.connect(fresh_db) as conn:
        registry = load_registry(conn)
    sink = DbSink(fresh_db)

    def loop() -> tuple[StreamLoop, queue.SimpleQueue[RawMessage]]:
        inbox: queue.SimpleQueue[RawMessage] = queue.SimpleQueue()
        decode = make_decoder(RegistryHolder(lambda: registry), Limits())
        return StreamLoop(
            inbox=inbox,
            decode=decode,
            sink=sink,
            ack=lambda _: None,
            policy=FlushPolicy(100, 1),
            dedup_cache_bytes=2**20,
        ), inbox

    live, inbox = loop()
    for i, v in enumerate([100.0, 101.5, 103.0]):
        inbox.put(_message(i, T + i * QUARTER, v, i))
    live.pump()
    live.flush()
    inbox.put(_message(1, T + QUARTER, 101.5, "redelivered"))  # QoS 1 redelivery: same bytes
    inbox.put(_message(9, T + QUARTER, 150.0, "correction"))
    inbox.put(_message(9, T + QUARTER, 150.0, "correction again"))
    live.pump()
    result = live.flush()
    assert result is not None and (result.inserted, result.conflicts) == (0, 1)
    assert (live.stats.duplicates_dropped, live.stats.conflicts) == (2, 1)
    inbox.put(_message(9, T + QUARTER, 150.0, "correction redelivered"))
    live.pump()
    live.flush()
    assert (live.stats.duplicates_dropped, live.stats.duplicates_in_db, live.stats.conflicts) == (3, 0, 1)

    restarted, inbox = loop()  # after a restart the memory is empty: the database finds the repeat
    inbox.put(_message(9, T + QUARTER, 150.0, "correction after restart"))
    restarted.pump()
    restarted.flush()
    assert (restarted.stats.duplicates_in_db, restarted.stats.conflicts) == (1, 0)
    sink.close()
    with psycopg.connect(fresh_db) as conn:
        assert _readings(conn) == [(T, 100.0), (T + QUARTER, 101.5), (T + 2 * QUARTER, 103.0)]
        assert _conflicts(conn) == [(T + QUARTER, 101.5, 150.0, 9)]


def test_end_to_end_the_correction_is_listed_and_the_energy_is_the_first_values(
    fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    _register(fresh_db)
    t0 = (int(time.time()) // QUARTER - 8) * QUARTER  # two hours ago: recent enough for live energy updates
    with psycopg.connect(fresh_db) as conn:
        sync_factor_registry(conn, *factor_rows())
    worker, settings = running_ingest(fresh_db, broker, topic_root, tmp_path)
    pub = Publisher(broker.host, broker.port, f"pub-{topic_root.split('/')[0]}")
    topic = f"{topic_root}/lampang/M1/up"
    try:
        for i, v in enumerate([100.0, 101.5, 103.0]):
            pub.publish(topic, json.dumps({"seq": i, "ts": t0 + i * QUARTER, "values": {"energy_kwh": v}}))
        pub.flush()
        worker.wait_idle(0.3)
        correction = json.dumps({"seq": 3, "ts": t0 + QUARTER, "values": {"energy_kwh": 150.0}})
        pub.publish(topic, correction)
        pub.publish(topic, correction)  # the device resends it
        pub.publish(topic, json.dumps({"seq": 1, "ts": t0 + QUARTER, "values": {"energy_kwh": 101.5}}))
        pub.flush()
        worker.wait_idle(0.3)
    finally:
        pub.close()
        worker.stop()
    energy_updater(settings, fresh_db).drain()
    with psycopg.connect(fresh_db) as conn:
        assert _readings(conn) == [(t0, 100.0), (t0 + QUARTER, 101.5), (t0 + 2 * QUARTER, 103.0)]
        total = conn.execute("SELECT sum(amount) FROM energy_buckets WHERE resolution = '15min'").fetchone()
    # First wins: 100 -> 101.5 -> 103 kWh is 3.0 kWh. Had the correction won it would be 50 kWh and then a
    # register that went backwards.
    assert total is not None and abs(float(total[0]) - 3.0) < 1e-9
    assert worker.loop.stats.conflicts == 1

    with (
        ConnectionPool(fresh_db, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(Settings(database_url=fresh_db), pool), headers=admin_headers(fresh_db)) as client,
    ):
        listed = client.get("/conflicts", params={"device_id": "M1", "metric": "energy"})
        unknown = client.get("/conflicts", params={"device_id": "NOPE"})
        none_in_range = client.get("/conflicts", params={"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00Z"})
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert len(items) == 1 and listed.json()["next_cursor"] is None
    item = items[0]
    assert (item["device_id"], item["metric"], item["unit"]) == ("M1", "energy", "kWh")
    assert (item["stored_value"], item["offered_value"], item["seq"]) == (101.5, 150.0, 3)
    assert item["ts"] == datetime.fromtimestamp(t0 + QUARTER, UTC).isoformat().replace("+00:00", "Z")
    assert unknown.status_code == 404
    assert none_in_range.status_code == 200 and none_in_range.json()["items"] == []


def test_a_second_value_written_while_the_first_is_being_committed_by_another_worker_is_recorded(
    fresh_db: str,
) -> None:
    """Two ingest workers (a shared subscription) write the same reading with two values at once: the one that
    waited for the other's commit still sees the stored value and records the conflict (READ COMMITTED)."""
    _register(fresh_db)
    with psycopg.connect(fresh_db) as first, psycopg.connect(fresh_db, autocommit=True) as second:
        pid = second.info.backend_pid
        with first.transaction():
            write_batch(first, _cols([(T, 100.0)], seq=1))  # not committed yet
            results: list[object] = []
            waiter = threading.Thread(target=lambda: results.append(write_batch(second, _cols([(T, 101.0)], seq=2))))
            waiter.start()
            with psycopg.connect(fresh_db, autocommit=True) as watch:  # wait until it waits for our row
                query = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s"
                while watch.execute(query, (pid,)).fetchone() != (True,):
                    time.sleep(0.01)
        waiter.join()
    [result] = results
    assert isinstance(result, WriteResult) and (result.inserted, result.conflicts) == (0, 1)
    with psycopg.connect(fresh_db) as conn:
        assert _readings(conn) == [(T, 100.0)]
        assert _conflicts(conn) == [(T, 100.0, 101.0, 2)]
