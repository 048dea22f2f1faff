"""An AQI never omits a pollutant silently: four stations fed through the production path (store.writer, then
lccm.runtime.updaters().drain() after every hour), read back through /aqi/current, /aqi/history, the GeoJSON layer
and the air-quality dashboard's SQL, each saying whether its index is complete and, if not, what is missing and why.

Stations (hourly means; two equal readings an hour):
- AQA, a new station after 3 hours: PM2.5 30 ug/m3, PM10 60 ug/m3, SO2 20 ppb in hours 0..2;
- AQB, a 7-hour gap: PM2.5 40 ug/m3 and NO2 50 ppb in hours 0..23, none in 24..30, again in 31 and 32;
- AQC, PM2.5 complete but PM10 not: PM2.5 20 ug/m3 in hours 0..23, PM10 150 ug/m3 only in 10..23;
- AQD, everything withheld: PM2.5 50 ug/m3 and O3 40 ppb in hour 0 only;
- AQE, no data at all.

Expected figures are worked by hand from the PCD 2023 table (docs/reference.md#thai-aqi) and the EPA 2024 table
(docs/reference.md#us-epa-aqi); the rules (18 of 24 hours, 6 of 8, a NowCast with 2 of the 3 latest hours) are in
docs/reference.md#averaging-and-completeness and docs/reference.md#nowcast. The same cases, engine only:
tests/test_engine_aqi_status.py.
"""

from __future__ import annotations

import dataclasses
import secrets
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm import dashboards
from lccm.api.app import create_app
from lccm.engine.aqi_tables import THAI_GOOD_CATEGORIES, thai_categories
from lccm.engine.timebase import bkk_us
from lccm.runtime import updaters
from lccm.settings import Settings
from lccm.store import migrate as migrate_module
from tests._auth import admin_headers
from tests._db import ADMIN_URL, fresh_database, write_points
from tests.test_dashboards import expand

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PM25, PM10, SO2, NO2, O3 = 9, 10, 11, 12, 13
MIN = 60_000_000
H = 60 * MIN
T0 = bkk_us(2026, 3, 10)
A, B, C, D, E = 1, 2, 3, 4, 5

# device -> metric -> (hours, hourly mean)
FEED: dict[int, dict[int, tuple[list[int], float]]] = {
    A: {PM25: ([0, 1, 2], 30.0), PM10: ([0, 1, 2], 60.0), SO2: ([0, 1, 2], 20.0)},
    B: {PM25: ([*range(24), 31, 32], 40.0), NO2: ([*range(24), 31, 32], 50.0)},
    C: {PM25: (list(range(24)), 20.0), PM10: (list(range(10, 24)), 150.0)},
    D: {PM25: ([0], 50.0), O3: ([0], 40.0)},
}

REASON_A = (
    "PM2.5 24-h average withheld: 3 of 24 hours with data, 18 needed; PM10 24-h average withheld: 3 of 24 hours with"
    " data, 18 needed. The AQI shown is the highest sub-index available; with PM2.5 and PM10 it may be higher."
)
REASON_B = (
    "PM2.5 24-h average withheld: 17 of 24 hours with data, 18 needed. The AQI shown is the highest sub-index"
    " available; with PM2.5 it may be higher."
)
REASON_C = (
    "PM10 24-h average withheld: 14 of 24 hours with data, 18 needed. The AQI shown is the highest sub-index"
    " available; with PM10 it may be higher."
)
REASON_D = (
    "No index: PM2.5 24-h average withheld: 1 of 24 hours with data, 18 needed; O3 8-h average withheld: 1 of 8 hours"
    " with data, 6 needed."
)


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO sites (id, site_code, name, kind, city, lat, lon) VALUES"
                " (1, 'AQA', 'New station', 'station', 'Lampang', 18.29, 99.49),"
                " (2, 'AQB', 'Gap station', 'station', 'Lampang', 18.30, 99.50),"
                " (3, 'AQC', 'PM10 short station', 'station', 'Lampang', 18.31, 99.51),"
                " (4, 'AQD', 'One hour station', 'station', 'Lampang', 18.32, 99.52),"
                " (5, 'AQE', 'Silent station', 'station', 'Lampang', 18.33, 99.53)"
            )
            conn.execute(
                "INSERT INTO devices (id, device_id, site_id, kind, name, cadence_s) VALUES"
                " (1, 'AQ-A', 1, 'aq_station', 'A', 300), (2, 'AQ-B', 2, 'aq_station', 'B', 300),"
                " (3, 'AQ-C', 3, 'aq_station', 'C', 300), (4, 'AQ-D', 4, 'aq_station', 'D', 300),"
                " (5, 'AQ-E', 5, 'aq_station', 'E', 300)"
            )
        run = updaters(Settings(database_url=url), url)
        for h in range(33):  # hour by hour, as the live path sees it
            with psycopg.connect(url, autocommit=True) as conn:
                for device, metrics in FEED.items():
                    for metric, (hours, value) in metrics.items():
                        if h in hours:
                            write_points(
                                conn, device, metric, [(T0 + h * H + 10 * MIN, value), (T0 + h * H + 40 * MIN, value)]
                            )
            run.drain()
        yield url


@pytest.fixture(scope="module")
def client(db: str) -> Iterator[TestClient]:
    with (
        ConnectionPool(db, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(Settings(database_url=db), pool), headers=admin_headers(db)) as c,
    ):
        yield c


def _by_device(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["device_id"]: r for r in rows}


def test_current_thai_index_says_what_is_missing(client: TestClient) -> None:
    got = _by_device(client.get("/aqi/current").json())
    assert set(got) == {"AQ-A", "AQ-B", "AQ-C", "AQ-D"}  # AQ-E has never sent anything (see the GeoJSON)
    # A, hour 2: SO2 1-h 20 ppb: 25 / 100 x 20 = 5 ("very good") - a lower bound: PM2.5 and PM10 have 3 of 24 hours.
    a = got["AQ-A"]
    assert (a["hour_start"], a["aqi"], a["responsible"]) == ("2026-03-09T19:00:00Z", 5, "so2")
    assert (a["status"], a["missing"], a["reason"]) == ("incomplete", ["pm25", "pm10"], REASON_A)
    assert a["category"]["name_en"] == "Very good" and a["sub_index"] == {"so2": 5}
    assert a["coverage"]["pm25"] == {
        "series": "pm25_24h", "status": "withheld", "window_h": 24, "hours_with_data": 3, "needed": 18,
        "of_latest_h": 24, "latest_with_data": 3,
    }  # fmt: skip
    assert a["coverage"]["so2"]["status"] == "complete"
    # B, hour 32: the 7-hour gap leaves 17 of 24 hours: PM2.5 withheld; NO2 50 ppb: 25 / 60 x 50 = 20.83 -> 21.
    b = got["AQ-B"]
    assert (b["hour_start"], b["aqi"], b["status"], b["missing"], b["reason"]) == (
        "2026-03-11T01:00:00Z", 21, "incomplete", ["pm25"], REASON_B,
    )  # fmt: skip
    assert (b["coverage"]["pm25"]["hours_with_data"], b["coverage"]["no2"]["status"]) == (17, "complete")
    # C, hour 23: PM2.5 24-h 20.0 in 15.1-25.0: 24 / 9.9 x 4.9 + 26 = 37.88 -> 38 ("good"); PM10 14 of 24 hours.
    c = got["AQ-C"]
    assert (c["aqi"], c["category"]["name_en"], c["status"], c["missing"], c["reason"]) == (
        38, "Good", "incomplete", ["pm10"], REASON_C,
    )  # fmt: skip
    # D, hour 0: one hour of each: no sub-index, no AQI, no category.
    d = got["AQ-D"]
    assert (d["aqi"], d["category"], d["responsible"], d["sub_index"]) == (None, None, None, {})
    assert (d["status"], d["missing"], d["reason"]) == ("withheld", ["pm25", "o3"], REASON_D)


def test_current_us_index_uses_the_nowcast_for_pm_and_o3(client: TestClient) -> None:
    got = _by_device(client.get("/aqi/current", params={"index": "nowcast"}).json())
    # A: NowCast 30.0 in 9.1-35.4: 49 / 26.3 x 20.9 + 51 = 89.94 -> 90 (Moderate), complete: the PM2.5 the Thai
    # index above has to leave out after 3 hours.
    a = got["AQ-A"]
    assert (a["aqi"], a["responsible"], a["category"]["name_en"], a["status"], a["reason"]) == (
        90, "pm25", "Moderate", "complete", None,
    )  # fmt: skip
    assert a["coverage"]["pm25"] == {
        "series": "pm25_nowcast", "status": "complete", "window_h": 12, "hours_with_data": 3, "needed": 2,
        "of_latest_h": 3, "latest_with_data": 3,
    }  # fmt: skip
    # B, hour 32: 2 of the 3 latest hours; the 12-h window 21..32 has 5 hours at 40.0: 49 / 19.9 x 4.5 + 101 = 112.
    assert (got["AQ-B"]["aqi"], got["AQ-B"]["status"]) == (112, "complete")
    assert got["AQ-B"]["coverage"]["pm25"]["latest_with_data"] == 2
    # C: PM10 NowCast 150 in 55-154: 49 / 99 x 95 + 51 = 98.02 -> 98.
    assert (got["AQ-C"]["aqi"], got["AQ-C"]["responsible"], got["AQ-C"]["status"]) == (98, "pm10", "complete")
    # D: one hour: no NowCast of either.
    assert (got["AQ-D"]["aqi"], got["AQ-D"]["status"], got["AQ-D"]["reason"]) == (
        None, "withheld",
        "No index: PM2.5 NowCast withheld: 1 of the 3 latest hours with data, 2 needed; O3 NowCast withheld: 1 of the"
        " 3 latest hours with data, 2 needed.",
    )  # fmt: skip


def test_history_shows_the_gap_and_what_it_left_out(client: TestClient) -> None:
    rows = client.get(
        "/aqi/history",
        params={"from": "2026-03-10T00:00:00+07:00", "to": "2026-03-11T12:00:00+07:00", "device_id": "AQ-B"},
    ).json()
    got = [(r["hour_start"], r["aqi"], r["status"]) for r in rows]

    def hour(h: int) -> str:
        return _utc(T0 + h * H).strftime("%Y-%m-%dT%H:%M:%SZ")

    # Hours 0..16: PM2.5 below 18 of 24 hours (NO2's 21 a lower bound); 17..23: PM2.5 24-h 40.0 -> 107, complete;
    # no rows in the gap (no data); 31 and 32: 17 of 24 hours again.
    assert got == (
        [(hour(h), 21, "incomplete") for h in range(17)]
        + [(hour(h), 107, "complete") for h in range(17, 24)]
        + [(hour(31), 21, "incomplete"), (hour(32), 21, "incomplete")]
    )


def test_geojson_never_paints_a_station_good_by_omission(client: TestClient) -> None:
    thai = {
        f["properties"]["device_id"]: f["properties"] for f in client.get("/aqi/stations.geojson").json()["features"]
    }
    # Every Thai index here reads (very) good only because PM is left out, or has none: no colour, with the reason.
    assert {d: p["colour"] for d, p in thai.items()} == dict.fromkeys(("AQ-A", "AQ-B", "AQ-C", "AQ-D", "AQ-E"))
    assert (thai["AQ-A"]["aqi"], thai["AQ-A"]["category_en"], thai["AQ-A"]["status"]) == (5, "Very good", "incomplete")
    assert (thai["AQ-A"]["missing"], thai["AQ-A"]["reason"]) == (["pm25", "pm10"], REASON_A)
    assert (thai["AQ-B"]["status"], thai["AQ-B"]["reason"]) == ("incomplete", REASON_B)
    assert (thai["AQ-C"]["category_en"], thai["AQ-C"]["reason"]) == ("Good", REASON_C)
    assert (thai["AQ-D"]["aqi"], thai["AQ-D"]["status"], thai["AQ-D"]["reason"]) == (None, "withheld", REASON_D)
    assert (thai["AQ-E"]["status"], thai["AQ-E"]["reason"]) == ("withheld", "No pollutant data from this station yet.")
    us = client.get("/aqi/stations.geojson", params={"index": "nowcast"}).json()["features"]
    colours = {f["properties"]["device_id"]: (f["properties"]["status"], f["properties"]["colour"]) for f in us}
    # EPA colours: Moderate #FFFF00, Unhealthy for sensitive groups #FF7E00 (docs/reference.md#us-epa-aqi).
    assert colours == {
        "AQ-A": ("complete", "#FFFF00"), "AQ-B": ("complete", "#FF7E00"), "AQ-C": ("complete", "#FFFF00"),
        "AQ-D": ("withheld", None), "AQ-E": ("withheld", None),
    }  # fmt: skip


def test_a_lower_bound_that_is_already_a_warning_keeps_its_colour(db: str, client: TestClient) -> None:
    # A's NowCast index with its PM2.5 sub-index withheld would be an incomplete 53 (PM10, Moderate): a lower bound
    # past "Good" is a warning whatever is missing, so it is painted. (Same rows, edited to that state.)
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE aqi_hourly SET aqi = 53, responsible = 'pm10', category = 1, status = 'incomplete',"
            " reason = 'PM2.5 NowCast withheld', missing = '{pm25}' WHERE index_key = 'us_epa_2024_nowcast'"
            " AND device_id = 1 AND hour_start = %s",
            (_utc(T0 + 2 * H),),
        )
    try:
        us = client.get("/aqi/stations.geojson", params={"index": "nowcast"}).json()["features"]
        a = next(f["properties"] for f in us if f["properties"]["device_id"] == "AQ-A")
        assert (a["aqi"], a["status"], a["colour"]) == (53, "incomplete", "#FFFF00")
    finally:
        with psycopg.connect(db) as conn:
            conn.execute(
                "UPDATE aqi_hourly SET aqi = 90, responsible = 'pm25', category = 1, status = 'complete',"
                " reason = NULL, missing = '{}' WHERE index_key = 'us_epa_2024_nowcast' AND device_id = 1"
                " AND hour_start = %s",
                (_utc(T0 + 2 * H),),
            )


# --- the air-quality dashboard's SQL ------------------------------------------------------------------------------
MODEL = dashboards.build_all(dashboards.ThaiScale.of(thai_categories(), THAI_GOOD_CATEGORIES))["lccm-air-quality"]
WINDOW = (_utc(T0), _utc(T0 + 33 * H))


def _panel(db: str, title: str) -> list[dict[str, Any]]:
    (target,) = [t for p in MODEL["panels"] if p["title"] == title for t in p["targets"]]
    stations = ["AQA", "AQB", "AQC", "AQD", "AQE"]
    text = expand(target["rawSql"], *WINDOW, {"station": stations})
    assert "$" not in text
    with psycopg.connect(db) as conn:
        cur = conn.execute(text)
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_dashboard_status_table_says_what_is_missing(db: str) -> None:
    rows = _panel(db, "Stations: latest Thai AQI, whether it is complete, and why not")
    got = {r["station"]: (r["time"], r["aqi"], r["status"], r["missing"], r["reason"]) for r in rows}
    assert got == {
        "New station": (_utc(T0 + 2 * H), 5.0, "incomplete", "pm25, pm10", REASON_A),
        "Gap station": (_utc(T0 + 32 * H), 21.0, "incomplete", "pm25", REASON_B),
        "PM10 short station": (_utc(T0 + 23 * H), 38.0, "incomplete", "pm10", REASON_C),
        "One hour station": (_utc(T0), None, "withheld", "pm25, o3", REASON_D),
    }
    assert [r["station"] for r in rows] == sorted(got)


def test_dashboard_map_greys_what_could_read_good_by_omission(db: str) -> None:
    rows = _panel(db, "Stations: latest Thai AQI category (grey: withheld, or incomplete and reading good)")
    # category -1 is the map's grey: every latest Thai index here is withheld or a lower bound in a "good" category
    got = {r["station"]: (r["aqi"], r["category"], r["status"], r["reason"]) for r in rows}
    assert got == {
        "New station": (5.0, -1, "incomplete", REASON_A),
        "Gap station": (21.0, -1, "incomplete", REASON_B),
        "PM10 short station": (38.0, -1, "incomplete", REASON_C),
        "One hour station": (None, -1, "withheld", REASON_D),
    }


def test_dashboard_series_keep_incomplete_hours_apart(db: str) -> None:
    rows = _panel(db, "Thai AQI per station (PCD 2023)")
    gap = [(r["time"], r["metric"], r["aqi"]) for r in rows if r["metric"].startswith("Gap station")]
    incomplete, complete = "Gap station (incomplete)", "Gap station"
    assert gap == (
        [(_utc(T0 + h * H), incomplete, 21.0) for h in range(17)]
        + [(_utc(T0 + h * H), complete, 107.0) for h in range(17, 24)]
        + [(_utc(T0 + h * H), incomplete, 21.0) for h in (31, 32)]
    )
    # D's only hour is withheld: no point at all (a gap, its reason in the status table)
    assert not [r for r in rows if r["metric"].startswith("One hour station")]


# --- upgrading a database with rows from before migration 010 ------------------------------------------------------
def test_rows_from_before_coverage_say_so_and_are_recomputed(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = migrate_module.packaged_migrations()
    assert "010_aqi_coverage.sql" in shipped
    # With what this version's writer and updaters (standing in for that version's) need: 018's per-day counts,
    # 019's partitions, 021's per-site tables, 022's alert hand-over and 023's day queue.
    needed = [
        "018_reading_days.sql",
        "019_partitions.sql",
        "021_site_buckets.sql",
        "022_alert_queue.sql",
        "023_day_queue.sql",
    ]
    assert set(needed) <= set(shipped)
    before = [*shipped[: shipped.index("010_aqi_coverage.sql")], *needed]
    name = f"lccm_t_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)
    try:
        with monkeypatch.context() as m, psycopg.connect(url) as conn:
            m.setattr(migrate_module, "packaged_migrations", lambda: before)
            migrate_module.migrate(conn)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO sites (id, site_code, name, kind, city) VALUES (1, 'AQ1', 'Station', 'station', 'Lampang')"
            )
            conn.execute(
                "INSERT INTO devices (id, device_id, site_id, kind, name, cadence_s)"
                " VALUES (1, 'AQ-1', 1, 'aq_station', 'A', 300)"
            )
            write_points(conn, A, PM25, [(T0 + h * H + 10 * MIN, 40.0) for h in range(24)])
            # an hour as the AQI updater stored it before 010: a number, nothing about coverage
            conn.execute(
                "INSERT INTO aqi_hourly (index_key, device_id, hour_start, aqi, responsible, category, sub_index,"
                " average) VALUES ('thai_pcd_2023', 1, %s, 107, 'pm25', 3, '{\"pm25\": 107}', '{}')",
                (_utc(T0 + 23 * H),),
            )
        # the hourly means, as the sample updater of that version stored them (its AQI updater is this version's)
        dataclasses.replace(updaters(Settings(database_url=url), url), aqi=None).drain()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM aqi_queue")  # nothing left to do but what the migration queues
        with psycopg.connect(url) as conn:
            applied = migrate_module.migrate(conn).applied
            assert applied == [n for n in shipped if n not in before] and applied[0] == "010_aqi_coverage.sql"
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT aqi, status, reason, missing, coverage FROM aqi_hourly").fetchone()
            assert row == (
                107.0, "incomplete", "Computed before data coverage was recorded: coverage unknown.", [], {},
            )  # fmt: skip
            assert conn.execute("SELECT count(*) FROM aqi_queue").fetchone() == (1,)
        updaters(Settings(database_url=url), url).drain()
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT hour_start, aqi, status FROM aqi_hourly WHERE index_key = 'thai_pcd_2023' ORDER BY 1"
            ).fetchall()
        # Recomputed from the stored hourly means: 0..16 withheld (fewer than 18 of 24 hours), 17..23 107 complete.
        assert rows == [(_utc(T0 + h * H), None, "withheld") for h in range(17)] + [
            (_utc(T0 + h * H), 107.0, "complete") for h in range(17, 24)
        ]
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
