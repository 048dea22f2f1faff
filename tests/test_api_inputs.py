"""Inputs no route can take give 422 naming the parameter, on every route: one mechanism (api/validation.py).

Each parameter of every operation of the OpenAPI document gets the values that used to reach the database or the
calendar and answer 500: a NUL character in a string, dates and times at the ends of Python's calendar
(0001-01-01, 9999-12-31, and times whose UTC instant does not exist), integers beyond PostgreSQL's bigint. The
answer must be 422 with ``loc`` [where, name]. Bodies: NUL, huge and non-finite numbers and extreme dates inside
the JSON of the routes that take one, located down to the field.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.settings import Settings
from tests._auth import admin_headers
from tests._db import fresh_database
from tests._seeded import Seeded, seed_city

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

DOCUMENT = create_app(Settings(database_url="unused")).openapi()
TIMES = ["0001-01-01T00:00:00+07:00", "9999-12-31T23:00:00-07:00", "1899-12-31T23:59:59Z", "2200-01-01T00:00:00Z"]
DATES = ["0001-01-01", "9999-12-31", "1899-12-31", "2200-01-01"]
HUGE = str(2**70)


def _kinds(schema: dict[str, Any]) -> set[str]:
    """The scalar kinds a parameter's schema admits: string, date, date-time, integer (enums left out)."""
    options = schema.get("anyOf", [schema])
    kinds = set()
    for option in options:
        if "enum" in option or "const" in option:
            continue
        kind = option.get("type")
        if kind == "array":
            kinds |= _kinds(option.get("items", {}))
        elif kind == "string":
            kinds.add(option.get("format", "string"))
        elif kind == "integer":
            kinds.add("integer")
    return kinds


def _cases() -> Iterator[tuple[str, str, str, str, str]]:
    """(method, path, where, name, bad value) for every parameter of every operation."""
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            for p in operation.get("parameters", []):
                kinds = _kinds(p["schema"])
                values = (["a\x00b"] if "string" in kinds else []) + (TIMES if "date-time" in kinds else [])
                values += (DATES if "date" in kinds else []) + ([HUGE] if "integer" in kinds else [])
                for value in values:
                    yield method.upper(), path, p["in"], p["name"], value


CASES = list(_cases())


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Seeded]]:
    with fresh_database() as url:
        seeded = seed_city(url, tmp_path_factory.mktemp("inputs"))
        with (
            ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
            TestClient(
                # live_stream_max_s: GET /live/events ends, so the client (which reads whole answers) gets one.
                create_app(Settings(database_url=url, live_stream_max_s=0.2), pool),
                raise_server_exceptions=False,
                headers=admin_headers(url),
            ) as client,
        ):
            yield client, seeded


def test_the_cases_cover_every_kind_of_parameter() -> None:
    where = {(w, v) for _, _, w, _, v in CASES}
    assert {("path", "a\x00b"), ("query", "a\x00b"), ("query", HUGE), ("path", HUGE)} <= where
    assert {("query", t) for t in TIMES} | {("query", d) for d in DATES} <= where
    assert len({(m, p) for m, p, *_ in CASES}) >= 40  # nearly every operation takes a parameter


@pytest.mark.parametrize(("method", "path", "where", "name", "value"), CASES)
def test_a_value_no_route_can_take_is_a_422_naming_the_parameter(
    api: tuple[TestClient, Seeded], method: str, path: str, where: str, name: str, value: str
) -> None:
    client, _ = api
    url, params = path, {}
    # The other path parameters: "1", or the caller's own organisation (another's is 404 before any parameter is read).
    other = "lampang" if path.startswith("/organisations/{code}") else "1"
    for p in DOCUMENT["paths"][path][method.lower()].get("parameters", []):
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", quote(value if p["name"] == name else other, safe=""))
    if where == "query":
        params[name] = value
    r = client.request(method, url, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == [where, name], r.text


BODIES: list[tuple[str, str, dict[str, Any], list[str | int]]] = [
    ("PUT", "/organisations/lampang", {"name_en": "a\x00", "province_en": "Lampang", "municipality_type": "city"},
     ["body", "name_en"]),
    ("POST", "/organisations/lampang/activity",
     {"entries": [{"item_code": "S1-LPG", "month": "2026-01", "quantity": 1, "unit": "kg", "note": "\x00"}]},
     ["body", "entries", 0, "note"]),
    ("POST", "/organisations/lampang/activity",
     {"entries": [{"item_code": "S1-LPG", "month": "2026-01", "quantity": 1e300, "unit": "kg"}]},
     ["body", "entries", 0, "quantity"]),
    ("PUT", "/organisations/lampang/mappings", {"mappings": [{"device_id": "x", "item_code": "a\x00"}]},
     ["body", "mappings", 0, "item_code"]),
    ("PUT", "/organisations/lampang/targets", {"targets": [{"target_key": "t", "target_year": 2**64}]},
     ["body", "targets", 0, "target_year"]),
    ("POST", "/sites/x/mv/fit", {"baseline_from": "0001-01-01", "baseline_to": "2025-01-01", "base_temp_c": 24},
     ["body", "baseline_from"]),
    ("POST", "/sites/x/mv/fit", {"baseline_from": "2024-01-01", "baseline_to": "2025-01-01", "base_temp_c": 1e16},
     ["body", "base_temp_c"]),
    ("PUT", "/alert-rules/nul", {"name": {"en": "x", "th\x00": "y"}, "metric": "pm25_ugm3"},
     ["body", "name", "th\x00"]),
    ("POST", "/alerts/1/ack", {"note": "\x00"}, ["body", "note"]),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "loc"), BODIES)
def test_a_body_value_no_route_can_take_is_a_422_naming_the_field(
    api: tuple[TestClient, Seeded], method: str, path: str, body: dict[str, Any], loc: list[str | int]
) -> None:
    client, _ = api
    r = client.request(method, path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc, r.text


def test_non_finite_numbers_in_a_json_body_are_refused(api: tuple[TestClient, Seeded]) -> None:
    client, _ = api
    body = b'{"baseline_from": "2024-01-01", "baseline_to": "2025-01-01", "base_temp_c": Infinity}'
    r = client.post("/sites/x/mv/fit", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "base_temp_c"]


def test_a_time_sent_as_a_number_is_refused(api: tuple[TestClient, Seeded]) -> None:
    client, _ = api
    r = client.get("/dead-letters/summary", params={"from": "1767225600"})  # pydantic would read seconds since 1970
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "from"]
    assert "ISO 8601" in r.json()["detail"][0]["msg"]


def test_a_parameter_of_one_value_sent_twice_is_refused_not_read_as_the_last(api: tuple[TestClient, Seeded]) -> None:
    client, _ = api
    r = client.get("/organisations", params=[("province", "Lampang"), ("province", "Khon Kaen")])
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "province"]
    assert "sent 2 times" in r.json()["detail"][0]["msg"]
    assert client.get("/organisations", params={"province": "Lampang"}).status_code == 200


def test_values_inside_the_bounds_still_work(api: tuple[TestClient, Seeded]) -> None:
    client, seeded = api
    assert client.get("/dead-letters/summary", params={"from": "1900-01-01T00:00:00Z"}).status_code == 200
    r = client.get(
        f"/devices/{seeded.meter}/readings", params={"from": "2199-12-31T23:59:59Z", "to": "2199-12-31T23:59:59.5Z"}
    )
    assert r.status_code == 200 and r.json()["items"] == []
    assert client.get("/completeness", params={"date": "1900-01-01"}).status_code == 200
