"""A CFO inventory in TGO's template: its columns (English and Thai headers), reading CSV and XLSX, validation. Pure.

``parse_inventory(data) -> ParsedInventory`` reads a whole file and either returns every row validated or raises
``InventoryInvalid`` listing every problem with its row (as numbered in the file or sheet, header = row 1 unless
blank lines precede it) and column (the header as written), e.g. ``row 7, column 'Mar': not a number: '1,2x'``.
The layout mirrors TGO's monthly calculation form 1.5(1): one row per emission source, the factor and its unit, and
one quantity column per month. docs/inventory-template.md is the user-facing description of the same rules.

Month columns are named (Jan..Dec, or ม.ค...ธ.ค.), so their order in the file does not matter: a fiscal-year file
may list Oct..Sep. Which calendar year each month falls in is decided at import time from the reporting year
(fiscal 2025 = Oct 2024 .. Sep 2025); rows always come out with months in January..December order.

``store.inventory.import_inventory`` writes the parsed rows as one organisation-year.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal
from xml.etree import ElementTree

from lccm.imports import gpc, units
from lccm.imports.limits import DEFAULT_LIMITS, InputLimits, TooLarge, check_workbook, too_many_cells
from lccm.imports.rows import NUL_MESSAGE, RowError, RowsInvalid, normalise_header

HEADER_ROW = 1
GWP_SETS = ("AR4", "AR5", "AR6")
# AR5: the set of TGO's CFO emission-factor table of April 2022 (docs/reference.md#global-warming-potentials).
DEFAULT_GWP_SET = "AR5"
ITEM_CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SOURCE_CLASS_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
GAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/()-]{0,31}$")
FileFormat = Literal["csv", "xlsx"]


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    scopes: tuple[int, ...]
    name_en: str
    name_th: str
    is_removal: bool = False


# Mirrors the cfo_categories rows of migration 007 (a test checks they agree); TGO CFO calculation form 1.5(1)
# (docs/reference.md#scopes-and-cfo-categories).
CATEGORIES: tuple[Category, ...] = (
    Category("stationary_combustion", (1,), "Stationary combustion", "การเผาไหม้อยู่กับที่"),
    Category("mobile_combustion", (1,), "Mobile combustion", "การเผาไหม้เคลื่อนที่"),
    Category("fugitive_refrigerant", (1,), "Fugitive - refrigerants", "การรั่วไหลของสารทำความเย็น"),
    Category("fugitive_wastewater", (1,), "Fugitive - wastewater", "การบำบัดน้ำเสีย"),
    Category("waste_landfill", (1, 3), "Landfill / waste disposal", "การฝังกลบขยะมูลฝอย"),
    Category("purchased_electricity", (2,), "Purchased electricity", "การใช้พลังงานไฟฟ้า"),
    Category("other_indirect", (3,), "Other indirect", "การปล่อยก๊าซเรือนกระจกทางอ้อมอื่น ๆ"),
    Category("removal", (1,), "Removals", "การดูดกลับก๊าซเรือนกระจก", is_removal=True),
)
CATEGORY_BY_CODE: dict[str, Category] = {c.code: c for c in CATEGORIES}
_CATEGORY_LOOKUP: dict[str, Category] = {
    units.fold(name): c for c in CATEGORIES for name in (c.code, c.code.replace("_", " "), c.name_en, c.name_th)
}

# Month keys in calendar order, each with its accepted headers (English and Thai, abbreviated and in full).
MONTHS: tuple[str, ...] = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH_HEADERS: dict[str, tuple[str, ...]] = {
    "jan": ("Jan", "January", "ม.ค.", "มกราคม"),
    "feb": ("Feb", "February", "ก.พ.", "กุมภาพันธ์"),
    "mar": ("Mar", "March", "มี.ค.", "มีนาคม"),
    "apr": ("Apr", "April", "เม.ย.", "เมษายน"),
    "may": ("May", "May", "พ.ค.", "พฤษภาคม"),
    "jun": ("Jun", "June", "มิ.ย.", "มิถุนายน"),
    "jul": ("Jul", "July", "ก.ค.", "กรกฎาคม"),
    "aug": ("Aug", "August", "ส.ค.", "สิงหาคม"),
    "sep": ("Sep", "September", "ก.ย.", "กันยายน"),
    "oct": ("Oct", "October", "ต.ค.", "ตุลาคม"),
    "nov": ("Nov", "November", "พ.ย.", "พฤศจิกายน"),
    "dec": ("Dec", "December", "ธ.ค.", "ธันวาคม"),
}


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    english: str  # header of the English template
    thai: str  # header of the Thai template
    required: bool
    aliases: tuple[str, ...] = ()


# The template's columns in template order; the 12 month columns follow "note".
COLUMNS: tuple[Column, ...] = (
    Column("item_code", "item_code", "รหัสรายการ", True),
    Column("scope", "scope", "ขอบเขต", True, ("ประเภท",)),
    Column("category", "category", "หมวดหมู่", True),
    Column("activity_en", "activity_en", "กิจกรรม_ภาษาอังกฤษ", False, ("activity",)),
    Column("activity_th", "activity_th", "กิจกรรม_ภาษาไทย", False, ("กิจกรรม",)),
    Column("unit", "unit", "หน่วย", True),
    Column("ef", "ef", "ค่าสัมประสิทธิ์การปล่อย", True, ("emission_factor", "ค่า_ef")),
    Column("ef_unit", "ef_unit", "หน่วยค่าสัมประสิทธิ์", True, ("หน่วย_ef",)),
    Column("ef_source", "ef_source", "แหล่งอ้างอิงค่าสัมประสิทธิ์", True, ("แหล่งอ้างอิง_ef",)),
    Column("gwp_set", "gwp_set", "ชุดค่า_GWP", False, ("gwp",)),
    Column("gas", "gas", "ชนิดก๊าซ", False),
    Column("gpc_ref", "gpc_ref", "รหัส_GPC", False, ("gpc",)),
    Column("collection", "collection", "การเก็บข้อมูล", False),
    Column("source_class", "source_class", "ประเภทแหล่งที่มิเตอร์วัด", False),
    Column("note", "note", "หมายเหตุ", False, ("notes", "remark")),
    *(Column(m, MONTH_HEADERS[m][0], MONTH_HEADERS[m][2], True, MONTH_HEADERS[m][1::2]) for m in MONTHS),
    Column("total", "total", "รวม", False, ("total_quantity", "ปริมาณรวม")),
    Column("total_tco2e", "total_tco2e", "รวม_tCO2e", False, ("tco2e",)),
)
COLUMN_BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}
_HEADER_LOOKUP: dict[str, str] = {
    normalise_header(name): c.key for c in COLUMNS for name in (c.key, c.english, c.thai, *c.aliases)
}
# The header rows of the two templates (lccm/data/templates/), in template order.
TEMPLATE_HEADER_EN: tuple[str, ...] = tuple(c.english for c in COLUMNS if c.key not in ("total", "total_tco2e"))
TEMPLATE_HEADER_TH: tuple[str, ...] = tuple(c.thai for c in COLUMNS if c.key not in ("total", "total_tco2e"))

COLLECTIONS: dict[str, str] = {
    "metered": "metered", "meter": "metered", "มิเตอร์": "metered", "วัดด้วยมิเตอร์": "metered",
    "manual": "manual", "บันทึกเอง": "manual", "กรอกเอง": "manual",
}  # fmt: skip
_SCOPE = re.compile(r"^(?:scope|s|ขอบเขต(?:ที่)?|ประเภท(?:ที่)?)?\s*([123])$")
_GWP = re.compile(r"^(?:ipcc\s*)?(ar[456])$")
# Sums written in a spreadsheet are rounded: accept half a unit of the 2nd decimal plus 0.5 % of the value.
_SUM_ABS_TOL, _SUM_REL_TOL = 0.005, 0.005


@dataclass(frozen=True, slots=True)
class SourceClassInfo:
    """What the parser needs of a source class (store.inventory.load_source_classes reads the table)."""

    key: str
    scope: int
    unit: str  # canonical activity unit of the class's register (kWh, L)


@dataclass(frozen=True, slots=True)
class InventoryRow:
    row: int  # line or sheet row where the record starts
    item_code: str
    scope: int
    category: str
    is_removal: bool
    activity_en: str | None
    activity_th: str | None
    unit: str
    ef_kgco2e_per_unit: float
    ef_unit: str
    ef_source: str
    gwp_set: str
    gas: str | None
    gpc_ref: str | None
    collection: str
    source_class: str | None
    note: str | None
    months: tuple[float | None, ...]  # January..December; None = no quantity recorded for that month

    def content(self) -> tuple[Any, ...]:
        """Everything but the row number: two rows with equal content store the same item."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "row")

    @property
    def total(self) -> float:
        return sum(q for q in self.months if q is not None)

    @property
    def kgco2e(self) -> float:
        """Emissions of the year (negative for a removal)."""
        return (-1.0 if self.is_removal else 1.0) * self.total * self.ef_kgco2e_per_unit


@dataclass(frozen=True, slots=True)
class ParsedInventory:
    rows: tuple[InventoryRow, ...]
    file_format: FileFormat
    sha256: str

    def content(self) -> tuple[tuple[Any, ...], ...]:
        return tuple(r.content() for r in self.rows)


class InventoryInvalid(RowsInvalid):
    """An inventory file, activity entries or a device mapping failed validation; nothing was written. ``errors``
    lists every problem found. Raised here for the file, and by the store for checks against stored data."""

    def __init__(
        self, errors: Sequence[RowError], what: str = "inventory file", *, max_listed: int | None = None
    ) -> None:
        super().__init__(f"{len(errors)} error(s) in the {what}", errors, max_listed=max_listed)


# ---------------------------------------------------------------------------------------------------------------
# Reading cells


Cell = str | float | int | None
Record = tuple[int, list[Cell]]


def _csv_records(data: bytes, max_cells: int) -> Iterator[Record]:
    try:
        text = data.decode("utf-8-sig")  # drops the BOM Excel writes into "CSV UTF-8" files
    except UnicodeDecodeError as exc:
        message = f"file is not UTF-8 ({exc.reason} at byte {exc.start}); save it as 'CSV UTF-8' or as .xlsx"
        raise InventoryInvalid([RowError(HEADER_ROW, "", "", message)]) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    start, count = 1, 0
    try:
        for cells in reader:
            count += len(cells)  # blank ones too: a line of a million commas is a million cells read
            if count > max_cells:
                raise InventoryInvalid([RowError(start, "", "", too_many_cells(count, max_cells))])
            if any(c.strip() for c in cells):
                yield start, list(cells)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InventoryInvalid([RowError(start, "", "", f"not valid CSV: {exc}")]) from exc


def _xlsx_records(data: bytes, limits: InputLimits) -> Iterator[Record]:
    """Rows of the first worksheet. A formula cell must carry the value Excel saved with it: a file written by a
    program that never calculated it has none, and reading it as blank would silently lose the quantity. The
    workbook is checked against ``limits`` before openpyxl loads it (imports/limits.py)."""
    import openpyxl  # deferred: only XLSX uploads pay for the import

    try:
        check_workbook(data, limits)
    except TooLarge as exc:
        raise InventoryInvalid([RowError(HEADER_ROW, "", "", str(exc))]) from exc
    except _UNREADABLE as exc:
        raise _unreadable(exc) from exc
    try:
        values = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except _UNREADABLE as exc:
        raise _unreadable(exc) from exc
    try:
        sheet_values, sheet_formulas = values.worksheets[0], formulas.worksheets[0]
        pairs = zip(sheet_values.iter_rows(values_only=True), sheet_formulas.iter_rows(values_only=True), strict=False)
        for number, (row, raw) in enumerate(pairs, start=1):
            cells: list[Cell] = []
            for index, value in enumerate(row):
                written = raw[index] if index < len(raw) else None
                if value is None and isinstance(written, str) and written.startswith("="):
                    value = _FormulaWithoutValue(written)
                cells.append(_xlsx_cell(value))
            if any(c is not None and str(c).strip() for c in cells):
                yield number, cells
    except _UNREADABLE as exc:  # read-only worksheets are parsed while their rows are read
        raise _unreadable(exc) from exc
    finally:
        values.close()
        formulas.close()


# What a damaged workbook raises, from zipfile (a member that fails its CRC or inflates past its declared size),
# the XML parser, or openpyxl.
_UNREADABLE = (zipfile.BadZipFile, ElementTree.ParseError, KeyError, IndexError, OSError, ValueError, EOFError)


def _unreadable(exc: BaseException) -> InventoryInvalid:
    return InventoryInvalid([RowError(HEADER_ROW, "", "", f"not a readable XLSX workbook: {exc}")])


class _FormulaWithoutValue(str):
    """A formula cell with no saved result (reported as an error on its column)."""


def _xlsx_cell(value: Any) -> Cell:
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
        return value
    return str(value)  # dates, booleans: kept as text, so a text column shows them and a number column refuses them


def _text(value: Cell) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a scope typed as 1 is read back as 1.0 by spreadsheet libraries
    return "" if value is None else str(value).strip()


# ---------------------------------------------------------------------------------------------------------------
# Header


def _map_header(header: list[Cell], line: int) -> tuple[dict[int, str], dict[str, str], list[RowError]]:
    """Column index -> key; key -> header as written; errors for unknown, duplicated or missing columns."""
    mapping: dict[int, str] = {}
    labels: dict[str, str] = {}
    errors: list[RowError] = []
    for index, cell in enumerate(header):
        raw = _text(cell)
        if not raw:
            continue
        key = _HEADER_LOOKUP.get(normalise_header(raw))
        if key is None:
            expected = ", ".join(TEMPLATE_HEADER_EN)
            errors.append(RowError(line, raw, raw, f"unknown column; expected one of: {expected}, total, total_tco2e"))
        elif key in labels:
            errors.append(RowError(line, raw, raw, f"same column as {labels[key]!r}"))
        else:
            mapping[index], labels[key] = key, raw
    for column in COLUMNS:
        if column.required and column.key not in labels:
            message = f"required column missing (English {column.english!r} or Thai {column.thai!r})"
            errors.append(RowError(line, column.english, "", message))
    if "activity_en" not in labels and "activity_th" not in labels:
        message = "required column missing: activity_en or activity_th (Thai 'กิจกรรม_ภาษาอังกฤษ' or 'กิจกรรม')"
        errors.append(RowError(line, "activity_en", "", message))
    return mapping, labels, errors


# ---------------------------------------------------------------------------------------------------------------
# One row


class _RowCheck:
    """Validates one record field by field, collecting an error per bad cell."""

    def __init__(self, line: int, cells: dict[str, Cell], labels: dict[str, str]) -> None:
        self.line, self.cells, self.labels = line, cells, labels
        self.errors: list[RowError] = []

    def fail(self, key: str, message: str) -> None:
        self.errors.append(RowError(self.line, self.labels.get(key, key), _text(self.cells.get(key)), message))

    def has_error(self, *keys: str) -> bool:
        labels = {self.labels.get(k, k) for k in keys}
        return any(e.column in labels for e in self.errors)

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.cells.get(key)
        if isinstance(value, _FormulaWithoutValue):
            self.fail(key, "formula without a saved value; open the file in Excel or LibreOffice and save it again")
            return None
        text = _text(value)
        if not text and required:
            self.fail(key, "required value is blank")
        return text or None

    def number(self, key: str, *, required: bool = False, signed: bool = False) -> float | None:
        value = self.cells.get(key)
        if isinstance(value, _FormulaWithoutValue):
            self.text(key)
            return None
        try:
            result = units.number(value)
        except ValueError as exc:
            self.fail(key, str(exc))
            return None
        if result is None and required:
            self.fail(key, "required value is blank")
        elif result is not None and result < 0 and not signed:
            self.fail(key, "must not be negative (a removal is a row in category 'removal' with positive numbers)")
            return None
        return result


def _parse_row(
    line: int, cells: dict[str, Cell], labels: dict[str, str], classes: Mapping[str, SourceClassInfo] | None
) -> tuple[InventoryRow | None, list[RowError]]:
    c = _RowCheck(line, cells, labels)
    item_code = c.text("item_code", required=True)
    if item_code and not ITEM_CODE_PATTERN.match(item_code):
        c.fail("item_code", "must start with a letter or digit and contain only letters, digits, '_', '.' and '-' "
               "(at most 64 characters)")  # fmt: skip
    category = _category(c)
    scope = _scope(c, category)
    activity_en, activity_th = c.text("activity_en"), c.text("activity_th")
    if activity_en is None and activity_th is None and not c.has_error("activity_en", "activity_th"):
        c.fail("activity_en" if "activity_en" in labels else "activity_th", "required value is blank")
    activity_unit = _unit(c)
    ef, ef_unit = _factor(c, activity_unit)
    ef_source = c.text("ef_source", required=True)
    gwp_set = _gwp_set(c)
    gas = c.text("gas")
    if gas and not GAS_PATTERN.match(gas):
        c.fail("gas", "not a gas name (e.g. HFC-32, R-410A, CH4; at most 32 characters)")
    gpc_ref = _gpc_ref(c, scope)
    collection = _collection(c, category)
    source_class = _source_class(c, classes, scope, activity_unit)
    note = c.text("note")
    months = tuple(c.number(m) for m in MONTHS)
    _check_totals(c, months, ef, category)
    if c.errors:
        return None, c.errors
    assert item_code and category and scope and activity_unit and ef is not None and ef_unit and ef_source
    row = InventoryRow(
        row=line, item_code=item_code, scope=scope, category=category.code, is_removal=category.is_removal,
        activity_en=activity_en, activity_th=activity_th, unit=activity_unit.symbol, ef_kgco2e_per_unit=ef,
        ef_unit=ef_unit, ef_source=ef_source, gwp_set=gwp_set or DEFAULT_GWP_SET, gas=gas, gpc_ref=gpc_ref,
        collection=collection or "manual", source_class=source_class, note=note, months=months,
    )  # fmt: skip
    return row, []


def _category(c: _RowCheck) -> Category | None:
    text = c.text("category", required=True)
    if text is None:
        return None
    found = _CATEGORY_LOOKUP.get(units.fold(text))
    if found is None:
        known = "; ".join(f"{k.code} ({k.name_en} / {k.name_th})" for k in CATEGORIES)
        c.fail("category", f"unknown category; expected one of: {known}")
    return found


def _scope(c: _RowCheck, category: Category | None) -> int | None:
    text = c.text("scope", required=True)
    if text is None:
        return None
    match = _SCOPE.match(units.fold(text))
    if match is None:
        c.fail("scope", "not a scope; write 1, 2 or 3")
        return None
    scope = int(match.group(1))
    if category is not None and scope not in category.scopes:
        allowed = " or ".join(str(s) for s in category.scopes)
        c.fail("scope", f"category {category.code!r} is reported in scope {allowed}, not {scope}")
        return None
    return scope


def _gpc_ref(c: _RowCheck, scope: int | None) -> str | None:
    """The reference as written, once it resolves to a GPC v1.1 reference number (imports/gpc.py)."""
    text = c.text("gpc_ref")
    if text is None or scope is None:
        return text
    try:
        gpc.resolve(text, scope)
    except gpc.GpcRefInvalid as exc:
        c.fail("gpc_ref", str(exc))
        return None
    return text


def _unit(c: _RowCheck) -> units.Unit | None:
    text = c.text("unit", required=True)
    if text is None:
        return None
    try:
        return units.unit(text)
    except ValueError as exc:
        c.fail("unit", str(exc))
        return None


def _factor(c: _RowCheck, activity_unit: units.Unit | None) -> tuple[float | None, str | None]:
    """(kgCO2e per activity unit, the EF unit as written); the EF's unit must be per the row's activity unit."""
    value = c.number("ef", required=True)
    written = c.text("ef_unit", required=True)
    if written is None:
        return None, None
    try:
        kg_per_mass, per_unit = units.ef_unit(written)
    except ValueError as exc:
        c.fail("ef_unit", str(exc))
        return None, None
    if activity_unit is not None and per_unit is not activity_unit:
        c.fail("ef_unit", f"factor is per {per_unit.symbol} but the activity unit is {activity_unit.symbol}")
        return None, None
    return (None if value is None else value * kg_per_mass), written


def _gwp_set(c: _RowCheck) -> str | None:
    text = c.text("gwp_set")
    if text is None:
        return None
    match = _GWP.match(units.fold(text))
    if match is None:
        c.fail("gwp_set", f"unknown GWP set; expected {', '.join(GWP_SETS)} (blank = {DEFAULT_GWP_SET})")
        return None
    return match.group(1).upper()


def _collection(c: _RowCheck, category: Category | None) -> str | None:
    text = c.text("collection")
    if text is None:
        return None
    found = COLLECTIONS.get(units.fold(text))
    if found is None:
        c.fail("collection", "expected metered or manual (มิเตอร์ / บันทึกเอง); blank = manual")
    elif found == "metered" and category is not None and category.is_removal:
        c.fail("collection", "a removal is entered by hand, it cannot be metered")
        return None
    return found


def _source_class(
    c: _RowCheck, classes: Mapping[str, SourceClassInfo] | None, scope: int | None, activity_unit: units.Unit | None
) -> str | None:
    text = c.text("source_class")
    if text is None:
        return None
    if not SOURCE_CLASS_PATTERN.match(text):
        c.fail("source_class", "not a source class key (lower-case letters, digits and '_', e.g. fleet_diesel)")
        return None
    if classes is None:
        return text
    info = classes.get(text)
    if info is None:
        c.fail("source_class", f"unknown source class; expected one of: {', '.join(sorted(classes))}")
        return None
    if scope is not None and info.scope != scope:
        c.fail("source_class", f"source class {text!r} is scope {info.scope}, this row is scope {scope}")
    elif activity_unit is not None and info.unit != activity_unit.symbol:
        c.fail(
            "source_class", f"source class {text!r} is metered in {info.unit}, this row is in {activity_unit.symbol}"
        )
    return text


def _close(given: float, expected: float) -> bool:
    return abs(given - expected) <= _SUM_ABS_TOL + _SUM_REL_TOL * abs(expected)


def _check_totals(c: _RowCheck, months: tuple[float | None, ...], ef: float | None, category: Category | None) -> None:
    """Optional total columns (as TGO's form prints them) must agree with the months: they catch a mistyped cell."""
    total = sum(q for q in months if q is not None)
    given = c.number("total")
    if given is not None and not _close(given, total):
        c.fail("total", f"total {given:g} is not the sum of the months ({total:g})")
    tco2e = c.number("total_tco2e", signed=True)
    if tco2e is not None and ef is not None and category is not None:
        expected = total * ef / 1000.0
        # A removal's total may be written with or without its minus sign; numbers are checked as magnitudes.
        if not _close(abs(tco2e), expected):
            c.fail("total_tco2e", f"total_tco2e {tco2e:g} is not sum x EF / 1000 ({expected:g})")


# ---------------------------------------------------------------------------------------------------------------
# Whole file


def _cross_row_errors(
    rows: Sequence[InventoryRow], codes: Sequence[tuple[int, str]], labels: dict[str, str]
) -> list[RowError]:
    errors: list[RowError] = []
    first: dict[str, int] = {}
    for line, code in codes:
        if code in first:
            errors.append(RowError(line, labels["item_code"], code, f"duplicate item_code, first on row {first[code]}"))
        else:
            first.setdefault(code, line)
    if rows:
        # ISO 14064-1 practice: one GWP set per inventory, the same in base and reporting years
        # (docs/reference.md#base-year-and-targets).
        reference = rows[0]
        for r in rows[1:]:
            if r.gwp_set != reference.gwp_set:
                message = f"GWP set {r.gwp_set} differs from {reference.gwp_set} on row {reference.row}; " \
                          "an inventory uses one GWP set"  # fmt: skip
                errors.append(RowError(r.row, labels.get("gwp_set", "gwp_set"), r.gwp_set, message))
    return errors


def detect_format(data: bytes) -> FileFormat:
    """XLSX files are ZIP archives; anything else is read as CSV."""
    return "xlsx" if data[:4] == b"PK\x03\x04" else "csv"


def parse_inventory(
    data: bytes, *, source_classes: Mapping[str, SourceClassInfo] | None = None, limits: InputLimits = DEFAULT_LIMITS
) -> ParsedInventory:
    """Validate a whole base-year file (CSV or XLSX). Returns every row, or raises ``InventoryInvalid``.

    ``source_classes``: the known classes; a metered row's class must be one of them, in the row's scope and unit.
    None checks only the key's spelling. ``limits``: the file's cells, an XLSX's unpacked size, errors listed."""
    file_format = detect_format(data)
    read = _xlsx_records(data, limits) if file_format == "xlsx" else _csv_records(data, limits.max_cells)
    records = _without_nul(read)
    header = next(records, None)
    if header is None:
        raise InventoryInvalid([RowError(HEADER_ROW, "", "", "file is empty")])
    mapping, labels, errors = _map_header(header[1], header[0])
    if errors:  # row checks against a wrong header would only add noise
        raise InventoryInvalid(errors, max_listed=limits.max_errors_listed)
    rows: list[InventoryRow] = []
    codes: list[tuple[int, str]] = []
    code_index = next(i for i, k in mapping.items() if k == "item_code")
    for line, cells in records:
        named: dict[str, Cell] = {}
        for index, value in enumerate(cells):
            if index in mapping:
                named[mapping[index]] = value
            elif _text(value):
                errors.append(RowError(line, f"column {index + 1}", _text(value), "value in a column with no header"))
        row, row_errors = _parse_row(line, named, labels, source_classes)
        errors.extend(row_errors)
        if row is not None:
            rows.append(row)
        if code_index < len(cells) and _text(cells[code_index]):
            codes.append((line, _text(cells[code_index])))
    if not codes and not errors:
        errors.append(RowError(HEADER_ROW, "", "", "file has a header but no inventory rows"))
    errors.extend(_cross_row_errors(rows, codes, labels))
    if errors:
        raise InventoryInvalid(sorted(errors, key=lambda e: e.row), max_listed=limits.max_errors_listed)
    return ParsedInventory(tuple(rows), file_format, hashlib.sha256(data).hexdigest())


def _without_nul(records: Iterator[Record]) -> Iterator[Record]:
    """The records, refusing a cell with a NUL character (a CSV can carry one, an XLSX too, as _x0000_), which no
    column can store."""
    for line, row in records:
        if any(isinstance(c, str) and "\x00" in c for c in row):
            raise InventoryInvalid([RowError(line, "", "", NUL_MESSAGE)])
        yield line, row
