"""The alert evaluator against a real PostgreSQL (readings written by the production writer), its crash safety,
dedup, lateness and offline rules; then the HTTP API: listing, history, acknowledge, close, and the rule CRUD."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.api.principal import Role
from lccm.engine.alerts import AlertRule
from lccm.imports.registry import parse_registry_csv
from lccm.settings import Settings
from lccm.store import alerts as st
from lccm.store.devices import import_registry
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.alerts import AlertEvaluator
from tests._auth import admin_headers, bearer, named_key
from tests._db import REGISTRY_HEADER_EN, device_pk, registry_csv, us

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

SO2, PM25, POWER = 11, 9, 2
STEP = timedelta(minutes=5)
T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)  # 09:00 Bangkok
ROWS = [
    # site_code,site_name,site_name_th,site_kind,city,lat,lon,floor_area_m2,device_id,device_kind,device_name,cadence_s
    "MM1,Sop Pat,สบป้าด,station,Lampang,18.273,99.721,,MM1-S,aq_station,Sop Pat SO2,300,",
    "MM1,Sop Pat,สบป้าด,station,Lampang,18.273,99.721,,MM1-T,aq_station,Sop Pat spare analyser,300,",
    "CITY,City Hall,ศาลากลาง,station,Lampang,18.2885,99.4912,,CITY-S,aq_station,City Hall station,300,",
]
MAE_MOH: dict[str, Any] = {
    "key": "so2_mae_moh",
    "name": {"en": "SO2 above 0.15 ppm for 6 minutes", "th": "SO2 เกิน 0.15 ppm นาน 6 นาที"},
    "metric": "so2_ppb",
    "raise": {"above": 150, "for": "6min"},
    "clear": {"below": 50},
    "holdoff": "30min",
    "dedup_key": "{site}/{signal}",
    "severity": "critical",
    "scope": {"device_kinds": ["aq_station"], "near": {"lat": 18.30, "lon": 99.74, "km": 10}},
}
OFFLINE: dict[str, Any] = {
    "key": "aq_offline",
    "name": {"en": "station silent", "th": "สถานีไม่ส่งข้อมูล"},
    "kind": "offline",
    "after_cadences": 6,
    "dedup_key": "{device}/offline",
    "severity": "warning",
    "scope": {"device_kinds": ["aq_station"]},
}
# value sequence: raised at #3 (#1..#3 above 150 for 10 min >= 6), cleared at #7 (45 < 50)
PLUME = [120.0, 160.0, 170.0, 180.0, 140.0, 100.0, 60.0, 45.0, 40.0]


@pytest.fixture
def db(fresh_db: str) -> str:
    with psycopg.connect(fresh_db) as conn:
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, ROWS)))
        for d in (MAE_MOH, OFFLINE):
            st.put_rule(conn, d["key"], AlertRule.model_validate(d).definition(), "file")
    return fresh_db


def cols(conn: psycopg.Connection, device: str, metric: int, start: datetime, values: list[float],
         lag: timedelta = timedelta(seconds=20)) -> ReadingColumns:  # fmt: skip
    ts = np.array([us(start + i * STEP) for i in range(len(values))], dtype=np.int64)
    n = len(values)
    return ReadingColumns(
        device_id=np.full(n, device_pk(conn, device), np.int32),
        metric_id=np.full(n, metric, np.int16),
        ts_us=ts,
        value=np.asarray(values, dtype=np.float64),
        seq=np.full(n, NO_SEQ, np.int64),
        received_at_us=ts + int(lag.total_seconds() * 1e6),
    )


def commit(url: str, batch: ReadingColumns) -> None:
    """Write a batch as the ingest sink does: its hand-over to the alert evaluator is written with it."""
    with psycopg.connect(url, autocommit=True) as conn:
        write_batch(conn, batch)


def evaluator(url: str, **kw: Any) -> AlertEvaluator:
    return AlertEvaluator(functools.partial(psycopg.connect, url), **kw)


def paged(url: str) -> list[st.PagedEvent]:
    """The changes waiting to be sent (the dispatch worker reads them from here; these tests run none)."""
    with psycopg.connect(url) as conn:
        return st.pending_notifications(conn)


def alerts(url: str) -> list[st.Alert]:
    with psycopg.connect(url) as conn:
        return sorted(st.list_alerts(conn, limit=1000, scope=None), key=lambda a: a.id)


def at(i: int) -> datetime:
    return T0 + i * STEP


# --- evaluator and store ------------------------------------------------------------------------------------------


def test_a_plume_raises_and_clears_one_alert_with_its_history_and_two_notifications(db: str) -> None:
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        first, second = cols(conn, "MM1-S", SO2, T0, PLUME[:5]), cols(conn, "MM1-S", SO2, at(5), PLUME[5:])
    commit(db, first)
    assert ev.run_once().raised == 1
    commit(db, second)
    ev.run_once()
    [a] = alerts(db)
    assert (a.rule_key, a.dedup_key, a.device_id, a.site_code, a.signal) == (
        "so2_mae_moh", "MM1/so2_ppb", "MM1-S", "MM1", "so2_ppb",
    )  # fmt: skip
    assert (a.state, a.started_at, a.raised_at, a.cleared_at) == ("cleared", at(1), at(3), at(7))
    assert (a.raised_value, a.threshold, a.peak_value, a.cleared_value, a.late) == (180, 150, 180, 45, False)
    assert a.rule_name_en == MAE_MOH["name"]["en"] and a.clear_reason == "condition"
    assert [(t.kind, t.at, t.alert_id, t.late) for t in paged(db)] == [("raised", at(3), a.id, False),
                                                                       ("cleared", at(7), a.id, False)]  # fmt: skip
    with psycopg.connect(db) as conn:
        events = st.alert_events(conn, a.id)
    # Recorded to page, not notified: only the dispatch worker marks an event notified, once its channels took it.
    assert [(e.kind, e.at, e.page, e.notified_at is not None) for e in events] == [
        ("raised", at(3), True, False), ("cleared", at(7), True, False),
    ]  # fmt: skip


def test_a_restart_resumes_from_stored_state_without_duplicate_or_lost_alerts(db: str) -> None:
    with psycopg.connect(db) as conn:
        parts = [cols(conn, "MM1-S", SO2, at(i), PLUME[i : i + 2]) for i in range(0, len(PLUME), 2)]
    first = evaluator(db, clock="event")
    commit(db, parts[0])
    commit(db, parts[1])
    first.run_once()  # saw #0..#3: raised
    # The process dies: part 2 is committed but its hook never runs; then everything is redelivered by the broker.
    commit(db, parts[2])
    second = evaluator(db, clock="event")
    assert second.prepare() == 1  # the catch-up found the series holding readings beyond its frontier
    for p in parts:  # redelivered batches: the database key makes them no-ops, the frontier makes them old news
        commit(db, p)
    second.drain()
    [a] = alerts(db)
    assert (a.state, a.raised_at, a.cleared_at) == ("cleared", at(3), at(7))
    assert [(t.kind, t.at) for t in paged(db)] == [("raised", at(3)), ("cleared", at(7))]


def test_changes_to_page_wait_in_the_database_and_each_run_that_records_some_wakes_the_dispatcher(db: str) -> None:
    woken: list[int] = []
    ev = evaluator(db, clock="event", on_paged=lambda: woken.append(len(paged(db))))
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, T0, PLUME[:5]))
    assert ev.run_once().raised == 1
    assert woken == [1], "woken after the run's commit: the dispatcher finds the change in the database"
    ev.run_once()
    assert woken == [1], "a run that recorded nothing wakes nobody"
    assert [(t.kind, t.at, t.event_id > 0) for t in paged(db)] == [("raised", at(3), True)]


def test_two_analysers_at_one_station_share_one_alert_by_the_dedup_key(db: str) -> None:
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, T0, PLUME[:5]))
        commit(db, cols(conn, "MM1-T", SO2, T0, [150.5, 151, 152, 153, 154]))
    ev.run_once()
    [a] = alerts(db)  # one alert per station and pollutant
    # MM1-T crossed first (#0..#2 above 150: raised at #2), MM1-S at #3: MM1-T owns it, MM1-S adds a duplicate
    assert (a.device_id, a.raised_at) == ("MM1-T", at(2))
    with psycopg.connect(db) as conn:
        assert [(e.kind, e.device_id, e.at) for e in st.alert_events(conn, a.id)] == [
            ("raised", "MM1-T", at(2)), ("duplicate", "MM1-S", at(3)),
        ]  # fmt: skip


def test_the_city_station_26_km_away_is_outside_the_mae_moh_rule(db: str) -> None:
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "CITY-S", SO2, T0, PLUME))
    ev.run_once()
    assert alerts(db) == []


def test_six_hours_of_buffered_data_are_recorded_late_and_not_paged_on_the_wall_clock(db: str) -> None:
    ev = evaluator(db, clock="wall", late_after_s=900)
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, T0, PLUME, lag=timedelta(hours=6)))
    ev.run_once()
    [a] = alerts(db)
    assert (a.late, a.state, a.raised_at, a.cleared_at) == (True, "cleared", at(3), at(7))
    assert paged(db) == []  # recorded, not paged
    with psycopg.connect(db) as conn:
        assert [(e.kind, e.late, e.page) for e in st.alert_events(conn, a.id)] == [
            ("raised", True, False), ("cleared", True, False),
        ]  # fmt: skip


def test_a_station_behind_the_rest_of_the_city_is_late_on_the_event_clock(db: str) -> None:
    ev = evaluator(db, clock="event", late_after_s=3600)
    with psycopg.connect(db) as conn:
        city = cols(conn, "CITY-S", PM25, T0, [20.0] * 80)  # the city reaches T0 + 6 h 35 min
        late = cols(conn, "MM1-S", SO2, T0, PLUME)  # then Sop Pat replays from T0
    commit(db, city)
    commit(db, late)
    ev.run_once()
    so2 = [a for a in alerts(db) if a.rule_key == "so2_mae_moh"]
    assert [(x.late, x.raised_at) for x in so2] == [(True, at(3))]


def test_offline_is_raised_on_the_event_watermark_and_cleared_when_data_resumes(db: str) -> None:
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, T0, [5.0, 5.0]))  # last seen at #1
        commit(db, cols(conn, "CITY-S", PM25, T0, [20.0] * 8))  # watermark #7: 30 min after #1, not more
        ev.run_once()
        assert [a.rule_key for a in alerts(db)] == []
        commit(db, cols(conn, "CITY-S", PM25, at(8), [20.0]))  # #8: 35 min of silence > 6 x 5 min
        ev.run_once()
        [a] = [a for a in alerts(db) if a.rule_key == "aq_offline" and a.device_id == "MM1-S"]
        # raised at the instant it became overdue: #1 + 30 min = #7 (event time), threshold 1800 s
        assert (a.state, a.raised_at, a.threshold) == ("open", at(7), 1800)
        commit(db, cols(conn, "MM1-S", SO2, at(9), [5.0]))
        ev.run_once()
    [a] = [a for a in alerts(db) if a.rule_key == "aq_offline" and a.device_id == "MM1-S"]
    assert (a.state, a.cleared_at, a.clear_reason) == ("cleared", at(9), "data_resumed")
    assert [(t.kind, t.at) for t in paged(db) if t.rule_key == "aq_offline" and t.device_id == "MM1-S"] == [
        ("raised", at(7)), ("cleared", at(9)),
    ]  # fmt: skip


def test_a_backlog_after_an_outage_of_this_system_judges_nobody_offline_until_the_stream_is_live(db: str) -> None:
    ev = evaluator(db, clock="wall")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, T0, [5.0, 5.0]))  # then Sop Pat goes silent
        # our ingest was down: the city's readings arrive three hours late, all at once
        commit(db, cols(conn, "CITY-S", PM25, T0, [20.0] * 30, lag=timedelta(hours=3)))
        ev.run_once()
        assert alerts(db) == []  # a backlog says nothing about who is delivering now
        commit(db, cols(conn, "CITY-S", PM25, at(30), [20.0]))  # live again
        ev.run_once()
    [a] = alerts(db)
    # Sop Pat delivered up to #1 (on time); the city's backlog, late, counts as delivered when it arrived
    assert (a.rule_key, a.device_id, a.raised_at) == ("aq_offline", "MM1-S", at(1) + 6 * STEP)


AQI_101: dict[str, Any] = {
    "key": "aqi_th_101",
    "name": {"en": "Thai AQI 101 or above", "th": "AQI 101 ขึ้นไป"},
    "index": "aqi_th",
    "raise": {"at_or_above": 101},
    "clear": {"at_or_below": 95, "for": "1h"},
    "dedup_key": "{site}/{signal}",
    "severity": "warning",
    "scope": {"device_kinds": ["aq_station"]},
}


def test_index_rules_read_the_stored_hourly_aqi_once_each_hour_is_over(db: str) -> None:
    # Hourly Thai AQI rows as the AQI updater writes them (migration 006): hours from 02:00Z, AQI 80, 102, 120, 99,
    # 94, 90. Each is a sample at its hour's end (03:00Z ... 08:00Z). Raised at 04:00Z (102 >= 101); 94 at 07:00Z
    # starts the clear (<= 95) and 90 at 08:00Z holds it 1 h: cleared at 08:00Z.
    aqi = [80, 102, 120, 99, 94, 90]
    with psycopg.connect(db) as conn:
        st.put_rule(conn, AQI_101["key"], AlertRule.model_validate(AQI_101).definition(), "file")
        city = device_pk(conn, "CITY-S")
        for h, value in enumerate(aqi):
            conn.execute(
                "INSERT INTO aqi_hourly (index_key, device_id, hour_start, aqi, responsible, category, sub_index,"
                " average, status) VALUES ('thai_pcd_2023', %s, %s, %s, 'pm25', 0, '{}', '{}', 'complete')",
                (city, T0 + timedelta(hours=h), value),
            )
        # batches of three readings (15 min), as a station's messages arrive
        batches = [cols(conn, "CITY-S", PM25, at(i), [20.0] * 3) for i in range(0, 73, 3)]
    ev = evaluator(db, clock="event", index_source=st.StoredAqiIndex())
    for b in batches[:12]:  # readings to #35 = 04:55Z: only the hours ending 03:00Z and 04:00Z are over
        commit(db, b)
    ev.run_once()
    [a] = [a for a in alerts(db) if a.rule_key == "aqi_th_101"]
    assert (a.raised_at, a.raised_value, a.threshold, a.signal) == (T0 + timedelta(hours=2), 102, 101, "aqi_th")
    for b in batches[12:]:  # to #74 = 08:10Z
        commit(db, b)
    ev.run_once()
    [a] = [a for a in alerts(db) if a.rule_key == "aqi_th_101"]
    assert (a.state, a.cleared_at, a.peak_value, a.late) == ("cleared", T0 + timedelta(hours=6), 120, False)
    # without an index source the rule is skipped, not an error
    with psycopg.connect(db) as conn:
        conn.execute("DELETE FROM alert_series_state")
    bare = evaluator(db, clock="event")
    commit(db, batches[-1])
    assert bare.run_once().transitions == 0


def test_an_incomplete_or_withheld_index_neither_raises_nor_clears(db: str) -> None:
    # Hourly Thai AQI rows from 02:00Z (migration 010): 80 complete; 130 incomplete (a lower bound: a measured
    # pollutant is withheld); withheld (no AQI); 102 complete; 90 incomplete; 94 complete; 90 complete.
    # Only complete values count (store.alerts.StoredAqiIndex gives NaN for the rest, which the evaluator takes as
    # unknown). Each row is a sample at its hour's end: raised at the 102's (06:00Z), not at the 130's (04:00Z); the
    # clear (<= 95 held 1 h) starts at the 94 (08:00Z), not at the incomplete 90 (07:00Z), and completes with the
    # last 90 (09:00Z). Counted as complete, the 130 would raise at 04:00Z and the clear complete at 08:00Z.
    rows = [
        (80, "complete"), (130, "incomplete"), (None, "withheld"), (102, "complete"), (90, "incomplete"),
        (94, "complete"), (90, "complete"),
    ]  # fmt: skip
    with psycopg.connect(db) as conn:
        st.put_rule(conn, AQI_101["key"], AlertRule.model_validate(AQI_101).definition(), "file")
        city = device_pk(conn, "CITY-S")
        for h, (value, status) in enumerate(rows):
            known = value is not None
            conn.execute(
                "INSERT INTO aqi_hourly (index_key, device_id, hour_start, aqi, responsible, category, sub_index,"
                " average, status, reason) VALUES ('thai_pcd_2023', %s, %s, %s, %s, %s, '{}', '{}', %s, %s)",
                (city, T0 + timedelta(hours=h), value, "pm25" if known else None, 0 if known else None, status,
                 None if status == "complete" else "PM10 24-h average withheld"),
            )  # fmt: skip
        batches = [cols(conn, "CITY-S", PM25, at(i), [20.0] * 3) for i in range(0, 88, 3)]  # to 09:15Z
    ev = evaluator(db, clock="event", index_source=st.StoredAqiIndex())
    for b in batches:
        commit(db, b)
    ev.run_once()
    [a] = [a for a in alerts(db) if a.rule_key == "aqi_th_101"]
    assert (a.raised_at, a.raised_value) == (T0 + timedelta(hours=4), 102)
    assert (a.state, a.cleared_at, a.peak_value) == ("cleared", T0 + timedelta(hours=7), 102)


def test_the_rule_file_sync_keeps_api_edits_and_removes_dropped_file_rules(db: str) -> None:
    with psycopg.connect(db) as conn:
        lampang = lampang_id(conn)
        api_version = {**MAE_MOH, "severity": "warning"}
        st.put_rule(conn, "so2_mae_moh", AlertRule.model_validate(api_version).definition(), "api", lampang)
        report = st.sync_file_rules(conn, [AlertRule.model_validate(MAE_MOH).definition()])
        assert (report.kept_api, report.removed) == (1, 1)  # aq_offline was a file rule absent from the file
        rules = {(r.organisation_id, r.key): r for r in st.list_rules(conn)}
        in_force = st.get_rule(conn, "so2_mae_moh", lampang)
    # The file's rule stays global; Lampang's own replaces it for Lampang's devices.
    assert set(rules) == {(None, "so2_mae_moh"), (lampang, "so2_mae_moh")}
    assert rules[(None, "so2_mae_moh")].definition["severity"] == "critical"
    assert (in_force.origin, in_force.definition["severity"]) == ("api", "warning")


def lampang_id(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT id FROM organisations WHERE code = 'lampang'").fetchone()
    assert row is not None
    return int(row[0])


# --- API ------------------------------------------------------------------------------------------------------


@pytest.fixture
def client(db: str) -> Iterator[TestClient]:
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, T0, PLUME))  # raised and cleared
        commit(db, cols(conn, "MM1-S", SO2, at(20), [160, 170, 180]))  # raised again: open
        commit(db, cols(conn, "CITY-S", PM25, T0, [20.0] * 23))  # up to #22: nobody offline
    ev.run_once()
    with (
        ConnectionPool(db, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(Settings(database_url=db), pool), headers=admin_headers(db)) as c,
    ):
        OFFICERS.update({who: bearer(named_key(db, who, Role.ENVIRONMENT_OFFICER)) for who in ("somchai", "malee")})
        yield c


OFFICERS: dict[str, dict[str, str]] = {}  # environment officers' API keys, by name


def _actor(client: TestClient, who: str) -> str:
    """How an alert records an officer: the display name and the subject of their credentials."""
    me = client.get("/auth/me", headers=OFFICERS[who]).json()
    return f"{me['display_name']} <{me['subject']}>"


def test_list_filter_and_page_alerts(client: TestClient) -> None:
    body = client.get("/alerts").json()
    assert [(a["state"], a["raised_at"]) for a in body["items"]] == [
        ("open", "2026-01-10T03:50:00Z"), ("cleared", "2026-01-10T02:15:00Z"),
    ]  # fmt: skip  # newest raised first: #22 = 02:00 + 110 min, #3 = 02:15
    assert body["items"][0]["severity"] == "critical" and body["items"][1]["cleared_at"] == "2026-01-10T02:35:00Z"
    assert [a["state"] for a in client.get("/alerts", params={"state": "cleared"}).json()["items"]] == ["cleared"]
    assert client.get("/alerts", params={"severity": "info"}).json()["items"] == []
    assert len(client.get("/alerts", params={"since": "2026-01-10T10:00:00+07:00"}).json()["items"]) == 1
    assert client.get("/alerts", params={"site": "MM1"}).json()["items"] != []
    assert client.get("/alerts", params={"site": "NOPE"}).status_code == 404
    assert client.get("/alerts", params={"since": "2026-01-10T10:00:00"}).status_code == 422  # no offset
    first = client.get("/alerts", params={"limit": 1}).json()
    second = client.get("/alerts", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [first["items"][0]["state"], second["items"][0]["state"]] == ["open", "cleared"]
    assert second["next_cursor"] is None


def test_acknowledge_then_close_an_alert_with_its_history(client: TestClient) -> None:
    open_id = client.get("/alerts", params={"state": "open"}).json()["items"][0]["id"]
    somchai, malee = OFFICERS["somchai"], OFFICERS["malee"]
    # Who acknowledges is the caller, never a name typed in the body: a body still naming one is refused.
    forged = client.post(f"/alerts/{open_id}/ack", json={"by": "the mayor"}, headers=somchai)
    assert forged.status_code == 422 and forged.json()["detail"][0]["loc"] == ["body", "by"]
    r = client.post(f"/alerts/{open_id}/ack", json={"note": "EGAT called, unit 10 cut 120 MW"}, headers=somchai)
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["acknowledged_by"], r.json()["ack_note"]) == (
        "acknowledged", _actor(client, "somchai"), "EGAT called, unit 10 cut 120 MW",
    )  # fmt: skip
    assert r.json()["acknowledged_by"].startswith("API key somchai <key:")
    again = client.post(f"/alerts/{open_id}/ack", json={}, headers=malee)
    assert again.status_code == 409 and again.json()["state"] == "acknowledged"
    assert "by API key somchai" in again.json()["detail"]
    closed = client.post(f"/alerts/{open_id}/close", json={"note": "plume over"}, headers=malee)
    assert (closed.status_code, closed.json()["state"], closed.json()["closed_by"]) == (
        200, "closed", _actor(client, "malee"),
    )  # fmt: skip
    assert client.post(f"/alerts/{open_id}/close", json={}, headers=malee).status_code == 409
    detail = client.get(f"/alerts/{open_id}").json()
    assert [(e["kind"], e["actor"]) for e in detail["events"]] == [
        ("raised", None), ("acknowledged", _actor(client, "somchai")), ("closed", _actor(client, "malee")),
    ]  # fmt: skip
    assert client.get("/alerts/999999").status_code == 404
    assert client.post("/alerts/999999/ack", json={}, headers=somchai).status_code == 404


def test_a_cleared_alert_cannot_be_acknowledged_but_can_be_closed(client: TestClient) -> None:
    cleared_id = client.get("/alerts", params={"state": "cleared"}).json()["items"][0]["id"]
    r = client.post(f"/alerts/{cleared_id}/ack", json={}, headers=OFFICERS["somchai"])
    assert r.status_code == 409 and r.json()["error"] == "alert_state_conflict"
    assert client.post(f"/alerts/{cleared_id}/close", json={}, headers=OFFICERS["somchai"]).json()["state"] == "closed"


def test_rules_are_listed_created_validated_replaced_and_deleted(client: TestClient) -> None:
    assert {r["key"] for r in client.get("/alert-rules").json()} == {"so2_mae_moh", "aq_offline"}
    rule = {
        "name": {"en": "PM2.5 24-hour above the standard", "th": "PM2.5 เกินมาตรฐาน"},
        "metric": "pm25_ugm3", "average": {"window": "24h"}, "raise": {"above": 37.5},
        "clear": {"at_or_below": 35, "for": "1h"}, "severity": "warning",
    }  # fmt: skip
    created = client.put("/alert-rules/pm25_24h", json=rule)
    assert created.status_code == 201 and created.json()["origin"] == "api"
    d = created.json()["definition"]
    assert (d["average"]["window"], d["clear"]["for"], d["raise"]["value"]) == (86400.0, 3600.0, 37.5)
    replaced = client.put("/alert-rules/pm25_24h", json={**rule, "severity": "critical"})
    assert (replaced.status_code, replaced.json()["version"]) == (200, 2)
    assert client.get("/alert-rules/pm25_24h").json()["definition"]["severity"] == "critical"

    bad = client.put("/alert-rules/pm25_24h", json={**rule, "clear": {"above": 10}})
    assert bad.status_code == 422 and "other way" in bad.json()["detail"][0]["msg"]
    bad = client.put("/alert-rules/pm25_24h", json={**rule, "raise": {"above": "high"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "raise"]
    bad = client.put("/alert-rules/pm25_24h", json={**rule, "metric": "pm1_ugm3"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "metric"]
    assert client.put("/alert-rules/other", json={**rule, "key": "pm25_24h"}).status_code == 422
    assert client.put("/alert-rules/Bad Key", json=rule).status_code == 422

    assert client.delete("/alert-rules/pm25_24h").status_code == 204
    assert client.delete("/alert-rules/pm25_24h").status_code == 404
    assert client.get("/alert-rules/pm25_24h").status_code == 404

    # A file rule is read-only here; the organisation's own rule of its key replaces it, and deleting that closes
    # the alerts it owns and brings the file's back.
    read_only = client.delete("/alert-rules/so2_mae_moh")
    assert (read_only.status_code, read_only.json()["error"]) == (409, "alert_rule_read_only")
    assert '"enabled": false' in read_only.json()["detail"]
    own = client.put("/alert-rules/so2_mae_moh", json={**MAE_MOH, "severity": "warning"})
    assert (own.status_code, own.json()["origin"]) == (201, "api")
    assert client.get("/alert-rules/so2_mae_moh").json()["definition"]["severity"] == "warning"
    open_id = client.get("/alerts", params={"state": "open"}).json()["items"][0]["id"]
    assert client.delete("/alert-rules/so2_mae_moh").status_code == 204
    assert client.get(f"/alerts/{open_id}").json()["state"] == "closed"  # its active alert is closed, kept
    back = client.get("/alert-rules/so2_mae_moh").json()
    assert (back["origin"], back["definition"]["severity"]) == ("file", "critical")
