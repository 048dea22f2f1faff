"""The carbon pages (issue 13, item 3) on a real database through the app: the base-year comparison (/app/carbon)
and targets and KPIs (/app/targets) against the API's JSON for the same year and against hand-computed figures,
the CSV of every table, the language switch, the 403 page of a role without access, the organisation's scope and
setting a target from the page.

The city: Lampang reports by fiscal year (October to September) from its base year FY2024 (B.E. 2567). The city
hall's meter reads once a day, 90 kWh a day, from 1 October 2023 to today; LPG is entered by hand: 10 kg a month
in the base year, 9 kg a month in FY2025.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from lccm.api.app import create_app
from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web.carbon import comparison_date, year_text
from lccm.api.web.i18n import MESSAGES
from lccm.engine import calendar as cal
from lccm.engine.timebase import bkk_us
from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import parse_registry_csv
from lccm.reports import targets
from lccm.reports.periods import bangkok_today
from lccm.runtime import factor_rows, updaters
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file
from lccm.store.inventory_mapping import set_mappings
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from tests._auth import TEST_ACTOR, TestClient, add_organisation, api_key, bearer
from tests._db import device_pk, fresh_database
from tests._web import PASSWORD, csrf_header, log_in, served

ENERGY = 1
REGISTRY = """site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s
HALL,City Hall,building,Lampang,HALL-M1,electricity_meter,Main,86400
"""
HALL_KWH_PER_DAY = 90.0
METER_FROM = date(2023, 10, 1)
CURRENT = cal.year_of(bangkok_today(), "fiscal")
USERS = {  # username: (organisation, role)
    "somsri": ("lampang", Role.CARBON_OFFICER),
    "viewer": ("lampang", Role.VIEWER),
    "fm": ("lampang", Role.FACILITY_MANAGER),
    "nanuser": ("nan", Role.CARBON_OFFICER),
}


def _inventory(lpg_kg: list[int]) -> bytes:
    months = ",".join(str(v) for v in lpg_kg)
    return "\n".join([
        ",".join(TEMPLATE_HEADER_EN),
        f"S2-ELEC,2,purchased_electricity,Buildings,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,building_electricity,,"
        f"{','.join(['3000'] * 12)}",
        f"S1-LPG,1,stationary_combustion,LPG,,kg,3.1134,kgCO2e/kg,TGO,,,I.2.1,manual,,,{months}",
    ]).encode()  # fmt: skip


def _write_daily(conn: psycopg.Connection, device: int, start: date, days: int) -> None:
    """Register readings at each Bangkok midnight from ``start`` (0 kWh), HALL_KWH_PER_DAY a day."""
    register = np.arange(days + 1, dtype=np.float64) * HALL_KWH_PER_DAY
    stamps = [start + timedelta(days=k) for k in range(days + 1)]
    ts = np.array([bkk_us(d.year, d.month, d.day) for d in stamps], np.int64)
    n = ts.size
    columns = ReadingColumns(np.full(n, device, np.int32), np.full(n, ENERGY, np.int16), ts, register,
                             np.full(n, NO_SEQ, np.int64), ts + 60_000_000)  # fmt: skip
    write_batch(conn, columns)


def _seed(url: str) -> None:
    add_organisation(url, "nan")
    with psycopg.connect(url) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(REGISTRY))
        for year, lpg in ((2024, [10] * 12), (2025, [9] * 12)):
            import_inventory_file(conn, _inventory(lpg), file_name=f"{year}.csv", organisation="lampang",
                                  year_ce=year, kind="fiscal", base_year=year == 2024)  # fmt: skip
        for year in range(2025, CURRENT + 1):
            set_mappings(conn, "lampang", year, "fiscal", [("HALL-M1", "S2-ELEC")])
        _write_daily(conn, device_pk(conn, "HALL-M1"), METER_FROM, (bangkok_today() - METER_FROM).days)
        org_target = {"target_key": "org", "target_year": 2030}
        lamps = {"target_key": "lamps", "kpi": "kwh_per_lamp", "target_year": 2030, "reduction_pct": 10,
                 "kpi_values": {2024: 400, 2025: 395}}  # fmt: skip
        targets.set_targets(conn, "lampang", [targets.TargetIn.model_validate(t) for t in (org_target, lamps)])
        change = accounts.Change(TEST_ACTOR, "test")
        for name, (org, role) in USERS.items():
            accounts.add_user(conn, change, username=name, display_name=name, password=PASSWORD, organisation=org,
                              roles=[role], sites=None)  # fmt: skip
        conn.commit()
    updaters(Settings(database_url=url), url).drain()


@dataclass(frozen=True)
class Web:
    client: TestClient
    url: str
    api: dict[str, str]  # a viewer's API key of lampang, for the JSON the pages must equal


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with fresh_database() as url:
        _seed(url)
        with served(url) as client:
            yield Web(client, url, bearer(api_key(url, Role.VIEWER)))


def _log_in(web: Web, username: str = "somsri") -> TestClient:
    return log_in(web.client, username)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def _table(html: str, table_id: str, key: str) -> dict[str, dict[str, str]]:
    """A table of the page: the row's ``data-<key>`` -> column -> the cell's text."""
    body = re.search(rf'<table id="{table_id}"[^>]*>(.*?)</table>', html, flags=re.DOTALL)
    assert body, f"no table {table_id}"
    rows: dict[str, dict[str, str]] = {}
    for name, row in re.findall(rf'<tr data-{key}="([^"]+)"[^>]*>(.*?)</tr>', body.group(1), flags=re.DOTALL):
        cells = re.findall(r'<t[hd][^>]*data-col="(\w+)"[^>]*>(.*?)</t[hd]>', row, flags=re.DOTALL)
        rows[name] = {col: _text(text) for col, text in cells}
    return rows


def _num(value: float | None, places: int = 2) -> str:
    return "–" if value is None else f"{value:,.{places}f}"


def _csv(answer: Any) -> list[dict[str, str]]:
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))


def _comparison(web: Web, year: int, by: str) -> dict[str, Any]:
    params = {"period": "fytd", "date": comparison_date(year, "fiscal").isoformat(), "by": by}
    answer = web.client.get("/organisations/lampang/comparison", params=params, headers=web.api)
    assert answer.status_code == 200, answer.text
    return answer.json()


# ------------------------------------------------------------------------------------------------------ access
def test_an_anonymous_browser_is_sent_to_the_login_form(web: Web) -> None:
    web.client.cookies.clear()
    for page in ("/app/carbon", "/app/targets", "/app/carbon.csv?year=2025", "/app/targets.csv?year=2025",
                 "/app/kpis.csv?year=2025"):  # fmt: skip
        answer = web.client.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", page


def test_a_role_without_the_organisations_data_gets_a_403_page_in_its_language(web: Web) -> None:
    browser = _log_in(web, "fm")  # a facility manager reads energy of their sites, not the inventory
    for page in ("/app/carbon", "/app/targets"):
        answer = browser.get(page)
        assert answer.status_code == 403 and answer.headers["content-type"].startswith("text/html")
        assert MESSAGES["error_403_title"]["th"] in answer.text
        assert MESSAGES["role_carbon_officer"]["th"] in answer.text and 'href="/app/carbon"' in answer.text
    english = browser.get("/app/carbon?lang=en")
    assert english.status_code == 403 and MESSAGES["error_403_text"]["en"] in html.unescape(english.text)
    # The JSON API keeps its JSON answer.
    assert browser.get("/organisations/lampang/comparison").headers["content-type"].startswith("application/json")


# -------------------------------------------------------------------------------------------------- comparison
def test_the_comparison_of_a_past_year_by_hand(web: Web) -> None:
    """FY2025 (1 October 2024 to 30 September 2025) against the base year FY2024, all of it covered.

    Scope 2: 365 days x 90 kWh = 32,850 kWh at 0.4999 (the grid factor until the end of 2025) = 16,421.715 kgCO2e
    against 12 x 3,000 kWh x 0.4999 = 17,996.4. Scope 1: 108 kg LPG x 3.1134 = 336.2472 against 120 kg = 373.608.
    Total 16,757.9622 against 18,370.008: -8.7754 %, a cut of more than 5 %."""
    page = _log_in(web).get("/app/carbon?year=2025&lang=en")
    assert page.status_code == 200
    # The API's year to date on the year's last day is the whole year (not the next year's empty first instant).
    period = _comparison(web, 2025, "scope")["period"]
    assert (period["start"], period["end"]) == ("2024-10-01T00:00:00+07:00", "2025-10-01T00:00:00+07:00")
    scope = _table(page.text, "by-scope", "group")
    assert list(scope) == ["1", "2", "total"]
    assert scope["2"]["actual_kgco2e"] == "16,421.72" and scope["2"]["baseline_kgco2e"] == "17,996.40"
    assert scope["1"]["actual_kgco2e"] == "336.25" and scope["1"]["baseline_kgco2e"] == "373.61"
    assert scope["total"]["delta_pct"] == _num(100 * (16757.9622 / 18370.008 - 1))
    assert scope["total"]["coverage_share"].startswith("100.0 %")
    assert scope["2"]["readings"] == "365 / 365" and scope["1"]["item_months"] == "12 / 12"
    assert 'data-verdict="met"' in page.text
    assert "FY 2025 (BE 2568)" in page.text and "Scope 2" in page.text
    gpc = _table(page.text, "by-gpc_ref", "group")
    assert list(gpc) == ["I.2.1", "I.2.2", "total"] and gpc["I.2.2"]["group"] == "I.2.2 Stationary energy"
    items = _table(page.text, "by-item", "group")
    assert list(items) == ["S1-LPG", "S2-ELEC", "total"] and items["S2-ELEC"]["readings"] == "365 / 365"
    category = _table(page.text, "by-cfo_category", "group")
    assert category["purchased_electricity"]["group"] == "Purchased electricity"


@pytest.mark.parametrize("year", [2025, CURRENT])
def test_every_table_equals_the_apis_comparison_of_the_same_year(web: Web, year: int) -> None:
    page = _log_in(web).get(f"/app/carbon?year={year}")
    assert page.status_code == 200
    for by in ("scope", "cfo_category", "gpc_ref", "item"):
        table = _table(page.text, f"by-{by}", "group")
        doc = _comparison(web, year, by)
        rows = {r["group"]: r for r in doc["rows"]} | {"total": doc["total"]}
        assert list(table) == list(rows)
        for group, r in rows.items():
            cells = table[group]
            for col in ("baseline_kgco2e", "actual_kgco2e", "delta_kgco2e", "delta_pct", "delta_base_factors_pct"):
                assert cells[col] == _num(r[col]), (by, group, col)
            assert cells["covered_time_delta_pct"] == _num(r["covered_time"]["delta_pct"])
            assert cells["coverage_share"].startswith(_num((r["coverage"]["share"] or 0) * 100, 1) + " %")
    verdict = re.search(r'data-verdict="(\w+)"', page.text)
    total = _comparison(web, year, "scope")["total"]
    expected = "unknown" if total["delta_pct"] is None else "met" if total["delta_pct"] <= -5 else "not_met"
    assert verdict and verdict.group(1) == expected


def test_a_year_the_coverage_cannot_judge_says_so_and_shows_the_covered_time(web: Web) -> None:
    """With a threshold of 100 %, the running year (today's hours not read yet, no LPG entered) withholds its
    changes; the verdict says it cannot tell and gives the change over the covered time instead."""
    settings = Settings(database_url=web.url, session_cookie_secure=False, comparison_min_coverage=1.0)
    with (
        ConnectionPool(web.url, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(settings, pool), follow_redirects=False) as strict,
    ):
        strict.post("/login", data={"username": "somsri", "password": PASSWORD})
        page = strict.get(f"/app/carbon?year={CURRENT}&lang=en")
        doc = strict.get(
            "/organisations/lampang/comparison",
            params={"period": "fytd", "date": comparison_date(CURRENT, "fiscal").isoformat()},
            headers=web.api,
        ).json()
    assert page.status_code == 200 and 'data-verdict="unknown"' in page.text
    total = _table(page.text, "by-scope", "group")["total"]
    assert total["delta_pct"] == "–" and doc["total"]["delta_pct"] is None
    assert total["covered_time_delta_pct"] == _num(doc["total"]["covered_time"]["delta_pct"])
    assert "insufficient" in total["coverage_share"] and doc["total"]["coverage"]["reason"] in html.unescape(page.text)
    verdict = _text(re.search(r'id="cut-verdict"[^>]*>(.*?)</p>', page.text, re.DOTALL).group(1))  # type: ignore[union-attr]
    assert verdict.startswith("? Cannot tell yet")


def test_the_chart_draws_base_year_and_this_year_by_scope(web: Web) -> None:
    page = _log_in(web).get("/app/carbon?year=2025&lang=en").text
    chart = re.search(r'class="chart"[^>]*data-chart="([^"]+)"', page)
    assert chart
    option = chart.group(1).replace("&#34;", '"').replace("&quot;", '"')
    assert '"data":["Scope 1","Scope 2"]' in option
    assert "FY 2024 (BE 2567)" in option and "FY 2025 (BE 2568)" in option
    assert "16421.715" in option


def test_the_csv_of_each_table_keeps_the_figures_of_the_table(web: Web) -> None:
    browser = _log_in(web)
    page = browser.get("/app/carbon?year=2025").text
    for by in ("scope", "cfo_category", "gpc_ref", "item"):
        table = _table(page, f"by-{by}", "group")
        rows = _csv(browser.get(f"/app/carbon.csv?year=2025&by={by}"))
        assert [r["group"] for r in rows] == list(table)
        for r in rows:
            for col in ("baseline_kgco2e", "actual_kgco2e", "delta_kgco2e", "delta_pct"):
                shown = table[r["group"]][col]
                assert (r[col] == "" and shown == "–") or _num(float(r[col])) == shown, (by, col)
    assert browser.get("/app/carbon.csv?year=2025&by=site").status_code == 422  # no such table on the page
    assert browser.get("/app/carbon.csv?year=1999").status_code == 422


def test_the_year_selector_offers_the_years_after_the_base_year_in_both_eras(web: Web) -> None:
    browser = _log_in(web)
    thai = browser.get("/app/carbon").text
    options = re.findall(r'<option value="(\d+)"( selected)?>([^<]+)</option>', thai)
    assert [int(v) for v, _, _ in options] == list(range(CURRENT, 2024, -1))
    assert options[0][1] == " selected"  # the current year first, chosen
    assert "ปีงบประมาณ 2568 (FY 2025)" in [label for _, _, label in options]
    assert MESSAGES["carbon_title"]["th"] in thai and MESSAGES["carbon_by_scope"]["th"] in thai
    english = browser.get("/app/carbon?lang=en").text
    assert MESSAGES["carbon_title"]["en"] in english and MESSAGES["carbon_title"]["th"] not in english
    assert browser.get("/app/carbon?year=2024").status_code == 422  # the base year against itself
    assert year_text(2026, "calendar", "th") == "พ.ศ. 2569 (ค.ศ. 2026)"


def test_another_organisation_sees_its_own_and_nothing_of_lampang(web: Web) -> None:
    browser = _log_in(web, "nanuser")
    for page in ("/app/carbon", "/app/targets"):
        answer = browser.get(page)
        assert answer.status_code == 200
        assert MESSAGES["carbon_no_base_year"]["th"] in answer.text
        assert "Lampang" not in answer.text and "HALL" not in answer.text and "lamps" not in answer.text
    assert browser.get("/app/carbon.csv?year=2025").status_code == 422  # no year to show, not lampang's


# ------------------------------------------------------------------------------------------------ targets, KPIs
def test_the_targets_table_equals_the_apis_status_of_the_year(web: Web) -> None:
    browser = _log_in(web, "viewer")
    page = browser.get("/app/targets?year=2025&lang=en")
    assert page.status_code == 200
    table = _table(page.text, "targets", "target")
    status = web.client.get("/organisations/lampang/targets/status", params={"year": 2025}, headers=web.api).json()
    assert list(table) == [s["target_key"] for s in status]
    for s in status:
        cells = table[s["target_key"]]
        for col in ("trajectory", "value", "margin", "margin_pct"):
            assert cells[col] == _num(s[col]), col
    # The KPI target: 400 kWh per lamp in FY2024, -10 % by 2030: 2025 allows 400 - 40 / 6; 395 was reported.
    lamps = table["lamps"]
    assert lamps["trajectory"] == _num(400 - 40 / 6) and lamps["value"] == "395.00"
    assert "off track" in lamps["on_track"] and "reported" in lamps["value_kind"]
    # The organisation's: FY2025 is over and covered: the actual 16,757.9622 against 18,370.008 x (1 - 5 % / 6).
    org = table["org"]
    assert org["value"] == _num(16757.9622) and org["trajectory"] == _num(18370.008 * (1 - 0.05 / 6))
    assert "on track" in org["on_track"] and "actual" in org["value_kind"]
    rows = _csv(browser.get("/app/targets.csv?year=2025"))
    assert [r["target_key"] for r in rows] == list(table)
    org_row = next(r for r in rows if r["target_key"] == "org")
    assert float(org_row["value"]) == pytest.approx(16757.9622) and org_row["on_track"] == "True"


def test_each_target_has_its_trajectory_chart(web: Web) -> None:
    page = _log_in(web, "viewer").get("/app/targets?lang=en").text
    charts = re.findall(r'class="chart"[^>]*aria-label="([^"]+)"[^>]*data-chart="([^"]+)"', page)
    labels = [label for label, _ in charts]
    assert labels == ["Trajectory of target lamps", "Trajectory of target org"]
    lamps = charts[0][1].replace("&#34;", '"')
    # Planned path from FY2024 to FY2030 (400 -> 360), actual: 400 in the base year, 395 reported in FY2025.
    assert '"FY 2024 (BE 2567)"' in lamps and '"FY 2030 (BE 2573)"' in lamps
    assert '"data":[400.0,395.0' in lamps and "360.0" in lamps


def test_the_kpis_equal_the_apis_with_their_denominators_and_dates(web: Web) -> None:
    browser = _log_in(web)
    page = browser.get(f"/app/targets?year={CURRENT}&lang=en").text
    table = _table(page, "kpis", "kpi")
    doc = web.client.get("/organisations/lampang/kpis", params={"year": CURRENT}, headers=web.api).json()
    assert list(table) == [k["kpi"] for k in doc["kpis"]]
    for k in doc["kpis"]:
        cells = table[k["kpi"]]
        assert cells["value"] == _num(k["value"]) and cells["measured_to_date"] == _num(k["measured_to_date"])
        assert cells["denominator"].startswith(_num(k["denominator"]["value"]))
        assert cells["devices"] == str(len(k["devices"]))
    assert "Data from 1 Oct" in page
    rows = _csv(browser.get(f"/app/kpis.csv?year={CURRENT}"))
    assert [r["kpi"] for r in rows] == list(table) and rows[0]["period_start"] == doc["period"]["start"]


def test_a_carbon_officer_sets_a_target_from_the_page_and_it_is_audited(web: Web) -> None:
    browser = _log_in(web)
    assert 'hx-post="/app/targets' in browser.get("/app/targets").text
    form = {"target_key": "hall-power", "category": "purchased_electricity", "kpi": "", "target_year": "2029",
            "reduction_pct": "12"}  # fmt: skip
    assert browser.post("/app/targets", data=form).status_code == 403  # no CSRF token: refused
    answer = browser.post("/app/targets?year=2025", data=form, headers=csrf_header(browser))
    assert answer.status_code == 204 and answer.headers["HX-Redirect"] == "/app/targets?saved=1&year=2025"
    stored = web.client.get("/organisations/lampang/targets", headers=web.api).json()
    assert [t["target_key"] for t in stored] == ["hall-power", "lamps", "org"]
    hall = stored[0]
    assert (hall["category"], hall["target_year"], hall["reduction_pct"], hall["base_year"]) == (
        "purchased_electricity", 2029, 12.0, 2024)  # fmt: skip
    with psycopg.connect(web.url) as conn:
        entries = conn.execute(
            "SELECT action, actor_subject, before, after FROM audit_log"
            " WHERE target = 'organisation:lampang/targets' ORDER BY id"
        ).fetchall()
    assert len(entries) == 1  # the refused post (no CSRF token) left nothing
    action, actor, before, after = entries[0]
    assert (action, actor) == ("POST /app/targets", "user:somsri")
    assert [t["target_key"] for t in before["targets"]] == ["lamps", "org"]
    assert [t["target_key"] for t in after["targets"]] == ["hall-power", "lamps", "org"]
    after = browser.get("/app/targets?saved=1&year=2025")
    assert MESSAGES["targets_saved"]["th"] in after.text and 'data-target="hall-power"' in after.text


def test_a_refused_target_shows_each_problem_and_writes_nothing(web: Web) -> None:
    browser = _log_in(web)
    before = web.client.get("/organisations/lampang/targets", headers=web.api).json()
    bad_year = {"target_key": "old", "target_year": "2020", "reduction_pct": "5"}
    answer = browser.post("/app/targets", data=bad_year, headers=csrf_header(browser))
    assert answer.status_code == 422 and 'id="target-errors"' in answer.text
    errors = _text(re.search(r'id="target-errors">(.*?)</div>', answer.text, flags=re.DOTALL).group(1))  # type: ignore[union-attr]
    assert "target_year" in errors and 'value="old"' in answer.text  # the form keeps what was typed
    not_a_number = browser.post(
        "/app/targets", data={"target_key": "x", "target_year": "soon"}, headers=csrf_header(browser)
    )
    assert not_a_number.status_code == 422 and "target_year" in not_a_number.text
    kpi_without_base = {"target_key": "m2", "kpi": "kwh_per_m2", "target_year": "2030"}
    refused = browser.post("/app/targets", data=kpi_without_base, headers=csrf_header(browser))
    assert refused.status_code == 422 and "kpi_values" in refused.text
    assert web.client.get("/organisations/lampang/targets", headers=web.api).json() == before


def test_a_viewer_sees_the_targets_but_cannot_set_one(web: Web) -> None:
    browser = _log_in(web, "viewer")
    page = browser.get("/app/targets").text
    assert "hx-post" not in page and MESSAGES["targets_read_only"]["th"] in page
    answer = browser.post("/app/targets", data={"target_key": "x", "target_year": "2030"}, headers=csrf_header(browser))
    assert answer.status_code == 403


def test_a_carbon_officer_deletes_a_target_and_it_is_audited(web: Web) -> None:
    browser = _log_in(web)
    form = {"target_key": "to-delete", "target_year": "2031"}
    assert browser.post("/app/targets", data=form, headers=csrf_header(browser)).status_code == 204
    assert 'hx-post="/app/targets/delete' in browser.get("/app/targets").text
    answer = browser.post("/app/targets/delete", data={"target_key": "to-delete"}, headers=csrf_header(browser))
    assert answer.status_code == 204 and answer.headers["HX-Redirect"] == "/app/targets?saved=1"
    keys = [t["target_key"] for t in web.client.get("/organisations/lampang/targets", headers=web.api).json()]
    assert "to-delete" not in keys and "org" in keys
    with psycopg.connect(web.url) as conn:
        last = conn.execute("SELECT action, after FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    assert last and last[0] == "POST /app/targets/delete" and "to-delete" not in str(last[1])
    missing = browser.post("/app/targets/delete", data={"target_key": "nope"}, headers=csrf_header(browser))
    assert missing.status_code == 422 and "no such target" in missing.text
    viewer = _log_in(web, "viewer")
    assert "/app/targets/delete" not in viewer.get("/app/targets").text
    assert (
        viewer.post("/app/targets/delete", data={"target_key": "org"}, headers=csrf_header(viewer)).status_code == 403
    )
