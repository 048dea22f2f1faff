"""The web pages (issue 13, first slice) on a real database through the app: the login form and its session, the
redirect of an anonymous browser, the city overview against the API's /sites/{code}/live, the language switch, the
organisation's scope and the CSV download."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import psycopg
import pytest

from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web.i18n import MESSAGES, when
from lccm.engine.timebase import BANGKOK, bkk_us, buddhist_era
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows
from lccm.store import inventory as inv
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.stream.energy import EnergyUpdater
from tests._auth import TEST_ACTOR, TestClient, api_key, bearer
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, write_readings
from tests._web import PASSWORD, log_in, served

ENERGY, POWER = 1, 2
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
TODAY = datetime.combine(NOW.astimezone(BANGKOK).date(), time(), tzinfo=BANGKOK)
Q = timedelta(minutes=15)
BASE_YEAR = (bkk_us(2025), bkk_us(2026))
REGISTRY = [
    "HALL,City Hall,ศาลากลาง,building,Lampang,,,,HALL-M,electricity_meter,Main,900,100",
    "LIB,Library,ห้องสมุด,building,Lampang,,,,LIB-M,electricity_meter,Main,900,100",
    "POOL,Pool,,building,Lampang,,,,POOL-M,electricity_meter,Main,900,100",
    "NANH,Nan Hall,,building,Nan,,,,NANH-M,electricity_meter,Main,900,100",
]
# Live power and today's meter counter of each site: the library draws most, the pool has no live power.
LIVE_W = {"HALL-M": 4200.0, "LIB-M": 9100.0, "NANH-M": 50000.0}
COUNTER = {"HALL-M": (1000.0, 1010.0, 1025.0), "LIB-M": (500.0, 530.0, 560.0), "POOL-M": (10.0, 12.0, 13.0),
           "NANH-M": (1.0, 900.0, 1800.0)}  # fmt: skip


@dataclass(frozen=True)
class Web:
    client: TestClient
    url: str


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        rows = []
        for device, values in COUNTER.items():
            pk = device_pk(conn, device)
            rows += [(pk, ENERGY, TODAY + k * Q, v, NOW) for k, v in enumerate(values)]
            if device in LIVE_W:
                rows.append((pk, POWER, NOW - timedelta(minutes=1), LIVE_W[device], NOW))
        write_readings(conn, rows)
        change = accounts.Change(TEST_ACTOR, "test")
        for name, org in (("somchai", "lampang"), ("nanuser", "nan")):
            accounts.add_user(conn, change, username=name, display_name=name, password=PASSWORD, organisation=org,
                              roles=[Role.VIEWER], sites=None)  # fmt: skip
    EnergyUpdater(lambda: psycopg.connect(url), base_year_us=BASE_YEAR).drain()


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with fresh_database() as url:
        _seed(url)
        with served(url) as client:
            yield Web(client, url)


def _log_in(web: Web, username: str = "somchai") -> TestClient:
    return log_in(web.client, username)


def _table(html: str) -> dict[str, dict[str, str]]:
    """The overview table: site code -> column -> the cell's text."""
    table: dict[str, dict[str, str]] = {}
    for site, body in re.findall(r'<tr data-site="([^"]+)">(.*?)</tr>', html, flags=re.DOTALL):
        cells = re.findall(r'<td data-col="(\w+)"[^>]*>(.*?)</td>', body, flags=re.DOTALL)
        table[site] = {col: re.sub(r"<[^>]+>", "", text).strip() for col, text in cells}
    return table


def test_an_anonymous_browser_is_sent_to_the_login_form_and_an_api_client_gets_401(web: Web) -> None:
    web.client.cookies.clear()
    for page in ("/", "/overview.csv"):
        answer = web.client.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert web.client.get("/sites").status_code == 401
    form = web.client.get("/login")
    assert form.status_code == 200 and 'name="password"' in form.text


def test_a_bad_login_shows_the_form_again_with_one_message(web: Web) -> None:
    web.client.cookies.clear()
    answer = web.client.post("/login", data={"username": "somchai", "password": "wrong"})
    assert answer.status_code == 401
    assert answer.text.count(MESSAGES["login_failed"]["th"]) == 1
    assert "lccm_session" not in answer.cookies


def test_the_overview_ranks_sites_by_live_power_with_the_apis_figures(web: Web) -> None:
    if NOW < TODAY + 3 * Q:
        # Today's counters are read at 00:00, 00:15 and 00:30 Bangkok time: before 00:45 some are still to come.
        pytest.skip("needs the first 45 minutes of the Bangkok day behind it")
    browser = _log_in(web)
    page = browser.get("/")
    assert page.status_code == 200
    table = _table(page.text)
    assert list(table) == ["LIB", "HALL", "POOL"]  # 9.1 kW, 4.2 kW, no live power
    assert [table[s]["rank"] for s in table] == ["1", "2", "3"]
    assert table["POOL"]["power_kw"] == MESSAGES["no_power"]["th"]
    key = bearer(api_key(web.url, Role.VIEWER))
    for site in table:
        live = browser.get(f"/sites/{site}/live", headers=key).json()
        if live["power_w"] is not None:
            assert table[site]["power_kw"] == f"{live['power_w'] / 1000:,.2f}"
        assert table[site]["energy_today_kwh"] == f"{live['energy_today_kwh']:,.2f}"
        assert table[site]["kgco2e_today"] == f"{live['kgco2e_today']:,.2f}"
    # Independent of the API: the counters' increases since midnight, and the readings' power.
    assert table["LIB"]["energy_today_kwh"] == "60.00" and table["HALL"]["energy_today_kwh"] == "25.00"
    assert table["LIB"]["power_kw"] == "9.10"
    assert float(table["LIB"]["kgco2e_today"]) > 0


def test_the_language_switch_shows_thai_then_english_and_is_remembered(web: Web) -> None:
    browser = _log_in(web)
    thai = browser.get("/").text
    assert MESSAGES["overview_title"]["th"] in thai and "ห้องสมุด" in thai
    assert f" {buddhist_era(NOW.astimezone(BANGKOK).year)} " in thai
    english = browser.get("/?lang=en")
    assert MESSAGES["overview_title"]["en"] in english.text and MESSAGES["overview_title"]["th"] not in english.text
    assert "Library" in english.text and english.cookies.get("lang") == "en"
    assert MESSAGES["power_kw"]["en"] in browser.get("/").text  # the cookie keeps English
    assert MESSAGES["power_kw"]["th"] in browser.get("/?lang=th").text


def test_every_message_is_in_both_languages_and_dates_show_both_eras() -> None:
    assert all(set(both) == {"th", "en"} and all(both.values()) for both in MESSAGES.values())
    moment = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)  # 1 January 2027, 00:30 in Bangkok
    assert when(moment, "th") == "1 ม.ค. 2570 00:30"
    assert when(moment, "en") == "1 Jan 2027 (BE 2570) 00:30"


def test_another_organisations_user_does_not_see_these_sites(web: Web) -> None:
    table = _table(_log_in(web, "nanuser").get("/?lang=en").text)
    assert list(table) == ["NANH"]
    assert table["NANH"]["power_kw"] == "50.00"


def test_the_csv_download_matches_the_table(web: Web) -> None:
    browser = _log_in(web)
    table = _table(browser.get("/?lang=en").text)
    answer = browser.get("/overview.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert [r["site_code"] for r in rows] == list(table)
    for r in rows:
        cells = table[r["site_code"]]
        assert r["rank"] == cells["rank"] and r["site_name"] in cells["site_name"]
        # The CSV keeps the stored figures; the page shows them to 2 decimals.
        for col in ("energy_today_kwh", "kgco2e_today"):
            assert round(float(r[col]), 2) == float(cells[col].replace(",", ""))
        if r["site_code"] == "POOL":
            assert r["power_kw"] == ""
        else:
            assert round(float(r["power_kw"]), 2) == float(cells["power_kw"].replace(",", ""))


def test_logout_needs_the_sessions_csrf_token(web: Web) -> None:
    browser = _log_in(web)
    page = browser.get("/").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    refused = browser.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 303 and browser.get("/").status_code == 200  # still logged in
    browser.post("/logout", data={"csrf_token": token.group(1)})
    browser.cookies.clear()  # the browser would drop them; the session must be gone on the server as well
    assert browser.get("/").status_code == 303


def test_the_style_sheet_is_served_from_the_package(web: Web) -> None:
    answer = web.client.get("/web/assets/web.css")
    assert answer.status_code == 200 and "font" in answer.text
    assert web.client.get("/web/assets/nope.js").status_code == 404
