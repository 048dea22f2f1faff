"""Each role's main task done in a real browser (tests/_browser.py: Debian's chromium through Playwright), its
figures checked against the JSON API of the same organisation for the same period:

- the facility manager opens a site from the overview; the live figures and the energy-by-day table equal
  GET /sites/{code}/live and GET /energy, and the downloaded CSV equals the table;
- the environment officer acknowledges an alert and sees its row change in place, then closes it
  (GET /alerts/{id} records them); the station map's AQI figures equal GET /aqi/current;
- the carbon officer uploads a bad inventory file and reads its row errors on the page (nothing stored), then a
  good one, which the history lists; the comparison's tables equal GET /organisations/{code}/comparison; a target
  set from the form is listed;
- a viewer gets neither the Acknowledge button nor the target form.

The API is read with the served city's viewer key (tests/_browser.py); each test makes what it changes (a new alert,
a year of its own) so that the order of the tests does not matter."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

from lccm.api.principal import Role
from lccm.api.web.carbon import comparison_date
from lccm.api.web.i18n import MESSAGES
from lccm.engine.alert_kinds import Severity
from lccm.engine.timebase import BANGKOK
from lccm.imports.inventory import InventoryInvalid, parse_inventory
from lccm.store import alerts as st
from tests._auth import bearer
from tests._browser import BrowserSite, sign_in
from tests._db import device_pk, us
from tests._seeded import BASE_YEAR, counts_today

if TYPE_CHECKING:
    from playwright.sync_api import Page

GOOD_INVENTORY = BASE_YEAR.read_bytes()
# The shipped example with two mistakes: a scope out of range (row 4) and an unknown category (row 5).
BAD_INVENTORY = (
    GOOD_INVENTORY.decode("utf-8-sig")
    .replace("S1-GEN-DIESEL,1,", "S1-GEN-DIESEL,7,", 1)
    .replace(",mobile_combustion,", ",mobile_burning,", 1)
    .encode()
)


@pytest.fixture
def api(served_city: BrowserSite) -> Iterator[httpx.Client]:
    """The JSON API as the organisation's viewer (an API key): the figures each page must show."""
    with httpx.Client(base_url=served_city.base_url, headers=bearer(served_city.viewer_key), timeout=30) as client:
        yield client


def _get(api: httpx.Client, path: str, **params: Any) -> Any:
    answer = api.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _table(page: Page, selector: str, key: str) -> dict[str, dict[str, str]]:
    """A table as the browser shows it, in its order: the row's ``data-<key>`` -> column -> the cell's visible text.
    (Pairs, not a JavaScript object, whose integer-like keys would come back sorted.)"""
    pairs: list[tuple[str, dict[str, str]]] = page.eval_on_selector_all(
        f"{selector} tbody tr[data-{key}]",
        f"""rows => rows.map(r => [r.dataset[{key!r}], Object.fromEntries(
            Array.from(r.querySelectorAll('[data-col]'), c => [c.dataset.col, c.innerText.trim()]))])""",
    )
    return dict(pairs)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


# ------------------------------------------------------------------------------------------- facility manager
def test_a_facility_manager_opens_a_site_from_the_overview_and_its_figures_are_the_apis(
    page: Page, served_city: BrowserSite, api: httpx.Client
) -> None:
    code = served_city.seeded.site
    sign_in(page, Role.FACILITY_MANAGER)
    page.goto("/?lang=en")
    with page.expect_navigation():
        page.locator(f'#overview tr[data-site="{code}"] a[href="/app/sites/{code}"]').click()
    assert page.url.endswith(f"/app/sites/{code}")
    live = _get(api, f"/sites/{code}/live")
    facts = page.eval_on_selector_all(
        "#live dd[data-col]", "ds => Object.fromEntries(ds.map(d => [d.dataset.col, d.innerText.trim()]))"
    )
    assert facts["power_kw"] == (
        MESSAGES["fac_no_live_power"]["en"] if live["power_w"] is None else _num(live["power_w"] / 1000)
    )
    assert facts["energy_today_kwh"] == _num(live["energy_today_kwh"])
    assert facts["kgco2e_today"] == _num(live["kgco2e_today"])
    assert live["energy_today_kwh"] is not None
    # seed_city's meter counted today (none yet in the day's first hour)
    counted = counts_today(served_city.seeded.seeded_at)
    assert live["energy_today_kwh"] > 0 if counted else live["energy_today_kwh"] == 0

    table = _table(page, "#energy-days", "row")
    first, last = (datetime.fromisoformat(k) for k in (min(table), max(table)))
    rows = _get(api, "/energy", interval="1d", group_by="site", site_code=code, metric="energy",
                **{"from": first.isoformat(), "to": (last + timedelta(days=1)).isoformat()})["rows"]  # fmt: skip
    by_day = {datetime.fromisoformat(r["bucket_start"]).astimezone(BANGKOK).date(): r for r in rows}
    assert by_day, "the seeded meter has energy in the table's days"
    for key, cells in table.items():
        r = by_day.get(datetime.fromisoformat(key).date())
        assert cells["energy_kwh"] == _num(None if r is None else r["amount"]), key
        assert cells["kgco2e"] == _num(None if r is None else r["kgco2e"]), key

    link = page.locator('a[href$="/energy.csv?by=day"]')
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename.endswith(".csv")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert [r["bucket_start"] for r in exported] == list(table)
    for r in exported:
        stored = None if r["energy_kwh"] == "" else float(r["energy_kwh"])
        assert _num(stored) == table[r["bucket_start"]]["energy_kwh"]  # the CSV keeps the figure, the page rounds it


# ----------------------------------------------------------------------------------------- environment officer
def _new_open_alert(served_city: BrowserSite, api: httpx.Client) -> int:
    """A fresh open alert like seed_city's, so that this test owns the alert it acknowledges."""
    seeded = _get(api, f"/alerts/{served_city.seeded.open_alert}")
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(served_city.database_url) as conn:
        station = device_pk(conn, served_city.seeded.station)
        new = st.NewAlert(seeded["rule_key"], f"browser/{now.timestamp()}", station, "pm25_ugm3", Severity.WARNING,
                          us(now - timedelta(hours=1)), us(now - timedelta(minutes=30)), 81.0, 50.0, False)  # fmt: skip
        alert_id = st.insert_alert(conn, new)
        conn.commit()
    return alert_id


def test_an_environment_officer_acknowledges_then_closes_an_alert_in_place(
    page: Page, served_city: BrowserSite, api: httpx.Client
) -> None:
    alert_id = _new_open_alert(served_city, api)
    notes = iter(["checked the station", "cleared, station cleaned"])
    page.on("dialog", lambda dialog: dialog.accept(next(notes)))  # hx-prompt asks for a note
    sign_in(page, Role.ENVIRONMENT_OFFICER)
    page.goto("/app/alerts?lang=en")
    page.evaluate("document.querySelector('#active').dataset.before = '1'")  # gone if the page were reloaded
    row = page.locator(f"#alert-{alert_id}")
    assert row.locator('[data-col="state"]').inner_text() == MESSAGES["alerts_state_open"]["en"]

    row.get_by_role("button", name=MESSAGES["alerts_ack_button"]["en"]).click()
    state = row.locator('[data-col="state"]')
    page.wait_for_function(
        f"document.querySelector('#alert-{alert_id} [data-col=state]').innerText.trim() === "
        f"{MESSAGES['alerts_state_acknowledged']['en']!r}"
    )
    assert page.evaluate("document.querySelector('#active').dataset.before") == "1"  # swapped in place
    assert row.get_by_role("button", name=MESSAGES["alerts_ack_button"]["en"]).count() == 0
    assert row.get_by_role("status").inner_text() == MESSAGES["alerts_done_ack"]["en"]
    detail = _get(api, f"/alerts/{alert_id}")
    assert detail["state"] == "acknowledged" and detail["ack_note"] == "checked the station"
    assert detail["acknowledged_by"].startswith(f"Test {Role.ENVIRONMENT_OFFICER.value} <")
    who = row.locator('[data-col="acknowledged"]')
    assert who.inner_text().startswith(detail["acknowledged_by"])
    shown_at = datetime.fromisoformat(who.locator("time").get_attribute("datetime") or "")
    assert shown_at == datetime.fromisoformat(detail["acknowledged_at"])

    row.get_by_role("button", name=MESSAGES["alerts_close_button"]["en"]).click()
    page.wait_for_function(
        f"document.querySelector('#alert-{alert_id} [data-col=state]').innerText.trim() === "
        f"{MESSAGES['alerts_state_closed']['en']!r}"
    )
    assert state.inner_text() == MESSAGES["alerts_state_closed"]["en"]
    assert row.get_by_role("button").count() == 0  # nothing left to do with it
    closed = _get(api, f"/alerts/{alert_id}")
    assert closed["state"] == "closed" and closed["closed_by"] == detail["acknowledged_by"]
    assert closed["acknowledged_by"] == detail["acknowledged_by"]  # the acknowledgement stays on record


def test_the_station_maps_aqi_figures_are_the_apis(page: Page, served_city: BrowserSite, api: httpx.Client) -> None:
    sign_in(page, Role.ENVIRONMENT_OFFICER)
    page.goto("/app/aq?lang=en")
    table = _table(page, "#aq-stations", "station")
    thai = {r["device_id"]: r for r in _get(api, "/aqi/current", index="thai")}
    nowcast = {r["device_id"]: r for r in _get(api, "/aqi/current", index="nowcast")}
    assert served_city.seeded.station in thai and set(thai) <= set(table)
    assert any(r["aqi"] is not None for r in thai.values()), "the seeded station has a current AQI"
    for device, cells in table.items():
        expected_thai = thai[device]["aqi"] if device in thai else None
        expected_us = nowcast[device]["aqi"] if device in nowcast else None
        assert cells["thai_aqi"] == ("–" if expected_thai is None else str(expected_thai)), device
        assert cells["us_aqi"] == ("–" if expected_us is None else str(expected_us)), device
    # the map's marker carries the station's number in the table and, in its title, the same AQI
    marker = page.locator(f'svg a[data-station="{served_city.seeded.station}"]')
    assert (marker.locator("text").text_content() or "").strip() == table[served_city.seeded.station]["no"]
    title = marker.locator("title").text_content() or ""
    station = served_city.seeded.station
    assert f"{MESSAGES['aq_thai_aqi']['en']} {thai[station]['aqi']} (" in title
    assert title.endswith(f"{MESSAGES['aq_us_aqi']['en']} {nowcast[station]['aqi']}")


# ---------------------------------------------------------------------------------------------- carbon officer
def _upload(page: Page, data: bytes, name: str, year: int) -> None:
    form = page.locator('form[hx-post="/app/imports/inventory"]')
    form.locator('input[type="file"]').set_input_files({"name": name, "mimeType": "text/csv", "buffer": data})
    form.locator('input[name="kind"][value="calendar"]').check()
    form.locator('select[name="year"]').select_option(str(year))
    with page.expect_response(lambda r: r.url.endswith("/app/imports/inventory")):
        form.get_by_role("button", name=MESSAGES["imports_upload"]["en"]).click()


def test_a_carbon_officer_sees_a_bad_files_row_errors_then_imports_a_good_one(
    page: Page, served_city: BrowserSite, api: httpx.Client
) -> None:
    year = datetime.now(BANGKOK).year - 3  # a calendar year of its own, before the base year
    years_before = _get(api, "/organisations/lampang/years")
    assert all(y["year_ce"] != year for y in years_before)
    sign_in(page, Role.CARBON_OFFICER)
    page.goto("/app/imports?lang=en")

    _upload(page, BAD_INVENTORY, "bad.csv", year)
    page.locator("#import-errors").wait_for()
    assert page.get_by_role("alert").first.inner_text().startswith(MESSAGES["imports_rejected"]["en"])
    with pytest.raises(InventoryInvalid) as invalid:
        parse_inventory(BAD_INVENTORY)  # the parser's own verdict on the file
    shown = list(_table(page, "#import-errors", "error").values())
    assert [(c["row"], c["column"], c["message"]) for c in shown] == [
        (str(e.row), e.column or MESSAGES["imports_whole_row"]["en"], e.message) for e in invalid.value.errors
    ]
    assert {"4", "5"} <= {c["row"] for c in shown}
    assert _get(api, "/organisations/lampang/years") == years_before  # nothing stored
    newest = _get(api, "/organisations/lampang/imports")[0]
    assert newest["status"] == "rejected" and newest["file_name"] == "bad.csv"

    _upload(page, GOOD_INVENTORY, f"lampang-{year}.csv", year)
    page.locator(".import-applied").wait_for()
    assert page.locator('[data-count="items_inserted"]').inner_text() == str(len(GOOD_INVENTORY.splitlines()) - 1)
    stored = [y for y in _get(api, "/organisations/lampang/years") if y["year_ce"] == year]
    assert [(y["kind"], y["is_base_year"]) for y in stored] == [("calendar", False)]
    imports = _get(api, "/organisations/lampang/imports")
    assert imports[0]["file_name"] == f"lampang-{year}.csv" and imports[0]["status"] != "rejected"
    history = _table(page, "#imports", "import")  # the history came along with the answer, newest first
    assert list(history)[:2] == [str(imports[0]["id"]), str(imports[1]["id"])]


def test_the_comparison_tables_are_the_apis(page: Page, api: httpx.Client) -> None:
    sign_in(page, Role.CARBON_OFFICER)
    page.goto("/app/carbon?lang=en")
    year = int(page.locator("#carbon-year").input_value())
    base = next(y for y in _get(api, "/organisations/lampang/years") if y["is_base_year"])
    period = "fytd" if base["kind"] == "fiscal" else "ytd"
    for by in ("scope", "cfo_category"):
        doc = _get(api, "/organisations/lampang/comparison", period=period,
                   date=comparison_date(year, base["kind"]).isoformat(), by=by)  # fmt: skip
        rows = page.locator(f"#by-{by} tbody tr")
        lines = [*doc["rows"], doc["total"]]
        assert rows.count() == len(lines), by
        for i, expected in enumerate(lines):
            cells = rows.nth(i)
            for col in ("baseline_kgco2e", "actual_kgco2e", "delta_kgco2e", "delta_pct"):
                assert cells.locator(f'[data-col="{col}"]').inner_text().strip() == _num(expected[col]), (by, i, col)
        total = rows.last
        assert total.locator('[data-col="group"]').inner_text().strip() == MESSAGES["carbon_total"]["en"]


def test_a_carbon_officer_sets_a_target_from_the_form_and_sees_it(page: Page, api: httpx.Client) -> None:
    key = f"browser-{datetime.now(UTC):%H%M%S%f}"
    sign_in(page, Role.CARBON_OFFICER)
    page.goto("/app/targets?lang=en")
    page.get_by_label(MESSAGES["targets_key"]["en"], exact=True).fill(key)
    page.get_by_label(MESSAGES["targets_form_target_year"]["en"]).fill("2030")
    page.get_by_label(MESSAGES["targets_reduction_pct"]["en"]).fill("7.5")
    page.get_by_role("button", name=MESSAGES["targets_form_save"]["en"]).click()
    page.wait_for_url(re.compile(r"saved=1"))
    assert page.locator("#saved").is_visible()
    row = page.locator(f'#targets tr[data-target="{key}"]')
    assert row.locator('[data-col="reduction_pct"]').inner_text().strip() == "7.50"
    stored = {t["target_key"]: t for t in _get(api, "/organisations/lampang/targets")}
    assert stored[key]["target_year"] == 2030 and stored[key]["reduction_pct"] == 7.5


# ------------------------------------------------------------------------------------------------------ viewer
def test_a_viewer_has_no_acknowledge_button_and_no_target_form(page: Page, served_city: BrowserSite) -> None:
    sign_in(page, Role.VIEWER)
    page.goto("/app/alerts?lang=en")
    assert page.locator(f"#alert-{served_city.seeded.open_alert}").is_visible()  # the viewer sees the alerts
    assert page.get_by_role("button", name=MESSAGES["alerts_ack_button"]["en"]).count() == 0
    assert page.get_by_role("button", name=MESSAGES["alerts_close_button"]["en"]).count() == 0
    assert page.get_by_text(MESSAGES["alerts_read_only"]["en"]).is_visible()
    page.goto("/app/targets?lang=en")
    assert page.locator("form.target-form").count() == 0
    assert page.get_by_text(MESSAGES["targets_read_only"]["en"]).is_visible()
