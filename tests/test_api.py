"""The HTTP API against a real, migrated PostgreSQL, with readings written by the production writer."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.imports.registry import parse_registry_csv
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.writer import DeadLetterRow, ReadingColumns, write_batch
from tests._auth import admin_headers
from tests._db import REGISTRY_HEADER_TH, REGISTRY_ROWS, device_pk, fresh_database, registry_csv, us, write_readings

with warnings.catch_warnings():
    # Starlette 1.10 prefers httpx2 for its TestClient and warns at import when only httpx is installed; httpx2 is
    # not a project dependency (yet), and the TestClient works the same on httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ENERGY, POWER, VOLTAGE = 1, 2, 3
# Recent enough for /health's "last received" window; whole minutes so the grid is easy to reason about.
T0 = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
N = 50  # readings per metric on the one-minute grid
LATE_TS = T0 + timedelta(minutes=10, seconds=30)  # old event time ...
LATE_RECEIVED = T0 + timedelta(hours=2)  # ... arriving after everything else
BINARY_PAYLOAD = b"\xff\xfe\x00garbage"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seed(conn: psycopg.Connection) -> None:
    import_registry(conn, parse_registry_csv(registry_csv()))
    m1, m2 = device_pk(conn, "HALL-M1"), device_pk(conn, "HALL-M2")
    rows = []
    for i in range(N):
        ts = T0 + timedelta(minutes=i)
        rows.append((m1, ENERGY, ts, 1000.0 + i, ts + timedelta(seconds=5)))
        rows.append((m1, POWER, ts, 5000.0 + i, ts + timedelta(seconds=5)))
        if i % 2 == 0:
            rows.append((m1, VOLTAGE, ts, 230.0, ts + timedelta(seconds=5)))
    rows.append((m2, POWER, T0, 42.0, T0))
    write_readings(conn, rows)
    write_readings(conn, [(m1, POWER, LATE_TS, -1.0, LATE_RECEIVED)])
    letters = [_letter(i, f"lccm/v1/lampang/D{i}/up", b'{"x": 1}', "bad_payload", f"D{i}") for i in range(3)]
    # Every letter names Lampang's city level (or a device of it): a letter is listed to its organisation only.
    letters.append(_letter(10, "lccm/v1/lampang/y/up", BINARY_PAYLOAD, "bad_json", None))
    letters.append(_letter(11, "lccm/v1/lampang/bad-topic", b"{}", "bad_topic", None))
    no_readings = ReadingColumns(*(np.empty(0, dtype=t) for t in ("i4", "i2", "i8", "f8", "i8", "i8")))
    write_batch(conn, no_readings, letters)


def _letter(second: int, topic: str, payload: bytes, reason: str, device_ref: str | None) -> DeadLetterRow:
    return DeadLetterRow(us(T0 + timedelta(seconds=second)), topic, payload, reason, f"{reason} detail", device_ref)


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            _seed(conn)
        yield url


@contextmanager
def _client_for(url: str) -> Iterator[TestClient]:
    with (
        ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
        TestClient(create_app(Settings(database_url=url), pool), headers=admin_headers(url)) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[TestClient]:
    with _client_for(db_url) as c:
        yield c


@pytest.fixture(scope="module")
def import_client() -> Iterator[TestClient]:
    """A database of its own, so the import tests cannot change what the read tests see."""
    with fresh_database() as url, _client_for(url) as c:
        yield c


def _walk(client: TestClient, url: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages, cursor = 0, None
    while True:
        body = client.get(url, params={**params, **({"cursor": cursor} if cursor else {})}).json()
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


# --- service ----------------------------------------------------------------------------------------------------


def test_openapi_has_every_path(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {
        "/health", "/sites", "/sites/{site_code}", "/devices", "/devices/{device_id}", "/devices/{device_id}/latest",
        "/latest", "/devices/{device_id}/readings", "/dead-letters", "/dead-letters/summary", "/devices/import",
    }  # fmt: skip
    assert "text/csv" in paths["/devices/import"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_health(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["database_reachable"] is True
    assert body["layout"] in ("postgres-brin", "timescaledb")
    assert isinstance(body["readings_estimate"], int)
    assert body["last_received_at"] == _iso(LATE_RECEIVED)


def test_app_builds_and_closes_its_own_pool_when_given_none(db_url: str) -> None:
    with TestClient(
        create_app(Settings(database_url=db_url, db_pool_min=1, db_pool_max=2)), headers=admin_headers(db_url)
    ) as c:
        assert c.get("/health").json()["status"] == "ok"
        assert c.get("/devices/HALL-M1").status_code == 200


def test_health_and_routes_answer_503_when_the_database_is_down() -> None:
    # Port 1 on loopback refuses at once; the short pool timeout keeps the test fast.
    with (
        ConnectionPool("postgresql://postgres@127.0.0.1:1/x", min_size=0, max_size=1, timeout=0.3, open=True) as pool,
        # An API key that cannot be checked while the database is down: 503, not 401.
        TestClient(create_app(Settings(database_url="unused"), pool), headers={"X-API-Key": "lccm_x_y"}) as c,
    ):
        down = c.get("/health")
        assert down.status_code == 503
        assert down.json()["database_reachable"] is False
        sites = c.get("/sites")
        assert sites.status_code == 503
        assert sites.json()["error"] == "database_unavailable"


# --- registry -----------------------------------------------------------------------------------------------------


def test_sites_and_site_detail(client: TestClient) -> None:
    sites = client.get("/sites").json()
    assert [s["site_code"] for s in sites] == ["AQ1", "HALL", "RD1"]
    hall = client.get("/sites/HALL").json()
    assert hall["name_th"] == "ศาลากลาง" and hall["floor_area_m2"] == 5200 and hall["device_count"] == 2
    assert [d["device_id"] for d in hall["devices"]] == ["HALL-M1", "HALL-M2"]
    assert hall["updated_at"].endswith("Z")


def test_unknown_site_and_device_are_404_with_a_specific_message(client: TestClient) -> None:
    for url in ("/sites/NOPE", "/latest?site_code=NOPE", "/devices?site_code=NOPE"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json()["error"] == "site_not_found" and "NOPE" in r.json()["detail"]
    for url in ("/devices/NOPE", "/devices/NOPE/latest", "/devices/NOPE/readings"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json()["error"] == "device_not_found" and "'NOPE'" in r.json()["detail"]


def test_devices_filter_and_paginate(client: TestClient) -> None:
    items, pages = _walk(client, "/devices", {"limit": 1})
    assert [d["device_id"] for d in items] == ["AQ1-S1", "HALL-M1", "HALL-M2", "RD1-C1"]
    assert pages == 4
    meters = client.get("/devices", params={"kind": "electricity_meter", "site_code": "HALL"}).json()
    assert [d["device_id"] for d in meters["items"]] == ["HALL-M1", "HALL-M2"]
    assert client.get("/devices", params={"kind": "toaster"}).status_code == 422
    one = client.get("/devices/RD1-C1").json()
    assert (one["site_code"], one["cadence_s"], one["rated_kw"], one["status"]) == ("RD1", 300, 12.5, None)


# --- readings -----------------------------------------------------------------------------------------------------


def test_latest_is_by_event_time_not_arrival(client: TestClient) -> None:
    body = client.get("/devices/HALL-M1/latest").json()
    by_metric = {v["metric"]: v for v in body["values"]}
    assert list(by_metric) == ["energy", "power", "voltage"]
    power = by_metric["power"]
    assert power["value"] == 5000.0 + N - 1  # not the late-arriving -1.0
    assert power["ts"] == _iso(T0 + timedelta(minutes=N - 1))
    assert power["unit"] == "W" and by_metric["energy"]["unit"] == "kWh"
    assert by_metric["voltage"]["ts"] == _iso(T0 + timedelta(minutes=N - 2))
    assert power["received_at"] == _iso(T0 + timedelta(minutes=N - 1, seconds=5))


def test_site_latest_covers_every_device(client: TestClient) -> None:
    body = client.get("/latest", params={"site_code": "HALL"}).json()
    assert [(v["device_id"], v["metric"]) for v in body["values"]] == [
        ("HALL-M1", "energy"), ("HALL-M1", "power"), ("HALL-M1", "voltage"), ("HALL-M2", "power"),
    ]  # fmt: skip


def test_readings_pagination_walks_every_row_exactly_once(client: TestClient, db_url: str) -> None:
    items, pages = _walk(client, "/devices/HALL-M1/readings", {"limit": 7})
    with psycopg.connect(db_url) as conn:
        total = conn.execute(
            "SELECT count(*) FROM readings r JOIN devices d ON d.id = r.device_id WHERE d.device_id = 'HALL-M1'"
        ).fetchone()
    assert total is not None and len(items) == total[0] == 2 * N + N // 2 + 1
    keys = [(r["metric"], r["ts"]) for r in items]
    assert len(set(keys)) == len(keys)
    order = {"energy": 1, "power": 2, "voltage": 3}
    assert keys == sorted(keys, key=lambda k: (order[k[0]], k[1]))
    assert pages == -(-len(items) // 7)


def test_readings_filtered_by_metric_and_half_open_range(client: TestClient) -> None:
    start, end = T0 + timedelta(minutes=5), T0 + timedelta(minutes=15)
    params = {"metric": "energy", "from": start.astimezone(UTC).isoformat(), "to": _iso(end)}
    body = client.get("/devices/HALL-M1/readings", params=params).json()
    assert [r["value"] for r in body["items"]] == [1000.0 + i for i in range(5, 15)]
    assert body["items"][0]["ts"] == _iso(start) and body["next_cursor"] is None
    # The same instant written in Bangkok time selects the same rows.
    bangkok = start.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=7)
    params["from"] = bangkok.isoformat() + "+07:00"
    assert client.get("/devices/HALL-M1/readings", params=params).json() == body


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"from": "2026-11-01T00:00:00"}, "from", "no UTC offset"),
        ({"to": "2026-11-01T00:00:00"}, "to", "no UTC offset"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to", "later than"),
        ({"metric": "mana"}, "metric", "unknown metric"),
        ({"cursor": "not-a-cursor"}, "cursor", "cursor"),
        ({"limit": 10_001}, "limit", "10000"),
    ],
)
def test_bad_reading_parameters_are_422(client: TestClient, params: dict[str, Any], field: str, fragment: str) -> None:
    r = client.get("/devices/HALL-M1/readings", params=params)
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"][-1] == field and fragment in error["msg"]


def test_a_cursor_from_another_listing_is_refused(client: TestClient) -> None:
    cursor = client.get("/devices", params={"limit": 1}).json()["next_cursor"]
    assert client.get("/devices/HALL-M1/readings", params={"cursor": cursor}).status_code == 422


# --- dead letters -------------------------------------------------------------------------------------------------


def test_dead_letters_newest_first_with_payload_encoding(client: TestClient) -> None:
    items, pages = _walk(client, "/dead-letters", {"limit": 2})
    assert pages == 3
    assert [d["reason"] for d in items] == ["bad_topic", "bad_json", "bad_payload", "bad_payload", "bad_payload"]
    binary = items[1]
    assert binary["payload_encoding"] == "base64"
    assert base64.b64decode(binary["payload"]) == BINARY_PAYLOAD and binary["payload_bytes"] == len(BINARY_PAYLOAD)
    assert (items[2]["payload"], items[2]["payload_encoding"], items[2]["device_ref"]) == ('{"x": 1}', "utf-8", "D2")
    assert items[0]["received_at"] == _iso(T0 + timedelta(seconds=11))


def test_dead_letters_filter_and_summary(client: TestClient) -> None:
    only = client.get("/dead-letters", params={"reason": "bad_payload", "to": _iso(T0 + timedelta(seconds=2))})
    assert [d["device_ref"] for d in only.json()["items"]] == ["D1", "D0"]
    summary = client.get("/dead-letters/summary").json()
    assert summary["total"] == 5
    assert [(r["reason"], r["count"]) for r in summary["reasons"]] == [
        ("bad_payload", 3), ("bad_json", 1), ("bad_topic", 1),
    ]  # fmt: skip
    assert summary["reasons"][0]["last_received_at"] == _iso(T0 + timedelta(seconds=2))


# --- import -------------------------------------------------------------------------------------------------------


def test_import_csv_body_and_multipart(import_client: TestClient) -> None:
    data = registry_csv(REGISTRY_HEADER_TH, bom=True)
    first = import_client.post("/devices/import", content=data, headers={"content-type": "text/csv"})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "rows": 4,
        "sites": {"inserted": 3, "updated": 0, "unchanged": 0},
        "devices": {"inserted": 4, "updated": 0, "unchanged": 0},
    }
    changed = [*REGISTRY_ROWS[:3], REGISTRY_ROWS[3].replace("PM station", "PM2.5 station")]
    again = import_client.post(
        "/devices/import", files={"file": ("registry.csv", registry_csv(rows=changed), "text/csv")}
    )
    assert again.status_code == 200, again.text
    assert again.json()["devices"] == {"inserted": 0, "updated": 1, "unchanged": 3}
    assert import_client.get("/devices/AQ1-S1").json()["name"] == "PM2.5 station"


def test_invalid_import_is_422_with_row_errors_and_changes_nothing(import_client: TestClient) -> None:
    import_client.post("/devices/import", content=registry_csv(), headers={"content-type": "text/csv"})
    before = import_client.get("/sites").json()
    rows = [REGISTRY_ROWS[0].replace("City Hall", "Renamed"), "X,Y,,building,C,,,,Z 1,lamp,L,60,"]
    r = import_client.post("/devices/import", content=registry_csv(rows=rows), headers={"content-type": "text/csv"})
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"row": 3, "column": "device_id", "value": "Z 1", "message": r.json()["errors"][0]["message"]}
    ]
    assert import_client.get("/sites").json() == before
    wrong_type = import_client.post("/devices/import", content=b"{}", headers={"content-type": "application/json"})
    assert wrong_type.status_code == 422
