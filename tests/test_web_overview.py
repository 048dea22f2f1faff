"""The city overview's comparison with last week and its completeness (issue 13, item 1), on a real database
through the app: today's kWh and kgCO2e against the same weekday last week cut at the same clock time, and each
site's completeness, both against a hand computation and the API (GET /energy, GET /completeness,
GET /sites/{code}/live); the table fragment the page fetches when the live feed says power changed; the CSV's new
columns; the language switch, the scope and anonymous callers. The first slice's figures: tests/test_web.py."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
import pytest

from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web.i18n import MESSAGES
from lccm.engine.timebase import BANGKOK, bkk_us
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows
from lccm.store import inventory as inv
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.stream.days import DayUpdater
from lccm.stream.energy import EnergyUpdater
from tests._auth import TEST_ACTOR, TestClient, api_key, bearer
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, write_readings
from tests._web import PASSWORD, log_in, served

ENERGY, POWER = 1, 2
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
TODAY = datetime.combine(NOW.astimezone(BANGKOK).date(), time(), tzinfo=BANGKOK)
WEEK_AGO = TODAY - timedelta(days=7)
Q = timedelta(minutes=15)
REGISTRY = [
    "HALL,City Hall,ศาลากลาง,building,Lampang,,,,HALL-M,electricity_meter,Main,900,100",
    "POOL,Pool,,building,Lampang,,,,POOL-M,electricity_meter,Main,900,100",
    "NANH,Nan Hall,,building,Nan,,,,NANH-M,electricity_meter,Main,900,100",
]
TODAY_COUNTER = (1000.0, 1010.0, 1025.0)  # HALL at 00:00, 00:15, 00:30 today: 25 kWh
GRID_KG_PER_KWH = 0.4750
WEEK_STEP_KWH = 2.0  # HALL last week: +2 kWh every quarter-hour, past the clock time of now

pytestmark = pytest.mark.skipif(NOW < TODAY + 3 * Q, reason="needs the first 45 minutes of the Bangkok day behind it")


def _quarters_so_far() -> int:
    """Quarter-hours of today started by now."""
    return math.ceil((datetime.now(UTC) - TODAY) / Q)


@dataclass(frozen=True)
class Web:
    client: TestClient
    url: str


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town", city_key="nan"))
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        hall, pool, nan = (device_pk(conn, d) for d in ("HALL-M", "POOL-M", "NANH-M"))
        rows = [(hall, ENERGY, TODAY + k * Q, v, NOW) for k, v in enumerate(TODAY_COUNTER)]
        # Last week's readings as received then (a reading received a week late is late data, not rolled up).
        week = [WEEK_AGO + k * Q for k in range(_quarters_so_far() + 8)]
        rows += [(hall, ENERGY, ts, 500.0 + WEEK_STEP_KWH * k, ts) for k, ts in enumerate(week)]
        rows.append((hall, POWER, NOW - timedelta(minutes=1), 4200.0, NOW))
        rows += [(pool, ENERGY, TODAY, 10.0, NOW), (nan, ENERGY, TODAY, 1.0, NOW), (nan, ENERGY, TODAY + Q, 3.0, NOW)]
        write_readings(conn, rows)
        change = accounts.Change(TEST_ACTOR, "test")
        for name, org in (("somchai", "lampang"), ("nanuser", "nan")):
            accounts.add_user(conn, change, username=name, display_name=name, password=PASSWORD, organisation=org,
                              roles=[Role.VIEWER], sites=None)  # fmt: skip
    EnergyUpdater(lambda: psycopg.connect(url), base_year_us=(bkk_us(2025), bkk_us(2026))).drain()
    DayUpdater(lambda: psycopg.connect(url)).drain()  # completeness: reading_days


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with fresh_database() as url:
        _seed(url)
        with served(url) as client:
            yield Web(client, url)


def _log_in(web: Web, username: str = "somchai") -> TestClient:
    return log_in(web.client, username)


def _table(html: str) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for site, body in re.findall(r'<tr data-site="([^"]+)">(.*?)</tr>', html, flags=re.DOTALL):
        cells = re.findall(r'<td data-col="(\w+)"[^>]*>(.*?)</td>', body, flags=re.DOTALL)
        table[site] = {col: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip() for col, text in cells}
    return table


def _num(cell: str) -> float:
    return float(cell.split(" ")[0].replace(",", ""))


def test_today_against_the_same_weekday_last_week_at_the_same_clock_time(web: Web) -> None:
    browser = _log_in(web)
    while True:  # the quarter-hours started by now, counted when the page is asked for (not at import)
        before = _quarters_so_far()
        table = _table(browser.get("/?lang=en").text)
        if _quarters_so_far() == before:
            break
    hall = table["HALL"]
    # By hand: 25 kWh today; last week, 2 kWh in each quarter-hour started before the same clock time (the
    # quarter-hours after it, also metered, stay out).
    week_kwh = WEEK_STEP_KWH * before
    assert _num(hall["energy_today_kwh"]) == 25.0
    assert _num(hall["energy_week_ago_kwh"]) == week_kwh
    assert hall["energy_change_pct"] == f"{100 * (25.0 - week_kwh) / week_kwh:+,.1f}"
    # TGO's grid factor in force on both days (engine/factors.py, from 2026): 0.4750 kgCO2e/kWh.
    assert _num(hall["kgco2e_today"]) == pytest.approx(25.0 * GRID_KG_PER_KWH, abs=0.006)
    assert _num(hall["kgco2e_week_ago"]) == pytest.approx(week_kwh * GRID_KG_PER_KWH, abs=0.006)
    assert table["POOL"]["energy_week_ago_kwh"] == "0.00" and table["POOL"]["energy_change_pct"] == "–"
    # The API's figures for the same periods.
    key = bearer(api_key(web.url, Role.VIEWER))
    week_cut = datetime.now(UTC) - timedelta(days=7)
    params = {"from": WEEK_AGO.isoformat(), "to": week_cut.isoformat(), "interval": "15min", "site_code": "HALL",
              "metric": "energy"}  # fmt: skip
    energy = web.client.get("/energy", params=params, headers=key).json()
    assert f"{sum(r['amount'] for r in energy['rows']):,.2f}" == hall["energy_week_ago_kwh"]
    assert f"{sum(r['kgco2e'] for r in energy['rows']):,.2f}" == hall["kgco2e_week_ago"]
    live = web.client.get("/sites/HALL/live", headers=key).json()
    assert f"{live['energy_today_kwh']:,.2f}" == hall["energy_today_kwh"]
    assert f"{live['kgco2e_today']:,.2f}" == hall["kgco2e_today"]
    assert f"{live['power_w'] / 1000:,.2f}" == hall["power_kw"]


def test_completeness_per_site_is_the_apis_and_flags_incomplete_sites(web: Web) -> None:
    page = _log_in(web).get("/?lang=en").text
    table = _table(page)
    # By hand: HALL-M sent 4 reading times today (3 counters, 1 power), POOL-M 1, each expected every 900 s.
    expected = int((datetime.now(UTC) - TODAY).total_seconds() // 900)
    for site, received in (("HALL", 4), ("POOL", 1)):
        pct = round(100 * min(received, expected) / expected, 2)
        assert table[site]["completeness_pct"] == f"{pct:,.2f} {MESSAGES['overview_incomplete']['en']}", site
    key = bearer(api_key(web.url, Role.VIEWER))
    day = TODAY.date().isoformat()
    api = {
        s["site_code"]: s for s in web.client.get("/completeness", params={"date": day}, headers=key).json()["sites"]
    }
    for site in ("HALL", "POOL"):
        assert _num(table[site]["completeness_pct"]) == api[site]["completeness_pct"]
    assert 'class="num incomplete"' in page  # styled, and the word says it too (colour is never the only signal)
    assert "90%" in page  # the threshold is stated


def test_the_page_follows_the_live_feed_and_fetches_its_table_fragment(web: Web) -> None:
    browser = _log_in(web)
    page = browser.get("/").text
    assert 'sse-connect="/live/events"' in page and 'hx-get="/overview/table"' in page
    assert 'http-equiv="refresh"' not in page
    fragment = browser.get("/overview/table")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert _table(fragment.text).keys() == _table(page).keys() == {"HALL", "POOL"}
    assert MESSAGES["overview_energy_week_kwh"]["th"] in fragment.text  # Thai by default
    english = browser.get("/overview/table?lang=en").text
    assert MESSAGES["overview_energy_week_kwh"]["en"] in english and MESSAGES["overview_completeness"]["en"] in english
    browser.cookies.clear()
    assert browser.get("/overview/table").status_code == 303


def test_another_organisation_sees_only_its_own_sites(web: Web) -> None:
    table = _table(_log_in(web, "nanuser").get("/overview/table?lang=en").text)
    assert list(table) == ["NANH"] and _num(table["NANH"]["energy_today_kwh"]) == 2.0


def test_the_csv_has_the_new_columns_as_stored(web: Web) -> None:
    browser = _log_in(web)
    table = _table(browser.get("/?lang=en").text)
    rows = list(csv.DictReader(io.StringIO(browser.get("/overview.csv").content.decode("utf-8-sig"))))
    assert [r["site_code"] for r in rows] == list(table)
    for r in rows:
        cells = table[r["site_code"]]
        for col in ("energy_week_ago_kwh", "kgco2e_week_ago", "completeness_pct"):
            assert round(float(r[col]), 2) == _num(cells[col]), col
        assert r["complete"] in ("True", "False")
    hall = next(r for r in rows if r["site_code"] == "HALL")
    assert round(float(hall["energy_change_pct"]), 1) == _num(table["HALL"]["energy_change_pct"])


def test_the_overview_costs_the_same_queries_for_one_site_as_for_many(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No query per site (the first slice ran GET /sites/{code}/live's query once per site): a user of one site's
    organisation and a user of two sites' send the same number of statements."""
    counted = [0]  # statements of the current request (the last entry)
    execute = psycopg.Cursor.execute

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        counted[-1] += 1
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    statements = {}
    for user, sites in (("nanuser", 1), ("somchai", 2)):
        browser = _log_in(web, user)
        counted.append(0)
        assert len(_table(browser.get("/overview/table").text)) == sites
        statements[user] = counted[-1]
    assert statements["nanuser"] == statements["somchai"] > 0, statements
