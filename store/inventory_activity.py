"""Manual activity data: what no sensor measures (refrigerant top-ups, LPG purchases, waste to landfill, water,
paper), entered through the API (JSON) or a CSV (read by imports/activity.py), into the monthly quantities of the
organisation's manual items.

One entry = one item's total for one Bangkok month, in a unit convertible to the item's unit (t for a kg item is
converted; kg for an L item is refused: that needs a density nobody typed). Entering a month again replaces its
value, so re-sending the same entries or file changes nothing. Entries go to every reporting year of the
organisation that contains the month and has the item (a calendar and a fiscal inventory may both); when none has
it yet, the year is carried forward from the latest earlier year with that item (store.inventory.carry_forward).
Metered items refuse entries: their devices fill them, and a hand-entered figure would count the activity twice.

All entries or none: every problem is reported with its row (CSV line, or 1-based position in a JSON list) and
column (the CSV header as written, or the JSON field name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

import psycopg
from psycopg.types.json import Jsonb

from lccm.engine.timebase import BANGKOK
from lccm.imports import units
from lccm.imports.activity import ActivityEntry, ParsedActivity, parse_activity_csv
from lccm.imports.inventory import InventoryInvalid
from lccm.imports.limits import DEFAULT_LIMITS, InputLimits
from lccm.imports.rows import RowError
from lccm.store.inventory import (
    Organisation,
    ReportingYear,
    YearKind,
    carry_forward,
    list_years,
    lock_organisation,
    record_rejection,
    require_organisation,
    year_containing,
    year_label,
)

Origin = Literal["api", "csv"]


@dataclass(frozen=True, slots=True)
class ActivityTarget:
    item_code: str
    month: date
    year: str  # label of the reporting year written, e.g. "FY2026 (ปีงบประมาณ พ.ศ. 2569)"
    quantity: float  # in the item's unit
    unit: str


@dataclass(frozen=True, slots=True)
class ActivityReport:
    import_id: int
    entries: int
    inserted: int
    updated: int
    unchanged: int
    years_created: list[str] = field(default_factory=list)
    targets: list[ActivityTarget] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Item:
    id: int
    year_id: int
    code: str
    unit: str
    collection: str


@dataclass
class _Plan:
    entry: ActivityEntry
    quantity: float  # in the item's unit
    item_unit: str
    new_year: tuple[YearKind, int] | None  # (kind, year_ce) to carry forward into, when no year has the item yet


def bangkok_month(today: date | None = None) -> date:
    day = today or datetime.now(BANGKOK).date()
    return day.replace(day=1)


def _load(conn: psycopg.Connection, org: Organisation) -> tuple[list[ReportingYear], dict[tuple[int, str], _Item]]:
    years = list_years(conn, org.id)
    rows = conn.execute(
        "SELECT i.id, i.reporting_year_id, i.item_code, i.unit, i.collection FROM inventory_items i"
        " JOIN reporting_years y ON y.id = i.reporting_year_id WHERE y.organisation_id = %s",
        (org.id,),
    ).fetchall()
    return years, {(int(r[1]), str(r[2])): _Item(*r) for r in rows}


def _plan(entry: ActivityEntry, labels: Mapping[str, str], org: Organisation, years: Sequence[ReportingYear],
          items: Mapping[tuple[int, str], _Item], this_month: date) -> tuple[_Plan | None, list[RowError]]:  # fmt: skip
    errors: list[RowError] = []

    def fail(key: str, value: str, message: str) -> None:
        errors.append(RowError(entry.row, labels.get(key, key), value, message))

    if entry.month > this_month:
        fail("month", entry.month.strftime("%Y-%m"), f"month {entry.month:%Y-%m} is in the future")
    found = [
        items[(y.id, entry.item_code)] for y in years if y.contains(entry.month) and (y.id, entry.item_code) in items
    ]
    new_year = None
    if not found:
        earlier = [y for y in years if (y.id, entry.item_code) in items and y.first_month <= entry.month]
        if not earlier:
            known = sorted({code for _, code in items})
            fail("item_code", entry.item_code, f"no inventory item {entry.item_code!r} for organisation {org.code!r} "
                 f"in or before {entry.month:%Y-%m}; known items: {', '.join(known) or 'none'}")  # fmt: skip
            return None, errors
        template = max(earlier, key=lambda y: y.first_month)
        found = [items[(template.id, entry.item_code)]]
        new_year = (template.kind, year_containing(template.kind, entry.month))
    quantity = entry.quantity
    for item in found:
        if item.collection == "metered":
            fail("item_code", entry.item_code, f"item {entry.item_code!r} is metered: its devices fill it; enter "
                 "activity only for manual items")  # fmt: skip
            continue
        try:
            quantity = units.convert(entry.quantity, entry.unit, item.unit)
        except ValueError:
            fail("unit", entry.unit, f"unit {entry.unit!r} does not convert to {item.unit}, the unit of item "
                 f"{entry.item_code!r}")  # fmt: skip
    if errors:
        return None, errors
    return _Plan(entry, quantity, found[0].unit, new_year), []


def _duplicates(parsed: ParsedActivity) -> list[RowError]:
    first: dict[tuple[str, date], int] = {}
    errors = []
    for e in parsed.entries:
        key = (e.item_code, e.month)
        if key in first:
            message = f"second entry for {e.item_code} in {e.month:%Y-%m} (first on row {first[key]}); one row " \
                      "carries the month's total"  # fmt: skip
            errors.append(RowError(e.row, parsed.labels.get("month", "month"), f"{e.month:%Y-%m}", message))
        else:
            first[key] = e.row
    return errors


_UPSERT = """
INSERT INTO inventory_quantities AS q (item_id, month_start, quantity, origin, note, source_file, import_id)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (item_id, month_start) DO UPDATE SET
    quantity = EXCLUDED.quantity, origin = EXCLUDED.origin, note = EXCLUDED.note, source_file = EXCLUDED.source_file,
    import_id = EXCLUDED.import_id, entered_at = now()
WHERE (q.quantity, q.note) IS DISTINCT FROM (EXCLUDED.quantity, EXCLUDED.note)
RETURNING (xmax = 0)
"""


def record_activity(conn: psycopg.Connection, organisation: str, parsed: ParsedActivity, *, origin: Origin,
                    file_name: str, today: date | None = None) -> ActivityReport:  # fmt: skip
    """Validate the entries against the organisation's items and write them, all or none (see module docstring).

    Raises ``UnknownOrganisation``, or ``InventoryInvalid`` (logged as rejected and committed)."""
    org = require_organisation(conn, organisation)
    try:
        with conn.transaction():
            return _apply(conn, org.code, parsed, origin, file_name, bangkok_month(today))
    except InventoryInvalid as exc:
        record_rejection(conn, org.id, "activity", file_name, parsed.file_format, parsed.sha256, exc,
                         rows=len(parsed.entries))  # fmt: skip
        raise


def import_activity_file(conn: psycopg.Connection, data: bytes, *, organisation: str, file_name: str,
                         today: date | None = None,
                         limits: InputLimits = DEFAULT_LIMITS) -> ActivityReport:  # fmt: skip
    """Parse an activity CSV and record it (``record_activity``); a file that does not parse is logged as rejected."""
    org = require_organisation(conn, organisation)
    try:
        parsed = parse_activity_csv(data, limits)
    except InventoryInvalid as exc:
        digest = hashlib.sha256(data).hexdigest()
        record_rejection(conn, org.id, "activity", file_name, "csv", digest, exc)
        raise
    return record_activity(conn, organisation, parsed, origin="csv", file_name=file_name, today=today)


def _apply(conn: psycopg.Connection, organisation: str, parsed: ParsedActivity, origin: Origin, file_name: str,
           this_month: date) -> ActivityReport:  # fmt: skip
    org = lock_organisation(conn, organisation)
    years, items = _load(conn, org)
    plans: list[_Plan] = []
    errors = _duplicates(parsed)
    for entry in parsed.entries:
        plan, entry_errors = _plan(entry, parsed.labels, org, years, items, this_month)
        errors += entry_errors
        if plan is not None:
            plans.append(plan)
    if errors:
        raise InventoryInvalid(sorted(errors, key=lambda e: e.row), "activity entries")
    created = _carry_forward(conn, org, plans, years)
    years, items = _load(conn, org)
    import_id = conn.execute(
        "INSERT INTO inventory_imports (organisation_id, kind, file_name, file_format, sha256, status, rows)"
        " VALUES (%s, 'activity', %s, %s, %s, 'applied', %s) RETURNING id",
        (org.id, file_name, parsed.file_format, parsed.sha256, len(parsed.entries)),
    ).fetchone()
    assert import_id is not None
    inserted = updated = unchanged = 0
    targets: list[ActivityTarget] = []
    for plan in plans:
        e = plan.entry
        for year in years:
            item = items.get((year.id, e.item_code))
            if item is None or not year.contains(e.month):
                continue
            row = conn.execute(_UPSERT, (item.id, e.month, plan.quantity, origin, e.note, file_name, import_id[0]))
            result = row.fetchone()
            inserted += bool(result and result[0])
            updated += bool(result and not result[0])
            unchanged += result is None
            targets.append(ActivityTarget(e.item_code, e.month, year.label, plan.quantity, plan.item_unit))
    summary = {"inserted": inserted, "updated": updated, "unchanged": unchanged, "years_created": created}
    status = "applied" if inserted or updated or created else "unchanged"
    conn.execute("UPDATE inventory_imports SET summary = %s, status = %s WHERE id = %s",
                 (Jsonb(summary), status, import_id[0]))  # fmt: skip
    return ActivityReport(int(import_id[0]), len(parsed.entries), inserted, updated, unchanged, created, targets)


def _carry_forward(conn: psycopg.Connection, org: Organisation, plans: Sequence[_Plan],
                   years: Sequence[ReportingYear]) -> list[str]:  # fmt: skip
    """Create the years (or the missing items of existing years) the plans need; returns labels of new years."""
    existing = {(y.kind, y.year_ce) for y in years}
    created: list[str] = []
    for kind, year_ce in dict.fromkeys(p.new_year for p in plans if p.new_year is not None):
        if (kind, year_ce) in existing:
            codes = sorted({p.entry.item_code for p in plans if p.new_year == (kind, year_ce)})
            carry_forward(conn, org.id, kind, year_ce, codes)
        else:
            carry_forward(conn, org.id, kind, year_ce)
            created.append(year_label(kind, year_ce))
    return created
