"""Base-year CFO import: parsing CSV and XLSX (Thai and English headers, BOM), every error with its row and column,
all-or-nothing writes, idempotency and replacement, against a real PostgreSQL; the templates and the Lampang example.

Expected totals are computed by hand in the tests (quantity x factor, written out) from the rows below.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import openpyxl
import psycopg
import pytest
from typer.testing import CliRunner

from lccm.cli_inventory import inventory_app
from lccm.imports.inventory import (
    CATEGORIES,
    TEMPLATE_HEADER_EN,
    TEMPLATE_HEADER_TH,
    InventoryInvalid,
    SourceClassInfo,
    parse_inventory,
)
from lccm.imports.registry import parse_registry_csv
from lccm.imports.rows import describe
from lccm.runtime import factor_rows
from lccm.simulators.city import load_city
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import (
    InventoryImportReport,
    UnknownOrganisation,
    YearKind,
    get_inventory,
    import_inventory_file,
    list_imports,
    require_organisation,
)
from lccm.store.inventory_mapping import auto_map, mapping_problems, set_mappings
from tests._db import fresh_database

ROOT = Path(__file__).resolve().parent.parent
HEADER_EN = ",".join(TEMPLATE_HEADER_EN)
HEADER_TH = ",".join(TEMPLATE_HEADER_TH)
ELEC_MONTHS = [1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000, 2100]
ROWS = [
    "S2-ELEC,2,purchased_electricity,Building electricity,ไฟฟ้าอาคาร,kWh,0.4999,kgCO2e/kWh,TGO 2022,AR5,,I.2.2,"
    "metered,building_electricity,PEA bills," + ",".join(map(str, ELEC_MONTHS)),
    "S1-LPG,1,stationary_combustion,LPG kitchens,ก๊าซหุงต้ม,kg,3.1134,kgCO2e/kg,TGO 2022,AR5,,I.2.1,manual,,,"
    + ",".join(["10"] * 12),
    "S1-R32,1,fugitive_refrigerant,R-32 top-up,,kg,677,kgCO2e/kg,AR5 GWP,,HFC-32,IV.2,,,,,,2,,,,,,1.5,,,",
    "RM-TREES,1,removal,Trees in pocket parks,ต้นไม้,tree,0.75,kgCO2e/tree,UNCONFIRMED,AR5,,V.2,manual,,,"
    + ",".join(["100"] * 12),
]
# Hand-computed: electricity 12 months averaging (1000 + 2100) / 2 = 1550 -> 18,600 kWh x 0.4999 = 9,298.14 kg;
# LPG 12 x 10 kg = 120 kg x 3.1134 = 373.608 kg; R-32 (2 + 1.5) kg x 677 = 2,369.5 kg; trees 12 x 100 = 1,200
# tree-months x 0.75 = 900 kg removed.
ELEC_KG, LPG_KG, R32_KG, TREES_KG = 18600 * 0.4999, 120 * 3.1134, 3.5 * 677, -1200 * 0.75
CLASSES = {
    "building_electricity": SourceClassInfo("building_electricity", 2, "kWh"),
    "fleet_diesel": SourceClassInfo("fleet_diesel", 1, "L"),
}


def csv_bytes(header: str = HEADER_EN, rows: Sequence[str] = ROWS, bom: bool = False) -> bytes:
    return (("\ufeff" if bom else "") + "\r\n".join([header, *rows]) + "\r\n").encode("utf-8")


def xlsx_bytes(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(header))
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _typed(row: str) -> list[object]:
    """A CSV row as a spreadsheet user types it: numbers as numbers."""
    cells = next(csv.reader([row]))
    return [float(c) if c.replace(".", "", 1).isdigit() else (c or None) for c in cells]


def _errors(data: bytes) -> list[str]:
    with pytest.raises(InventoryInvalid) as info:
        parse_inventory(data, source_classes=CLASSES)
    return [describe(e) for e in info.value.errors]


# --- parsing -----------------------------------------------------------------------------------------------------


def test_english_and_thai_headers_parse_to_the_same_rows() -> None:
    english = parse_inventory(csv_bytes(), source_classes=CLASSES)
    thai = parse_inventory(csv_bytes(HEADER_TH, bom=True), source_classes=CLASSES)
    assert english.content() == thai.content()
    assert [r.item_code for r in english.rows] == ["S2-ELEC", "S1-LPG", "S1-R32", "RM-TREES"]
    elec, lpg, r32, trees = english.rows
    assert (elec.scope, elec.category, elec.unit, elec.collection, elec.source_class, elec.gpc_ref) == (
        2, "purchased_electricity", "kWh", "metered", "building_electricity", "I.2.2",
    )  # fmt: skip
    assert elec.months == tuple(float(q) for q in ELEC_MONTHS)
    assert (r32.gwp_set, r32.collection, r32.gas) == ("AR5", "manual", "HFC-32")  # blanks: AR5 and manual
    assert r32.months == (None, None, 2.0, None, None, None, None, None, 1.5, None, None, None)
    assert trees.is_removal and not lpg.is_removal
    assert elec.kgco2e == pytest.approx(ELEC_KG) and lpg.kgco2e == pytest.approx(LPG_KG)
    assert r32.kgco2e == pytest.approx(R32_KG) and trees.kgco2e == pytest.approx(TREES_KG)


def test_header_spellings_full_month_names_and_column_order() -> None:
    """Full month names in either language, any case and spacing; months may come in fiscal order (Oct..Sep)."""
    base = parse_inventory(csv_bytes())
    names = list(TEMPLATE_HEADER_EN)
    names[15:] = ["January", "FEBRUARY", "มีนาคม", "เมษายน", "May", "june", "กรกฎาคม", "Aug", "Sep", "ตุลาคม",
                  "พฤศจิกายน", "ธ.ค."]  # fmt: skip
    names[0], names[6] = "Item Code", "Emission Factor"
    assert parse_inventory(csv_bytes(",".join(names))).content() == base.content()
    # Fiscal order: move the last three month columns (Oct, Nov, Dec) in front of January, cells with them.
    order = [*range(15), 24, 25, 26, *range(15, 24)]
    header = ",".join(TEMPLATE_HEADER_EN[i] for i in order)
    rows = [",".join(f'"{c}"' for c in (next(csv.reader([r]))[i] for i in order)) for r in ROWS]
    assert parse_inventory(csv_bytes(header, rows)).content() == base.content()


def test_xlsx_reads_like_csv_with_thai_and_english_headers() -> None:
    typed = [_typed(r) for r in ROWS]
    assert typed[0][1] == 2.0 and typed[0][15] == 1000.0  # the sheet holds real numbers, not text
    csv_rows = parse_inventory(csv_bytes()).content()
    assert parse_inventory(xlsx_bytes(TEMPLATE_HEADER_EN, typed)).content() == csv_rows
    parsed = parse_inventory(xlsx_bytes(TEMPLATE_HEADER_TH, typed))
    assert parsed.content() == csv_rows and parsed.file_format == "xlsx"


def test_every_row_error_is_reported_with_row_and_column() -> None:
    ok = ROWS[1]
    rows = [
        ok.replace("S1-LPG,", "S1-A,").replace(",,,10,10,10,", ',,,10,10,"1,2x",'),  # 2: Mar
        ok.replace("S1-LPG,", "S1-B,").replace(",,,10,10,", ",,,10,-5,"),  # 3: Feb
        ok.replace("S1-LPG,1,stationary_combustion", "S1-C,1,boiler"),  # 4 unknown category
        ok.replace("S1-LPG,1,", "S1-D,2,"),  # 5 category in the wrong scope
        ok.replace("S1-LPG,", "S1-E,").replace(",kg,3.1134", ",gallon,3.1134"),  # 6 unknown unit
        ok.replace("S1-LPG,", "S1-F,").replace("kgCO2e/kg", "kgCO2e/L"),  # 7 factor per another unit
        ok.replace("S1-LPG,", "S1-G,").replace("kgCO2e/kg", "kg per bottle"),  # 8 not a factor unit
        ok.replace("S1-LPG,", "S1-H,").replace(",AR5,,I.2.1", ",AR3,,I.2.1"),  # 9 unknown GWP set
        ok.replace("S1-LPG,", "S1-I,").replace(",I.2.1,", ",2.1.I,"),  # 10 not a GPC reference
        ok.replace("S1-LPG,", "S1-J,").replace(",manual,", ",guessed,"),  # 11 unknown collection
        ok.replace("S1-LPG,1,stationary_combustion", "S1-K,1,removal").replace(",manual,", ",metered,"),  # 12
        ok.replace("S1-LPG,", "S1-L,").replace(",manual,,", ",metered,boiler_gas,"),  # 13 unknown source class
        ok.replace("S1-LPG,", "S1-M,").replace(",manual,,", ",metered,building_electricity,"),  # 14 wrong scope
        ok.replace("S1-LPG,", "S1-N,").replace(",TGO 2022,", ",,"),  # 15 blank EF source
        ok.replace("S1-LPG,", "bad code!,"),  # 16 item code pattern
        ok,  # 17
        ok + ",stray",  # 18 value past the last header; also a duplicate of row 17's code
        ok.replace("S1-LPG,", "S1-O,").replace(",3.1134,", ",-1,"),  # 19 negative factor
        ok.replace("S1-LPG,", "S1-P,").replace(",AR5,,I.2.1", ",AR6,,I.2.1"),  # 20 mixes GWP sets
    ]  # fmt: skip
    assert _errors(csv_bytes(rows=rows)) == [
        "row 2, column 'Mar': not a number: '1,2x'",
        "row 3, column 'Feb': must not be negative (a removal is a row in category 'removal' with positive numbers)",
        "row 4, column 'category': unknown category; expected one of: "
        + "; ".join(f"{c.code} ({c.name_en} / {c.name_th})" for c in CATEGORIES),
        "row 5, column 'scope': category 'stationary_combustion' is reported in scope 1, not 2",
        "row 6, column 'unit': unknown unit 'gallon'; expected one of: kWh, MWh, MJ, GJ, L, m3, scf, kg, t, km, "
        "ream, tree",
        "row 7, column 'ef_unit': factor is per L but the activity unit is kg",
        "row 8, column 'ef_unit': not an emission-factor unit: 'kg per bottle'; write kgCO2e/<unit>, e.g. kgCO2e/kWh",
        "row 9, column 'gwp_set': unknown GWP set; expected AR4, AR5, AR6 (blank = AR5)",
        "row 10, column 'gpc_ref': not a GPC reference number (sector.sub-sector.number, e.g. I.2.2 electricity of "
        "public buildings, II.1.1 fleet fuel, III.1.1 or III.1.2 solid waste treated inside or outside the city, "
        "IV.2, V.2)",
        "row 11, column 'collection': expected metered or manual (มิเตอร์ / บันทึกเอง); blank = manual",
        "row 12, column 'collection': a removal is entered by hand, it cannot be metered",
        "row 13, column 'source_class': unknown source class; expected one of: building_electricity, fleet_diesel",
        "row 14, column 'source_class': source class 'building_electricity' is scope 2, this row is scope 1",
        "row 15, column 'ef_source': required value is blank",
        "row 16, column 'item_code': must start with a letter or digit and contain only letters, digits, '_', '.' "
        "and '-' (at most 64 characters)",
        "row 18, column 'column 28': value in a column with no header",
        "row 18, column 'item_code': duplicate item_code, first on row 17",
        "row 19, column 'ef': must not be negative (a removal is a row in category 'removal' with positive numbers)",
        "row 20, column 'gwp_set': GWP set AR6 differs from AR5 on row 17; an inventory uses one GWP set",
    ]


def test_errors_name_thai_columns_and_check_written_totals() -> None:
    header = HEADER_TH + ",รวม,รวม_tCO2e"
    lpg = ROWS[1]
    rows = [
        lpg + ",120,0.373608",  # row 2: both totals right (120 kg; 120 x 3.1134 / 1000 t)
        lpg.replace("S1-LPG,", "S1-X,") + ",121,0.37",  # row 3: 121 is not 120; 0.37 is within rounding
        ROWS[3] + ",1200,-0.95",  # row 4: a removal's total may carry its sign, but 0.95 is not 0.9
        lpg.replace("S1-LPG,", "S1-Y,").replace(",,,10,10,", ",,,10,1O,"),  # row 5: letter O for zero
    ]
    assert _errors(csv_bytes(header, rows)) == [
        "row 3, column 'รวม': total 121 is not the sum of the months (120)",
        "row 4, column 'รวม_tCO2e': total_tco2e -0.95 is not sum x EF / 1000 (0.9)",
        "row 5, column 'ก.พ.': not a number: '1O'",
    ]


def test_header_problems_are_reported_before_rows() -> None:
    header = HEADER_EN.replace(",Mar,", ",March 2025,").replace("gas,", "colour,") + ",Jan"
    assert _errors(csv_bytes(header, ["junk"])) == [
        "row 1, column 'colour': unknown column; expected one of: " + ", ".join(TEMPLATE_HEADER_EN) + ", total, "
        "total_tco2e",
        "row 1, column 'March 2025': unknown column; expected one of: " + ", ".join(TEMPLATE_HEADER_EN) + ", total, "
        "total_tco2e",
        "row 1, column 'Jan': same column as 'Jan'",
        "row 1, column 'Mar': required column missing (English 'Mar' or Thai 'มี.ค.')",
    ]


def test_unreadable_files_are_refused_with_a_reason() -> None:
    assert _errors(b"") == ["row 1: file is empty"]
    assert _errors(csv_bytes(rows=[])) == ["row 1: file has a header but no inventory rows"]
    assert _errors("รหัสรายการ\n".encode("cp874"))[0].startswith("row 1: file is not UTF-8")
    assert _errors(b"PK\x03\x04 not really a zip")[0].startswith("row 1: not a readable XLSX workbook")


def test_blank_lines_keep_file_row_numbers() -> None:
    data = csv_bytes(rows=["", ROWS[1], "", ROWS[1].replace(",10,", ",x,", 1).replace("S1-LPG", "S1-Z")])
    assert _errors(data) == ["row 5, column 'Jan': not a number: 'x'"]


def test_xlsx_formula_without_a_saved_value_is_an_error_not_a_blank() -> None:
    """openpyxl writes formulas without results; reading the cell as blank would lose the month silently."""
    row = _typed(ROWS[1])
    row[17] = "=5+5"  # Mar
    errors = _errors(xlsx_bytes(TEMPLATE_HEADER_EN, [row]))
    assert errors == [
        "row 2, column 'Mar': formula without a saved value; open the file in Excel or LibreOffice and save it again"
    ]


def test_xlsx_text_and_numbers_are_validated_the_same() -> None:
    row = _typed(ROWS[1])
    row[1], row[16] = "Scope 1", "n/a"  # a scope typed as text is fine; a month typed as text is not a number
    assert _errors(xlsx_bytes(TEMPLATE_HEADER_TH, [row])) == ["row 2, column 'ก.พ.': not a number: 'n/a'"]


# --- database ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            sync_factor_registry(conn, *factor_rows())
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        c.execute("TRUNCATE device_item_map, inventory_quantities, inventory_items, reporting_years, "
                  "inventory_imports, device_status, devices, sites RESTART IDENTITY CASCADE")  # fmt: skip
        c.commit()
        yield c


def _import(conn: psycopg.Connection, data: bytes, year: int = 2025, kind: YearKind = "calendar",
            base_year: bool | None = None) -> InventoryImportReport:  # fmt: skip
    report = import_inventory_file(conn, data, file_name="f.csv", organisation="lampang", year_ce=year,
                                   kind=kind, base_year=base_year)  # fmt: skip
    conn.commit()
    return report


def _quantities(conn: psycopg.Connection, code: str) -> list[tuple[date, float]]:
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT q.month_start, q.quantity FROM inventory_quantities q JOIN inventory_items i ON i.id = q.item_id"
            " WHERE i.item_code = %s ORDER BY q.month_start",
            (code,),
        )
    ]


def test_import_stores_items_and_months_with_hand_computed_totals(conn: psycopg.Connection) -> None:
    report = _import(conn, csv_bytes())
    assert (report.status, report.items_inserted, report.quantities) == ("applied", 4, 12 + 12 + 2 + 12)
    assert (report.year_be, report.is_base_year, report.base_year_changed) == (2568, True, True)
    assert _quantities(conn, "S1-R32") == [(date(2025, 3, 1), 2.0), (date(2025, 9, 1), 1.5)]
    view = get_inventory(conn, "lampang")  # no year: the base year
    assert (view.year.kind, view.year.year_ce, view.year.year_be, view.year.is_base_year) == (
        "calendar",
        2025,
        2568,
        True,
    )
    assert [m.month_start for m in view.items[0].months] == [date(2025, m, 1) for m in range(1, 13)]
    scopes = view.kgco2e_by_scope()
    assert scopes[1] == pytest.approx(LPG_KG + R32_KG) and scopes[2] == pytest.approx(ELEC_KG) and scopes[3] == 0
    assert view.removals_kgco2e == pytest.approx(TREES_KG)
    assert view.net_kgco2e == pytest.approx(ELEC_KG + LPG_KG + R32_KG + TREES_KG)
    assert view.gwp_sets == ["AR5"]


def test_fiscal_year_months_fall_in_their_calendar_years(conn: psycopg.Connection) -> None:
    """Fiscal 2025 = October 2024 .. September 2025 (ปีงบประมาณ พ.ศ. 2568); the Oct..Dec columns are 2024's."""
    _import(conn, csv_bytes(), year=2025, kind="fiscal")
    elec = _quantities(conn, "S2-ELEC")
    assert elec[0] == (date(2024, 10, 1), 1900.0) and elec[2] == (date(2024, 12, 1), 2100.0)
    assert elec[3] == (date(2025, 1, 1), 1000.0) and elec[-1] == (date(2025, 9, 1), 1800.0)
    view = get_inventory(conn, "lampang", 2025, "fiscal")
    assert (view.year.first_month, view.year.year_be) == (date(2024, 10, 1), 2568)
    assert [m.month_start.month for m in view.items[0].months] == [10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert view.items[0].quantity == 18600


def test_invalid_file_writes_nothing_and_keeps_its_errors(conn: psycopg.Connection) -> None:
    _import(conn, csv_bytes())
    before = _quantities(conn, "S2-ELEC")
    bad = [ROWS[0].replace(",1000,1100,", ",1000,x,"), *ROWS[1:]]
    with pytest.raises(InventoryInvalid):
        _import(conn, csv_bytes(rows=bad))
    conn.rollback()  # what a failing caller does: the rejection record was committed already
    assert _quantities(conn, "S2-ELEC") == before
    log = list_imports(conn, require_organisation(conn, "lampang").id)
    assert [entry.status for entry in log] == ["rejected", "applied"]
    assert log[0].errors == [{"row": 2, "column": "Feb", "value": "x", "message": "not a number: 'x'"}]
    assert (log[0].year_kind, log[0].year_ce, log[0].file_format) == ("calendar", 2025, "csv")


def test_same_content_again_changes_nothing_whatever_the_file_format(conn: psycopg.Connection) -> None:
    _import(conn, csv_bytes())
    ids = conn.execute("SELECT id, item_code FROM inventory_items ORDER BY id").fetchall()
    stamps = conn.execute("SELECT entered_at FROM inventory_quantities ORDER BY item_id, month_start").fetchall()
    for data in (
        csv_bytes(),
        csv_bytes(HEADER_TH, bom=True),
        xlsx_bytes(TEMPLATE_HEADER_EN, [_typed(r) for r in ROWS]),
    ):
        report = _import(conn, data)
        assert (report.status, report.items_unchanged, report.quantities) == ("unchanged", 4, 0)
    assert conn.execute("SELECT id, item_code FROM inventory_items ORDER BY id").fetchall() == ids
    assert (
        conn.execute("SELECT entered_at FROM inventory_quantities ORDER BY item_id, month_start").fetchall() == stamps
    )
    log = list_imports(conn, require_organisation(conn, "lampang").id)
    assert [e.status for e in log] == ["unchanged", "unchanged", "unchanged", "applied"]
    assert log[0].file_format == "xlsx"


def test_corrected_file_replaces_the_year_and_keeps_mappings_of_kept_items(conn: psycopg.Connection) -> None:
    import_registry(conn, parse_registry_csv(
        "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"
        "HALL,City Hall,building,Lampang,HALL-M1,electricity_meter,Main,60\n"
        "HALL,City Hall,building,Lampang,HALL-M2,electricity_meter,Annex,60\n"
    ))  # fmt: skip
    fuel = ("S1-FUEL,1,mobile_combustion,Fleet diesel,,L,2.7406,kgCO2e/L,TGO,AR5,,II.1.1,metered,fleet_diesel,,"
            + ",".join(["50"] * 12))  # fmt: skip
    _import(conn, csv_bytes(rows=[*ROWS, fuel]))
    set_mappings(conn, "lampang", 2025, "calendar", [("HALL-M1", "S2-ELEC")])
    conn.commit()
    corrected = [
        ROWS[0].replace(",1000,1100,", ",1000,1150,"),  # one month corrected
        ROWS[1],
        ROWS[3],  # S1-R32 dropped
        "S3-WATER,3,other_indirect,Tap water,,m3,0.541,kgCO2e/m3,UNCONFIRMED,AR5,,,,,," + ",".join(["7"] * 12),
        fuel,
    ]
    report = _import(conn, csv_bytes(rows=corrected))
    assert (report.items_inserted, report.items_updated, report.items_unchanged, report.items_deleted) == (1, 1, 3, 1)
    assert report.devices_unmapped == []
    assert _quantities(conn, "S2-ELEC")[1] == (date(2025, 2, 1), 1150.0)
    assert _quantities(conn, "S1-R32") == []
    assert conn.execute("SELECT count(*) FROM device_item_map").fetchone() == (1,)
    # Re-marking the electricity item manual drops its device mapping (and says so) instead of double counting.
    manual = [corrected[0].replace(",metered,building_electricity,", ",manual,,"), *corrected[1:]]
    report = _import(conn, csv_bytes(rows=manual))
    assert report.devices_unmapped == ["HALL-M1"]
    assert conn.execute("SELECT count(*) FROM device_item_map").fetchone() == (0,)


def test_base_year_is_set_once_and_moved_only_on_request(conn: psycopg.Connection) -> None:
    first = _import(conn, csv_bytes(), year=2024)
    second = _import(conn, csv_bytes(), year=2025)
    assert (first.is_base_year, second.is_base_year) == (True, False)
    moved = _import(conn, csv_bytes(), year=2025, base_year=True)
    assert (moved.status, moved.is_base_year, moved.base_year_changed) == ("unchanged", True, True)
    bases = conn.execute("SELECT year_ce FROM reporting_years WHERE is_base_year").fetchall()
    assert bases == [(2025,)]


def test_categories_match_the_migration(conn: psycopg.Connection) -> None:
    rows = conn.execute("SELECT code, scope, name_en, name_th, is_removal FROM cfo_categories").fetchall()
    expected = {(c.code, s, c.name_en, c.name_th, c.is_removal) for c in CATEGORIES for s in c.scopes}
    assert set(rows) == expected


def test_unknown_organisation_is_refused_before_reading_the_file(conn: psycopg.Connection) -> None:
    with pytest.raises(UnknownOrganisation, match="no organisation 'nan'; known: lampang"):
        import_inventory_file(conn, b"", file_name="x", organisation="nan", year_ce=2025)


# --- templates and the Lampang example -----------------------------------------------------------------------------


def test_templates_carry_the_documented_headers() -> None:
    templates = ROOT / "lccm" / "data" / "templates"
    assert (templates / "cfo-base-year-template.csv").read_bytes() == csv_bytes(bom=True, rows=[])
    assert (templates / "cfo-base-year-template-th.csv").read_bytes() == csv_bytes(HEADER_TH, bom=True, rows=[])
    for name, header in (("cfo-base-year-template.xlsx", TEMPLATE_HEADER_EN),
                         ("cfo-base-year-template-th.xlsx", TEMPLATE_HEADER_TH)):  # fmt: skip
        wb = openpyxl.load_workbook(templates / name, read_only=True)
        first = next(wb.worksheets[0].iter_rows(values_only=True))
        assert tuple(first) == header and wb.sheetnames == ["inventory", "columns", "categories", "units"]
        wb.close()
    doc = (ROOT / "docs" / "inventory-template.md").read_text(encoding="utf-8")
    for english, thai in zip(TEMPLATE_HEADER_EN, TEMPLATE_HEADER_TH, strict=True):
        assert f"`{english}`" in doc and f"`{thai}`" in doc


def test_lampang_example_imports_and_maps_the_simulated_city(conn: psycopg.Connection, tmp_path: Path) -> None:
    city = load_city()
    city.devices_csv(tmp_path / "devices.csv")
    import_registry(conn, parse_registry_csv((tmp_path / "devices.csv").read_bytes()))
    examples = ROOT / "lccm" / "data" / "examples"
    report = _import(conn, (examples / "lampang-cfo-2025.csv").read_bytes())
    assert (report.status, report.rows) == ("applied", 11)
    again = _import(conn, (examples / "lampang-cfo-2025-th.xlsx").read_bytes())
    assert again.status == "unchanged"  # the Thai XLSX holds the same inventory
    view = get_inventory(conn, "lampang", 2025)
    items = {i.item_code: i for i in view.items}
    # Generator diesel, hand sum: 276+192+323+93+111+174+179+440+87+251+414+99 = 2,639 L x 2.7078 kg/L.
    assert items["S1-GEN-DIESEL"].quantity == 2639
    assert items["S1-GEN-DIESEL"].kgco2e == pytest.approx(2639 * 2.7078)
    assert {i.collection for i in view.items if i.source_class} == {"metered"}
    assert items["RM-TREES-PARKS"].kgco2e < 0 and items["S1-REFRIG-R410A"].gas == "R-410A"
    mapped = auto_map(conn, "lampang", 2025, "calendar")
    conn.commit()
    register_devices = [d for d in city.devices if d.kind in ("electricity_meter", "streetlight_cabinet", "fuel_meter")]
    assert len(mapped.mapped) == len(register_devices) and not mapped.unmatched and not mapped.ambiguous
    assert mapping_problems(conn, "lampang") == []


# --- CLI -----------------------------------------------------------------------------------------------------------


def test_cli_import_reports_errors_then_imports_then_is_a_no_op(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as c:
        c.execute("TRUNCATE device_item_map, inventory_quantities, inventory_items, reporting_years, "
                  "inventory_imports RESTART IDENTITY CASCADE")  # fmt: skip
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes(rows=[ROWS[0].replace(",1200,", ',"1,2x",')]))
    args = ["--org", "lampang", "--year", "2025", "--fiscal", "--database-url", db_url]
    result = runner.invoke(inventory_app, ["import", str(bad), *args])
    assert result.exit_code == 1
    assert "row 2, column 'Mar': not a number: '1,2x'" in result.output
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes())
    first = runner.invoke(inventory_app, ["import", str(good), *args])
    assert first.exit_code == 0, first.output
    assert "lampang FY2025 (ปีงบประมาณ พ.ศ. 2568): imported 4 row(s), 38 monthly quantities" in first.output
    second = runner.invoke(inventory_app, ["import", str(good), *args])
    assert second.exit_code == 0 and "unchanged" in second.output
    listing = runner.invoke(inventory_app, ["list", "--org", "lampang", "--database-url", db_url])
    assert listing.exit_code == 0 and "S2-ELEC" in listing.output and "net" in listing.output
    unknown = runner.invoke(inventory_app, ["import", str(good), "--org", "nan", "--year", "2025",
                                            "--database-url", db_url])  # fmt: skip
    assert unknown.exit_code == 2 and "no organisation 'nan'" in unknown.output
