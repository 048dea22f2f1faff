"""Manual activity data as people hand it in: a CSV (English or Thai headers) or the API's JSON entries. Pure.

One entry = one item's total for one Bangkok month, in a unit (t, kg, L, m3, kWh ...; converted to the item's unit
when written). Months may be written 2026-03, 03/2026, Mar 2026 or มี.ค. 2569 (a year of 2400 or more is Buddhist
Era). Every problem is reported with its row (CSV line, or 1-based position in a JSON list) and column (the CSV header
as written, or the JSON field name). ``store.inventory_activity.record_activity`` checks the entries against the
organisation's items (known, manual, unit convertible, not in the future) and writes them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from lccm.engine.timebase import ce_from_buddhist_era
from lccm.imports import units
from lccm.imports.inventory import MONTH_HEADERS, MONTHS, InventoryInvalid
from lccm.imports.limits import DEFAULT_LIMITS, InputLimits
from lccm.imports.rows import NUL_MESSAGE, RowError, first_nul_line, normalise_header

HEADER_ROW = 1

# Canonical column -> Thai header (both accepted, folded like the other templates).
ACTIVITY_COLUMNS: dict[str, str] = {
    "item_code": "รหัสรายการ",
    "month": "เดือน",
    "quantity": "ปริมาณ",
    "unit": "หน่วย",
    "note": "หมายเหตุ",
}
_REQUIRED = ("item_code", "month", "quantity", "unit")
_HEADER_LOOKUP = {normalise_header(a): k for k, th in ACTIVITY_COLUMNS.items() for a in (k, th)}
_MONTH_NAMES = {units.fold(name): i + 1 for i, m in enumerate(MONTHS) for name in MONTH_HEADERS[m]}
_ISO_MONTH = re.compile(r"^(\d{4})-(\d{1,2})(?:-01)?$")
_SLASH_MONTH = re.compile(r"^(\d{1,2})/(\d{4})$")
_NAMED_MONTH = re.compile(r"^(.+?)\s*(\d{4})$")
_BE_FROM = 2400  # a year this large is Buddhist Era (CE + 543): 2569 -> 2026


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    row: int
    item_code: str
    month: date  # first day of the Bangkok month
    quantity: float  # in ``unit``
    unit: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedActivity:
    entries: tuple[ActivityEntry, ...]
    labels: Mapping[str, str]  # canonical column -> how the input names it (for error messages)
    file_format: Literal["csv", "json"]
    sha256: str


def parse_month(text: str) -> date:
    """'2026-03', '03/2026', 'Mar 2026', 'มี.ค. 2569' -> date(2026, 3, 1). Years of 2400 and more are BE."""
    folded = units.fold(text)
    year, month = None, None
    if m := _ISO_MONTH.match(folded):
        year, month = int(m.group(1)), int(m.group(2))
    elif m := _SLASH_MONTH.match(folded):
        year, month = int(m.group(2)), int(m.group(1))
    elif (m := _NAMED_MONTH.match(folded)) and units.fold(m.group(1)) in _MONTH_NAMES:
        year, month = int(m.group(2)), _MONTH_NAMES[units.fold(m.group(1))]
    if year is None or month is None or not 1 <= month <= 12:
        raise ValueError(
            f"not a month: {text.strip()!r}; write YYYY-MM, e.g. 2026-03 (a BE year such as 2569-03 works)"
        )
    return date(ce_from_buddhist_era(year) if year >= _BE_FROM else year, month, 1)


def _entry(
    row: int, values: Mapping[str, Any], labels: Mapping[str, str]
) -> tuple[ActivityEntry | None, list[RowError]]:
    errors: list[RowError] = []

    def fail(key: str, message: str) -> None:
        raw = values.get(key)
        errors.append(RowError(row, labels.get(key, key), "" if raw is None else str(raw).strip(), message))

    texts = {k: ("" if values.get(k) is None else str(values[k]).strip()) for k in ACTIVITY_COLUMNS}
    for key in _REQUIRED:
        if not texts[key]:
            fail(key, "required value is blank")
    month = quantity = None
    if texts["month"]:
        try:
            month = parse_month(texts["month"])
        except ValueError as exc:
            fail("month", str(exc))
    if texts["quantity"]:
        try:
            quantity = units.number(values["quantity"])
        except ValueError as exc:
            fail("quantity", str(exc))
        if quantity is not None and quantity < 0:
            fail("quantity", "must not be negative")
    if texts["unit"]:
        try:
            units.unit(texts["unit"])
        except ValueError as exc:
            fail("unit", str(exc))
    if errors or month is None or quantity is None:
        return None, errors
    entry = ActivityEntry(row, texts["item_code"], month, quantity, texts["unit"], texts["note"] or None)
    return entry, []


def parse_activity_csv(data: bytes, limits: InputLimits = DEFAULT_LIMITS) -> ParsedActivity:
    """Validate an activity CSV (columns item_code, month, quantity, unit, note; Thai headers accepted)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"file is not UTF-8 ({exc.reason} at byte {exc.start}); save it as 'CSV UTF-8'"
        raise InventoryInvalid([RowError(HEADER_ROW, "", "", message)], "activity file") from exc
    if (nul := first_nul_line(text)) is not None:
        raise InventoryInvalid([RowError(nul, "", "", NUL_MESSAGE)], "activity file")
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InventoryInvalid([RowError(start, "", "", f"not valid CSV: {exc}")], "activity file") from exc
    if not records:
        raise InventoryInvalid([RowError(HEADER_ROW, "", "", "file is empty")], "activity file")
    (header_line, header), body = records[0], records[1:]
    mapping, labels, errors = _map_header(header_line, header)
    if errors:
        raise InventoryInvalid(errors, "activity file", max_listed=limits.max_errors_listed)
    entries: list[ActivityEntry] = []
    for line, cells in body:
        values: dict[str, str] = {}
        for index, cell in enumerate(cells):
            if index in mapping:
                values[mapping[index]] = cell
            elif cell.strip():
                errors.append(RowError(line, f"column {index + 1}", cell.strip(), "value in a column with no header"))
        entry, row_errors = _entry(line, values, labels)
        errors += row_errors
        if entry is not None:
            entries.append(entry)
    if not body:
        errors.append(RowError(HEADER_ROW, "", "", "file has a header but no entries"))
    if errors:
        raise InventoryInvalid(
            sorted(errors, key=lambda e: e.row), "activity file", max_listed=limits.max_errors_listed
        )
    return ParsedActivity(tuple(entries), labels, "csv", hashlib.sha256(data).hexdigest())


def _map_header(line: int, header: list[str]) -> tuple[dict[int, str], dict[str, str], list[RowError]]:
    mapping: dict[int, str] = {}
    labels: dict[str, str] = {}
    errors: list[RowError] = []
    for index, raw in enumerate(header):
        if not raw.strip():
            continue
        key = _HEADER_LOOKUP.get(normalise_header(raw))
        if key is None:
            errors.append(RowError(line, raw.strip(), raw, f"unknown column; expected: {', '.join(ACTIVITY_COLUMNS)}"))
        elif key in labels:
            errors.append(RowError(line, raw.strip(), raw, f"same column as {labels[key]!r}"))
        else:
            mapping[index], labels[key] = key, raw.strip()
    for key in _REQUIRED:
        if key not in labels:
            message = f"required column missing (English {key!r} or Thai {ACTIVITY_COLUMNS[key]!r})"
            errors.append(RowError(line, key, "", message))
    return mapping, labels, errors


def parse_activity_json(entries: Sequence[Mapping[str, Any]], raw: bytes = b"") -> ParsedActivity:
    """Validate entries given as JSON objects (the API body); rows are 1-based positions in the list."""
    labels = {k: k for k in ACTIVITY_COLUMNS}
    parsed: list[ActivityEntry] = []
    errors: list[RowError] = []
    for position, values in enumerate(entries, start=1):
        entry, row_errors = _entry(position, values, labels)
        errors += row_errors
        if entry is not None:
            parsed.append(entry)
    if not entries:
        errors.append(RowError(0, "entries", "", "no entries"))
    if errors:
        raise InventoryInvalid(errors, "activity entries")
    return ParsedActivity(tuple(parsed), labels, "json", hashlib.sha256(raw).hexdigest())
