"""The rendered CFO and GPC reports, byte for byte: CSV, JSON and HTML of a fixed database against files committed
in tests/golden/reports/. Pinned before the renderer moved from store/ to reports/ (Jinja2 templates), so the move
is proven to change no byte; from now on any change to a report's output shows up here as a diff to review.

The fixture: Lampang's example base year (lccm/data/examples/lampang-cfo-2025.csv, calendar 2025, 11 items with
quoted sources) with one metered month from a real energy_buckets row, and a fiscal 2025 inventory whose texts carry
everything HTML and CSV must escape or quote: quotes, an apostrophe, an ampersand, markup, a comma, Thai text.

After an intended change of the output, regenerate with ``LCCM_UPDATE_GOLDEN=1 .venv/bin/pytest
tests/test_reports_pinned.py`` and review the diff of tests/golden/ before committing it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import psycopg
import pytest

from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import parse_registry_csv
from lccm.reports.annual import build_cfo_report, build_gpc_report
from lccm.reports.render import file_name, render
from lccm.runtime import factor_rows
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file
from lccm.store.inventory_mapping import set_mappings
from tests._db import device_pk, fresh_database

GOLDEN = Path(__file__).parent / "golden" / "reports"
REGISTRY = """site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s
HALL,City Hall,building,Lampang,HALL-M1,electricity_meter,Main,900
RD1,Road 1,street,Lampang,RD1-C1,streetlight_cabinet,Cabinet,900
"""
EXAMPLE = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv")
FISCAL = "\r\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    'S2-ELEC,2,purchased_electricity,"Mayor\'s office, ""green"" wing & <b>annex</b>",ไฟฟ้า <สำนักงาน>,kWh,0.4999,'
    'kgCO2e/kWh,"TGO ""CFO"" table, April 2022",AR5,,I.2.2,metered,building_electricity,,'
    + ",".join(["100"] * 12),
    "S1-LPG,1,stationary_combustion,LPG & <i>kitchen</i>,ก๊าซหุงต้ม,kg,3.1134,kgCO2e/kg,TGO,AR5,,I.2.1,manual,,,"
    + ",".join(["10"] * 11 + [""]),
    "S3-PAPER,3,other_indirect,Paper 'A4',กระดาษ,ream,2.5,kgCO2e/ream,UNCONFIRMED,AR5,,,manual,,,"
    + ",".join(["3"] + [""] * 11),
    "RM-TREES,1,removal,Trees,ต้นไม้,tree,0.75,kgCO2e/tree,UNCONFIRMED,AR5,,V.2,manual,,," + ",".join(["4"] * 12),
]).encode() + b"\r\n"  # fmt: skip
CASES = [(report, kind, fmt) for report in ("cfo", "gpc") for kind in ("calendar", "fiscal")
         for fmt in ("csv", "json", "html")]  # fmt: skip


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    with fresh_database() as url, psycopg.connect(url) as c:
        sync_factor_registry(c, *factor_rows())
        import_registry(c, parse_registry_csv(REGISTRY))
        import_inventory_file(c, EXAMPLE.read_bytes(), file_name=EXAMPLE.name, organisation="lampang", year_ce=2025)
        import_inventory_file(c, FISCAL, file_name="fy.csv", organisation="lampang", year_ce=2025, kind="fiscal")
        set_mappings(c, "lampang", 2025, "calendar", [("HALL-M1", "S2-ELEC-BLDG"), ("RD1-C1", "S2-ELEC-STREET")])
        set_mappings(c, "lampang", 2025, "fiscal", [("HALL-M1", "S2-ELEC")])
        # One metered month per year: March 2025 of the hall (in both years), 20 of its 31 days covered.
        c.execute(
            "INSERT INTO energy_buckets (resolution, device_id, metric_id, bucket_start, amount, amount_estimated,"
            " covered_s, quality, intervals, kgco2e, kgco2e_base)"
            " VALUES ('1mo', %s, 1, '2025-03-01 00:00+07', 412345.5, 0, %s, 0, 96, 206131.4, 206131.4)",
            (device_pk(c, "HALL-M1"), 20 * 86400.0),
        )
        c.commit()
        yield c


@pytest.mark.parametrize(("report", "kind", "fmt"), CASES)
def test_rendered_report_is_byte_identical_to_the_pinned_file(conn: psycopg.Connection, report: str, kind: str,
                                                             fmt: str) -> None:  # fmt: skip
    build = build_cfo_report if report == "cfo" else build_gpc_report
    built = build(conn, "lampang", 2025, "fiscal" if kind == "fiscal" else "calendar")
    data = render(built, fmt)
    path = GOLDEN / file_name(built, fmt)
    if os.environ.get("LCCM_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"{path} missing: run with LCCM_UPDATE_GOLDEN=1 once and commit it"
    assert data == path.read_bytes(), f"{path.name} differs from the pinned output"
