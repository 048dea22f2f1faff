"""Observability against the real thing: the ingest's /metrics and /health over a private Mosquitto and a fresh
PostgreSQL, wired as `lccm ingest` wires them; the API's /metrics, request ids and readiness; JSON log lines.

The expectations are what the test itself sent (N readings, one malformed message) and what the database holds,
read with SQL independently of the metrics.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.api.observability import RequestIdFilter
from lccm.logs import configure
from lccm.metrics import IngestMetrics
from lccm.monitoring import (
    MonitoringServer,
    MonitoringUnavailable,
    Readiness,
    database_readiness,
    start_monitoring,
    watch_ingest,
)
from lccm.runtime import Services, build_ingest
from lccm.services import Broker, free_port
from lccm.settings import Settings
from lccm.store.writer import ReadingColumns, WriteResult
from lccm.stream.batch import BatchBuilder
from lccm.stream.loop import BatchCommitted, RawMessage
from tests._db import ADMIN_URL, _url_for
from tests._mqtt import Publisher
from tests._principal import as_caller

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

N = 40  # readings, one per message


def _register(url: str, device: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city) VALUES ('S1', 'Town hall', 'building', 'Lampang')"
        )
        conn.execute(
            "INSERT INTO devices (device_id, site_id, kind, name, cadence_s)"
            " SELECT %s, id, 'electricity_meter', 'meter', 60 FROM sites WHERE site_code = 'S1'",
            (device,),
        )


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, parsed by prometheus_client's own parser: (name, labels) -> value."""
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _wait(
    url: str, name: str, want: float, timeout_s: float = 60
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(url)
        if value(samples, name) >= want or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


# --- the ingest process ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_metrics_count_what_was_sent(fresh_db: str, broker: Broker, topic_root: str, tmp_path: Path) -> None:
    _register(fresh_db, "D1")
    group = topic_root.split("/")[0]
    settings = Settings(
        database_url=fresh_db,
        mqtt_topic_root=topic_root,
        mqtt_share_group=group,
        data_dir=tmp_path,
        metrics_port=free_port(),
    )
    svc = Services(fresh_db, broker.host, broker.port, "auto")
    # As `lccm ingest` wires it (lccm/cli.py): the observer at build time, the collectors and the server after.
    metrics = IngestMetrics()
    worker = build_ingest(settings, svc, client_id=group, observe=metrics.observe_batch)
    worker.start()
    server = start_monitoring(settings, metrics.registry, watch_ingest(metrics, worker, fresh_db))
    assert server is not None
    url = server.url
    try:
        pub = Publisher(broker.host, broker.port, f"pub-{group}")
        start = int(time.time()) - 3600  # within the live horizon: the batches queue energy work
        for i in range(N):
            payload = json.dumps({"seq": i, "ts": start - 60 * i, "values": {"energy_kwh": 100.0 + i}})
            pub.publish(f"{topic_root}/lampang/D1/up", payload)
        pub.publish(f"{topic_root}/lampang/D1/up", b"{not json")
        pub.close()
        samples = _wait(url, "lccm_ingest_messages_total", N + 1)

        with psycopg.connect(fresh_db) as conn:
            stored = conn.execute("SELECT count(*) FROM readings").fetchone()
            dead = conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall()
            rollups = conn.execute("SELECT count(*) FROM rollup_queue").fetchone()
        assert stored == (N,) and dead == [("bad_json", 1)]  # the database agrees with what was sent

        assert value(samples, "lccm_ingest_messages_received_total") == N + 1
        assert value(samples, "lccm_ingest_messages_total") == N + 1
        assert value(samples, "lccm_ingest_readings_total") == N
        assert value(samples, "lccm_ingest_readings_stored_total") == N
        assert value(samples, "lccm_ingest_dead_letters_total", reason="bad_json") == 1
        assert value(samples, "lccm_ingest_duplicates_total", found_in="memory") == 0
        assert value(samples, "lccm_ingest_inflight_messages") == 0
        batches = value(samples, "lccm_ingest_batches_total")
        assert batches >= 1
        # One observation per committed batch; per message for the lag.
        assert value(samples, "lccm_ingest_commit_seconds_count") == batches
        assert value(samples, "lccm_ingest_batch_readings_count") == batches
        assert value(samples, "lccm_ingest_batch_readings_sum") == N
        assert value(samples, "lccm_ingest_commit_lag_seconds_count") == N + 1
        assert value(samples, "lccm_ingest_commit_lag_seconds_bucket", le="+Inf") == N + 1
        assert value(samples, "lccm_ingest_commit_seconds_sum") > 0

        # No updater runs here, so the energy outbox holds what the batches queued: the probe reads the same.
        assert value(samples, "lccm_queue_probe_ok") == 1
        assert rollups is not None and rollups[0] >= 1
        # The probe caches its answer for a few seconds: scrape until a read after the commits is in.
        deadline = time.monotonic() + 30
        while value(samples, "lccm_queue_depth", queue="rollup_queue", worker="energy") != rollups[0]:
            assert time.monotonic() < deadline, "the queue depth never matched the rollup_queue table"
            time.sleep(0.5)
            samples = scrape(url)
        assert value(samples, "lccm_queue_oldest_age_seconds", queue="rollup_queue", worker="energy") >= 0
        assert value(samples, "lccm_queue_depth", queue="alert_events_to_notify", worker="alerts") == 0
        assert value(samples, "lccm_worker_up", stage="stream") == 1

        assert httpx.get(f"{url}/health/live").json() == {"status": "live"}
        ready = httpx.get(f"{url}/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["schema"] == "current"
        assert ready.json()["checks"]["workers"]["stream"]["healthy"] is True
        assert httpx.get(f"{url}/nothing").status_code == 404
    finally:
        worker.stop()
    # A stopped worker makes the process not ready, with the reason; the server still answers.
    down = httpx.get(f"{url}/health/ready")
    assert down.status_code == 503
    assert down.json()["status"] == "not_ready"
    assert any("worker stream" in r for r in down.json()["reasons"])
    assert value(scrape(url), "lccm_worker_up", stage="stream") == 0
    server.stop()


def test_monitoring_server_hooks_metrics_authorisation_and_reports_an_unreachable_database() -> None:
    metrics = IngestMetrics(process=False, channels=["webhook"])
    metrics.watch_queues(lambda: psycopg.connect("postgresql://postgres@127.0.0.1:1/x", connect_timeout=1))
    unreachable = database_readiness(lambda: psycopg.connect("postgresql://postgres@127.0.0.1:1/x", connect_timeout=1))
    server = MonitoringServer(
        metrics.registry,
        lambda: unreachable,
        port=0,
        authorize=lambda headers: headers.get("authorization") == "Bearer s3cret",
    ).start()
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        answer = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(answer.text)
            for s in f.samples
        }
        assert samples[("lccm_queue_probe_ok", ())] == 0  # the scrape still answers, and says the probe failed
        assert samples[("lccm_notify_failures_total", (("channel", "webhook"),))] == 0
        assert httpx.get(f"{server.url}/health/live").status_code == 200  # probes need no token
        ready = httpx.get(f"{server.url}/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "unreachable"}
        assert ready.json()["reasons"] == ["the database cannot be reached: OperationalError"]
    finally:
        server.stop()


def _not_ready() -> Readiness:
    return Readiness(False, {}, ["test"])


def test_a_taken_metrics_port_stops_the_ingest_with_a_clear_message() -> None:
    registry = IngestMetrics(process=False).registry
    taken = MonitoringServer(registry, _not_ready, port=0).start()
    try:
        with pytest.raises(MonitoringUnavailable, match="LCCM_METRICS_PORT"):
            start_monitoring(Settings(metrics_port=taken.address[1]), registry, _not_ready)
        assert start_monitoring(Settings(metrics_port=0), registry, _not_ready) is None
    finally:
        taken.stop()


# --- the API ------------------------------------------------------------------------------------------------------


@pytest.fixture
def empty_db() -> Iterator[str]:
    """A database that exists but was never migrated."""
    name = f"lccm_t_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _url_for(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def _api(url: str) -> Iterator[TestClient]:
    with (
        ConnectionPool(url, min_size=1, max_size=2, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=url), pool))) as client,
    ):
        yield client


def test_api_ready_only_on_a_migrated_database(empty_db: str, fresh_db: str) -> None:
    with _api(empty_db) as client:
        assert client.get("/health/live").json() == {"status": "live"}
        not_ready = client.get("/health/ready")
        assert not_ready.status_code == 503
        body = not_ready.json()
        assert body["status"] == "not_ready" and body["checks"]["database"] == "ok"
        assert body["checks"]["schema_pending_migrations"][0] == "001_core.sql"
        assert "lccm migrate" in body["reasons"][0]
    with _api(fresh_db) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "schema": "current"}, "reasons": []}
        assert client.get("/health").status_code == 200  # the old probe stays


def test_api_request_ids_and_metrics(fresh_db: str) -> None:
    with _api(fresh_db) as client:
        echoed = client.get("/sites", headers={"X-Request-ID": "proxy-42.a:b"})
        assert echoed.headers["x-request-id"] == "proxy-42.a:b"
        made = client.get("/sites").headers["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0  # a uuid4 in hex
        for bad in ("x" * 200, "a b", "<script>"):  # too long, unsafe: replaced, never echoed
            got = client.get("/sites", headers={"X-Request-ID": bad}).headers["x-request-id"]
            assert got != bad and len(got) == 32
        assert client.get("/nowhere/123").status_code == 404

        answer = client.get("/metrics")
        assert answer.status_code == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(answer.text)
            for s in f.samples
        }
        ok = (("method", "GET"), ("route", "/sites"), ("status", "200"))
        assert samples[("lccm_api_requests_total", ok)] == 5
        # Route templates, not raw paths: a 404 is one series whatever the path.
        assert (
            samples[("lccm_api_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))] == 1
        )
        assert samples[("lccm_api_request_duration_seconds_count", (("method", "GET"), ("route", "/sites")))] == 5


# --- logs ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure(fmt="json", level="INFO", default_stage="api", filters=[RequestIdFilter()], stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_api_json_log_lines_carry_stage_and_request_id(fresh_db: str, json_log: io.StringIO) -> None:
    with _api(fresh_db) as client:
        client.get("/sites", headers={"X-Request-ID": "req-7"})
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (access,) = [r for r in lines if r["logger"] == "lccm.api.access" and r["request_id"] == "req-7"]
    assert access["stage"] == "api" and access["level"] == "INFO"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/sites", 200)
    assert access["duration_ms"] >= 0 and access["message"].startswith("GET /sites 200")
    assert access["time"].endswith("+00:00")


def test_json_log_lines_take_the_stage_a_filter_set_and_the_exception() -> None:
    class Stage(logging.Filter):  # what the worker supervisor's StageFilter does, passed as the CLI passes it
        def filter(self, record: logging.LogRecord) -> bool:
            record.stage = "updaters"
            return True

    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure(fmt="json", level="INFO", default_stage="ingest", filters=[Stage()], stream=stream)
    try:
        try:
            raise ValueError("bad bucket")
        except ValueError:
            logging.getLogger("lccm.stream.energy").exception("energy update failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["stage"] == "updaters" and line["request_id"] is None and line["level"] == "ERROR"
    assert line["logger"] == "lccm.stream.energy" and line["message"] == "energy update failed"
    assert "ValueError: bad bucket" in line["exception"]


# --- the pieces, against independent references -------------------------------------------------------------------


def test_bulk_histogram_buckets_like_prometheus_client() -> None:
    import numpy as np
    from prometheus_client import CollectorRegistry, Histogram

    from lccm.metrics import LAG_SECONDS_BUCKETS, BulkHistogram

    rng = np.random.default_rng(5)
    values = np.concatenate([rng.exponential(0.3, 5000), np.array(LAG_SECONDS_BUCKETS), [0.0, 1e6]])  # edges too
    reference = Histogram("ref", "reference", buckets=LAG_SECONDS_BUCKETS, registry=CollectorRegistry())
    for v in values.tolist():
        reference.observe(v)
    bulk = BulkHistogram("bulk", "bulk", LAG_SECONDS_BUCKETS)
    bulk.observe_many(values[:1000])
    bulk.observe_many(values[1000:])

    def buckets(family: object) -> dict[str, float]:
        return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}  # type: ignore[attr-defined]

    (ref_family,) = reference.collect()
    (bulk_family,) = bulk.collect()
    assert buckets(bulk_family) == buckets(ref_family)
    sums = [s.value for f in (bulk_family, ref_family) for s in f.samples if s.name.endswith("_sum")]
    assert sums[0] == pytest.approx(sums[1])


def test_the_batch_observer_sees_the_commit_without_the_retries() -> None:
    from tests.test_stream import FakeClock, MemorySink, make_loop, msg

    clock = FakeClock()
    seen: list[BatchCommitted] = []

    class SlowSink(MemorySink):  # each attempt takes 0.25 s of the injected clock
        def __call__(self, batch: BatchBuilder, cols: ReadingColumns) -> WriteResult:
            clock.now += 0.25
            return super().__call__(batch, cols)

    sink = SlowSink()
    loop, inbox, _ = make_loop(sink, clock)
    loop._observe = seen.append  # as StreamLoop(observe=...) sets it
    loop._wall_us = lambda: 5_000_000_000_000
    sink.fail_next = 2
    for i in range(3):
        inbox.put(msg(i, 1.0 + i, i))
    inbox.put(RawMessage("lccm/v1/lampang/M1/up", b"{oops", 4_999_999_000_000, "bad"))
    loop.pump()
    for _ in range(2):  # a failed write raises and keeps the batch; the stream worker retries the flush
        with pytest.raises(OSError):
            loop.flush()
    loop.flush()
    (b,) = seen
    assert isinstance(b, BatchCommitted)
    assert (b.messages, b.readings, b.stored) == (4, 3, 3)
    assert b.write_s == pytest.approx(0.25)  # the third attempt only
    assert loop.stats.write_retries == 2
    # msg() stamps receipt at T + 3600 s; the malformed one 1 s before the commit.
    assert b.received_at_us.tolist()[-1] == 4_999_999_000_000
    assert b.committed_at_us - int(b.received_at_us[-1]) == 1_000_000


def test_invalid_log_settings_stop_every_command_at_once_naming_them() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("LCCM_")}
    env |= {"LCCM_LOG_FORMAT": "xml", "LCCM_LOG_LEVEL": "loud"}
    done = subprocess.run(
        [sys.executable, "-m", "lccm", "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert "LCCM_LOG_FORMAT" in line and "LCCM_LOG_LEVEL" in line


def test_an_unhandled_error_is_logged_with_its_request_id(fresh_db: str, json_log: io.StringIO) -> None:
    with ConnectionPool(fresh_db, min_size=1, max_size=1, open=True) as pool:
        app = as_caller(create_app(Settings(database_url=fresh_db), pool))

        @app.get("/boom")
        def boom() -> None:
            raise RuntimeError("a bug")

        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/boom", headers={"X-Request-ID": "boom-1"}).status_code == 500
    lines = [json.loads(x) for x in json_log.getvalue().splitlines()]
    (error,) = [r for r in lines if r["message"].startswith("unhandled error")]
    assert error["request_id"] == "boom-1" and "RuntimeError: a bug" in error["exception"]
    (access,) = [r for r in lines if r["logger"] == "lccm.api.access" and r["request_id"] == "boom-1"]
    assert access["status"] == 500
