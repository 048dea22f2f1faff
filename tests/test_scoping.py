"""Every query is scoped to the caller's organisation and sites (issue 12, point 2).

Two organisations - Lampang (A, migration 007) and Nan (B) - each with sites, devices, readings, energy, AQI, alerts,
alert rules, conflicts, late data and dead letters, and a site of no organisation. For every route of the OpenAPI
document that is not ``/organisations/{code}/...`` (scoped by the identity layer), ``/health*`` or ``/metrics``:

- a user of B sees nothing of A: A's objects answer exactly as unknown ones (404, same error code), A's rows are
  absent from lists and aggregates, and B's writes cannot touch A;
- a facility-manager-like user of A limited to site A1 sees only A1;
- a user of A sees A's data (so the checks above cannot pass on an empty answer).

The route list comes from the app's OpenAPI document: a route without a case fails ``test_every_route_has_a_case``.
Each caller is a real API key (tests/_auth.py), an admin of its organisation, so that roles never stand in the way
and what a caller sees is its scope alone (the roles are tests/test_policy_matrix.py's). Below, the store's filters
and the evaluator's rule selection are tested on their own.
"""

from __future__ import annotations

import functools
import json
import time as clock
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.api.principal import Role, Scope
from lccm.engine.alert_kinds import Severity
from lccm.engine.alerts import AlertRule
from lccm.engine.timebase import BANGKOK
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows, live_worker, updaters
from lccm.settings import Settings
from lccm.store import alerts as st
from lccm.store import inventory as inv
from lccm.store import queries
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.migrate import _migration_files, migrate
from lccm.store.writer import NO_SEQ, DeadLetterRow, ReadingColumns, write_batch
from lccm.stream.alerts import AlertEvaluator
from tests._auth import api_key
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, us, write_readings
from tests._seeded import counts_today

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

ENERGY, POWER, LAMP_ON, PM25 = 1, 2, 6, 9
REGISTRY = [
    "A1,A Hall,,building,Lampang,18.28,99.49,1000,A1-M,electricity_meter,A meter,900,50",
    "A1,A Hall,,building,Lampang,18.28,99.49,1000,A1-L,lamp,A lamp,900,",
    "A2,A Station,,station,Lampang,18.29,99.50,,A2-S,aq_station,A station,900,",
    "B1,B Hall,,building,Nan,18.78,100.77,1000,B1-M,electricity_meter,B meter,900,50",
    "B1,B Hall,,building,Nan,18.78,100.77,1000,B1-L,lamp,B lamp,900,",
    "B2,B Station,,station,Nan,18.79,100.78,,B2-S,aq_station,B station,900,",
    "Z1,Z Hall,,building,Nowhere,18.0,99.0,1000,Z1-M,electricity_meter,Z meter,900,50",  # of no organisation
]
A_SITES, B_SITES = {"A1", "A2"}, {"B1", "B2"}
A_DEVICES, B_DEVICES = {"A1-M", "A1-L", "A2-S"}, {"B1-M", "B1-L", "B2-S"}
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAY = NOW.astimezone(BANGKOK).date()
DAY_START = datetime.combine(DAY, time(), tzinfo=BANGKOK)
RANGE = {"from": (NOW - timedelta(hours=24)).isoformat(), "to": (NOW + timedelta(hours=1)).isoformat()}
LETTERS = {  # topic -> (device_ref, whose)
    "lccm/v1/lampang/A1-M/up": ("A1-M", "A1"),  # by its device
    "lccm/v1/lampang/ghost-a/up": ("ghost-a", "A"),  # by its topic's city
    "lccm/v1/nan/B1-M/up": ("B1-M", "B1"),
    "lccm/v1/nan/ghost-b/up": ("ghost-b", "B"),
    "lccm/v1/nowhere/Z1-M/up": ("Z1-M", None),  # a device of no organisation, a city of none: nobody's
    "bad/topic": (None, None),
}


def rule(key: str, above: float, severity: str = "warning", kinds: tuple[str, ...] = ("aq_station",)) -> dict[str, Any]:
    return {
        "key": key, "name": {"en": key, "th": key}, "metric": "pm25_ugm3", "raise": {"above": above},
        "clear": {"below": above / 2}, "severity": severity, "scope": {"device_kinds": list(kinds)},
    }  # fmt: skip


def definition(d: dict[str, Any]) -> dict[str, Any]:
    return AlertRule.model_validate(d).definition()


# --- the city -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class City:
    url: str
    lampang: int
    nan: int
    site_ids: dict[str, int]
    alerts: dict[str, int]  # name -> id


def _org_id(conn: psycopg.Connection, code: str) -> int:
    row = conn.execute("SELECT id FROM organisations WHERE code = %s", (code,)).fetchone()
    assert row is not None
    return int(row[0])


def _seed(url: str) -> City:
    with psycopg.connect(url) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        pk = {d: device_pk(conn, d) for d in (*A_DEVICES, *B_DEVICES, "Z1-M")}
        rows = []
        for i in range(24 * 4 + 1):
            ts = NOW - timedelta(hours=24) + i * timedelta(minutes=15)
            for m in ("A1-M", "B1-M", "Z1-M"):
                rows += [(pk[m], ENERGY, ts, 100.0 + 2.0 * i, ts), (pk[m], POWER, ts, 8000.0, ts)]
            for s in ("A2-S", "B2-S"):
                rows.append((pk[s], PM25, ts, 40.0, ts))
            for lamp in ("A1-L", "B1-L"):
                rows.append((pk[lamp], LAMP_ON, ts, 1.0, ts))
        write_readings(conn, rows)
        _extras(conn, pk)
        lampang, nan = _org_id(conn, "lampang"), _org_id(conn, "nan")
        st.put_rule(conn, "global-pm25", definition(rule("global-pm25", 100)), "file")
        for key in ("a-only", "a-put", "a-del"):
            st.put_rule(conn, key, definition(rule(key, 60)), "api", lampang)
        st.put_rule(conn, "b-only", definition(rule("b-only", 60)), "api", nan)
        alerts = {
            name: _insert_alert(conn, pk[device], name)
            for name, device in (("a1", "A1-M"), ("a1-ack", "A1-M"), ("a1-close", "A1-M"), ("a2", "A2-S"),
                                 ("a2-ack", "A2-S"), ("b1", "B1-M"), ("b2", "B2-S"))
        }  # fmt: skip
        site_ids = {str(c): int(i) for c, i in conn.execute("SELECT site_code, id FROM sites")}
        conn.commit()
    updaters(Settings(database_url=url), url).drain()
    return City(url, lampang, nan, site_ids, alerts)


def _extras(conn: psycopg.Connection, pk: dict[str, int]) -> None:
    """Lamp buckets, late spans, conflicts and dead letters, as their writers leave them."""
    for lamp in ("A1-L", "B1-L"):
        conn.execute(
            "INSERT INTO lamp_buckets (resolution, device_id, bucket_start, on_s, day_on_s, night_off_s,"
            " night_known_s, unknown_s) VALUES ('1d', %s, %s, 36000, 0, 0, 36000, 0)",
            (pk[lamp], DAY_START),
        )
    for d in ("A1-M", "A2-S", "B1-M"):
        metric = PM25 if d.endswith("-S") else POWER
        conn.execute(
            "INSERT INTO late_spans (device_id, metric_id, lo, hi, readings, received_at)"
            " VALUES (%s, %s, %s, %s, 3, %s)",
            (pk[d], metric, NOW - timedelta(days=9), NOW - timedelta(days=8), NOW),
        )
        conn.execute(
            "INSERT INTO reading_conflicts (device_id, metric_id, ts, stored_value, offered_value, received_at)"
            " VALUES (%s, %s, %s, 1, 2, %s)",
            (pk[d], metric, NOW - timedelta(hours=1), NOW),
        )
    letters = [
        DeadLetterRow(us(NOW) + i, topic, b"{}", "bad_payload", "test letter", ref)
        for i, (topic, (ref, _)) in enumerate(LETTERS.items())
    ]
    empty = ReadingColumns(*(np.empty(0, dtype=t) for t in ("i4", "i2", "i8", "f8", "i8", "i8")))
    write_batch(conn, empty, letters)


def _insert_alert(conn: psycopg.Connection, device: int, name: str) -> int:
    started = us(NOW - timedelta(hours=2))
    new = st.NewAlert("global-pm25", f"scoping/{name}", device, "pm25_ugm3", Severity.WARNING, started,
                      started + 60_000_000, 150.0, 100.0, False)  # fmt: skip
    return st.insert_alert(conn, new)


@pytest.fixture(scope="module")
def city() -> Iterator[City]:
    with fresh_database() as url:
        yield _seed(url)


@dataclass
class Callers:
    """A user of A (all sites), of A limited to site A1 (a facility manager's scope), and of B (all sites)."""

    city: City
    own: TestClient
    fm: TestClient
    other: TestClient

    def alert(self, name: str) -> int:
        return self.city.alerts[name]


def _client(stack: list[Any], pool: ConnectionPool, url: str, key: str) -> TestClient:
    """A client calling with a real API key: admin of its organisation, so roles never stand in the way and what it
    sees is its scope alone."""
    client = TestClient(create_app(Settings(database_url=url), pool), headers={"X-API-Key": key})
    stack.append(client.__enter__())
    return client


@pytest.fixture(scope="module")
def callers(city: City) -> Iterator[Callers]:
    with ConnectionPool(city.url, min_size=1, max_size=4, open=True) as pool:
        opened: list[TestClient] = []
        try:
            yield Callers(
                city,
                own=_client(opened, pool, city.url, api_key(city.url, Role.ADMIN, org="lampang")),
                fm=_client(opened, pool, city.url, api_key(city.url, Role.ADMIN, org="lampang", sites=["A1"])),
                other=_client(opened, pool, city.url, api_key(city.url, Role.ADMIN, org="nan")),
            )
        finally:
            for c in opened:
                c.__exit__(None, None, None)


# --- helpers --------------------------------------------------------------------------------------------------


def ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def same_as_unknown(r: Any, unknown: Any) -> None:
    """Answered exactly as an object that does not exist: 404 with the same machine code."""
    assert unknown.status_code == 404, unknown.text
    assert (r.status_code, r.json().get("error")) == (404, unknown.json().get("error")), r.text


def ids(items: list[dict[str, Any]], key: str) -> set[Any]:
    return {i[key] for i in items}


def sees(c: Callers, path: str, key: str, items: Callable[[Any], list[dict[str, Any]]], **params: Any) -> None:
    """A list or aggregate: A sees A's, B none of A's (and its own), the A1-limited user at most A1's."""
    own = ids(items(ok(c.own.get(path, params=params))), key)
    other = ids(items(ok(c.other.get(path, params=params))), key)
    fm = ids(items(ok(c.fm.get(path, params=params))), key)
    a_names = A_SITES | A_DEVICES
    assert own & a_names and not own & (B_SITES | B_DEVICES), own
    assert other & (B_SITES | B_DEVICES) and not other & a_names, other
    assert fm <= {"A1", "A1-M", "A1-L"}, fm


def lookup(
    c: Callers, template: str, a1: str, a2: str, unknown: str, *, query: str | None = None, method: str = "get",
    **kw: Any,
) -> None:  # fmt: skip
    """An object (in the path, or the query parameter ``query``): A gets A's, B gets 404 as for an unknown one, the
    A1-limited user A1's but not A2's."""
    params = kw.pop("params", {})

    def call(client: TestClient, name: str) -> Any:
        if query is None:
            return getattr(client, method)(template.format(name), params=params, **kw)
        return getattr(client, method)(template, params={**params, query: name}, **kw)

    unknown_r = call(c.own, unknown)
    assert call(c.own, a1).status_code != 404 and call(c.own, a2).status_code != 404
    same_as_unknown(call(c.other, a1), unknown_r)
    same_as_unknown(call(c.other, a2), unknown_r)
    assert call(c.fm, a1).status_code != 404
    same_as_unknown(call(c.fm, a2), unknown_r)


# --- one case per route ---------------------------------------------------------------------------------------

Case = Callable[[Callers], None]
CASES: dict[tuple[str, str], Case] = {}


def case(method: str, path: str) -> Callable[[Case], Case]:
    def register(f: Case) -> Case:
        CASES[(method, path)] = f
        return f

    return register


@case("GET", "/sites")
def _sites(c: Callers) -> None:
    sees(c, "/sites", "site_code", lambda b: b)
    assert ids(ok(c.fm.get("/sites")), "site_code") == {"A1"}


@case("GET", "/sites/{site_code}")
def _site(c: Callers) -> None:
    lookup(c, "/sites/{}", "A1", "A2", "NOPE")
    assert ids(ok(c.own.get("/sites/A1"))["devices"], "device_id") == {"A1-M", "A1-L"}


@case("GET", "/devices")
def _devices(c: Callers) -> None:
    sees(c, "/devices", "device_id", lambda b: b["items"])
    assert ids(ok(c.fm.get("/devices"))["items"], "device_id") == {"A1-M", "A1-L"}
    lookup(c, "/devices", "A1", "A2", "NOPE", query="site_code")


@case("GET", "/devices/{device_id}")
def _device(c: Callers) -> None:
    lookup(c, "/devices/{}", "A1-M", "A2-S", "NOPE")


@case("POST", "/devices/import")
def _import(c: Callers) -> None:
    def send(client: TestClient, *rows: str) -> Any:
        data = registry_csv(REGISTRY_HEADER_EN, rows)
        return client.post("/devices/import", content=data, headers={"content-type": "text/csv"})

    b_row = "B1,B Hall,,building,Nan,18.78,100.77,1000,{},electricity_meter,B meter,900,50"
    refused = [
        (send(c.other, "A1,Taken,,building,Nan,18.0,100.0,,B-NEW1,electricity_meter,x,900,"), "site_code"),
        (send(c.other, b_row.format("A1-M")), "device_id"),  # moving A's device to B's site
        (send(c.other, "B9,New,,building,Lampang,18.0,99.0,,B-NEW2,electricity_meter,x,900,"), "city"),
        (send(c.fm, "A8,New,,building,Lampang,18.0,99.0,,A-NEW1,electricity_meter,x,900,"), "site_code"),
        (send(c.fm, "A2,A Station,,station,Lampang,18.29,99.50,,A2-S,aq_station,A station,900,"), "site_code"),
    ]
    for r, column in refused:
        assert (r.status_code, r.json()["error"]) == (422, "registry_invalid"), r.text
        assert column in {e["column"] for e in r.json()["errors"]}, r.json()
    assert ok(c.own.get("/devices/A1-M"))["site_code"] == "A1"  # nothing was written
    assert c.own.get("/sites/B9").status_code == 404 and c.other.get("/devices/B-NEW1").status_code == 404
    # In scope, the import works: B creates a site in its city, A updates its own; neither sees the other's.
    assert ok(send(c.other, "B8,B New,,building,Nan,18.7,100.7,,B8-M,electricity_meter,x,900,"))["rows"] == 1
    assert ok(send(c.own, REGISTRY[0]))["rows"] == 1
    assert ok(send(c.fm, REGISTRY[0]))["rows"] == 1
    assert c.own.get("/sites/B8").status_code == 404 and ok(c.other.get("/sites/B8"))["site_code"] == "B8"


@case("GET", "/devices/{device_id}/latest")
def _device_latest(c: Callers) -> None:
    lookup(c, "/devices/{}/latest", "A1-M", "A2-S", "NOPE")
    assert ok(c.own.get("/devices/A1-M/latest"))["values"]


@case("GET", "/latest")
def _site_latest(c: Callers) -> None:
    lookup(c, "/latest", "A1", "A2", "NOPE", query="site_code")


@case("GET", "/devices/{device_id}/readings")
def _readings(c: Callers) -> None:
    lookup(c, "/devices/{}/readings", "A1-M", "A2-S", "NOPE")
    assert ok(c.own.get("/devices/A1-M/readings"))["items"]


@case("GET", "/sites/{site_code}/live")
def _live(c: Callers) -> None:
    lookup(c, "/sites/{}/live", "A1", "A2", "NOPE")
    live = ok(c.own.get("/sites/A1/live"))
    assert ids(live["devices"], "device_id") == {"A1-M", "A1-L"}
    assert live["energy_today_kwh"] > 0 if counts_today(NOW) else live["energy_today_kwh"] == 0


@case("GET", "/live/events")
def _live_events(c: Callers) -> None:
    # Its own app, with the supervised poller the callers' apps lack; streams end after live_stream_max_s (the
    # TestClient reads whole answers). Last-Event-ID 0 replays every alert event the poller holds.
    settings = Settings(database_url=c.city.url, live_poll_s=0.2, live_stream_max_s=1.5)
    keys = {
        who: api_key(c.city.url, Role.ADMIN, org=org, sites=sites)
        for who, org, sites in (("own", "lampang", None), ("fm", "lampang", ["A1"]), ("other", "nan", None))
    }
    with ConnectionPool(c.city.url, min_size=1, max_size=2, open=True) as pool, TestClient(
        create_app(settings, pool, live_worker=live_worker(settings))
    ) as client:  # fmt: skip
        clock.sleep(0.5)  # the poller's first step
        seen: dict[str, set[str]] = {}
        for who, key in keys.items():
            body = client.get("/live/events", headers={"X-API-Key": key, "Last-Event-ID": "0"}).text
            seen[who] = {json.loads(line[5:])["site_code"] for line in body.splitlines() if line.startswith("data:")}
    assert seen["own"] and seen["own"] <= A_SITES, seen
    assert seen["other"] and seen["other"] <= B_SITES, seen
    assert seen["fm"] == {"A1"}, seen


@case("GET", "/energy")
def _energy(c: Callers) -> None:
    sees(c, "/energy", "group", lambda b: b["rows"], **RANGE, group_by="site")
    sees(c, "/energy", "group", lambda b: b["rows"], **RANGE, group_by="device")
    lookup(c, "/energy", "A1", "A2", "NOPE", query="site_code", params=RANGE)
    city = [ok(x.get("/energy", params={**RANGE, "group_by": "city"}))["rows"] for x in (c.own, c.other)]
    assert {r["group"] for r in city[0]} == {"Lampang"} and {r["group"] for r in city[1]} == {"Nan"}


@case("GET", "/emission-factors")
def _factors(c: Callers) -> None:
    # Reference data (TGO's published factors), the same for everyone.
    own = ok(c.own.get("/emission-factors"))
    assert own and own == ok(c.other.get("/emission-factors")) == ok(c.fm.get("/emission-factors"))


@case("GET", "/completeness")
def _completeness(c: Callers) -> None:
    sees(c, "/completeness", "site_code", lambda b: b["sites"], date=DAY.isoformat())
    sees(c, "/completeness", "device_id", lambda b: b["devices"], date=DAY.isoformat())
    assert ok(c.fm.get("/completeness", params={"date": DAY.isoformat()}))["total"]["devices"] == 2
    lookup(c, "/completeness", "A1", "A2", "NOPE", query="site_code", params={"date": DAY.isoformat()})


@case("GET", "/rollups")
def _rollups(c: Callers) -> None:
    for interval in ("1h", "1min"):
        sees(c, "/rollups", "group", lambda b: b["rows"], **RANGE, metric="power", group_by="site", interval=interval)
    sees(c, "/rollups", "group", lambda b: b["rows"], **RANGE, metric="pm25", group_by="device")
    assert ok(c.fm.get("/rollups", params={**RANGE, "metric": "pm25"}))["rows"] == []  # A2 is not its site
    # A site named outside the scope is an empty answer, as an unknown site is on this route.
    assert ok(c.other.get("/rollups", params={**RANGE, "metric": "power", "site_code": "A1"}))["rows"] == []


@case("GET", "/streetlights")
def _streetlights(c: Callers) -> None:
    span = {"from": (DAY_START - timedelta(days=1)).isoformat(), "to": (DAY_START + timedelta(days=1)).isoformat()}
    sees(c, "/streetlights", "group", lambda b: b["rows"], **span, group_by="site")
    assert ids(ok(c.fm.get("/streetlights", params=span))["rows"], "group") == {"A1"}


@case("GET", "/late-data")
def _late(c: Callers) -> None:
    sees(c, "/late-data", "device_id", lambda b: b)
    assert ids(ok(c.fm.get("/late-data")), "device_id") == {"A1-M"}


@case("GET", "/conflicts")
def _conflicts(c: Callers) -> None:
    sees(c, "/conflicts", "device_id", lambda b: b["items"])
    assert ids(ok(c.fm.get("/conflicts"))["items"], "device_id") == {"A1-M"}
    lookup(c, "/conflicts", "A1-M", "A2-S", "NOPE", query="device_id")


def _letters(whose: set[str | None]) -> set[str]:
    return {topic for topic, (_, owner) in LETTERS.items() if owner in whose}


@case("GET", "/dead-letters")
def _dead_letters(c: Callers) -> None:
    topics = {k: ids(ok(getattr(c, k).get("/dead-letters"))["items"], "topic") for k in ("own", "other", "fm")}
    assert topics == {"own": _letters({"A", "A1"}), "other": _letters({"B", "B1"}), "fm": _letters({"A1"})}


@case("GET", "/dead-letters/summary")
def _dead_letter_summary(c: Callers) -> None:
    totals = {k: ok(getattr(c, k).get("/dead-letters/summary"))["total"] for k in ("own", "other", "fm")}
    assert totals == {"own": 2, "other": 2, "fm": 1}  # of 6 letters: 2 are nobody's


@case("GET", "/aqi/current")
def _aqi_current(c: Callers) -> None:
    sees(c, "/aqi/current", "device_id", lambda b: b)
    assert ok(c.fm.get("/aqi/current")) == [] and ok(c.other.get("/aqi/current", params={"site_code": "A2"})) == []


@case("GET", "/aqi/history")
def _aqi_history(c: Callers) -> None:
    sees(c, "/aqi/history", "device_id", lambda b: b, **RANGE)
    assert ok(c.other.get("/aqi/history", params={**RANGE, "device_id": "A2-S"})) == []


@case("GET", "/aqi/stations.geojson")
def _aqi_geojson(c: Callers) -> None:
    sees(c, "/aqi/stations.geojson", "device_id", lambda b: [f["properties"] for f in b["features"]])
    assert ok(c.fm.get("/aqi/stations.geojson"))["features"] == []


@case("GET", "/organisations")
def _organisations(c: Callers) -> None:
    codes = {k: ids(ok(getattr(c, k).get("/organisations")), "code") for k in ("own", "other", "fm")}
    assert codes == {"own": {"lampang"}, "other": {"nan"}, "fm": {"lampang"}}


FIT = {"baseline_from": "2025-01-01", "baseline_to": "2025-12-01", "base_temp_c": 24}


@case("POST", "/sites/{code}/mv/fit")
def _mv_fit(c: Callers) -> None:
    lookup(c, "/sites/{}/mv/fit", "A1", "A2", "NOPE", method="post", json=FIT)
    # A weather station of another organisation is as unknown as one that does not exist.
    same_as_unknown(
        c.own.post("/sites/A1/mv/fit", json={**FIT, "station": "B2-S"}),
        c.own.post("/sites/A1/mv/fit", json={**FIT, "station": "NOPE"}),
    )


@case("GET", "/sites/{code}/mv/savings")
def _mv_savings(c: Callers) -> None:
    span = {"from": "2026-01-01", "to": "2026-02-01"}
    unknown = c.own.get("/sites/NOPE/mv/savings", params=span)
    for client, site in ((c.other, "A1"), (c.other, "A2"), (c.fm, "A2")):
        r = client.get(f"/sites/{site}/mv/savings", params=span)
        same_as_unknown(r, unknown)
        assert r.json()["detail"].startswith("no site")
    for client in (c.own, c.fm):  # found: it has no model yet
        assert client.get("/sites/A1/mv/savings", params=span).json()["detail"].startswith("no M&V model")


@case("GET", "/alerts")
def _alerts(c: Callers) -> None:
    sees(c, "/alerts", "site_code", lambda b: b["items"])
    listed = {k: ids(ok(getattr(c, k).get("/alerts"))["items"], "id") for k in ("own", "other", "fm")}
    a1 = {c.alert(n) for n in ("a1", "a1-ack", "a1-close")}
    a_all = a1 | {c.alert("a2"), c.alert("a2-ack")}
    assert listed["own"] == a_all and listed["fm"] == a1 and listed["other"] == {c.alert("b1"), c.alert("b2")}
    lookup(c, "/alerts", "A1", "A2", "NOPE", query="site")


@case("GET", "/alerts/{alert_id}")
def _alert(c: Callers) -> None:
    lookup(c, "/alerts/{}", str(c.alert("a1")), str(c.alert("a2")), "999999999")


def _action(c: Callers, action: str, fm_target: str, a2: str) -> None:
    body = {"note": "seen"}
    unknown = c.own.post(f"/alerts/999999999/{action}", json=body)
    for client, target in ((c.other, fm_target), (c.other, a2), (c.fm, a2)):
        same_as_unknown(client.post(f"/alerts/{c.alert(target)}/{action}", json=body), unknown)
    assert ok(c.own.get(f"/alerts/{c.alert(a2)}"))["state"] == "open"  # untouched
    assert ok(c.fm.post(f"/alerts/{c.alert(fm_target)}/{action}", json=body))["state"] in ("acknowledged", "closed")


@case("POST", "/alerts/{alert_id}/ack")
def _ack(c: Callers) -> None:
    _action(c, "ack", "a1-ack", "a2-ack")


@case("POST", "/alerts/{alert_id}/close")
def _close(c: Callers) -> None:
    _action(c, "close", "a1-close", "a2")


@case("GET", "/alert-rules")
def _rules(c: Callers) -> None:
    keys = {k: ids(ok(getattr(c, k).get("/alert-rules")), "key") for k in ("own", "other", "fm")}
    assert {"a-only", "global-pm25"} <= keys["own"] and "b-only" not in keys["own"]
    assert {"b-only", "global-pm25"} <= keys["other"] and not keys["other"] & {"a-only", "a-put", "a-del"}
    assert keys["fm"] == keys["own"]  # rules belong to the organisation, not to a site


@case("GET", "/alert-rules/{key}")
def _rule(c: Callers) -> None:
    unknown = c.own.get("/alert-rules/nope")
    assert ok(c.own.get("/alert-rules/a-only"))["origin"] == "api"
    same_as_unknown(c.other.get("/alert-rules/a-only"), unknown)
    assert ok(c.other.get("/alert-rules/global-pm25"))["origin"] == "file"


@case("PUT", "/alert-rules/{key}")
def _put_rule(c: Callers) -> None:
    # B writing a rule of A's key makes B's own; A's stays as it was.
    created = c.other.put("/alert-rules/a-put", json={**rule("a-put", 5), "severity": "critical"})
    assert (created.status_code, created.json()["definition"]["severity"]) == (201, "critical")
    assert ok(c.own.get("/alert-rules/a-put"))["definition"]["severity"] == "warning"
    # Replacing the file's rule for B leaves it in force for A.
    assert c.other.put("/alert-rules/global-pm25", json=rule("global-pm25", 10)).status_code == 201
    assert ok(c.own.get("/alert-rules/global-pm25"))["origin"] == "file"
    assert ok(c.other.get("/alert-rules/global-pm25"))["origin"] == "api"


@case("DELETE", "/alert-rules/{key}")
def _delete_rule(c: Callers) -> None:
    same_as_unknown(c.other.delete("/alert-rules/a-del"), c.own.delete("/alert-rules/nope"))
    assert ok(c.own.get("/alert-rules/a-del"))["key"] == "a-del"
    assert c.own.delete("/alert-rules/a-del").status_code == 204


@case("GET", "/sites/{site_code}/service")
def _site_service(c: Callers) -> None:
    lookup(c, "/sites/{}/service", "A1", "A2", "NOPE")


@case("PATCH", "/sites/{site_code}/service")
def _site_service_patch(c: Callers) -> None:
    lookup(c, "/sites/{}/service", "A1", "A2", "NOPE", method="patch", json={})


@case("GET", "/devices/{device_id}/service")
def _device_service(c: Callers) -> None:
    lookup(c, "/devices/{}/service", "A1-M", "A2-S", "NOPE")


@case("PATCH", "/devices/{device_id}/service")
def _device_service_patch(c: Callers) -> None:
    lookup(c, "/devices/{}/service", "A1-M", "A2-S", "NOPE", method="patch", json={})
    # Nor can B name one of A's devices as the one its device replaced: as unknown as a device that does not exist.
    named_a = c.other.patch("/devices/B1-M/service", json={"replaces": "A1-M"})
    named_none = c.other.patch("/devices/B1-M/service", json={"replaces": "NOPE"})
    assert named_a.status_code == named_none.status_code == 422, named_a.text
    assert named_a.text.replace("A1-M", "NOPE") == named_none.text


# Accounts, keys and the audit log: each organisation's own, and only for an administrator of every site (a
# site-limited one could otherwise give a new account every site).
PASSWORD = "a long enough passphrase 2026"


def _a_user(c: Callers) -> str:
    r = c.own.post("/users", json={"username": "a-officer", "password": PASSWORD, "roles": ["viewer"]})
    assert r.status_code in (201, 409), r.text
    return "a-officer"


@case("GET", "/users")
def _users(c: Callers) -> None:
    name = _a_user(c)
    assert name in ids(ok(c.own.get("/users")), "username")
    assert name not in ids(ok(c.other.get("/users")), "username")
    assert c.fm.get("/users").status_code == 403


@case("POST", "/users")
def _users_post(c: Callers) -> None:
    body = {"username": "b-officer", "password": PASSWORD, "roles": ["viewer"]}
    assert c.other.post("/users", json={**body, "sites": ["A1"]}).status_code == 422  # not one of B's sites
    made = c.other.post("/users", json=body)
    assert made.status_code in (201, 409), made.text
    assert {u["organisation"] for u in ok(c.other.get("/users")) if u["username"] == "b-officer"} == {"nan"}
    assert c.fm.post("/users", json={**body, "username": "fm-made"}).status_code == 403


@case("PATCH", "/users/{username}")
def _users_patch(c: Callers) -> None:
    name = _a_user(c)
    change = {"display_name": "Renamed by B"}
    same_as_unknown(c.other.patch(f"/users/{name}", json=change), c.own.patch("/users/nobody-here", json=change))
    assert ok(c.own.patch(f"/users/{name}", json={"display_name": "A officer"}))["display_name"] == "A officer"
    assert c.fm.patch(f"/users/{name}", json={"sites": None}).status_code == 403


@case("GET", "/api-keys")
def _keys(c: Callers) -> None:
    own, other = ok(c.own.get("/api-keys")), ok(c.other.get("/api-keys"))
    assert {k["organisation"] for k in own} == {"lampang"} and {k["organisation"] for k in other} == {"nan"}
    assert c.fm.get("/api-keys").status_code == 403


@case("POST", "/api-keys")
def _keys_post(c: Callers) -> None:
    body = {"name": "b bridge", "roles": ["viewer"]}
    assert c.other.post("/api-keys", json={**body, "sites": ["A1"]}).status_code == 422  # not one of B's sites
    made = c.other.post("/api-keys", json=body)
    assert made.status_code == 201 and made.json()["organisation"] == "nan", made.text
    assert c.fm.post("/api-keys", json=body).status_code == 403


@case("DELETE", "/api-keys/{key_id}")
def _keys_delete(c: Callers) -> None:
    made = c.own.post("/api-keys", json={"name": "a spare", "roles": ["viewer"]})
    assert made.status_code == 201, made.text
    a_key = made.json()["key_id"]
    unknown = c.own.delete("/api-keys/" + "0" * len(a_key))
    same_as_unknown(c.other.delete(f"/api-keys/{a_key}"), unknown)
    assert c.fm.delete(f"/api-keys/{a_key}").status_code == 403
    assert ok(c.own.delete(f"/api-keys/{a_key}"))["revoked_at"]


@case("GET", "/audit")
def _audit(c: Callers) -> None:
    _a_user(c)
    assert c.other.post("/api-keys", json={"name": "b probe", "roles": ["viewer"]}).status_code == 201
    own, other = ok(c.own.get("/audit"))["items"], ok(c.other.get("/audit"))["items"]
    assert own and {e["organisation"] for e in own} == {"lampang"}
    assert other and {e["organisation"] for e in other} == {"nan"}
    assert c.fm.get("/audit").status_code == 403


@case("GET", "/auth/me")
def _me(c: Callers) -> None:
    assert ok(c.own.get("/auth/me"))["organisation"] == "lampang"
    assert ok(c.other.get("/auth/me"))["organisation"] == "nan"
    assert ok(c.fm.get("/auth/me"))["sites"] == ["A1"]


# Scoped by the identity layer (/organisations/{code}/...); open probes; the caller's own session, which holds no
# organisation's data (logging in and out).
ROUTE_EXCLUDED = ("/organisations/{code}", "/health", "/auth/login", "/auth/logout")


def _routes() -> set[tuple[str, str]]:
    doc = create_app(Settings(database_url="unused")).openapi()
    return {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if not path.startswith(ROUTE_EXCLUDED) and path != "/metrics"
    }


def test_every_route_has_a_case() -> None:
    routes = _routes()
    assert len(routes) > 25
    assert set(CASES) == routes, f"without a case: {routes - set(CASES)}; stale: {set(CASES) - routes}"


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]} {k[1]}")
def test_a_caller_sees_only_its_organisation_and_sites(callers: Callers, key: tuple[str, str]) -> None:
    CASES[key](callers)


# --- the store's filters on their own -------------------------------------------------------------------------


def test_store_filters_scope_sites_devices_and_nobodys_site(city: City) -> None:
    a = Scope(city.lampang)
    a1 = Scope(city.lampang, frozenset({city.site_ids["A1"]}))
    b = Scope(city.nan)
    with psycopg.connect(city.url) as conn:
        assert {s.site_code for s in queries.list_sites(conn, scope=a)} == A_SITES
        assert {s.site_code for s in queries.list_sites(conn, scope=a1)} == {"A1"}
        assert {s.site_code for s in queries.list_sites(conn, scope=b)} >= B_SITES
        # The site of no organisation is in nobody's scope; the command line (scope None) sees every site.
        assert all(queries.get_site(conn, "Z1", scope=s) is None for s in (a, a1, b))
        assert queries.get_site(conn, "Z1", scope=None) is not None
        assert queries.get_device(conn, "A2-S", scope=a1) is None and queries.get_device(conn, "A1-M", scope=a1)
        assert {d.device_id for d in queries.list_devices(conn, scope=a)} == A_DEVICES


def test_dead_letters_follow_the_configured_topic_root(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        lampang = _org_id(conn, "lampang")
        letters = [
            DeadLetterRow(us(NOW), "city/v2/lampang/ghost/up", b"{}", "unknown_device", "x", "ghost"),
            DeadLetterRow(us(NOW) + 1, "lccm/v1/lampang/ghost/up", b"{}", "bad_topic", "x", None),
        ]
        empty = ReadingColumns(*(np.empty(0, dtype=t) for t in ("i4", "i2", "i8", "f8", "i8", "i8")))
        write_batch(conn, empty, letters)
        scope = Scope(lampang)
        page = queries.dead_letters_page(
            conn, scope=scope, topic_root="city/v2", reason=None, start=None, end=None, before=None, limit=10
        )
        summary = queries.dead_letter_summary(conn, scope=scope, topic_root="lccm/v1")
    assert [d.topic for d in page] == ["city/v2/lampang/ghost/up"]
    assert [(s.reason, s.count) for s in summary] == [("bad_topic", 1)]


# --- the evaluator applies to a device its organisation's rules and the global ones ---------------------------

STEP = timedelta(minutes=15)
T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)


def _cols(conn: psycopg.Connection, device: str, values: list[float]) -> ReadingColumns:
    ts = np.array([us(T0 + i * STEP) for i in range(len(values))], dtype=np.int64)
    n = len(values)
    return ReadingColumns(
        device_id=np.full(n, device_pk(conn, device), np.int32), metric_id=np.full(n, PM25, np.int16), ts_us=ts,
        value=np.asarray(values, dtype=np.float64), seq=np.full(n, NO_SEQ, np.int64), received_at_us=ts + 1_000_000,
    )  # fmt: skip


def test_the_evaluator_applies_each_organisations_rules_to_its_devices_only(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, [REGISTRY[2], REGISTRY[5]])))
        lampang, nan = _org_id(conn, "lampang"), _org_id(conn, "nan")
        st.put_rule(conn, "pm25-high", definition(rule("pm25-high", 100)), "file")  # for everyone ...
        st.put_rule(conn, "pm25-high", definition(rule("pm25-high", 200, "critical")), "api", lampang)  # ... but A
        st.put_rule(conn, "b-low", definition(rule("b-low", 50)), "api", nan)  # B's own
        conn.commit()
        batches = [_cols(conn, d, [150.0] * 4 + [250.0] * 4) for d in ("A2-S", "B2-S")]
    ev = AlertEvaluator(functools.partial(psycopg.connect, fresh_db), clock="event")
    for batch in batches:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            write_batch(conn, batch)
    ev.drain()
    with psycopg.connect(fresh_db) as conn:
        raised = {(a.device_id, a.rule_key, a.severity, a.raised_value) for a in st.list_alerts(conn, scope=None)}
    assert raised == {
        ("A2-S", "pm25-high", Severity.CRITICAL, 250.0),  # A's own threshold (200), not the file's (100)
        ("B2-S", "pm25-high", Severity.WARNING, 150.0),  # the file's
        ("B2-S", "b-low", Severity.WARNING, 150.0),  # B's own rule watches B's station only
    }


# --- migration 015 on a database in use -----------------------------------------------------------------------


def test_rules_written_through_the_api_before_015_become_each_organisations_own(fresh_db: str) -> None:
    with psycopg.connect(fresh_db, autocommit=True) as conn:  # the schema as 014 left it, then migrated again
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz DEFAULT now())")
        for name, text in _migration_files():
            if name < "015":
                conn.execute(text.encode())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        for key, origin, severity in (("pm25-high", "api", "critical"), ("offline", "file", "warning")):
            d = Jsonb(definition({**rule(key, 100), "severity": severity}))
            conn.execute(
                "INSERT INTO alert_rules (key, definition, origin, version) VALUES (%s, %s, %s, 3)", (key, d, origin)
            )
        assert [n for n in migrate(conn).applied if n.startswith("015")] == ["015_scoping.sql"]
        rows = {(r.key, r.organisation_id, r.origin, r.version) for r in st.list_rules(conn)}
        lampang, nan = _org_id(conn, "lampang"), _org_id(conn, "nan")
    # The API's rule applied to everyone: now each organisation's own; the file's rule stays global.
    assert rows == {("pm25-high", lampang, "api", 3), ("pm25-high", nan, "api", 3), ("offline", None, "file", 3)}
