"""Texts for people: what the API and the reports print carries no placeholder and no internal reference (file
paths, issue numbers, section tags, TODO), every factor names a public source, an unverified factor says so and who
must confirm it, the metered and entered labels agree with the totals, a small removal never reads -0.00, and a %
change against a negative (removal) baseline has the sign of the change in net emissions."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np
import psycopg
import pytest

from lccm.api.app import create_app
from lccm.engine.factors import TGO_FACTORS
from lccm.engine.inventory import compare
from lccm.imports.inventory import TEMPLATE_HEADER_EN, parse_inventory
from lccm.reports.annual import build_cfo_report, build_gpc_report
from lccm.reports.render import render
from lccm.runtime import factor_rows
from lccm.settings import Settings
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file
from tests._db import fresh_database

# A path of the repository (engine/factors.py, a section of docs/reference.md), an issue number of the tracker, a work
# marker, a placeholder, or the bracketed section tag of a private source list.
INTERNAL = re.compile(
    r"\b[\w/]+\.(?:py|md|sql|j2)\b|\bdocs/|\bissue \d|\bTODO\b|\bFIXME\b|placeholder|UNCONFIRMED|\[" + r"S\d",
    re.IGNORECASE,
)
EXAMPLE = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv")
NOT_VERIFIED = "Not verified - to be confirmed by the municipality's CFO verifier. Value: "


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_the_internal_reference_pattern() -> None:
    for text in ("see engine/factors.py", "docs/reference.md#fuel-factors", "issue 11", "TODO: later",
                 "UNCONFIRMED placeholder, no public source", "(store/kpi.py)", "[" + "S2.1]"):  # fmt: skip
        assert INTERNAL.search(text), text
    for text in ("TGO CFO emission factors, update of April 2022", "IPCC AR5 GWP100 of HFC-32", "I.2.2", "SO2 [µg/m3]",
                 "kgCO2e/kWh", "Not verified - to be confirmed", "FY2025 (ปีงบประมาณ พ.ศ. 2568)"):  # fmt: skip
        assert not INTERNAL.search(text), text


def test_the_openapi_document_has_no_internal_reference() -> None:
    doc = create_app(Settings(database_url="postgresql://127.0.0.1:1/none")).openapi()
    found = sorted({s for s in _strings(doc) if INTERNAL.search(s)})
    assert not found


def test_every_registry_factor_names_its_public_source_only() -> None:
    for f in TGO_FACTORS:
        assert f.source.startswith("TGO") and not INTERNAL.search(f.source), f.source


def test_the_example_names_a_public_source_for_every_factor_and_says_which_are_not_verified() -> None:
    rows = {r.item_code: r for r in parse_inventory(EXAMPLE.read_bytes()).rows}
    unverified = {code for code, r in rows.items() if r.ef_source.startswith("ยังไม่ทวนสอบ / " + NOT_VERIFIED)}
    assert unverified == {"S3-WASTE-LANDFILL", "S3-WATER", "S3-PAPER", "RM-TREES-PARKS"}
    for code, r in rows.items():
        assert not INTERNAL.search(r.ef_source), code
        if code in unverified:  # the value's public source follows "Value: "
            assert len(r.ef_source.split("Value: ", 1)[1]) > 40, code
        else:
            assert r.ef_source.startswith(("TGO CFO emission factors, April 2022", "IPCC AR5 GWP100")), code
    # Landfill: DOC 0.15 x DOCf 0.5 x MCF 0.6 x F 0.5 x 16/12 = 0.03 t CH4 per t, x 28 = 840 kgCO2e/t.
    assert rows["S3-WASTE-LANDFILL"].ef_kgco2e_per_unit == pytest.approx(0.15 * 0.5 * 0.6 * 0.5 * 16 / 12 * 28 * 1000)
    # Paper: 0.7948 kgCO2e = 76 sheets, so a ream of 500 = 5.23 kgCO2e.
    assert rows["S3-PAPER"].ef_kgco2e_per_unit == round(0.7948 / 76 * 500, 2)
    assert rows["RM-TREES-PARKS"].ef_kgco2e_per_unit == 9 / 12  # 9 kgCO2 per tree and year
    # The waste row states where the waste is treated: outside the city boundary, GPC III.1.2.
    waste = rows["S3-WASTE-LANDFILL"]
    assert waste.gpc_ref == "III.1.2" and "outside the city boundary" in (waste.note or "")


# A year whose one removal is 1 tree in one month: -0.75 kgCO2e = -0.00075 tCO2e, 0.00 in the HTML.
TINY_REMOVAL = "\r\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    "S2-ELEC,2,purchased_electricity,Electricity,,kWh,0.4999,kgCO2e/kWh,TGO CFO emission factors,AR5,,I.2.2,"
    "metered,building_electricity,," + ",".join(["1000"] * 12),
    "RM-TREE,1,removal,One tree,,tree,0.75,kgCO2e/tree,TGO,AR5,,V.2,manual,,," + ",".join(["1"] + [""] * 11),
]).encode()  # fmt: skip


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    with fresh_database() as url, psycopg.connect(url) as c:
        sync_factor_registry(c, *factor_rows())
        import_inventory_file(c, EXAMPLE.read_bytes(), file_name=EXAMPLE.name, organisation="lampang", year_ce=2025)
        import_inventory_file(c, TINY_REMOVAL, file_name="tiny.csv", organisation="lampang", year_ce=2025,
                              kind="fiscal")  # fmt: skip
        c.commit()
        yield c


@pytest.mark.parametrize("kind", ["calendar", "fiscal"])
@pytest.mark.parametrize("fmt", ["csv", "json", "html"])
def test_reports_have_no_internal_reference(conn: psycopg.Connection, kind: str, fmt: str) -> None:
    for build in (build_cfo_report, build_gpc_report):
        text = render(build(conn, "lampang", 2025, kind), fmt).decode("utf-8")  # type: ignore[arg-type]
        assert not INTERNAL.search(text), INTERNAL.findall(text)


def test_metered_labels_agree_with_the_totals(conn: psycopg.Connection) -> None:
    """The example's metered items with no meter data: their months were entered, and the report says so."""
    report = build_cfo_report(conn, "lampang", 2025, "calendar")
    html = render(report, "html").decode()
    assert report.metered_share == 0.0 and report.manual_share == 1.0
    assert "จากมิเตอร์ / From meters (0.0 %)" in html and "จากข้อมูลที่บันทึก / Entered (100.0 %)" in html
    for code in ("S2-ELEC-BLDG", "S2-ELEC-STREET", "S1-GEN-DIESEL", "S1-FLEET-DIESEL"):
        row = html.split(f'data-row="item-{code}"', 1)[1].split("</tr>", 1)[0]
        assert "<td>มิเตอร์ 0/12 เดือน / meters: 0 of 12 months</td>" in row, code
    assert "/ metered</td>" not in html
    rows = list(csv.DictReader(io.StringIO(render(report, "csv").decode().lstrip("\ufeff"))))
    items = {r["item_code"]: r for r in rows if r["row_type"] == "item"}
    assert items["S2-ELEC-BLDG"]["collection"] == "metered" and items["S2-ELEC-BLDG"]["months_metered"] == "0"


def test_a_small_removal_never_reads_minus_zero(conn: psycopg.Connection) -> None:
    report = build_cfo_report(conn, "lampang", 2025, "fiscal")
    assert report.removals_totals.kgco2e == -0.75
    html = render(report, "html").decode()
    assert "-0.00" not in html
    removals = html.split('data-row="removals"', 1)[1].split("</tr>", 1)[0]
    assert removals.count('<td class="n">0.00</td>') == 13  # 12 months and the total


def test_a_percent_change_against_a_removal_baseline_has_the_sign_of_the_change_in_net_emissions() -> None:
    # Removals of -100 kgCO2e in the base year: none at all (0), fewer (-40), more (-150). Emissions 100 -> 90.
    c = compare(np.array([0.0, -40.0, -150.0, 90.0]), np.array([-100.0, -100.0, -100.0, 100.0]))
    assert c.delta.tolist() == [100.0, 60.0, -50.0, -10.0]
    # delta / |baseline|: losing all removals raises net emissions by 100 % of the removal, not "-100 %".
    assert c.delta_pct.tolist() == [100.0, 60.0, -50.0, -10.0]
