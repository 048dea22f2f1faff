"""Every write is committed before its answer goes out, and a commit that fails is a 5xx, never a 2xx.

Read-after-write: for every write operation of the OpenAPI document (POST, PUT, PATCH, DELETE; a new one without a
case here fails ``test_every_write_route_has_a_case``), a read is made at the very moment the app starts sending
the write's answer (its status line), on another connection of the pool, through the app itself (or, for the one
write no route reads back, the daily temperatures, in SQL). It must already see the write. Before the change the
transaction ended in the teardown of the request's connection, after the answer was sent, and these reads saw the
old data.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lccm.api.app import create_app
from lccm.api.auth import accounts
from lccm.engine.alerts import AlertRule
from lccm.engine.timebase import bkk_us
from lccm.runtime import updaters
from lccm.settings import Settings
from lccm.store import alerts as st
from lccm.store.baseline import import_temperature_csv
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from tests._auth import TEST_ACTOR, admin_headers
from tests._db import device_pk, fresh_database
from tests._seeded import Seeded, seed_city

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

WRITE_METHODS = {"post", "put", "patch", "delete"}
DOCUMENT = create_app(Settings(database_url="unused")).openapi()
WRITES = {(m.upper(), path) for path, item in DOCUMENT["paths"].items() for m in item if m in WRITE_METHODS}
BASE_YEAR = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv").read_bytes()
MV_FROM, MV_DAYS = date(2025, 1, 1), 120
ENERGY = 1


class ReadWhenAnswered:
    """ASGI wrapper: when the app starts answering the next request (the status line goes out), runs ``probe``
    (a GET through the same app, or any query on a connection of its own) and keeps what it saw in ``seen``."""

    def __init__(self, app: ASGIApp, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]  # the probes' credentials
        self.probe: Callable[[Scope], Any] | None = None
        self.seen: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        probe, self.probe = self.probe, None
        if scope["type"] != "http" or probe is None:
            await self.app(scope, receive, send)
            return

        async def send_after_probe(message: Message) -> None:
            if message["type"] == "http.response.start":
                result = probe(scope)
                self.seen.append(await result if hasattr(result, "__await__") else result)
            await send(message)

        await self.app(scope, receive, send_after_probe)

    def get(self, path: str, query: str = "") -> Callable[[Scope], Any]:
        """A probe that GETs ``path?query`` from the app (another request, another pooled connection)."""

        async def probe(outer: Scope) -> tuple[int, Any]:
            scope: Scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query.encode(),
                "headers": [(b"host", b"testserver"), *self.headers], "client": ("probe", 1),
                "server": ("testserver", 80),
                "state": dict(outer.get("state", {})),
            }  # fmt: skip
            status, body = 0, bytearray()

            async def receive() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                else:
                    body.extend(message.get("body", b""))

            await self.app(scope, receive, send)
            return status, json.loads(bytes(body)) if body else None

        return probe


RAW_PASSWORD = "raw password 1234"


def _identity_fixtures(url: str, client: TestClient) -> None:
    """A user to change, a key to revoke and a session to end, for the identity routes' cases."""
    with psycopg.connect(url) as conn:
        change = accounts.Change(TEST_ACTOR, "test")
        accounts.add_user(conn, change, username="raw-patch", display_name=None, password=RAW_PASSWORD,
                          organisation="lampang", roles=["viewer"], sites=None)  # fmt: skip
        accounts.add_user(conn, change, username="raw-login", display_name=None, password=RAW_PASSWORD,
                          organisation="lampang", roles=["viewer"], sites=None)  # fmt: skip
        accounts.create_api_key(conn, change, name="raw-revoke", organisation="lampang", roles=["viewer"], sites=None)
    login = client.post("/auth/login", json={"username": "raw-patch", "password": RAW_PASSWORD})
    SESSION.update(token=login.cookies["lccm_session"], csrf=login.json()["csrf_token"])


SESSION: dict[str, str] = {}


def _key_id(url: str, name: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT key_id FROM api_keys WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def _sessions_of(api: Api, username: str) -> Callable[[Scope], Any]:
    def probe(_: Scope) -> int:
        with psycopg.connect(api.url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = %s", (username,)
            ).fetchone()
        return int(row[0]) if row else 0

    return probe


@dataclass(frozen=True)
class Api:
    client: TestClient
    reader: ReadWhenAnswered
    url: str
    seeded: Seeded


def _daily_energy(url: str, device_id: str) -> None:
    """A register read at each Bangkok midnight over MV_DAYS days (100 kWh a day, 20 more on weekdays)."""
    days = [MV_FROM + timedelta(days=i) for i in range(MV_DAYS + 1)]
    kwh = np.concatenate([[0.0], np.cumsum([100.0 + 20.0 * (d.weekday() < 5) for d in days[:-1]])])
    ts = np.array([bkk_us(d.year, d.month, d.day) for d in days], np.int64)
    with psycopg.connect(url) as conn:
        n = ts.size
        pk = device_pk(conn, device_id)
        write_batch(conn, ReadingColumns(np.full(n, pk, np.int32), np.full(n, ENERGY, np.int16), ts, kwh,
                                         np.full(n, NO_SEQ, np.int64), ts + 60_000_000))  # fmt: skip
        conn.commit()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with fresh_database() as url:
        seeded = seed_city(url, tmp_path_factory.mktemp("writes"))
        _daily_energy(url, seeded.meter)
        with psycopg.connect(url) as conn:  # the M&V fit's temperatures: the organisation's own, imported
            import_temperature_csv(conn, "lampang", _temperatures_csv(seeded)["content"], "seed")
            # A rule of Lampang's own to delete (the file's rules are read-only through the API).
            own = AlertRule.model_validate({**RULE, "key": "own-rule"}).definition()
            st.put_rule(conn, "own-rule", own, "api", _lampang(conn))
        updaters(Settings(database_url=url), url).drain()
        with ConnectionPool(url, min_size=1, max_size=4, open=True) as pool:
            admin = admin_headers(url)
            reader = ReadWhenAnswered(create_app(Settings(database_url=url), pool), admin)
            with TestClient(reader, raise_server_exceptions=False, headers=admin) as client:
                _identity_fixtures(url, client)
                API_URL[:] = [url]
                yield Api(client, reader, url, seeded)


def _lampang(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT id FROM organisations WHERE code = 'lampang'").fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Write:
    """One write: the request, the read made when its answer starts, and what that read must show."""

    method: str
    path: str
    request: Callable[[Seeded], dict[str, Any]]  # client.request keyword arguments
    probe: Callable[[Api], Callable[[Scope], Any]]
    shows: Callable[[Any, Seeded], bool]  # the probe's result shows the write


def _temperatures_csv(_: Seeded) -> dict[str, Any]:
    rows = "".join(f"{MV_FROM + timedelta(days=i)},{26 + (i % 7)}\n" for i in range(MV_DAYS))
    return {"content": ("date,mean_temp_c\n" + rows).encode(), "headers": {"content-type": "text/csv"}}


def _temperature_days(api: Api) -> Callable[[Scope], Any]:
    def probe(_: Scope) -> int:
        with psycopg.connect(api.url) as conn:
            row = conn.execute("SELECT count(*) FROM temperature_daily WHERE source = 'raw-test'").fetchone()
        return int(row[0]) if row else 0

    return probe


def _inventory_item(item: str, month: str, quantity: float) -> Callable[[Any, Seeded], bool]:
    def shows(seen: tuple[int, Any], _: Seeded) -> bool:
        status, body = seen
        if status != 200:
            return False
        months = next(i["months"] for i in body["items"] if i["item_code"] == item)
        return any(m["month_start"] == month and m["quantity"] == quantity for m in months)

    return shows


FIT = {"baseline_from": str(MV_FROM), "baseline_to": str(MV_FROM + timedelta(days=MV_DAYS)), "base_temp_c": 24,
       "limits": {"resolution": "daily", "cv_rmse_pct": 50, "nmbe_pct": 50}}  # fmt: skip
NEW_DEVICES = (
    "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"
    "RAW-SITE,Raw test site,building,Lampang,RAW-M1,electricity_meter,Main,900\n"
)
RULE = {"name": {"en": "PM2.5 raw", "th": "PM2.5"}, "metric": "pm25_ugm3", "raise": {"above": 500}, "severity": "info"}

CASES: list[Write] = [
    Write("PUT", "/organisations/{code}",
          lambda s: {"url": "/organisations/lampang", "json": {"name_en": "Raw", "province_en": "Lampang",
                                                                 "municipality_type": "city", "city_key": "lampang"}},
          lambda a: a.reader.get("/organisations"),
          lambda seen, s: "Raw" in {o["name_en"] for o in seen[1]}),
    Write("POST", "/organisations/{code}/inventory/import",
          lambda s: {"url": "/organisations/lampang/inventory/import", "params": {"year": 2024, "base_year": False},
                     "content": BASE_YEAR, "headers": {"content-type": "text/csv"}},
          lambda a: a.reader.get("/organisations/lampang/inventory", "year=2024&kind=calendar"),
          lambda seen, s: seen[0] == 200 and len(seen[1]["items"]) == 11),
    Write("POST", "/organisations/{code}/activity",
          lambda s: {"url": "/organisations/lampang/activity",
                     "json": {"entries": [{"item_code": "S1-LPG-KITCHEN", "month": "2026-01", "quantity": 465,
                                           "unit": "kg"}]}},
          lambda a: a.reader.get("/organisations/lampang/inventory", "year=2026&kind=calendar"),
          _inventory_item("S1-LPG-KITCHEN", "2026-01-01", 465)),
    Write("POST", "/organisations/{code}/activity/import",
          lambda s: {"url": "/organisations/lampang/activity/import", "headers": {"content-type": "text/csv"},
                     "content": b"item_code,month,quantity,unit,note\nS3-PAPER,2026-02,12,ream,raw\n"},
          lambda a: a.reader.get("/organisations/lampang/inventory", "year=2026&kind=calendar"),
          _inventory_item("S3-PAPER", "2026-02-01", 12)),
    Write("PUT", "/organisations/{code}/mappings",
          lambda s: {"url": "/organisations/lampang/mappings", "params": {"year": 2025},
                     "json": {"mappings": [{"device_id": s.meter, "item_code": "S2-ELEC-BLDG"}]}},
          lambda a: a.reader.get("/organisations/lampang/mappings", "year=2025&kind=calendar"),
          lambda seen, s: [(m["device_id"], m["item_code"]) for m in seen[1]["mappings"]] == [
              (s.meter, "S2-ELEC-BLDG")]),
    Write("PUT", "/organisations/{code}/targets",
          lambda s: {"url": "/organisations/lampang/targets",
                     "json": {"targets": [{"target_key": "raw-target", "target_year": 2030}]}},
          lambda a: a.reader.get("/organisations/lampang/targets"),
          lambda seen, s: [t["target_key"] for t in seen[1]] == ["raw-target"]),
    Write("POST", "/organisations/{code}/temperatures/import",
          lambda s: {"url": "/organisations/lampang/temperatures/import", "params": {"source": "raw-test"},
                     **_temperatures_csv(s)},
          _temperature_days,
          lambda seen, s: seen == MV_DAYS),
    Write("POST", "/sites/{code}/mv/fit",
          lambda s: {"url": f"/sites/{s.site}/mv/fit", "json": FIT},
          lambda a: a.reader.get(f"/sites/{a.seeded.site}/mv/savings", "from=2025-03-01&to=2025-04-01"),
          lambda seen, s: seen[0] == 200 and seen[1]["days"] == 31),
    Write("POST", "/devices/import",
          lambda s: {"url": "/devices/import", "content": NEW_DEVICES.encode(),
                     "headers": {"content-type": "text/csv"}},
          lambda a: a.reader.get("/devices/RAW-M1"),
          lambda seen, s: seen[0] == 200 and seen[1]["site_code"] == "RAW-SITE"),
    Write("PATCH", "/sites/{site_code}/service",
          lambda s: {"url": f"/sites/{s.site}/service", "json": {"commissioned_on": "2020-01-01"}},
          lambda a: a.reader.get(f"/sites/{a.seeded.site}/service"),
          lambda seen, s: seen[0] == 200 and seen[1]["commissioned_on"] == "2020-01-01"),
    Write("PATCH", "/devices/{device_id}/service",
          lambda s: {"url": f"/devices/{s.meter}/service", "json": {"decommissioned_on": "2040-01-01"}},
          lambda a: a.reader.get(f"/devices/{a.seeded.meter}/service"),
          lambda seen, s: seen[0] == 200 and seen[1]["decommissioned_on"] == "2040-01-01"),
    Write("POST", "/alerts/{alert_id}/ack",
          lambda s: {"url": f"/alerts/{s.open_alert}/ack", "json": {"note": "seen"}},
          lambda a: a.reader.get(f"/alerts/{a.seeded.open_alert}"),
          lambda seen, s: seen[1]["state"] == "acknowledged" and seen[1]["acknowledged_by"].startswith("API key")),
    Write("POST", "/alerts/{alert_id}/close",
          lambda s: {"url": f"/alerts/{s.acknowledged_alert}/close", "json": {}},
          lambda a: a.reader.get(f"/alerts/{a.seeded.acknowledged_alert}"),
          lambda seen, s: seen[1]["state"] == "closed"),
    Write("PUT", "/alert-rules/{key}",
          lambda s: {"url": "/alert-rules/raw-rule", "json": RULE},
          lambda a: a.reader.get("/alert-rules/raw-rule"),
          lambda seen, s: seen[0] == 200 and seen[1]["origin"] == "api"),
    Write("DELETE", "/alert-rules/{key}",
          lambda s: {"url": "/alert-rules/own-rule"},
          lambda a: a.reader.get("/alert-rules/own-rule"),
          lambda seen, s: seen[0] == 404),
    Write("POST", "/users",
          lambda s: {"url": "/users", "json": {"username": "raw-new", "password": RAW_PASSWORD, "roles": ["viewer"]}},
          lambda a: a.reader.get("/users"),
          lambda seen, s: "raw-new" in {u["username"] for u in seen[1]}),
    Write("PATCH", "/users/{username}",
          lambda s: {"url": "/users/raw-patch", "json": {"roles": ["carbon_officer"]}},
          lambda a: a.reader.get("/users"),
          lambda seen, s: ["carbon_officer"] in [u["roles"] for u in seen[1] if u["username"] == "raw-patch"]),
    Write("POST", "/api-keys",
          lambda s: {"url": "/api-keys", "json": {"name": "raw-new-key", "roles": ["viewer"]}},
          lambda a: a.reader.get("/api-keys"),
          lambda seen, s: "raw-new-key" in {k["name"] for k in seen[1]}),
    Write("DELETE", "/api-keys/{key_id}",
          lambda s: {"url": f"/api-keys/{_key_id(API_URL[0], 'raw-revoke')}"},
          lambda a: a.reader.get("/api-keys"),
          lambda seen, s: any(k["revoked_at"] for k in seen[1] if k["name"] == "raw-revoke")),
    Write("POST", "/auth/login",
          lambda s: {"url": "/auth/login", "json": {"username": "raw-login", "password": RAW_PASSWORD}},
          lambda a: _sessions_of(a, "raw-login"),
          lambda seen, s: seen == 1),
    Write("POST", "/auth/logout",
          lambda s: {"url": "/auth/logout", "headers": {"X-CSRF-Token": SESSION["csrf"],
                                                        "cookie": f"lccm_session={SESSION['token']}"}},
          lambda a: _sessions_of(a, "raw-patch"),
          lambda seen, s: seen == 0),
]  # fmt: skip
API_URL: list[str] = []  # the module's database, for the cases that look a row up


def test_every_write_route_has_a_case() -> None:
    assert {(c.method, c.path) for c in CASES} == WRITES


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path}")
def test_a_write_is_visible_to_a_read_made_when_its_answer_starts(api: Api, case: Write) -> None:
    before = case.probe(api)
    api.reader.probe = before
    api.client.get("/health/live")  # the same read, before the write: it must not show it yet
    assert not case.shows(api.reader.seen.pop(), api.seeded), "the case cannot fail: it shows before the write"
    api.reader.probe = case.probe(api)
    r = api.client.request(case.method, **case.request(api.seeded))
    assert r.status_code in (200, 201, 204), r.text
    assert case.shows(api.reader.seen.pop(), api.seeded), f"{case.method} {case.path} answered before it committed"


def test_a_commit_that_fails_is_a_5xx_and_nothing_is_written(api: Api) -> None:
    """A deferred constraint fails at COMMIT, after the route has returned: the client must hear of it. (The
    targets route leaves the commit to the request's connection: its store function writes in a savepoint.)"""
    with psycopg.connect(api.url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER refuse_doomed AFTER INSERT ON targets DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW WHEN (NEW.target_key = 'doomed') EXECUTE FUNCTION refuse_at_commit()"
        )
    before = api.client.get("/organisations/lampang/targets").json()
    r = api.client.put(
        "/organisations/lampang/targets", json={"targets": [{"target_key": "doomed", "target_year": 2030}]}
    )
    assert r.status_code == 500, r.text
    assert r.json()["error"] == "database_error"
    assert api.client.get("/organisations/lampang/targets").json() == before  # nothing was written
    fine = api.client.put(
        "/organisations/lampang/targets", json={"targets": [{"target_key": "fine", "target_year": 2030}]}
    )
    assert fine.status_code == 200  # the pool and the route still work
