"""The CFO report and the GPC table: totals per scope, category and GPC cell against hand-computed figures, metered
months and completeness from real energy_buckets rows, fiscal month order, CSV = JSON = HTML, CLI bytes = API bytes,
and clear errors for an unknown organisation or year. Real PostgreSQL (tests/_db.py), no mocks."""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

from lccm.api.app import create_app
from lccm.cli_report import report_app
from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import parse_registry_csv
from lccm.reports.annual import CfoReport, build_cfo_report, build_gpc_report
from lccm.reports.render import cfo_csv, cfo_html, gpc_csv, gpc_html, render, to_json
from lccm.runtime import factor_rows
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import UnknownOrganisation, UnknownReportingYear, import_inventory_file
from lccm.store.inventory_mapping import set_mappings
from tests._db import device_pk, fresh_database
from tests._principal import as_caller
from tests.test_inventory_mapping import REGISTRY

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # as tests/test_api.py
    from starlette.testclient import TestClient


def _months(values: list[object]) -> str:
    return ",".join("" if v is None else str(v) for v in values)


# Calendar 2025, English headers (docs/inventory-template.md); month columns Jan..Dec.
BASE_CSV = "\r\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    "S2-ELEC,2,purchased_electricity,Building electricity,ไฟฟ้าอาคาร,kWh,0.4999,kgCO2e/kWh,TGO CFO 2022,AR5,,I.2.2,"
    "metered,building_electricity,PEA bills," + _months([1000] * 12),
    "S1-DIESEL,1,mobile_combustion,Fleet diesel,น้ำมันดีเซล,L,2.7406,kgCO2e/L,TGO CFO 2022,AR5,,II.1.1,manual,,,"
    + _months([100] * 12),
    "S1-LPG,1,stationary_combustion,LPG kitchens,<b>ก๊าซหุงต้ม</b>,kg,3.1134,kgCO2e/kg,TGO CFO 2022,AR5,,I.2.1,manual,,,"
    + _months([10] * 11 + [None]),
    "S3-WASTE,3,waste_landfill,Waste to landfill,ขยะ,t,740,kgCO2e/t,UNCONFIRMED test factor,AR5,,III.1.2,manual,,,"
    + _months([2] * 12),
    "S3-PAPER,3,other_indirect,Office paper,กระดาษ,kg,2,kgCO2e/kg,UNCONFIRMED test factor,AR5,,,manual,,,"
    + _months([5] + [None] * 11),
    "RM-TREES,1,removal,Trees in pocket parks,ต้นไม้,tree,0.75,kgCO2e/tree,UNCONFIRMED,AR5,,V.2,manual,,,"
    + _months([100] * 12),
]).encode() + b"\r\n"  # fmt: skip
JAN_METERED_KWH = 1200.0  # HALL-M1's January bucket replaces the billed 1,000 kWh of January
JAN_COVERED_S = 31 * 86400.0

# Hand-computed (quantity x factor):
ELEC_KG = 11 * 1000 * 0.4999 + 1200 * 0.4999  # 5,498.9 + 599.88 = 6,098.78
DIESEL_KG = 12 * 100 * 2.7406  # 1,200 L x 2.7406 = 3,288.72
LPG_KG = 11 * 10 * 3.1134  # 110 kg x 3.1134 = 342.474 (December blank)
WASTE_KG = 12 * 2 * 740.0  # 24 t x 740 = 17,760
PAPER_KG = 5 * 2.0  # 10
TREES_KG = -12 * 100 * 0.75  # -900
SCOPE_KG = {1: DIESEL_KG + LPG_KG, 2: ELEC_KG, 3: WASTE_KG + PAPER_KG}  # 3,631.194; 6,098.78; 17,770
GROSS_KG = 3631.194 + 6098.78 + 17770  # 27,499.974
METERED_KG = 1200 * 0.4999  # 599.88: the one metered month


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            sync_factor_registry(conn, *factor_rows())
            import_registry(conn, parse_registry_csv(REGISTRY))
            import_inventory_file(conn, BASE_CSV, file_name="base.csv", organisation="lampang", year_ce=2025)
            set_mappings(conn, "lampang", 2025, "calendar", [("HALL-M1", "S2-ELEC"), ("HALL-M2", "S2-ELEC")])
            conn.execute(
                "INSERT INTO energy_buckets (resolution, device_id, metric_id, bucket_start, amount, amount_estimated,"
                " covered_s, quality, intervals, kgco2e, kgco2e_base)"
                " VALUES ('1mo', %s, 1, '2025-01-01 00:00+07', %s, 0, %s, 0, 1, 599.88, 599.88)",
                (device_pk(conn, "HALL-M1"), JAN_METERED_KWH, JAN_COVERED_S),
            )
            fiscal = "\r\n".join([
                ",".join(TEMPLATE_HEADER_EN),  # Jan = 1 kWh, Oct = 10 kWh, the rest 0
                "S2-ELEC,2,purchased_electricity,Electricity,,kWh,0.5,kgCO2e/kWh,TGO,AR5,,I.2.2,manual,,,"
                + _months([1, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0]),
            ]).encode()  # fmt: skip
            import_inventory_file(conn, fiscal, file_name="fy.csv", organisation="lampang", year_ce=2025,
                                  kind="fiscal")  # fmt: skip
            conn.commit()
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        yield c


@pytest.fixture(scope="module")
def api(db_url: str) -> Iterator[TestClient]:
    with (
        ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=db_url), pool))) as c,
    ):
        yield c


def _items(report: CfoReport) -> dict[str, Any]:
    out = {i.item_code: i for s in report.scopes for c in s.categories for i in c.items}
    return out | {i.item_code: i for i in report.removals}


def test_cfo_totals_per_scope_and_category_are_quantity_times_factor(conn: psycopg.Connection) -> None:
    r = build_cfo_report(conn, "lampang", 2025, "calendar")
    assert (r.organisation.name_th, r.year.year_be, r.year.months[0]) == ("เทศบาลนครลำปาง", 2568, "2025-01")
    for s in r.scopes:
        assert s.totals.kgco2e == pytest.approx(SCOPE_KG[s.scope]), s.scope
        assert s.totals.tco2e == pytest.approx(SCOPE_KG[s.scope] / 1000)
    categories = {(s.scope, c.code): c.totals.kgco2e for s in r.scopes for c in s.categories}
    assert categories == pytest.approx({(1, "stationary_combustion"): LPG_KG, (1, "mobile_combustion"): DIESEL_KG,
                                        (2, "purchased_electricity"): ELEC_KG, (3, "waste_landfill"): WASTE_KG,
                                        (3, "other_indirect"): PAPER_KG})  # fmt: skip
    assert [c.code for c in r.scopes[0].categories] == ["stationary_combustion", "mobile_combustion"]  # TGO order
    assert r.gross.kgco2e == pytest.approx(GROSS_KG)
    assert r.removals_totals.kgco2e == pytest.approx(TREES_KG)
    assert r.net.kgco2e == pytest.approx(27499.974 - 900)  # 26,599.974
    # Metered share: January of S2-ELEC alone came from meters: 599.88 / 27,499.974.
    assert r.metered.kgco2e == pytest.approx(METERED_KG)
    assert r.manual.kgco2e == pytest.approx(GROSS_KG - METERED_KG)  # 26,900.094
    assert r.metered_share == pytest.approx(599.88 / 27499.974)
    items = _items(r)
    elec = items["S2-ELEC"]
    assert elec.monthly_quantity[:2] == [1200.0, 1000.0]
    assert elec.monthly_source[:2] == ["metered", "entered"]
    assert elec.monthly_kgco2e[0] == pytest.approx(599.88)
    # Completeness: one January bucket (31 d) of two mapped meters over a 365-day year: 31 / (365 x 2) = 31 / 730.
    assert elec.completeness == pytest.approx(31 / 730)
    assert elec.devices == ["HALL-M1", "HALL-M2"]
    assert items["S1-DIESEL"].completeness is None  # manual
    assert items["S1-LPG"].monthly_kgco2e[11] is None and items["S1-LPG"].months_reported == 11
    assert (elec.ef_kgco2e_per_unit, elec.ef_source, elec.gwp_set) == (0.4999, "TGO CFO 2022", "AR5")
    assert (r.months_reported, r.months_expected) == (12 + 12 + 11 + 12 + 1 + 12, 6 * 12)


def test_gpc_table_cells_basic_total_and_unmapped(conn: psycopg.Connection) -> None:
    g = build_gpc_report(conn, "lampang", 2025, "calendar")
    rows = {r.gpc_ref: r for r in g.rows}
    assert rows["I.2"].scope_kgco2e == pytest.approx({1: LPG_KG, 2: ELEC_KG, 3: 0.0})
    assert rows["II.1"].scope_kgco2e == pytest.approx({1: DIESEL_KG, 2: 0.0, 3: 0.0})
    # III.1.2: waste treated outside the city boundary, GPC scope 3 (not "scope 2", the third number is no scope in
    # waste) and in BASIC.
    assert rows["III.1"].scope_kgco2e == pytest.approx({1: 0.0, 2: 0.0, 3: WASTE_KG})
    assert rows["III.1"].basic_kgco2e == pytest.approx(WASTE_KG) and rows["III.1"].item_refs == ["III.1.2"]
    assert rows["V.2"].scope_kgco2e[1] == pytest.approx(TREES_KG) and not rows["V.2"].in_basic
    assert rows["I.1"].kgco2e == 0.0 and rows["III.4"].in_basic  # every BASIC sub-sector is listed
    assert [r.gpc_ref for r in g.rows][:3] == ["I.1", "I.2", "I.3"] and g.rows[-1].gpc_ref == "V.2"
    # BASIC: 342.474 + 6,098.78 + 3,288.72 + 17,760 = 27,489.974; mapped adds the trees: 26,589.974.
    assert g.basic_kgco2e == pytest.approx(27489.974)
    assert g.total_kgco2e == pytest.approx(26589.974)
    assert [(u.item_code, u.kgco2e, u.reason) for u in g.unmapped] == [
        ("S3-PAPER", pytest.approx(PAPER_KG), "no GPC reference")
    ]


def test_fiscal_year_runs_october_to_september(conn: psycopg.Connection) -> None:
    r = build_cfo_report(conn, "lampang", 2025, "fiscal")
    assert r.year.months == ["2024-10", "2024-11", "2024-12", *(f"2025-{m:02d}" for m in range(1, 10))]
    assert r.year.label == "FY2025 (ปีงบประมาณ พ.ศ. 2568)"
    elec = _items(r)["S2-ELEC"]
    # October (10 kWh x 0.5 = 5 kg) is the first column, January (1 kWh x 0.5 = 0.5 kg) the fourth.
    assert elec.monthly_kgco2e[:4] == [5.0, 0.0, 0.0, 0.5]
    assert b"kgco2e_2024-10,kgco2e_2024-11" in cfo_csv(r)
    assert "ต.ค. 2567" in cfo_html(r).decode()


class _Cells(HTMLParser):
    """tr data-row -> the text of its td cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._row = dict(attrs).get("data-row")
            if self._row:
                self.rows[self._row] = []
        elif tag == "td" and self._row:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row and self._cell is not None:
            self.rows[self._row].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _html_cells(data: bytes) -> dict[str, list[str]]:
    parser = _Cells()
    parser.feed(data.decode())
    return parser.rows


def test_csv_json_and_html_carry_the_same_numbers(conn: psycopg.Connection) -> None:
    r = build_cfo_report(conn, "lampang", 2025, "calendar")
    doc = json.loads(to_json(r))
    text = cfo_csv(r).decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    html = _html_cells(cfo_html(r))
    json_items = {i["item_code"]: i for s in doc["scopes"] for c in s["categories"] for i in c["items"]}
    json_items |= {i["item_code"]: i for i in doc["removals"]}
    csv_items = {row["item_code"]: row for row in rows if row["row_type"] == "item"}
    assert set(csv_items) == set(json_items) == {"S2-ELEC", "S1-DIESEL", "S1-LPG", "S3-WASTE", "S3-PAPER", "RM-TREES"}
    for code, item in json_items.items():
        row, cells = csv_items[code], html[f"item-{code}"]
        month_cells = cells[7:19]
        for month, kg, cell in zip(doc["year"]["months"], item["monthly_kgco2e"], month_cells, strict=True):
            assert row[f"kgco2e_{month}"] == ("" if kg is None else repr(kg))
            assert cell == ("" if kg is None else f"{kg / 1000:,.2f}")
        assert float(row["kgco2e"]) == item["kgco2e"] and float(row["tco2e"]) == item["tco2e"]
        assert cells[-1] == f"{item['tco2e']:,.2f}"
    totals = {row["row_type"] + row["scope"]: row for row in rows if row["row_type"] != "item"}
    for s in doc["scopes"]:
        assert float(totals[f"scope_total{s['scope']}"]["tco2e"]) == s["totals"]["tco2e"]
        assert html[f"scope-{s['scope']}"][-1] == f"{s['totals']['tco2e']:,.2f}"
    assert float(totals["net_total"]["kgco2e"]) == doc["net"]["kgco2e"] == pytest.approx(26599.974)
    assert html["net"][-1] == "26.60"  # 26,599.974 kg = 26.60 t
    assert html["scope-3"][-1] == "17.77" and html["gross"][-1] == "27.50"
    assert float(totals["metered_total"]["share"]) == doc["metered_share"]
    # Thai text from the file is escaped, never markup.
    assert "&lt;b&gt;ก๊าซหุงต้ม&lt;/b&gt;" in cfo_html(r).decode()


def test_gpc_formats_agree(conn: psycopg.Connection) -> None:
    g = build_gpc_report(conn, "lampang", 2025, "calendar")
    doc = json.loads(to_json(g))
    rows = list(csv.DictReader(io.StringIO(gpc_csv(g).decode("utf-8").lstrip("\ufeff"))))
    html = _html_cells(gpc_html(g))
    by_ref = {row["gpc_ref"]: row for row in rows if row["row_type"] == "subsector"}
    for r in doc["rows"]:
        for s in ("1", "2", "3"):
            assert float(by_ref[r["gpc_ref"]][f"scope{s}_tco2e"]) == r["scope_tco2e"][s]
        assert html[f"gpc-{r['gpc_ref']}"][3:7] == [f"{r['scope_tco2e'][s]:,.2f}" for s in "123"] + [
            f"{r['tco2e']:,.2f}"
        ]
    basic = next(row for row in rows if row["row_type"] == "basic_total")
    assert float(basic["tco2e"]) == doc["basic_tco2e"] and html["basic"][1] == "27.49"
    assert [row["item_codes"] for row in rows if row["row_type"] == "unmapped"] == ["S3-PAPER"]
    assert "unmapped-S3-PAPER" in html


@pytest.mark.parametrize("report", ["cfo", "gpc"])
@pytest.mark.parametrize("fmt", ["csv", "json", "html"])
def test_cli_and_api_give_the_same_bytes(api: TestClient, db_url: str, tmp_path: Path, report: str, fmt: str) -> None:
    out = tmp_path / f"r.{fmt}"
    args = [report, "--org", "lampang", "--year", "2025", "--fiscal", "--format", fmt, "--out", str(out)]
    result = CliRunner().invoke(report_app, [*args, "--database-url", db_url])
    assert result.exit_code == 0, result.output
    resp = api.get(f"/organisations/lampang/reports/{report}",
                   params={"year": 2025, "kind": "fiscal", "format": fmt})  # fmt: skip
    assert resp.status_code == 200
    assert resp.content == out.read_bytes()
    expected_type = {"csv": "text/csv", "json": "application/json", "html": "text/html"}[fmt]
    assert resp.headers["content-type"].startswith(expected_type)
    if fmt == "csv":
        assert resp.headers["content-disposition"] == f'attachment; filename="{report}-lampang-fiscal-2025.csv"'


def test_unknown_organisation_or_year_is_a_clear_error(api: TestClient, db_url: str,
                                                       conn: psycopg.Connection) -> None:  # fmt: skip
    with pytest.raises(UnknownOrganisation, match="no organisation 'nowhere'; known: lampang"):
        build_cfo_report(conn, "nowhere", 2025)
    with pytest.raises(UnknownReportingYear, match="no calendar 2019 inventory"):
        build_gpc_report(conn, "lampang", 2019, "calendar")
    resp = api.get("/organisations/nowhere/reports/cfo", params={"year": 2025, "format": "csv"})
    assert resp.status_code == 404 and resp.json()["error"] == "organisation_not_found"
    resp = api.get("/organisations/lampang/reports/gpc", params={"year": 2019})
    assert resp.status_code == 404 and "no calendar or fiscal 2019 inventory" in resp.json()["detail"]
    assert api.get("/organisations/lampang/reports/cfo", params={"year": 2025, "format": "pdf"}).status_code == 422
    result = CliRunner().invoke(report_app, ["cfo", "--org", "lampang", "--year", "2019", "--database-url", db_url])
    assert result.exit_code == 2 and "no calendar or fiscal 2019 inventory" in result.output
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        render(build_cfo_report(conn, "lampang", 2025, "calendar"), "pdf")
