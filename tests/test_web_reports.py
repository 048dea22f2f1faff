"""The carbon staff's pages (issue 13, item 3): /app/imports (upload the base-year inventory and activity data, the
per-row errors on the page, nothing stored from a rejected file, the import history) and /app/reports (the CFO and
GPC reports of a chosen year, their figures against GET /organisations/{code}/reports/cfo|gpc, the downloads, the
XLSX against the CSV and the JSON). Real PostgreSQL through the app, logged in with the form as test_web.py does."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from lccm.api.auth import accounts
from lccm.api.principal import Role
from lccm.api.web.i18n import MESSAGES
from lccm.cli_report import report_app
from lccm.runtime import factor_rows
from lccm.store import inventory as inv
from lccm.store.energy import sync_factor_registry
from tests._auth import TEST_ACTOR, TestClient, api_key, bearer
from tests._db import fresh_database
from tests._web import PASSWORD, htmx_write, log_in, served
from tests.test_reports import BASE_CSV

USERS = {  # username: (organisation, role)
    "carla": ("lampang", Role.CARBON_OFFICER),
    "vic": ("lampang", Role.VIEWER),
    "fred": ("lampang", Role.FACILITY_MANAGER),
    "nancy": ("nan", Role.CARBON_OFFICER),
}
# The same file with three mistakes: a month that is no number (row 2), an unknown category (row 3), a scope out
# of range (row 5).
BAD_CSV = (
    BASE_CSV.decode()
    .replace("PEA bills,1000,", "PEA bills,1x00,", 1)
    .replace(",mobile_combustion,", ",mobile_burning,", 1)
    .replace("S3-WASTE,3,", "S3-WASTE,7,", 1)
    .encode()
)
BAD_ACTIVITY = b"item_code,month,quantity,unit,note\r\nS1-LPG,2025-13,12,kg,\r\nS1-LPG,2025-02,lots,kg,\r\n"


@dataclass(frozen=True)
class Web:
    client: TestClient
    url: str


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            inv.put_organisation(conn, inv.OrganisationIn("nan", "Nan Town Municipality", "Nan", "town"))
            sync_factor_registry(conn, *factor_rows())
            change = accounts.Change(TEST_ACTOR, "test")
            for name, (org, role) in USERS.items():
                accounts.add_user(conn, change, username=name, display_name=name, password=PASSWORD,
                                  organisation=org, roles=[role], sites=None)  # fmt: skip
        with served(url) as client:
            yield Web(client, url)


def _log_in(web: Web, username: str) -> TestClient:
    return log_in(web.client, username)


def _upload_inventory(browser: TestClient, data: bytes, name: str, year: int = 2025, kind: str = "fiscal",
                      base_year: bool = True) -> Any:  # fmt: skip
    fields = {"year": str(year), "kind": kind, **({"base_year": "1"} if base_year else {})}
    return browser.post("/app/imports/inventory", data=fields, files={"file": (name, data, "text/csv")},
                        headers=htmx_write(browser))  # fmt: skip


def _cells(html: str, row_attr: str) -> dict[str, dict[str, str]]:
    """Rows marked ``<tr data-<row_attr>="key">``: key -> data-col -> the cell's text."""
    rows: dict[str, dict[str, str]] = {}
    for key, body in re.findall(rf'<tr data-{row_attr}="([^"]+)"[^>]*>(.*?)</tr>', html, flags=re.DOTALL):
        cells = re.findall(r'<t[dh][^>]*data-col="(\w+)"[^>]*>(.*?)</t[dh]>', body, flags=re.DOTALL)
        rows[key] = {col: re.sub(r"<[^>]+>", "", text).strip() for col, text in cells}
    return rows


def _stored_items(url: str) -> int:
    return _count(url, "inventory_items")


def _audit(url: str, action: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT actor_subject, target FROM audit_log WHERE action = %s ORDER BY id", (action,))
        return [(str(a), str(t)) for a, t in rows.fetchall()]


def _t2(value: float) -> str:
    return f"{value:,.2f}"


# ----------------------------------------------------------------------------------------------------- access


def test_anonymous_browsers_go_to_the_login_and_other_roles_get_a_403_page(web: Web) -> None:
    web.client.cookies.clear()
    for page in ("/app/imports", "/app/imports.csv", "/app/reports", "/app/reports/summary.csv"):
        answer = web.client.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/login", page
    assert web.client.post("/app/imports/inventory", content=b"").status_code == 401
    browser = _log_in(web, "fred")  # a facility manager: site energy, not the organisation's inventory
    for page in ("/app/imports", "/app/reports"):
        answer = browser.get(page)
        assert answer.status_code == 403 and answer.headers["content-type"].startswith("text/html")
        assert MESSAGES["error_403_title"]["th"] in answer.text and "carbon_officer" in answer.text
    assert MESSAGES["error_403_title"]["en"] in browser.get("/app/reports?lang=en").text
    answer = browser.post("/app/imports/inventory", files={"file": ("a.csv", BASE_CSV)}, headers=htmx_write(browser))
    assert answer.status_code == 403


def test_a_viewer_sees_the_history_and_templates_but_no_upload_form(web: Web) -> None:
    browser = _log_in(web, "vic")
    page = browser.get("/app/imports")
    assert page.status_code == 200
    assert MESSAGES["imports_no_role"]["th"] in page.text and 'hx-post="/app/imports/inventory"' not in page.text
    template = browser.get("/app/imports/templates/cfo-base-year-template-th.xlsx")
    shipped = resources.files("lccm").joinpath("data", "templates", "cfo-base-year-template-th.xlsx").read_bytes()
    assert template.status_code == 200 and template.content == shipped
    assert browser.get("/app/imports/templates/..%2Fexamples%2Flampang-cfo-2025.csv").status_code == 404
    assert (
        browser.post("/app/imports/activity", files={"file": ("a.csv", b"x")}, headers=htmx_write(browser)).status_code
        == 403
    )


# ---------------------------------------------------------------------------------------------------- imports


def test_a_bad_inventory_file_shows_its_row_errors_and_stores_nothing(web: Web) -> None:
    browser = _log_in(web, "carla")
    form = browser.get("/app/imports")
    assert 'hx-post="/app/imports/inventory"' in form.text and 'hx-encoding="multipart/form-data"' in form.text
    without_token = browser.post("/app/imports/inventory", data={"year": "2025", "kind": "fiscal"},
                                 files={"file": ("bad.csv", BAD_CSV)})  # fmt: skip
    assert without_token.status_code == 403  # a cross-site form cannot send the session's CSRF token
    answer = _upload_inventory(browser, BAD_CSV, "bad.csv")
    assert answer.status_code == 200
    assert MESSAGES["imports_rejected"]["th"] in answer.text
    shown = list(_cells(answer.text, "error").values())
    # The API's own answer to the same file (an independent path: the JSON route, an API key).
    carbon_key = {**bearer(api_key(web.url, Role.CARBON_OFFICER)), "content-type": "text/csv"}
    api = browser.post("/organisations/lampang/inventory/import?year=2025&kind=fiscal", content=BAD_CSV,
                       headers=carbon_key)  # fmt: skip
    assert api.status_code == 422
    expected = api.json()["errors"]
    assert len(shown) == len(expected) >= 3
    for cell, error in zip(shown, expected, strict=True):
        assert cell["row"] == str(error["row"]) and cell["value"] == error["value"]
        assert cell["column"] == (error["column"] or MESSAGES["imports_whole_row"]["th"])
        assert cell["message"] == error["message"].replace("'", "&#39;").replace('"', "&#34;")
    assert {c["row"] for c in shown} >= {"2", "3", "5"}
    assert _stored_items(web.url) == 0
    assert browser.get("/organisations/lampang/years", headers=bearer(api_key(web.url, Role.VIEWER))).json() == []
    history = _cells(answer.text, "import")  # the history came along (out of band), the rejection on top
    first = next(iter(history.values()))
    assert first["status"] == MESSAGES["imports_status_rejected"]["th"] and first["file_name"].startswith("bad.csv")
    assert first["year"] == "ปีงบประมาณ 2568 (FY 2025)" and first["errors_total"] == str(len(expected))
    assert _audit(web.url, "POST /app/imports/inventory") == []  # nothing changed, nothing to audit (as the API)


def test_a_good_inventory_file_is_stored_listed_and_audited(web: Web) -> None:
    browser = _log_in(web, "carla")
    answer = _upload_inventory(browser, BASE_CSV, "lampang-2025.csv")
    assert answer.status_code == 200 and MESSAGES["imports_applied"]["th"] in answer.text
    assert 'data-count="items_inserted">6<' in answer.text
    assert "ปีงบประมาณ 2568 (FY 2025)" in answer.text
    again = _upload_inventory(browser, BASE_CSV, "lampang-2025.csv")
    assert MESSAGES["imports_unchanged"]["th"] in again.text
    key = bearer(api_key(web.url, Role.VIEWER))
    years = browser.get("/organisations/lampang/years", headers=key).json()
    assert [(y["kind"], y["year_ce"], y["is_base_year"]) for y in years] == [("fiscal", 2025, True)]
    assert _stored_items(web.url) == 6
    audited = _audit(web.url, "POST /app/imports/inventory")
    assert audited == [("user:carla", "organisation:lampang/inventory/fiscal/2025")] * 2
    # The page's history is the API's list, newest first; its CSV is the table.
    page = _log_in(web, "vic").get("/app/imports?lang=en")
    table = _cells(page.text, "import")
    api = browser.get("/organisations/lampang/imports", headers=key).json()
    assert list(table) == [str(i["id"]) for i in api]
    assert [r["status"] for r in table.values()] == [i["status"] for i in api]  # English words are the statuses
    assert next(iter(table.values()))["year"] == "FY 2025 (BE 2568)"
    exported = list(csv.DictReader(io.StringIO(browser.get("/app/imports.csv").text.lstrip("\ufeff"))))
    assert [(r["id"], r["status"], r["rows"], r["year_ce"]) for r in exported] == [
        (str(i["id"]), i["status"], str(i["rows"]), str(i["year_ce"])) for i in api
    ]


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_check_only_validates_and_previews_an_inventory_file_storing_and_logging_nothing(web: Web) -> None:
    browser = _log_in(web, "carla")
    assert 'hx-post="/app/imports/inventory/check"' in browser.get("/app/imports").text
    before = (_count(web.url, "inventory_items"), _count(web.url, "inventory_imports"), _count(web.url, "audit_log"))
    good = browser.post("/app/imports/inventory/check", data={"year": "2030", "kind": "calendar"},
                        files={"file": ("x.csv", BASE_CSV, "text/csv")}, headers=htmx_write(browser))  # fmt: skip
    assert good.status_code == 200 and MESSAGES["imports_check_passed"]["th"] in good.text
    preview = _cells(good.text, "preview")
    assert list(preview) == ["S2-ELEC", "S1-DIESEL", "S1-LPG", "S3-WASTE", "S3-PAPER", "RM-TREES"]
    assert preview["S1-DIESEL"]["kgco2e"] == _t2(12 * 100 * 2.7406) and preview["S1-DIESEL"]["quantity"] == "1,200.00 L"
    assert preview["RM-TREES"]["kgco2e"] == _t2(-900.0)
    bad = browser.post("/app/imports/inventory/check", files={"file": ("bad.csv", BAD_CSV, "text/csv")},
                       headers=htmx_write(browser))  # fmt: skip
    assert MESSAGES["imports_check_failed"]["th"] in bad.text and len(_cells(bad.text, "error")) == 3
    after = (_count(web.url, "inventory_items"), _count(web.url, "inventory_imports"), _count(web.url, "audit_log"))
    assert after == before
    assert _log_in(web, "vic").post("/app/imports/inventory/check", files={"file": ("x.csv", BASE_CSV)},
                                    headers=htmx_write(web.client)).status_code == 403  # fmt: skip


def test_activity_files_good_and_bad(web: Web) -> None:
    browser = _log_in(web, "carla")
    bad = browser.post("/app/imports/activity", files={"file": ("act.csv", BAD_ACTIVITY, "text/csv")},
                       headers=htmx_write(browser))  # fmt: skip
    rows = list(_cells(bad.text, "error").values())
    assert MESSAGES["imports_rejected"]["th"] in bad.text
    assert [(r["row"], r["column"]) for r in rows] == [("2", "month"), ("3", "quantity")]
    good = (
        b"item_code,month,quantity,unit,note\r\nS1-LPG,2025-02,10,kg,cylinders (as the inventory: the totals stay)\r\n"
    )
    answer = browser.post("/app/imports/activity", files={"file": ("act.csv", good, "text/csv")},
                          headers=htmx_write(browser))  # fmt: skip
    assert MESSAGES["imports_applied"]["th"] in answer.text and 'data-count="entries">1<' in answer.text
    assert _audit(web.url, "POST /app/imports/activity") == [("user:carla", "organisation:lampang/activity")]
    empty = browser.post(
        "/app/imports/activity", files={"file": ("act.csv", b"", "text/csv")}, headers=htmx_write(browser)
    )
    assert MESSAGES["imports_no_file"]["th"] in empty.text


# ---------------------------------------------------------------------------------------------------- reports


def _api_report(web: Web, kind: str, fmt: str = "json") -> Any:
    key = bearer(api_key(web.url, Role.VIEWER))
    answer = web.client.get(f"/organisations/lampang/reports/{kind}?year=2025&kind=fiscal&format={fmt}", headers=key)
    assert answer.status_code == 200
    return answer.json() if fmt == "json" else answer


@pytest.mark.usefixtures("stored")
def test_the_cfo_page_shows_the_apis_figures_in_thai_then_english(web: Web) -> None:
    browser = _log_in(web, "vic")
    page = browser.get("/app/reports")  # no year asked: the base year
    assert page.status_code == 200 and MESSAGES["reports_title"]["th"] in page.text
    assert "ปีงบประมาณ 2568 (FY 2025)" in page.text
    table = _cells(page.text, "line")
    report = _api_report(web, "cfo")
    expected = {"gross_total": report["gross"], "net_total": report["net"], "removals_total": report["removals_totals"],
                "metered_total": report["metered"], "manual_total": report["manual"]}  # fmt: skip
    for scope in report["scopes"]:
        expected[f"scope_total-{scope['scope']}"] = scope["totals"]
        for category in scope["categories"]:
            expected[f"category_total-{scope['scope']}-{category['code']}"] = category["totals"]
    assert set(table) == set(expected)
    for line, totals in expected.items():
        assert table[line]["tco2e"] == _t2(totals["tco2e"]), line
    # Independent of the API: the hand-computed gross of tests/test_reports.py without the metered January.
    assert table["gross_total"]["tco2e"] == _t2((12 * 1000 * 0.4999 + 3288.72 + 342.474 + 17760 + 10) / 1000)
    assert table["metered_total"]["share"] == "0.0 %"
    english = browser.get("/app/reports?lang=en")
    assert MESSAGES["reports_title"]["en"] in english.text and MESSAGES["reports_title"]["th"] not in english.text
    assert "FY 2025 (BE 2568)" in english.text
    assert _cells(english.text, "line")["gross_total"]["label"] == MESSAGES["reports_gross"]["en"]
    # The summary's CSV is the table, with the figures as stored.
    summary = browser.get("/app/reports/summary.csv?report=cfo&year=fiscal-2025")
    rows = list(csv.DictReader(io.StringIO(summary.text.lstrip("\ufeff"))))
    assert len(rows) == len(table)
    for row in rows:
        line = "-".join(p for p in (row["row_type"], row["scope"], row["code"]) if p)
        assert _t2(float(row["tco2e"])) == table[line]["tco2e"]
        assert float(row["tco2e"]) == expected[line]["tco2e"]


@pytest.mark.usefixtures("stored")
def test_the_gpc_page_shows_the_apis_figures(web: Web) -> None:
    browser = _log_in(web, "carla")
    page = browser.get("/app/reports?report=gpc&year=fiscal-2025&lang=en")
    assert page.status_code == 200
    table = _cells(page.text, "line")
    report = _api_report(web, "gpc")
    for row in report["rows"]:
        cells = table[f"gpc-{row['gpc_ref']}"]
        assert [cells[f"scope{s}_tco2e"] for s in (1, 2, 3)] == [_t2(row["scope_tco2e"][str(s)]) for s in (1, 2, 3)]
        assert cells["tco2e"] == _t2(row["tco2e"]) and cells["basic_tco2e"] == _t2(row["basic_tco2e"])
    assert table["basic_total"]["tco2e"] == _t2(report["basic_tco2e"])
    assert table["basic_plus_total"]["tco2e"] == _t2(report["basic_plus_tco2e"])
    assert table["mapped_total"]["tco2e"] == _t2(report["total_tco2e"])
    assert table["unmapped_total"]["tco2e"] == _t2(report["unmapped_tco2e"])
    for fmt in ("xlsx", "csv", "html", "json"):  # the downloads are the API's report routes, for this session
        link = re.search(rf'<a href="([^"]+)" data-format="{fmt}"', page.text)
        assert link is not None
        answer = browser.get(link.group(1).replace("&amp;", "&"))
        assert answer.status_code == 200
        if fmt == "json":
            assert answer.json() == report
        elif fmt != "xlsx":  # a workbook carries the time it was written; its lines are compared below
            assert answer.content == _api_report(web, "gpc", fmt).content
    assert '<iframe class="report-frame" src="/organisations/lampang/reports/gpc?year=2025' in page.text


def _xlsx_lines(data: bytes) -> list[list[str | float]]:
    """The first sheet's rows: figures as numbers (a spreadsheet has no int/float: 110.0 reads back as 110), text as
    text, blanks as ""."""
    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    return [["" if v is None else float(v) if isinstance(v, int | float) else str(v) for v in row]
            for row in sheet.iter_rows(values_only=True)]  # fmt: skip


def _csv_lines(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8").lstrip("\ufeff"))))


def _same_lines(xlsx: list[list[str | float]], csv_lines: list[list[str]]) -> None:
    """Every line, cell for cell: a figure equal to the CSV's (its shortest repr read back), text identical."""
    assert len(xlsx) == len(csv_lines)
    for number, (got, want) in enumerate(zip(xlsx, csv_lines, strict=True), start=1):
        assert len(got) == len(want), number
        for cell, text in zip(got, want, strict=True):
            assert cell == (float(text) if isinstance(cell, float) else text), (number, cell, text)


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize("kind", ["cfo", "gpc"])
def test_the_xlsx_has_the_csvs_lines_and_the_jsons_totals(web: Web, kind: str) -> None:
    xlsx = _api_report(web, kind, "xlsx")
    assert xlsx.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    assert xlsx.headers["content-disposition"] == f'attachment; filename="{kind}-lampang-fiscal-2025.xlsx"'
    lines = _xlsx_lines(xlsx.content)
    _same_lines(lines, _csv_lines(_api_report(web, kind, "csv").content))
    report = _api_report(web, kind)
    header = [str(h) for h in lines[0]]
    by_type = {row[0]: dict(zip(header, row, strict=True)) for row in lines[1:]}
    if kind == "cfo":
        for row_type, field in (("gross_total", "gross"), ("net_total", "net"), ("removals_total", "removals_totals")):
            assert float(by_type[row_type]["tco2e"]) == report[field]["tco2e"]
            assert float(by_type[row_type]["kgco2e"]) == report[field]["kgco2e"]
        items = [i for s in report["scopes"] for c in s["categories"] for i in c["items"]]
        rows = {r[header.index("item_code")]: r for r in lines[1:] if r[0] == "item"}
        assert set(rows) == {i["item_code"] for i in items} | {i["item_code"] for i in report["removals"]}
        for item in items:
            assert float(rows[item["item_code"]][header.index("tco2e")]) == item["tco2e"]
    else:
        assert float(by_type["basic_total"]["tco2e"]) == report["basic_tco2e"]
        assert float(by_type["mapped_total"]["tco2e"]) == report["total_tco2e"]
        subsectors = {r[header.index("gpc_ref")]: r for r in lines[1:] if r[0] == "subsector"}
        assert list(subsectors) == [r["gpc_ref"] for r in report["rows"]]
        for row in report["rows"]:
            assert float(subsectors[row["gpc_ref"]][header.index("tco2e")]) == row["tco2e"]
    about = dict(load_workbook(io.BytesIO(xlsx.content), read_only=True)["about"].iter_rows(values_only=True))
    assert about["year_be"] == "2568" and about["year_ce"] == "2025" and about["organisation"] == "lampang"
    # The CLI writes the same lines (lccm report ... --format xlsx).
    cli = CliRunner().invoke(report_app, [kind, "--org", "lampang", "--year", "2025", "--fiscal", "--format", "xlsx",
                                          "--database-url", web.url])  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert _xlsx_lines(cli.stdout_bytes) == lines


def test_a_formula_like_name_stays_text_in_the_xlsx() -> None:
    from lccm.reports.render import Table, _xlsx

    data = _xlsx(Table(["a", "b"], [["=1+1", 2.5], ["x\x01y", None]]), "T", [("k", "v")])
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    assert sheet["A2"].value == "=1+1" and sheet["A2"].data_type == "s" and sheet["B2"].value == 2.5
    assert sheet["A3"].value == "xy" and sheet["B3"].value is None


@pytest.mark.usefixtures("stored")
def test_another_organisations_year_is_a_404_page_and_its_report_a_404(web: Web) -> None:
    browser = _log_in(web, "nancy")
    none_yet = browser.get("/app/reports")
    assert none_yet.status_code == 200 and MESSAGES["reports_no_years"]["th"] in none_yet.text
    assert "ปีงบประมาณ 2568" not in none_yet.text
    nan_csv = BASE_CSV.replace(b"S2-ELEC,", b"N2-ELEC,")
    assert MESSAGES["imports_applied"]["th"] in _upload_inventory(browser, nan_csv, "nan.csv", 2024, "calendar").text
    own = browser.get("/app/reports")
    assert own.status_code == 200 and "ปี พ.ศ. 2567 (ค.ศ. 2024)" in own.text
    assert browser.get("/app/reports?year=fiscal-2025").status_code == 404  # lampang's year
    assert browser.get("/organisations/lampang/reports/cfo?year=2025&kind=fiscal&format=xlsx").status_code == 404
    history = _cells(browser.get("/app/imports").text, "import")
    assert [r["file_name"].split()[0] for r in history.values()] == ["nan.csv"]


@pytest.fixture
def stored(web: Web) -> None:
    """Lampang's fiscal 2025 inventory, whichever test runs first (the upload test stores the same file)."""
    with psycopg.connect(web.url) as conn:
        if inv.find_year(conn, inv.require_organisation(conn, "lampang").id, 2025, "fiscal") is None:
            inv.import_inventory_file(conn, BASE_CSV, file_name="seed.csv", organisation="lampang", year_ce=2025,
                                      kind="fiscal", base_year=True)  # fmt: skip
