"""Manual activity data: month and unit parsing, validation against the items with row and column, idempotent
month totals, carrying an inventory forward into a new year, calendar and fiscal years side by side."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from lccm.cli import app
from lccm.cli_inventory import activity_app
from lccm.imports.activity import parse_activity_csv, parse_activity_json, parse_month
from lccm.imports.inventory import InventoryInvalid
from lccm.imports.rows import describe
from lccm.runtime import factor_rows
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file, list_imports, require_organisation
from lccm.store.inventory_activity import ActivityReport, import_activity_file, record_activity
from tests._db import fresh_database
from tests.test_inventory_import import csv_bytes

TODAY = date(2026, 3, 15)
ACTIVITY_HEADER = "item_code,month,quantity,unit,note"
ACTIVITY_HEADER_TH = "รหัสรายการ,เดือน,ปริมาณ,หน่วย,หมายเหตุ"


def activity_csv(rows: list[str], header: str = ACTIVITY_HEADER) -> bytes:
    return ("\ufeff" + "\n".join([header, *rows]) + "\n").encode()


def test_months_in_every_accepted_spelling() -> None:
    for text in ("2026-03", "2026-3", "2026-03-01", "03/2026", "3/2026", "Mar 2026", "March 2026", "มี.ค. 2569",
                 "มีนาคม 2569", "2569-03"):  # fmt: skip
        assert parse_month(text) == date(2026, 3, 1), text
    for bad in ("2026-13", "March", "2026/03/15", "15-03-2026", ""):
        with pytest.raises(ValueError, match="not a month"):
            parse_month(bad)


def test_csv_with_thai_headers_parses_like_english() -> None:
    rows = ["S1-LPG,2026-01,0.465,t,receipt 17", "S1-R32,มี.ค. 2569,1.5,กก.,"]
    english = parse_activity_csv(activity_csv(rows))
    thai = parse_activity_csv(activity_csv(rows, ACTIVITY_HEADER_TH))
    assert english.entries == thai.entries
    assert [(e.row, e.item_code, e.month, e.quantity, e.unit, e.note) for e in english.entries] == [
        (2, "S1-LPG", date(2026, 1, 1), 0.465, "t", "receipt 17"),
        (3, "S1-R32", date(2026, 3, 1), 1.5, "กก.", None),
    ]


def test_csv_format_errors_name_row_and_column() -> None:
    rows = ["S1-LPG,2026-13,5,kg,", "S1-LPG,2026-01,five,kg,", "S1-LPG,2026-01,-2,kg,", ",2026-01,2,bucket,"]
    with pytest.raises(InventoryInvalid) as info:
        parse_activity_csv(activity_csv(rows, ACTIVITY_HEADER_TH))
    assert [describe(e) for e in info.value.errors] == [
        "row 2, column 'เดือน': not a month: '2026-13'; write YYYY-MM, e.g. 2026-03 (a BE year such as 2569-03 works)",
        "row 3, column 'ปริมาณ': not a number: 'five'",
        "row 4, column 'ปริมาณ': must not be negative",
        "row 5, column 'รหัสรายการ': required value is blank",
        "row 5, column 'หน่วย': unknown unit 'bucket'; expected one of: kWh, MWh, MJ, GJ, L, m3, scf, kg, t, km, "
        "ream, tree",
    ]
    with pytest.raises(InventoryInvalid) as info:
        parse_activity_csv(b"item_code,month,amount\nX,2026-01,1\n")
    assert [describe(e) for e in info.value.errors] == [
        "row 1, column 'amount': unknown column; expected: item_code, month, quantity, unit, note",
        "row 1, column 'quantity': required column missing (English 'quantity' or Thai 'ปริมาณ')",
        "row 1, column 'unit': required column missing (English 'unit' or Thai 'หน่วย')",
    ]


# --- database ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            sync_factor_registry(conn, *factor_rows())
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """Lampang with the base year 2025 of tests/test_inventory_import.py (calendar) imported."""
    with psycopg.connect(db_url) as c:
        c.execute("TRUNCATE device_item_map, inventory_quantities, inventory_items, reporting_years, "
                  "inventory_imports RESTART IDENTITY CASCADE")  # fmt: skip
        import_inventory_file(c, csv_bytes(), file_name="base.csv", organisation="lampang", year_ce=2025)
        c.commit()
        yield c


def _month(conn: psycopg.Connection, code: str, kind: str, year: int, month: date) -> tuple[float, str] | None:
    row = conn.execute(
        "SELECT q.quantity, q.origin FROM inventory_quantities q JOIN inventory_items i ON i.id = q.item_id"
        " JOIN reporting_years y ON y.id = i.reporting_year_id"
        " WHERE i.item_code = %s AND y.kind = %s AND y.year_ce = %s AND q.month_start = %s",
        (code, kind, year, month),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _record(conn: psycopg.Connection, rows: list[str]) -> ActivityReport:
    report = record_activity(conn, "lampang", parse_activity_csv(activity_csv(rows)), origin="csv",
                             file_name="a.csv", today=TODAY)  # fmt: skip
    conn.commit()
    return report


def test_entries_carry_the_inventory_into_the_new_year_and_convert_units(conn: psycopg.Connection) -> None:
    report = _record(conn, ["S1-LPG,2026-01,0.465,t,receipt 17", "S1-R32,2026-02,1.5,kg,"])
    assert report.years_created == ["2026 (พ.ศ. 2569)"]
    assert (report.inserted, report.updated, report.unchanged) == (2, 0, 0)
    assert _month(conn, "S1-LPG", "calendar", 2026, date(2026, 1, 1)) == (465.0, "csv")  # 0.465 t = 465 kg
    # The new year has every item of 2025, with the 2025 factor except metered electricity, which takes TGO's grid
    # factor in force all of 2026 (0.4750), and no quantity it was not given.
    items = conn.execute(
        "SELECT i.item_code, i.ef_kgco2e_per_unit FROM inventory_items i JOIN reporting_years y"
        " ON y.id = i.reporting_year_id WHERE y.year_ce = 2026 ORDER BY i.position"
    ).fetchall()
    assert items == [("S2-ELEC", 0.4750), ("S1-LPG", 3.1134), ("S1-R32", 677.0), ("RM-TREES", 0.75)]
    stored = conn.execute(
        "SELECT count(*) FROM inventory_quantities q JOIN inventory_items i ON i.id = q.item_id"
        " JOIN reporting_years y ON y.id = i.reporting_year_id WHERE y.year_ce = 2026"
    ).fetchone()
    assert stored == (2,)
    assert conn.execute("SELECT is_base_year FROM reporting_years WHERE year_ce = 2026").fetchone() == (False,)


def test_the_same_entries_again_change_nothing_and_a_new_value_updates(conn: psycopg.Connection) -> None:
    _record(conn, ["S1-LPG,2026-01,465,kg,"])
    again = _record(conn, ["S1-LPG,2026-01,465,kg,"])
    assert (again.inserted, again.updated, again.unchanged, again.years_created) == (0, 0, 1, [])
    changed = _record(conn, ["S1-LPG,2026-01,470,kg,corrected"])
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 0)
    assert _month(conn, "S1-LPG", "calendar", 2026, date(2026, 1, 1)) == (470.0, "csv")
    log = list_imports(conn, require_organisation(conn, "lampang").id)
    assert [e.status for e in log[:3]] == ["applied", "unchanged", "applied"]


def test_every_entry_error_names_row_and_column_and_nothing_is_written(conn: psycopg.Connection) -> None:
    rows = [
        "S1-LPG,2026-01,465,kg,",  # row 2: fine on its own
        "S2-ELEC,2026-01,1000,kWh,",  # row 3: metered
        "S1-LPG,2026-02,10,L,",  # row 4: L does not convert to kg
        "S9-NONE,2026-01,1,kg,",  # row 5: unknown item
        "S1-R32,2026-05,1,kg,",  # row 6: after this month (today is 2026-03-15)
        "S1-LPG,2026-01,466,kg,",  # row 7: the same month twice
        "S1-LPG,2024-12,5,kg,",  # row 8: before any inventory with the item
    ]
    with pytest.raises(InventoryInvalid) as info:
        _record(conn, rows)
    conn.rollback()
    assert [describe(e) for e in info.value.errors] == [
        "row 3, column 'item_code': item 'S2-ELEC' is metered: its devices fill it; enter activity only for manual "
        "items",
        "row 4, column 'unit': unit 'L' does not convert to kg, the unit of item 'S1-LPG'",
        "row 5, column 'item_code': no inventory item 'S9-NONE' for organisation 'lampang' in or before 2026-01; "
        "known items: RM-TREES, S1-LPG, S1-R32, S2-ELEC",
        "row 6, column 'month': month 2026-05 is in the future",
        "row 7, column 'month': second entry for S1-LPG in 2026-01 (first on row 2); one row carries the month's total",
        "row 8, column 'item_code': no inventory item 'S1-LPG' for organisation 'lampang' in or before 2024-12; "
        "known items: RM-TREES, S1-LPG, S1-R32, S2-ELEC",
    ]
    assert conn.execute("SELECT count(*) FROM reporting_years").fetchone() == (1,)  # no year carried forward
    log = list_imports(conn, require_organisation(conn, "lampang").id)
    assert log[0].status == "rejected" and len(log[0].errors) == 6


def test_entries_in_a_base_year_month_replace_the_imported_value(conn: psycopg.Connection) -> None:
    assert _month(conn, "S1-LPG", "calendar", 2025, date(2025, 6, 1)) == (10.0, "import")
    _record(conn, ["S1-LPG,2025-06,12.5,kg,late receipt"])
    assert _month(conn, "S1-LPG", "calendar", 2025, date(2025, 6, 1)) == (12.5, "csv")


def test_a_month_goes_to_every_year_that_contains_it(conn: psycopg.Connection) -> None:
    """Calendar 2025 and fiscal 2026 (Oct 2025 - Sep 2026) both contain November 2025."""
    import_inventory_file(conn, csv_bytes(), file_name="fy.csv", organisation="lampang", year_ce=2026, kind="fiscal")
    conn.commit()
    report = _record(conn, ["S1-R32,2025-11,4,kg,"])
    assert [t.year for t in report.targets] == ["2025 (พ.ศ. 2568)", "FY2026 (ปีงบประมาณ พ.ศ. 2569)"]
    assert _month(conn, "S1-R32", "calendar", 2025, date(2025, 11, 1)) == (4.0, "csv")
    assert _month(conn, "S1-R32", "fiscal", 2026, date(2025, 11, 1)) == (4.0, "csv")


def test_a_fiscal_organisation_carries_forward_into_the_next_fiscal_year(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE inventory_quantities, inventory_items, reporting_years RESTART IDENTITY CASCADE")
    import_inventory_file(conn, csv_bytes(), file_name="fy.csv", organisation="lampang", year_ce=2025, kind="fiscal")
    conn.commit()
    report = _record(conn, ["S1-LPG,2025-10,300,kg,"])  # October 2025 opens fiscal 2026
    assert report.years_created == ["FY2026 (ปีงบประมาณ พ.ศ. 2569)"]
    assert _month(conn, "S1-LPG", "fiscal", 2026, date(2025, 10, 1)) == (300.0, "csv")


def test_json_entries_use_positions_and_field_names() -> None:
    entries = [{"item_code": "S1-LPG", "month": "2026-01", "quantity": 1, "unit": "kg"},
               {"item_code": "S1-LPG", "month": "Jan", "quantity": 1, "unit": "kg"}]  # fmt: skip
    with pytest.raises(InventoryInvalid) as info:
        parse_activity_json(entries)
    assert [describe(e) for e in info.value.errors] == [
        "row 2, column 'month': not a month: 'Jan'; write YYYY-MM, e.g. 2026-03 (a BE year such as 2569-03 works)"
    ]


def test_unparseable_file_is_logged_as_rejected(conn: psycopg.Connection) -> None:
    with pytest.raises(InventoryInvalid):
        import_activity_file(conn, b"item_code,month\n", organisation="lampang", file_name="bad.csv", today=TODAY)
    conn.rollback()
    log = list_imports(conn, require_organisation(conn, "lampang").id)
    assert (log[0].status, log[0].kind, log[0].file_name) == ("rejected", "activity", "bad.csv")


def test_cli_activity_import(db_url: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "activity.csv"
    path.write_bytes(activity_csv(["S1-LPG,2025-07,11,kg,"], ACTIVITY_HEADER_TH))
    result = CliRunner().invoke(app, ["activity", "import", str(path), "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert "lampang: 1 entry: inserted 0, updated 1, unchanged 0" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_bytes(activity_csv(["S2-ELEC,2025-07,11,kWh,"]))
    result = CliRunner().invoke(activity_app, ["import", str(bad), "--org", "lampang", "--database-url", db_url])
    assert result.exit_code == 1
    assert "row 2, column 'item_code': item 'S2-ELEC' is metered" in result.output
