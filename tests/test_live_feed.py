"""GET /live/events on a real database through the app with its supervised poller: power, alert and AQI events
arrive with the API's figures, only in the caller's scope and for the caller's roles; Last-Event-ID replays the
alert events missed; anonymous callers get 401; a full feed answers 503.

The TestClient reads an answer whole, so each stream here is bounded by ``live_stream_max_s``; what the test
writes while the stream is open is written from another thread."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from lccm.api.app import create_app
from lccm.api.principal import Role
from lccm.api.schemas_live import EVENT_DATA
from lccm.engine.alert_kinds import Severity
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import live_worker
from lccm.settings import Settings
from lccm.store import alerts as st
from lccm.store import inventory as inv
from lccm.store.devices import import_registry
from tests._auth import TestClient, api_key, bearer
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, us, write_readings

POWER = 2
REGISTRY = [
    "HALL,City Hall,,building,Lampang,,,,HALL-M,electricity_meter,Main,900,100",
    "LIB,Library,,building,Lampang,,,,LIB-M,electricity_meter,Main,900,100",
    "AQ1,Station,,station,Lampang,18.29,99.50,,AQ1-S,aq_station,Station,900,",
    "NANH,Nan Hall,,building,Nan,,,,NANH-M,electricity_meter,Main,900,100",
    "NANQ,Nan Station,,station,Nan,18.79,100.78,,NANQ-S,aq_station,Station,900,",
]
NOW = datetime.now(UTC).replace(microsecond=0)
STREAM_S = 2.5


@dataclass(frozen=True)
class Feed:
    url: str
    client: TestClient
    pks: dict[str, int]

    def events(
        self, key: str, *, during: Callable[[], None] | None = None, last_event_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The events of one bounded stream; ``during`` runs in another thread once the stream is open."""
        if during is not None:
            threading.Timer(0.6, during).start()
        headers = bearer(key) | ({} if last_event_id is None else {"Last-Event-ID": last_event_id})
        answer = self.client.get("/live/events", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/event-stream")
        return parse(answer.text)

    def write(self, f: Callable[[psycopg.Connection], None]) -> Callable[[], None]:
        def run() -> None:
            with psycopg.connect(self.url) as conn:
                f(conn)

        return run


def parse(body: str) -> list[dict[str, Any]]:
    found = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            if name in ("event", "data", "id"):
                fields[name] = value.removeprefix(" ")
            elif name == "" and "heartbeat" in value:
                fields["comment"] = "heartbeat"
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            EVENT_DATA[fields["event"]].model_validate(fields["data"])  # the shape the OpenAPI document gives
        if fields:
            found.append(fields)
    return found


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


def _seed(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        pks = {d: device_pk(conn, d) for d in ("HALL-M", "LIB-M", "AQ1-S", "NANH-M", "NANQ-S")}
        write_readings(conn, [(pks["HALL-M"], POWER, NOW - timedelta(minutes=2), 4200.0, NOW),
                              (pks["NANH-M"], POWER, NOW - timedelta(minutes=2), 50000.0, NOW)])  # fmt: skip
    return pks


@pytest.fixture(scope="module")
def feed() -> Iterator[Feed]:
    with fresh_database() as url:
        pks = _seed(url)
        settings = Settings(database_url=url, live_poll_s=0.2, live_stream_max_s=STREAM_S, live_heartbeat_s=1.0,
                            live_max_subscribers=3)  # fmt: skip
        with (
            ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
            TestClient(create_app(settings, pool, live_worker=live_worker(settings))) as client,
        ):
            time.sleep(0.5)  # the poller's first step
            yield Feed(url, client, pks)


def _raise(feed: Feed, device: str, name: str) -> Callable[[psycopg.Connection], None]:
    def write(conn: psycopg.Connection) -> None:
        started = us(NOW - timedelta(hours=1))
        new = st.NewAlert("pm25-high", f"live/{name}", feed.pks[device], "pm25_ugm3", Severity.WARNING, started,
                          started + 60_000_000, 150.0, 100.0, False)  # fmt: skip
        st.insert_alert(conn, new)

    return write


def _aqi(feed: Feed, device: str, value: float) -> Callable[[psycopg.Connection], None]:
    def write(conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO aqi_hourly (index_key, device_id, hour_start, aqi, responsible, category, sub_index, average,"
            " status) VALUES ('thai_pcd_2023', %s, %s, %s, 'pm25', 2, '{}', '{}', 'complete')"
            " ON CONFLICT (index_key, device_id, hour_start) DO UPDATE SET aqi = excluded.aqi, computed_at = now()",
            (feed.pks[device], NOW.replace(minute=0, second=0), value),
        )

    return write


def test_power_of_the_callers_sites_arrives_with_the_figures_of_sites_live(feed: Feed) -> None:
    key = api_key(feed.url, Role.VIEWER)
    more_power = feed.write(lambda c: write_readings(c, [(feed.pks["LIB-M"], POWER, NOW, 9100.0, NOW)]))
    events = feed.events(key, during=more_power)
    power = {e["data"]["site_code"]: e["data"] for e in named(events, "power")}
    assert set(power) == {"HALL", "LIB", "AQ1"}  # not Nan's hall: another organisation's
    assert power["HALL"]["power_w"] == 4200.0 and power["LIB"]["power_w"] == 9100.0  # LIB's came while open
    assert power["AQ1"]["power_w"] is None  # a station: no power, as GET /sites/AQ1/live says
    for site, data in power.items():
        live = feed.client.get(f"/sites/{site}/live", headers=bearer(key)).json()
        assert (data["power_w"], data["power_devices"]) == (live["power_w"], live["power_devices"])
    assert any(e.get("comment") == "heartbeat" for e in events)


def test_alert_and_aqi_events_arrive_in_scope_only(feed: Feed) -> None:
    key, nan_key = api_key(feed.url, Role.ENVIRONMENT_OFFICER), api_key(feed.url, Role.ADMIN, org="nan")

    def writes() -> None:
        feed.write(_raise(feed, "AQ1-S", "a"))()
        feed.write(_raise(feed, "NANQ-S", "b"))()
        feed.write(_aqi(feed, "AQ1-S", 88.0))()
        feed.write(_aqi(feed, "NANQ-S", 140.0))()

    events = feed.events(key, during=writes)
    alerts = named(events, "alert")
    assert [(e["data"]["site_code"], e["data"]["kind"], e["data"]["state"]) for e in alerts] == [
        ("AQ1", "raised", "open")
    ]
    assert alerts[0]["id"] == str(alerts[0]["data"]["event_id"])
    shown = feed.client.get(f"/alerts/{alerts[0]['data']['alert_id']}", headers=bearer(key))
    assert shown.status_code == 200 and shown.json()["rule_key"] == "pm25-high"
    aqi = named(events, "aqi")
    assert [(e["data"]["station"], e["data"]["aqi"], e["data"]["index"]) for e in aqi] == [
        ("AQ1-S", 88.0, "thai_pcd_2023")
    ]
    # Nan's admin, reconnecting as if from before: the replay holds Nan's alert and none of Lampang's.
    replay = named(feed.events(nan_key, last_event_id="0"), "alert")
    assert {e["data"]["site_code"] for e in replay} == {"NANQ"}
    assert {e["data"]["site_code"] for e in named(feed.events(nan_key), "power")} == {"NANH", "NANQ"}


def test_a_facility_manager_gets_their_sites_and_no_air_quality(feed: Feed) -> None:
    key = api_key(feed.url, Role.FACILITY_MANAGER, sites=["HALL", "AQ1"])
    events = feed.events(key, during=feed.write(_aqi(feed, "AQ1-S", 95.0)), last_event_id="0")
    assert {e["data"]["site_code"] for e in named(events, "power")} == {"HALL", "AQ1"}  # not LIB
    assert {e["data"]["site_code"] for e in named(events, "alert")} == {"AQ1"}  # alerts: READ_ENERGY
    assert named(events, "aqi") == []  # AQI: viewer, environment and carbon officers, admin


def test_anonymous_is_refused_and_a_full_feed_answers_503(feed: Feed) -> None:
    answer = feed.client.get("/live/events")
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    hub = feed.client.app.state.live_hub  # type: ignore[attr-defined]
    key = api_key(feed.url, Role.VIEWER)
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(feed.client.get("/live/events", headers=bearer(key)).status_code)
        )
        for _ in range(hub.max_subscribers)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 2
    while hub.subscriber_count() < hub.max_subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    full = feed.client.get("/live/events", headers=bearer(key))
    for t in threads:
        t.join()
    assert full.status_code == 503 and full.json()["error"] == "live_feed_full"
    assert results == [200] * hub.max_subscribers


def test_the_openapi_document_describes_the_stream(feed: Feed) -> None:
    operation = feed.client.get("/openapi.json").json()["paths"]["/live/events"]["get"]
    content = operation["responses"]["200"]["content"]["text/event-stream"]
    data = content["itemSchema"]["properties"]["data"]["contentSchema"]["oneOf"]
    assert [d["title"] for d in data] == ["data of event: power", "data of event: alert", "data of event: aqi"]
    assert "event: power" in content["example"] and "Last-Event-ID" in operation["description"]
    assert operation["security"] and "503" in operation["responses"]


def test_a_slow_subscriber_is_dropped_not_buffered() -> None:
    import asyncio

    from lccm.api.live import LiveEvent, LiveHub
    from lccm.api.principal import Principal, Scope

    async def run() -> tuple[bool, int]:
        hub = LiveHub(max_subscribers=2, queue_events=3, replay_events=10)
        who = Principal("t", "t", frozenset({Role.VIEWER}), Scope(1))
        sub = hub.subscribe(who, None)
        hub.publish([LiveEvent("power", {"site_code": str(i)}, 1, i) for i in range(5)])
        await asyncio.sleep(0.05)
        return sub.dropped, sub.queue.qsize()

    dropped, queued = asyncio.run(run())
    assert dropped and queued == 1  # only the end-of-stream marker is left


def test_closing_the_hub_ends_every_stream_and_refuses_new_ones() -> None:
    """What `lccm api` does when asked to stop: uvicorn would otherwise wait for streams that never end."""
    import asyncio

    from lccm.api.live import LiveHub, TooManySubscribers
    from lccm.api.principal import Principal, Scope

    async def run() -> tuple[object, bool]:
        hub = LiveHub(max_subscribers=2, queue_events=3, replay_events=10)
        who = Principal("t", "t", frozenset({Role.VIEWER}), Scope(1))
        sub = hub.subscribe(who, None)
        hub.close()
        ended = await asyncio.wait_for(sub.queue.get(), timeout=1)
        try:
            hub.subscribe(who, None)
        except TooManySubscribers:
            return ended, True
        return ended, False

    assert asyncio.run(run()) == (None, True)
