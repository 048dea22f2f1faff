"""The facility manager's pages (issue 13, item 1) on a real database through the app: the site page (live power,
power charts, energy by day and by fiscal-year month, each meter's data quality) and the streetlight cabinets, each
against the JSON API's answer for the same period and against figures known from the seeded readings; their CSV
downloads, the language switch, an anonymous browser, and scoping (another organisation's or another facility
manager's site is a 404 page)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from html import unescape
from typing import Any, get_args

import psycopg
import pytest

from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web.i18n import MESSAGES
from lccm.engine.calendar import year_of
from lccm.engine.timebase import BANGKOK, bkk_us, buddhist_era
from lccm.imports.registry import DeviceKind, parse_registry_csv
from lccm.runtime import factor_rows
from lccm.store import inventory as inv
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.stream.days import DayUpdater
from lccm.stream.energy import EnergyUpdater
from lccm.stream.samples import SampleUpdater
from tests._auth import TEST_ACTOR, TestClient, api_key, bearer
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, write_readings
from tests._web import PASSWORD, log_in, served

ENERGY, POWER, LAMP_ON = 1, 2, 6
Q = timedelta(minutes=15)
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
TODAY = NOW.astimezone(BANGKOK).date()
YESTERDAY = TODAY - timedelta(days=1)
REGISTRY = [
    "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,,HALL-M,electricity_meter,Main,900,100",
    "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,,HALL-M2,electricity_meter,Annex,900,100",
    "SL-C01,Streetlights Boonyawat Rd,ไฟถนน ถนนบุญวาทย์,street,Lampang,18.29,99.499,,SL-C01,streetlight_cabinet,"
    "Cabinet C01,900,3",
    "SL-C01,Streetlights Boonyawat Rd,ไฟถนน ถนนบุญวาทย์,street,Lampang,18.29,99.499,,SL-C01-L0001,lamp,Lamp 1,900,",
    "SL-C01,Streetlights Boonyawat Rd,ไฟถนน ถนนบุญวาทย์,street,Lampang,18.29,99.499,,SL-C01-L0002,lamp,Lamp 2,900,",
    "NANH,Nan Hall,,building,Nan,,,,NANH-M,electricity_meter,Main,900,100",
]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=BANGKOK)


def _floor_q(moment: datetime) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // Q) * Q


FIRST = _midnight(TODAY - timedelta(days=2))
LAST = _floor_q(NOW)
# The main meter is silent for two hours yesterday morning and for an hour 5 h ago: both gaps show.
GAPS = [
    (_midnight(YESTERDAY) + timedelta(hours=10), _midnight(YESTERDAY) + timedelta(hours=12)),
    (LAST - timedelta(hours=5), LAST - timedelta(hours=4)),
]
TIMES = [FIRST + k * Q for k in range(int((LAST - FIRST) / Q) + 1)]
MAIN_TIMES = [t for t in TIMES if not any(lo < t < hi for lo, hi in GAPS)]
POWER_W = 4000.0
THAI_MONTHS = ("ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค.")


@dataclass(frozen=True)
class Web:
    client: TestClient
    url: str


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        main, annex = device_pk(conn, "HALL-M"), device_pk(conn, "HALL-M2")
        # The main meter's counter goes up 1 kWh a quarter-hour (across its gaps too), the annex's 0.5 kWh.
        rows = [(main, ENERGY, t, float(TIMES.index(t)), NOW) for t in MAIN_TIMES]
        rows += [(main, POWER, t, POWER_W, NOW) for t in MAIN_TIMES]
        rows += [(annex, ENERGY, t, 0.5 * k, NOW) for k, t in enumerate(TIMES)]
        cabinet, lamp1, lamp2 = (device_pk(conn, d) for d in ("SL-C01", "SL-C01-L0001", "SL-C01-L0002"))
        street = [_midnight(YESTERDAY) + k * Q for k in range(97)]  # yesterday, its closing midnight included
        rows += [(cabinet, ENERGY, t, 0.25 * k, NOW) for k, t in enumerate(street)]
        rows += [(lamp1, LAMP_ON, t, 1.0, NOW) for t in street]  # burning all day: day burning
        rows += [(lamp2, LAMP_ON, t, 0.0, NOW) for t in street]  # dark all day: a night outage
        nan = device_pk(conn, "NANH-M")
        rows += [(nan, ENERGY, t, float(k), NOW) for k, t in enumerate(TIMES)]
        write_readings(conn, rows)
        # A second value for a stored reading (a conflict), and a power reading ten days late.
        write_readings(conn, [(main, ENERGY, TIMES[1], 9999.0, NOW)])
        write_readings(conn, [(main, POWER, NOW - timedelta(days=10), 1.0, NOW)])
        change = accounts.Change(TEST_ACTOR, "test")
        for name, org, role, sites in (
            ("somchai", "lampang", Role.VIEWER, None),
            ("nanuser", "nan", Role.VIEWER, None),
            ("fm", "lampang", Role.FACILITY_MANAGER, ["HALL"]),
        ):
            accounts.add_user(conn, change, username=name, display_name=name, password=PASSWORD, organisation=org,
                              roles=[role], sites=sites)  # fmt: skip
    EnergyUpdater(lambda: psycopg.connect(url), base_year_us=(bkk_us(2025), bkk_us(2026))).drain()
    SampleUpdater(lambda: psycopg.connect(url)).drain()
    DayUpdater(lambda: psycopg.connect(url)).drain()  # completeness: reading_days


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with fresh_database() as url:
        _seed(url)
        with served(url) as client:
            yield Web(client, url)


def _log_in(web: Web, username: str = "somchai") -> TestClient:
    return log_in(web.client, username)


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html)).strip()


def _table(html: str, table_id: str, key: str) -> dict[str, dict[str, str]]:
    """A table of a page: the rows' key attribute (data-row, data-meter, data-site) -> column -> the cell's text."""
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', html, flags=re.DOTALL)
    assert body, table_id
    table = {}
    for row, cells in re.findall(rf'<tr {key}="([^"]+)">(.*?)</tr>', body.group(1), flags=re.DOTALL):
        found = re.findall(r'<t[hd][^>]*data-col="(\w+)"[^>]*>(.*?)</t[hd]>', cells, flags=re.DOTALL)
        table[row] = {col: _text(text) for col, text in found}
    return table


def _chart(html: str, chart_id: str) -> Any:
    found = re.search(rf'<div class="chart" id="{chart_id}"[^>]*data-chart="([^"]*)"', html)
    assert found, chart_id
    return json.loads(unescape(found.group(1)))


def _num(cell: str) -> float | None:
    return None if cell in ("–", "") else float(cell.replace(",", "").rstrip("+"))


def _csv(answer_content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(answer_content.decode("utf-8-sig"))))


def _api(web: Web, path: str, **params: str) -> Any:
    """The JSON API's answer, read with a viewer's key (the figures each page must equal)."""
    answer = web.client.get(path, params=params, headers=bearer(api_key(web.url, Role.VIEWER)))
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- the site page -------------------------------------------------------------------------------------------------


def test_anonymous_browsers_are_sent_to_the_login_form(web: Web) -> None:
    web.client.cookies.clear()
    for page in ("/app/sites/HALL", "/app/sites/HALL/energy.csv", "/app/sites/HALL/meters.csv",
                 "/app/streetlights", "/app/streetlights.csv"):  # fmt: skip
        answer = web.client.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", page


def test_the_site_page_shows_live_power_and_todays_totals_as_the_api(web: Web) -> None:
    page = _log_in(web).get("/app/sites/HALL")
    assert page.status_code == 200
    assert "ศาลากลาง" in page.text and "City Hall" in page.text  # Thai name first, English beside it
    live = _api(web, "/sites/HALL/live")
    facts = dict(re.findall(r'<dd data-col="(\w+)">(.*?)</dd>', page.text))
    assert facts["power_kw"] == f"{POWER_W / 1000:,.2f}" == f"{float(live['power_w']) / 1000:,.2f}"
    assert facts["energy_today_kwh"] == f"{live['energy_today_kwh']:,.2f}"
    assert facts["kgco2e_today"] == f"{live['kgco2e_today']:,.2f}"
    assert facts["power_devices"] == "1"


def test_the_power_charts_are_the_apis_rollups_with_gaps_not_zeros(web: Web) -> None:
    html = _log_in(web).get("/app/sites/HALL").text
    for chart_id, step, span, interval in (("chart-24h", Q, timedelta(hours=24), "15min"),
                                           ("chart-7d", timedelta(hours=1), timedelta(days=7), "1h")):  # fmt: skip
        option = _chart(html, chart_id)
        (series,) = option["series"]
        points = series["data"]
        assert len(points) == span / step
        # The chart's own period (the page's clock, not the test's): its first bucket to the span after it.
        start = datetime.fromisoformat(points[0][0]).replace(tzinfo=BANGKOK)
        assert _floor_q(NOW) + Q - span <= start <= datetime.now(UTC)
        api = _api(web, "/rollups", metric="power", interval=interval, group_by="site", site_code="HALL",
                   **{"from": start.isoformat(), "to": (start + span).isoformat()})  # fmt: skip
        expected = {
            datetime.fromisoformat(r["bucket_start"]).astimezone(BANGKOK).strftime("%Y-%m-%d %H:%M:%S"):
                r["sum_of_device_means"] / 1000
            for r in api["rows"]
        }  # fmt: skip
        assert {t: v for t, v in points if v is not None} == expected
        assert set(expected.values()) == {POWER_W / 1000}
    (day,) = _chart(html, "chart-24h")["series"]
    # The hour-long gap 5 h ago: three quarter-hours without a reading are gaps (None), never zero.
    assert sum(1 for _, v in day["data"] if v is None) >= 3 and all(v != 0 for _, v in day["data"])


def test_the_power_charts_time_labels_are_figures_not_english_month_names(web: Web) -> None:
    html = _log_in(web).get("/app/sites/HALL").text  # Thai
    for chart_id in ("chart-24h", "chart-7d"):
        labels = _chart(html, chart_id)["xAxis"]["axisLabel"]["formatter"]
        assert labels["day"] == "{d}/{M}" and not any("MMM" in f or "yyyy" in f for f in labels.values()), chart_id


def test_energy_by_day_equals_the_api_and_the_counters(web: Web) -> None:
    browser = _log_in(web)
    table = _table(browser.get("/app/sites/HALL?lang=en").text, "energy-days", "data-row")
    assert len(table) == 31
    start, end = _midnight(TODAY - timedelta(days=30)), _midnight(TODAY + timedelta(days=1))
    api = _api(web, "/energy", interval="1d", group_by="site", site_code="HALL", metric="energy",
               **{"from": start.isoformat(), "to": end.isoformat()})  # fmt: skip
    by_day = {datetime.fromisoformat(r["bucket_start"]).astimezone(BANGKOK).date(): r for r in api["rows"]}
    for key, cells in table.items():
        day = datetime.fromisoformat(key).date()
        if day in by_day:
            r = by_day[day]
            assert cells["energy_kwh"] == f"{r['amount']:,.2f}" and cells["kgco2e"] == f"{r['kgco2e']:,.2f}"
            assert cells["quality"] == MESSAGES[f"fac_q_{r['quality_label']}"]["en"]
        else:
            assert cells["energy_kwh"] == "–" and cells["quality"] == MESSAGES["fac_no_data"]["en"]
    # Independent of the API: yesterday the main meter counted 96 quarter-hours of 1 kWh, the annex 96 of 0.5.
    yesterday = table[_midnight(YESTERDAY).isoformat()]
    assert yesterday["energy_kwh"] == "144.00"
    assert yesterday["quality"] == MESSAGES["fac_q_estimated"]["en"]  # the two-hour gap was spread
    assert table[_midnight(TODAY - timedelta(days=10)).isoformat()]["energy_kwh"] == "–"


def test_energy_by_month_covers_the_fiscal_year_with_both_eras(web: Web) -> None:
    browser = _log_in(web)
    fy = year_of(NOW, "fiscal")
    html = browser.get("/app/sites/HALL").text
    assert f"ปีงบประมาณ {buddhist_era(fy)} (FY {fy})" in html
    table = _table(html, "energy-months", "data-row")
    starts = [datetime.fromisoformat(k) for k in table]
    assert len(starts) == 12 and (starts[0].month, starts[0].year) == (10, fy - 1) and starts[-1].month == 9
    api = _api(web, "/energy", interval="1mo", group_by="site", site_code="HALL", metric="energy",
               **{"from": starts[0].isoformat(), "to": datetime(fy, 10, 1, tzinfo=BANGKOK).isoformat()})  # fmt: skip
    amounts = {datetime.fromisoformat(r["bucket_start"]): r["amount"] for r in api["rows"]}
    assert amounts, "this month has readings"
    for key, cells in table.items():
        amount = amounts.get(datetime.fromisoformat(key))
        assert cells["energy_kwh"] == ("–" if amount is None else f"{amount:,.2f}")
    this_month = _midnight(TODAY.replace(day=1)).isoformat()
    assert table[this_month]["label"] == f"{THAI_MONTHS[TODAY.month - 1]} {buddhist_era(TODAY.year)}"
    english = browser.get(f"/app/sites/HALL?lang=en&fy={fy - 1}").text
    assert f"FY {fy - 1} (BE {buddhist_era(fy - 1)})" in english
    assert all(c["energy_kwh"] == "–" for c in _table(english, "energy-months", "data-row").values())


def test_each_meters_flags_are_the_apis_records(web: Web) -> None:
    browser = _log_in(web)
    html = browser.get("/app/sites/HALL?lang=en").text
    table = _table(html, "meters", "data-meter")
    assert list(table) == ["HALL-M", "HALL-M2"]
    main, annex = table["HALL-M"], table["HALL-M2"]
    done = _api(web, "/completeness", date=YESTERDAY.isoformat(), site_code="HALL")
    pct = {d["device_id"]: d["completeness_pct"] for d in done["devices"]}
    assert main["complete_yesterday_pct"] == f"{pct['HALL-M']:,.1f}"
    # Independent: the main meter's reading times yesterday out of 96 quarter-hours; the annex has them all.
    received = sum(1 for t in MAIN_TIMES if t.astimezone(BANGKOK).date() == YESTERDAY)
    assert (
        main["complete_yesterday_pct"] == f"{100 * received / 96:,.1f}" and annex["complete_yesterday_pct"] == "100.0"
    )
    start = _floor_q(NOW) - timedelta(days=7)
    quarters = _api(web, "/energy", interval="15min", group_by="device", site_code="HALL",
                    **{"from": start.isoformat(), "to": (_floor_q(NOW) + Q).isoformat()})  # fmt: skip
    estimated = sum(1 for r in quarters["rows"] if r["group"] == "HALL-M" and r["quality_label"] == "estimated")
    assert int(main["estimated_15min"]) == estimated > 0 and annex["estimated_15min"] == "0"
    conflicts = _api(web, "/conflicts", device_id="HALL-M")
    assert main["conflicts"] == str(len(conflicts["items"])) == "1"
    late = [s for s in _api(web, "/late-data") if s["device_id"] == "HALL-M"]
    assert main["late_spans"] == str(len(late)) == "1"
    assert main["status"] == MESSAGES["fac_status_check"]["en"] and annex["status"] == MESSAGES["fac_status_ok"]["en"]
    assert MESSAGES["fac_explain_suspect"]["en"] in unescape(html)  # the plain-language explanations


def test_the_site_csvs_equal_the_tables(web: Web) -> None:
    browser = _log_in(web)
    html = browser.get("/app/sites/HALL?lang=en").text
    for by, table_id in (("day", "energy-days"), ("month", "energy-months")):
        table = _table(html, table_id, "data-row")
        answer = browser.get(f"/app/sites/HALL/energy.csv?by={by}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        rows = _csv(answer.content)
        assert [r["bucket_start"] for r in rows] == list(table)
        for r in rows:
            value = None if r["energy_kwh"] == "" else round(float(r["energy_kwh"]), 2)
            assert value == _num(table[r["bucket_start"]]["energy_kwh"])
    meters = _table(html, "meters", "data-meter")
    rows = _csv(browser.get("/app/sites/HALL/meters.csv").content)
    assert [r["device_id"] for r in rows] == list(meters)
    for r in rows:
        cells = meters[r["device_id"]]
        for col in ("estimated_15min", "suspect_15min", "missing_15min", "conflicts", "late_spans"):
            assert r[col] == cells[col]
        assert round(float(r["complete_yesterday_pct"]), 1) == _num(cells["complete_yesterday_pct"])
        assert MESSAGES[f"fac_status_{r['status']}"]["en"] == cells["status"]


def test_the_site_page_is_thai_by_default_and_english_on_request(web: Web) -> None:
    browser = _log_in(web)
    thai = browser.get("/app/sites/HALL?lang=th").text
    assert MESSAGES["fac_energy_day_title"]["th"] in thai and MESSAGES["fac_energy_day_title"]["en"] not in thai
    assert f" {buddhist_era(YESTERDAY.year)}" in thai
    english = unescape(browser.get("/app/sites/HALL?lang=en").text)
    assert MESSAGES["fac_meters_title"]["en"] in english and MESSAGES["fac_meters_title"]["th"] not in english


def test_the_meter_table_names_device_kinds_in_the_pages_language(web: Web) -> None:
    browser = _log_in(web)
    for chosen in ("th", "en"):
        meters = _table(browser.get(f"/app/sites/HALL?lang={chosen}").text, "meters", "data-meter")
        kind = MESSAGES["fac_kind_electricity_meter"][chosen]
        assert all(
            kind in cells["device_id"] and "electricity_meter" not in cells["device_id"] for cells in meters.values()
        )
    assert {f"fac_kind_{k}" for k in get_args(DeviceKind)} <= set(MESSAGES)  # every kind the registry knows


def test_a_site_outside_the_callers_scope_is_a_404_page(web: Web) -> None:
    browser = _log_in(web, "nanuser")
    for path in ("/app/sites/HALL", "/app/sites/HALL/energy.csv", "/app/sites/HALL/meters.csv"):
        answer = browser.get(path)
        assert answer.status_code == 404 and MESSAGES["error_404_title"]["th"] in answer.text, path
        assert "HALL" in answer.text  # the detail names what was asked for
    assert browser.get("/app/sites/NOPE").status_code == 404
    assert browser.get("/app/sites/NANH").status_code == 200
    manager = _log_in(web, "fm")  # a facility manager given only the city hall
    assert manager.get("/app/sites/HALL").status_code == 200
    assert manager.get("/app/sites/SL-C01").status_code == 404
    assert "SL-C01" not in manager.get("/app/streetlights").text


# --- streetlight cabinets -----------------------------------------------------------------------------------------


def test_streetlight_cabinets_yesterday_and_the_week_equal_the_api(web: Web) -> None:
    browser = _log_in(web)
    html = browser.get("/app/streetlights?lang=en").text
    day, week = _table(html, "cabinets-day", "data-site"), _table(html, "cabinets-week", "data-site")
    assert list(day) == list(week) == ["SL-C01"]
    for table, first in ((day, YESTERDAY), (week, YESTERDAY - timedelta(days=6))):
        api = _api(web, "/streetlights", interval="1d", group_by="site",
                   **{"from": _midnight(first).isoformat(), "to": _midnight(TODAY).isoformat()})  # fmt: skip
        rows = [r for r in api["rows"] if r["group"] == "SL-C01"]
        cells = table["SL-C01"]
        for col in ("burning_h", "day_burning_h", "outage_h", "unknown_h"):
            assert cells[col] == f"{sum(r[col] for r in rows):,.1f}", col
        assert cells["cabinet_energy_kwh"] == f"{sum(r['cabinet_energy_kwh'] for r in rows):,.2f}"
    # Independent: lamp 1 burned all 24 h (in daylight too), lamp 2 was dark all night; the cabinet metered 24 kWh.
    # Day and night leave out 15 minutes either side of sunrise and sunset (engine/streetlights.py): 1 h a day.
    cells = day["SL-C01"]
    burning, day_burning, outage = (float(cells[c]) for c in ("burning_h", "day_burning_h", "outage_h"))
    assert burning == 24.0 and 10 < day_burning < 13 and outage == pytest.approx(24 - 1 - day_burning, abs=0.11)
    # One lamp of two dark all night: half the street's known night hours are an outage.
    assert cells["lamps"] == "2" and cells["outage_pct"] == "50.0" and cells["cabinet_energy_kwh"] == "24.00"
    assert "Streetlights Boonyawat Rd" in html


def test_streetlights_another_day_the_language_and_the_csv(web: Web) -> None:
    browser = _log_in(web)
    empty = browser.get(f"/app/streetlights?date={(TODAY - timedelta(days=20)).isoformat()}").text
    assert MESSAGES["fac_sl_none"]["th"] in empty and MESSAGES["fac_sl_title"]["th"] in empty
    html = browser.get("/app/streetlights?lang=en").text
    assert MESSAGES["fac_sl_title"]["en"] in html
    for period, table_id in (("day", "cabinets-day"), ("week", "cabinets-week")):
        table = _table(html, table_id, "data-site")
        rows = _csv(browser.get(f"/app/streetlights.csv?date={YESTERDAY.isoformat()}&period={period}").content)
        assert [r["site_code"] for r in rows] == list(table)
        for r in rows:
            for col in ("burning_h", "day_burning_h", "outage_h"):
                assert round(float(r[col]), 1) == _num(table[r["site_code"]][col])
    assert _log_in(web, "nanuser").get("/app/streetlights.csv").content.decode("utf-8-sig").count("\n") == 1
