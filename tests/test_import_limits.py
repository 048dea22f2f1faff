"""Bounds on the files people hand in (imports/limits.py), checked before a file costs more than its size suggests:
an XLSX's unpacked size and the grid its worksheets make a reader walk, a CSV's cells, NUL characters, and how many
row errors a refused file lists."""

from __future__ import annotations

import io
import zipfile
from importlib import resources

import openpyxl
import pytest

from lccm.imports.activity import parse_activity_csv
from lccm.imports.inventory import TEMPLATE_HEADER_EN, InventoryInvalid, parse_inventory
from lccm.imports.limits import DEFAULT_LIMITS, InputLimits, TooLarge, check_workbook
from lccm.imports.registry import RegistryInvalid, parse_registry_csv
from lccm.imports.temperature import TemperatureInvalid, parse_temperature_csv
from tests._db import REGISTRY_HEADER_EN, REGISTRY_ROWS, registry_csv

EXAMPLE_XLSX = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025-th.xlsx").read_bytes()
EXAMPLE_CSV = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv").read_bytes()


def _with_member(workbook: bytes, name: str, data: bytes) -> bytes:
    """The workbook with one more (or one replaced) archive member, deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(workbook)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename != name:
                dst.writestr(info, src.read(info))
        dst.writestr(name, data)
    return out.getvalue()


def _sheet(dimension: str, cells: list[str], rows_without_refs: bool = False) -> bytes:
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    body = "".join(
        f"<row{'' if rows_without_refs else f' r={chr(34)}{i + 1}{chr(34)}'}>{c}</row>" for i, c in enumerate(cells)
    )
    return (f'<?xml version="1.0"?><worksheet xmlns="{ns}"><dimension ref="{dimension}"/>'
            f"<sheetData>{body}</sheetData></worksheet>").encode()  # fmt: skip


def test_the_shipped_workbooks_pass_the_default_limits() -> None:
    check_workbook(EXAMPLE_XLSX, DEFAULT_LIMITS)
    for name in ("cfo-base-year-template.xlsx", "cfo-base-year-template-th.xlsx"):
        check_workbook(resources.files("lccm").joinpath("data", "templates", name).read_bytes(), DEFAULT_LIMITS)
    assert len(parse_inventory(EXAMPLE_XLSX).rows) == 11


def test_a_zip_bomb_is_refused_from_the_archive_directory() -> None:
    """128 MiB of zeros deflate to ~130 KB: refused on the declared size, nothing inflated."""
    bomb = _with_member(EXAMPLE_XLSX, "xl/media/image1.bin", bytes(128 * 1024 * 1024))
    assert len(bomb) < 200_000
    with zipfile.ZipFile(io.BytesIO(EXAMPLE_XLSX)) as z:
        unpacked = 128 * 1024 * 1024 + sum(i.file_size for i in z.infolist())  # the bomb plus the example's members
    with pytest.raises(TooLarge, match=f"unpacks to {unpacked:,} bytes, more than the limit of 67,108,864"):
        check_workbook(bomb, DEFAULT_LIMITS)
    with pytest.raises(InventoryInvalid) as refused:
        parse_inventory(bomb)
    assert refused.value.errors[0].row == 1 and "import_max_unpacked_bytes" in refused.value.errors[0].message


def test_a_member_that_inflates_past_its_declared_size_is_not_read_past_it() -> None:
    """The archive declares the sheet at 1,000 bytes; its data inflates to 4 MiB. zipfile stops at the declared
    size and fails the CRC check: the workbook is unreadable (a row error), never 4 MiB in memory."""
    big = _sheet("A1", ["<c r='A1' t='inlineStr'><is><t>" + "x" * (4 * 1024 * 1024) + "</t></is></c>"])
    lying = _declare_size(_with_member(EXAMPLE_XLSX, "xl/worksheets/sheet1.xml", big), "xl/worksheets/sheet1.xml", 1000)
    with pytest.raises(InventoryInvalid) as refused:
        parse_inventory(lying)
    assert "not a readable XLSX workbook" in refused.value.errors[0].message


def _declare_size(data: bytes, name: str, size: int) -> bytes:
    """``data`` with member ``name``'s uncompressed size rewritten as ``size`` in both zip headers."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        local = z.getinfo(name).header_offset
    out[local + 22 : local + 26] = size.to_bytes(4, "little")  # local file header: uncompressed size
    at = data.index(b"PK\x01\x02")
    while data[at + 46 : at + 46 + len(name)] != name.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    out[at + 24 : at + 28] = size.to_bytes(4, "little")  # central directory entry: uncompressed size
    return bytes(out)


@pytest.mark.parametrize(
    ("dimension", "cells", "grid"),
    [
        # One cell at XFD1048576: openpyxl's row reader would walk 1,048,576 rows of 16,384 cells.
        ("A1:XFD1048576", ["<c r='XFD1048576'><v>1</v></c>"], 1_048_576 * 16_384),
        # A lying dimension: 3 rows, but it claims 200 columns, and the reader pads every row to them.
        ("A1:GR3", ["<c r='A1'><v>1</v></c>", "<c r='A2'><v>1</v></c>", "<c r='A3'><v>1</v></c>"], 3 * 200),
    ],
)
def test_the_grid_a_reader_walks_is_counted_before_loading(dimension: str, cells: list[str], grid: int) -> None:
    workbook = _with_member(EXAMPLE_XLSX, "xl/worksheets/sheet1.xml", _sheet(dimension, cells))
    check_workbook(workbook, InputLimits(max_cells=grid))
    with pytest.raises(TooLarge, match=r"spans at least [\d,]+ cells .* limit of [\d,]+ \(setting import_max_cells\)"):
        check_workbook(workbook, InputLimits(max_cells=grid - 1))


def test_rows_and_cells_without_references_are_counted_too() -> None:
    row = "".join("<c><v>1</v></c>" for _ in range(30))
    workbook = _with_member(EXAMPLE_XLSX, "xl/worksheets/sheet1.xml", _sheet("A1", [row] * 10, rows_without_refs=True))
    check_workbook(workbook, InputLimits(max_cells=300))
    with pytest.raises(TooLarge):
        check_workbook(workbook, InputLimits(max_cells=299))


def test_a_workbook_spanning_the_whole_sheet_is_refused_by_the_importer() -> None:
    """Without the check, reading it walks 1,048,576 rows of 16,384 cells (the test's time-out ends it)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(TEMPLATE_HEADER_EN))
    ws.cell(row=1_048_576, column=16_384, value="x")
    out = io.BytesIO()
    wb.save(out)
    with pytest.raises(InventoryInvalid) as refused:
        parse_inventory(out.getvalue())
    (problem,) = refused.value.errors
    assert problem.row == 1 and "limit of 200,000 (setting import_max_cells)" in problem.message


def test_a_csv_is_bounded_in_cells() -> None:
    wide = EXAMPLE_CSV + b"," * 5000 + b"\n"  # 5,001 empty cells on one line
    assert len(parse_inventory(wide, limits=InputLimits(max_cells=12 * 27 + 5001)).rows) == 11
    with pytest.raises(InventoryInvalid) as refused:
        parse_inventory(wide, limits=InputLimits(max_cells=12 * 27 + 5000))
    (problem,) = refused.value.errors
    assert problem.row == 13 and "import_max_cells" in problem.message


@pytest.mark.parametrize(
    ("parse", "data", "error"),
    [
        (parse_inventory, EXAMPLE_CSV.replace(b"Street lighting", b"Street\x00lighting", 1), InventoryInvalid),
        (
            parse_registry_csv,
            registry_csv(REGISTRY_HEADER_EN, [REGISTRY_ROWS[0].replace("Main", "Ma\x00in", 1), *REGISTRY_ROWS[1:]]),
            RegistryInvalid,
        ),
        (parse_activity_csv, b"item_code,month,quantity,unit,note\nS1,2026-01,1,kg,a\x00b\n", InventoryInvalid),
        (parse_temperature_csv, b"date,mean_temp_c\n2025-01-01,21\n2025-01-02,2\x001\n", TemperatureInvalid),
    ],
)
def test_a_nul_character_in_a_file_is_a_row_error(parse: object, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as refused:
        parse(data)  # type: ignore[operator]
    (problem,) = refused.value.errors  # type: ignore[attr-defined]
    assert "NUL" in problem.message and problem.row >= 2 and "\x00" not in problem.value


def test_a_refused_file_lists_the_first_errors_and_counts_all() -> None:
    bad = "\n".join(["site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s"]
                    + [f"S{i},Site,building,Lampang,D{i},no_such_kind,Meter,60" for i in range(500)])  # fmt: skip
    with pytest.raises(RegistryInvalid) as refused:
        parse_registry_csv(bad.encode(), InputLimits(max_errors_listed=7))
    assert refused.value.total == 500 and len(refused.value.errors) == 7
    assert [e.row for e in refused.value.errors] == [2, 3, 4, 5, 6, 7, 8]
    assert str(refused.value) == "500 error(s) in the device registry file"
