"""Write the inventory templates (lccm/data/templates/) and the Lampang example base year (lccm/data/examples/).

Both ship as package data. Run from the repository root: ``.venv/bin/python docs/make_templates.py``. The
column definitions come from imports/inventory.py, so the templates cannot drift from what the importer
accepts; the produced files are committed, and tests/test_inventory_import.py checks they still match this script
and import cleanly.

The Lampang example: metered rows are sized to the simulator's city (simulators/cities/lampang.yaml) for 2025,
computed once from its device models at 10-minute steps and written here as constants (buildings x1.04, streetlights
x1.25 for a base year before the LED retrofit, fleet diesel x1.03, generators as simulated), rounded. Manual rows are
illustrative quantities for a city municipality. Every factor cites the public source of its value (TGO's CFO
emission factors of April 2022, IPCC GWPs; docs/reference.md#fuel-factors and #global-warming-potentials). The four
manual factors no TGO table in the reference gives (landfill waste, tap water, paper, tree uptake) say in their
source that they are not verified and that the municipality's CFO verifier must confirm them, then where the value
comes from (docs/reference.md#example-inventory-factors).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from lccm.imports.activity import ACTIVITY_COLUMNS
from lccm.imports.inventory import (
    CATEGORIES,
    COLUMNS,
    GWP_SETS,
    MONTHS,
    TEMPLATE_HEADER_EN,
    TEMPLATE_HEADER_TH,
)
from lccm.imports.units import UNITS

DATA = Path(__file__).resolve().parents[1] / "lccm" / "data"
TEMPLATES = DATA / "templates"
EXAMPLES = DATA / "examples"
FIXED_TIME = datetime(2026, 1, 1)  # workbook properties, so a re-run changes no metadata

SRC_TGO = "TGO CFO emission factors, April 2022"
SRC_GRID = "TGO CFO emission factors, April 2022: grid mix 2016-2018"
# A factor the municipality's verifier has not accepted yet: said so for people, with the public source of the value
# used (docs/inventory-template.md, "Factors not verified yet"; docs/reference.md#example-inventory-factors).
NOT_VERIFIED = "ยังไม่ทวนสอบ / Not verified - to be confirmed by the municipality's CFO verifier. Value: "
SRC_LANDFILL = NOT_VERIFIED + (
    "IPCC 2006 Guidelines vol. 5 ch. 3 defaults: DOC 0.15 (food waste) x DOCf 0.5 x MCF 0.6 (unclassified site) x F 0.5"
    " x 16/12 = 0.03 t CH4 per t of waste, x GWP 28 (IPCC AR5)"
)
SRC_WATER = NOT_VERIFIED + (
    "tap water of the Metropolitan Waterworks Authority, Thai National LCI Database (TIIS-MTEC-NSTDA) with TGO grid"
    " electricity 2016-2018, as published by SET Care the Bear (tip 25); Lampang's water is the Provincial Waterworks"
    " Authority's"
)
SRC_PAPER = NOT_VERIFIED + (
    "76 A4 sheets of uncoated printing paper (Thai National LCI Database, TIIS-MTEC-NSTDA) = 0.7948 kgCO2e, as"
    " published by SET Care the Bear (tip 25); 500 sheets = 5.23 kgCO2e"
)
SRC_TREES = NOT_VERIFIED + (
    "9 kgCO2 per tree and year (0.75 per month), the low end of the 9-15 kg a perennial tree takes up on average"
    " according to the Department of Environmental Quality Promotion (Government Public Relations Department)"
)


def _row(code: str, scope: int, category: str, en: str, th: str, unit: str, ef: float, ef_unit: str, source: str,
         months: Sequence[float], *, gas: str = "", gpc: str = "", collection: str = "manual", source_class: str = "",
         note: str = "") -> list[str]:  # fmt: skip
    head = [code, str(scope), category, en, th, unit, f"{ef:g}", ef_unit, source, "AR5", gas, gpc, collection]
    return [*head, source_class, note, *(f"{q:g}" for q in months)]


LAMPANG_2025: list[list[str]] = [
    _row("S2-ELEC-BLDG", 2, "purchased_electricity", "Electricity of municipal buildings and plants",
         "ไฟฟ้าอาคารและสถานีของเทศบาล", "kWh", 0.4999, "kgCO2e/kWh", SRC_GRID,
         [463700, 431700, 484700, 435600, 469100, 467400, 472300, 460500, 462600, 441100, 442000, 447900],
         gpc="I.2.2", collection="metered", source_class="building_electricity", note="PEA bills"),
    _row("S2-ELEC-STREET", 2, "purchased_electricity", "Street lighting", "ไฟฟ้าไฟส่องสว่างสาธารณะ", "kWh",
         0.4999, "kgCO2e/kWh", SRC_GRID,
         [170410, 149080, 158040, 145900, 144720, 137120, 143000, 148450, 150310, 162640, 163560, 172040],
         gpc="I.2.2", collection="metered", source_class="streetlight_electricity", note="before the LED retrofit"),
    _row("S1-GEN-DIESEL", 1, "stationary_combustion", "Diesel for standby generators",
         "น้ำมันดีเซลเครื่องกำเนิดไฟฟ้าสำรอง", "L", 2.7078, "kgCO2e/L", SRC_TGO,
         [276, 192, 323, 93, 111, 174, 179, 440, 87, 251, 414, 99],
         gpc="I.2.1", collection="metered", source_class="generator_diesel"),
    _row("S1-FLEET-DIESEL", 1, "mobile_combustion", "Diesel of the municipal fleet", "น้ำมันดีเซลยานพาหนะของเทศบาล",
         "L", 2.7406, "kgCO2e/L", SRC_TGO,
         [18010, 15600, 17690, 17030, 17960, 16980, 18080, 17860, 17540, 17530, 17280, 17720],
         gpc="II.1.1", collection="metered", source_class="fleet_diesel", note="fuel cards"),
    _row("S1-LPG-KITCHEN", 1, "stationary_combustion", "LPG for school and childcare kitchens",
         "ก๊าซหุงต้ม (LPG) โรงเรียนและศูนย์พัฒนาเด็กเล็ก", "kg", 3.1134, "kgCO2e/kg", SRC_TGO,
         [480, 465, 450, 150, 300, 495, 510, 510, 480, 180, 465, 435], gpc="I.2.1", note="purchase receipts"),
    _row("S1-REFRIG-R32", 1, "fugitive_refrigerant", "Refrigerant top-up HFC-32 (R-32)", "เติมสารทำความเย็น R-32",
         "kg", 677, "kgCO2e/kg", "IPCC AR5 GWP100 of HFC-32",
         [0, 0, 3, 4.5, 2, 0, 0, 0, 1.5, 0, 0, 0], gas="HFC-32", gpc="IV.2", note="maintenance contract records"),
    _row("S1-REFRIG-R410A", 1, "fugitive_refrigerant", "Refrigerant top-up R-410A", "เติมสารทำความเย็น R-410A",
         "kg", 1924, "kgCO2e/kg", "IPCC AR5 GWP100 of R-410A (50/50 HFC-32/HFC-125)",
         [0, 0, 0, 5, 0, 2.5, 0, 0, 0, 0, 3, 0], gas="R-410A", gpc="IV.2"),
    _row("S3-WASTE-LANDFILL", 3, "waste_landfill", "Waste of municipal offices, schools and market to landfill",
         "ขยะมูลฝอยจากสำนักงาน โรงเรียน และตลาด ส่งฝังกลบ", "t", 840, "kgCO2e/t", SRC_LANDFILL,
         [41.5, 38.2, 42.8, 40.1, 43.6, 42.0, 44.3, 43.9, 41.7, 40.8, 42.2, 45.6], gpc="III.1.2",
         note="weighbridge; landfill outside the city boundary, not run by the municipality (GPC III.1.2: treated "
              "outside the boundary, scope 3)"),
    _row("S3-WATER", 3, "other_indirect", "Tap water", "น้ำประปา", "m3", 0.7948, "kgCO2e/m3", SRC_WATER,
         [2310, 2180, 2650, 2790, 2520, 2380, 2410, 2350, 2300, 2120, 2260, 2290], note="PWA bills"),
    _row("S3-PAPER", 3, "other_indirect", "Office paper (A4, 80 g)", "กระดาษสำนักงาน A4", "ream", 5.23,
         "kgCO2e/ream", SRC_PAPER, [180, 165, 210, 120, 150, 190, 200, 195, 220, 140, 175, 160]),
    _row("RM-TREES-PARKS", 1, "removal", "Trees in pocket parks (uptake per tree and month)",
         "ต้นไม้ในสวนหย่อม (การดูดกลับต่อต้นต่อเดือน)", "tree", 0.75, "kgCO2e/tree", SRC_TREES,
         [1850, 1850, 1850, 1850, 1850, 1850, 1920, 1920, 1920, 1920, 1920, 1920], gpc="V.2",
         note="tree survey; 70 trees planted in July"),
]  # fmt: skip

ACTIVITY_EXAMPLE = [
    ["S1-LPG-KITCHEN", "2026-01", "465", "kg", "two 48 kg cylinders per school"],
    ["S1-REFRIG-R32", "2026-02", "1.5", "kg", "split units, HC-02"],
    ["S3-WASTE-LANDFILL", "2026-01", "43.2", "t", "weighbridge tickets"],
    ["S3-WATER", "2569-01", "2240", "m3", "BE year is accepted"],
]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    # utf-8-sig: the BOM makes Excel open Thai text correctly; the importers accept files with or without it.
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


def _numeric(row: Sequence[str]) -> list[str | float]:
    """Cells as an XLSX user types them: numbers as numbers (scope, EF, months), text as text."""
    numeric = {"scope", "ef", *MONTHS}
    keys = [c.key for c in COLUMNS]
    return [float(v) if k in numeric and v != "" else v for k, v in zip(keys, row, strict=False)]


def write_xlsx(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], *, guide: bool) -> None:
    import openpyxl
    from openpyxl.styles import Font
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "inventory"
    ws.append(list(header))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append(_numeric(row))
    ws.freeze_panes = "B2"
    if guide:
        _validations(ws, DataValidation)
        _guide_sheets(wb)
    wb.properties.created = wb.properties.modified = FIXED_TIME
    wb.save(path)


def _validations(ws: object, validation: type) -> None:
    """Drop-down lists on the first 500 rows (Excel and LibreOffice show them; the importer checks anyway)."""
    letters = {c.key: _letter(i) for i, c in enumerate(COLUMNS) if c.english in TEMPLATE_HEADER_EN}
    lists = {
        "scope": "1,2,3",
        "category": ",".join(c.code for c in CATEGORIES),
        "unit": ",".join(u.symbol for u in UNITS),
        "gwp_set": ",".join(GWP_SETS),
        "collection": "manual,metered",
    }
    for key, values in lists.items():
        dv = validation(type="list", formula1=f'"{values}"', allow_blank=True)
        dv.add(f"{letters[key]}2:{letters[key]}500")
        ws.add_data_validation(dv)  # type: ignore[attr-defined]


def _letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(index + 1))


def _guide_sheets(wb: object) -> None:
    columns = wb.create_sheet("columns")  # type: ignore[attr-defined]
    columns.append(["key", "English header", "Thai header", "required"])
    for c in COLUMNS:
        columns.append([c.key, c.english, c.thai, "yes" if c.required else "no"])
    categories = wb.create_sheet("categories")  # type: ignore[attr-defined]
    categories.append(["code", "scope(s)", "English", "Thai", "removal"])
    for cat in CATEGORIES:
        categories.append([cat.code, "/".join(map(str, cat.scopes)), cat.name_en, cat.name_th, cat.is_removal])
    unit_sheet = wb.create_sheet("units")  # type: ignore[attr-defined]
    unit_sheet.append(["unit", "also accepted"])
    for u in UNITS:
        unit_sheet.append([u.symbol, ", ".join(u.aliases)])


def main() -> None:
    TEMPLATES.mkdir(parents=True, exist_ok=True)
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    write_csv(TEMPLATES / "cfo-base-year-template.csv", TEMPLATE_HEADER_EN, [])
    write_csv(TEMPLATES / "cfo-base-year-template-th.csv", TEMPLATE_HEADER_TH, [])
    write_xlsx(TEMPLATES / "cfo-base-year-template.xlsx", TEMPLATE_HEADER_EN, [], guide=True)
    write_xlsx(TEMPLATES / "cfo-base-year-template-th.xlsx", TEMPLATE_HEADER_TH, [], guide=True)
    write_csv(TEMPLATES / "activity-template.csv", list(ACTIVITY_COLUMNS), [])
    write_csv(TEMPLATES / "activity-template-th.csv", list(ACTIVITY_COLUMNS.values()), [])
    write_csv(EXAMPLES / "lampang-cfo-2025.csv", TEMPLATE_HEADER_EN, LAMPANG_2025)
    write_xlsx(EXAMPLES / "lampang-cfo-2025-th.xlsx", TEMPLATE_HEADER_TH, LAMPANG_2025, guide=False)
    write_csv(EXAMPLES / "lampang-activity-2026.csv", list(ACTIVITY_COLUMNS), ACTIVITY_EXAMPLE)


if __name__ == "__main__":
    main()
