"""Pollutant readings -> hourly means -> Thai AQI, EPA AQI and NowCast per station hour -> /aqi routes.

Expected values are worked by hand from the PCD 2023 table (docs/reference.md#thai-aqi: PM2.5 37.6-75.0 ug/m3 is
AQI 101-200) and the EPA 2024 table (docs/reference.md#us-epa-aqi: PM2.5 35.5-55.4 is 101-150).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.engine.timebase import bkk_us
from lccm.runtime import updaters
from lccm.settings import Settings
from tests._db import fresh_database, write_points
from tests._principal import as_caller

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PM25, SO2 = 9, 11
H = 3_600_000_000
T0 = bkk_us(2026, 3, 10)  # burning season


def _write(url: str, device: int, metric: int, points: list[tuple[int, float]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        write_points(conn, device, metric, points)


def _setup(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city, lat, lon) VALUES"
            " ('AQ1', 'City hall station', 'station', 'Lampang', 18.29, 99.49),"
            " ('AQ2', 'Mae Moh station', 'station', 'Lampang', 18.30, 99.66)"
        )
        conn.execute(
            "INSERT INTO devices (id, device_id, site_id, kind, name, cadence_s) VALUES"
            " (1, 'AQ-1', 1, 'aq_station', 'City hall', 300), (2, 'AQ-2', 2, 'aq_station', 'Mae Moh', 300)"
        )


def _aqi(url: str, index_key: str, status: str = "complete") -> dict[int, tuple[float, str, int]]:
    """Hour -> (aqi, responsible, category) of station 1's rows with ``status``."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT hour_start, aqi, responsible, category FROM aqi_hourly WHERE index_key = %s AND device_id = 1"
            " AND status = %s ORDER BY hour_start",
            (index_key, status),
        ).fetchall()
    return {round((h.timestamp() * 1e6 - T0) / H): (a, r, c) for h, a, r, c in rows}


def _reasons(url: str, index_key: str) -> dict[int, str | None]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT hour_start, reason FROM aqi_hourly WHERE index_key = %s AND device_id = 1 ORDER BY hour_start",
            (index_key,),
        ).fetchall()
    return {round((h.timestamp() * 1e6 - T0) / H): r for h, r in rows}


@pytest.fixture(scope="module")
def seeded() -> Iterator[str]:
    with fresh_database() as url:
        _setup(url)
        run = updaters(Settings(database_url=url), url)
        # PM2.5: two readings an hour, 30 and 50 ug/m3 (mean 40), from 00:00 for 24 hours, one batch an hour.
        for h in range(24):
            _write(url, 1, PM25, [(T0 + h * H + 10 * 60_000_000, 30.0), (T0 + h * H + 40 * 60_000_000, 50.0)])
            run.drain()
        yield url


def test_the_thai_24h_pm25_index_waits_for_three_quarters_of_the_window(seeded: str) -> None:
    thai = _aqi(seeded, "thai_pcd_2023")
    # Hours 0..16 have fewer than 18 of 24 valid hours (75 %): the Thai index is withheld - a row without a number,
    # which says why. From hour 17 on the 24-h average of the valid hours is 40.0:
    # I = (200 - 101) / (75.0 - 37.6) x (40.0 - 37.6) + 101 = 107.35 -> 107, orange.
    assert sorted(thai) == list(range(17, 24))
    assert set(thai.values()) == {(107.0, "pm25", 3)}
    withheld = _aqi(seeded, "thai_pcd_2023", "withheld")
    assert sorted(withheld) == list(range(17)) and set(withheld.values()) == {(None, None, None)}
    reasons = _reasons(seeded, "thai_pcd_2023")
    assert reasons[0] == "No index: PM2.5 24-h average withheld: 1 of 24 hours with data, 18 needed."
    assert reasons[16] == "No index: PM2.5 24-h average withheld: 17 of 24 hours with data, 18 needed."
    assert reasons[17] is None


def test_epa_and_nowcast(seeded: str) -> None:
    epa = _aqi(seeded, "us_epa_2024")
    # EPA 2024 PM2.5: 35.5-55.4 -> 101-150: (150 - 101) / (55.4 - 35.5) x (40.0 - 35.5) + 101 = 112.08 -> 112,
    # from hour 17 (18 of 24 hours, EPA's 75 %); withheld before.
    assert sorted(epa) == list(range(17, 24)) and set(epa.values()) == {(112.0, "pm25", 2)}
    assert sorted(_aqi(seeded, "us_epa_2024", "withheld")) == list(range(17))
    nowcast = _aqi(seeded, "us_epa_2024_nowcast")
    # NowCast of a constant series is the constant from the first hour with 2 of the last 3 hours valid (hour 1).
    assert sorted(nowcast) == list(range(1, 24)) and set(nowcast.values()) == {(112.0, "pm25", 2)}
    assert _reasons(seeded, "us_epa_2024_nowcast")[0] == (
        "No index: PM2.5 NowCast withheld: 1 of the 3 latest hours with data, 2 needed."
    )


def test_a_live_reading_updates_the_running_hour(seeded: str) -> None:
    _write(seeded, 1, PM25, [(T0 + 24 * H + 5 * 60_000_000, 100.0)])
    updaters(Settings(database_url=seeded), seeded).drain()
    thai = _aqi(seeded, "thai_pcd_2023")
    # Hour 24's window is hours 1..24: 23 hours at 40 and one at 100: (23 x 40 + 100) / 24 = 42.5 ->
    # (99 / 37.4) x (42.5 - 37.6) + 101 = 113.97 -> 114.
    assert thai[24] == (114.0, "pm25", 3)


def test_routes(seeded: str) -> None:
    with (
        ConnectionPool(seeded, min_size=1, max_size=2, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=seeded), pool))) as client,
    ):
        (station,) = client.get("/aqi/current").json()
        assert (station["device_id"], station["aqi"], station["responsible"]) == ("AQ-1", 114, "pm25")
        assert (station["status"], station["reason"], station["missing"]) == ("complete", None, [])
        assert station["category"]["name_en"] == "Starting to affect health"
        assert station["category"]["name_th"] == "เริ่มมีผลกระทบต่อสุขภาพ" and station["category"]["colour"] == "orange"
        history = client.get(
            "/aqi/history", params={"from": "2026-03-10T00:00:00+07:00", "to": "2026-03-11T00:00:00+07:00"}
        ).json()
        assert [(r["aqi"], r["status"]) for r in history] == [(None, "withheld")] * 17 + [(107, "complete")] * 7
        assert history[0]["coverage"]["pm25"] == {
            "series": "pm25_24h", "status": "withheld", "window_h": 24, "hours_with_data": 1, "needed": 18,
            "of_latest_h": 24, "latest_with_data": 1,
        }  # fmt: skip
        geo = client.get("/aqi/stations.geojson", params={"index": "epa"}).json()
        assert geo["type"] == "FeatureCollection"
        by_id = {f["properties"]["device_id"]: f for f in geo["features"]}
        assert by_id["AQ-1"]["geometry"] == {"type": "Point", "coordinates": [99.49, 18.29]}
        assert by_id["AQ-1"]["properties"]["colour"] == "#FF7E00"
        assert by_id["AQ-1"]["properties"]["status"] == "complete"
        aq2 = by_id["AQ-2"]["properties"]  # no data yet: on the map, but without a colour, and it says why
        assert (aq2["aqi"], aq2["colour"], aq2["status"]) == (None, None, "withheld")
        assert aq2["reason"] == "No pollutant data from this station yet."
