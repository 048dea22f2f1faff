"""The explicit device -> inventory item mapping of metered items, and the double-count check.

A metered item (building electricity, streetlights, generator or fleet diesel) is filled from the monthly buckets of
the devices mapped to it (view ``inventory_metered_months``). The database allows one item per device and reporting
year, and only a metered one; ``set_mappings`` also refuses a device of another organisation, a device whose
register counts another unit than the item (kWh vs L), and a device whose source class is not the item's.
``mapping_problems`` reads the view ``inventory_mapping_problems``: everything that could still count an activity
twice (a hand-entered quantity on a mapped item, a manual item covering what a meter measures ...) or leave a meter
out of a year that uses meters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import class_row

from lccm.imports import units
from lccm.imports.inventory import InventoryInvalid
from lccm.imports.rows import RowError
from lccm.store.inventory import (
    ReportingYear,
    UnknownReportingYear,
    YearKind,
    carry_forward,
    find_year,
    lock_organisation,
    require_organisation,
)


@dataclass(frozen=True, slots=True)
class DeviceMapping:
    device_id: str
    site_code: str
    device_kind: str
    device_source_class: str | None
    item_code: str
    item_source_class: str | None


@dataclass(frozen=True, slots=True)
class MappingReport:
    year: str
    added: int
    changed: int
    removed: int
    unchanged: int
    year_created: bool = False


@dataclass(frozen=True, slots=True)
class AutoMapReport:
    year: str
    mapped: list[tuple[str, str]] = field(default_factory=list)  # (device_id, item_code)
    unmatched: list[str] = field(default_factory=list)  # register devices with no metered item of their class
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # device -> the items of its class (map by hand)


@dataclass(frozen=True, slots=True)
class MappingProblem:
    severity: str  # error: would count twice or wrongly; warning: a meter left out
    problem: str
    organisation: str
    kind: str
    year_ce: int
    device_id: str | None
    item_code: str | None
    detail: str


def _year(conn: psycopg.Connection, organisation: str, year_ce: int | None, kind: YearKind | None,
          *, create: bool = False) -> tuple[ReportingYear, bool]:  # fmt: skip
    org = require_organisation(conn, organisation)
    year = find_year(conn, org.id, year_ce, kind)
    if year is not None:
        return year, False
    if create and year_ce is not None:
        earlier = conn.execute(
            "SELECT 1 FROM reporting_years WHERE organisation_id = %s AND year_ce < %s", (org.id, year_ce)
        ).fetchone()
        if earlier:
            return carry_forward(conn, org.id, kind or "calendar", year_ce), True
    raise UnknownReportingYear(organisation, kind, year_ce)


_MAPPINGS = """
SELECT d.device_id, s.site_code, d.kind AS device_kind, ds.source_class AS device_source_class, i.item_code,
       i.source_class AS item_source_class
FROM device_item_map dm
JOIN devices d ON d.id = dm.device_id
JOIN sites s ON s.id = d.site_id
JOIN inventory_items i ON i.id = dm.item_id
LEFT JOIN device_sources ds ON ds.device_id = d.id
WHERE dm.reporting_year_id = %s
ORDER BY i.position, d.device_id
"""


def list_mappings(conn: psycopg.Connection, organisation: str, year_ce: int | None = None,
                  kind: YearKind | None = None) -> tuple[ReportingYear, list[DeviceMapping]]:  # fmt: skip
    """The year (the base year when ``year_ce`` is None) and its device -> item mapping."""
    year, _ = _year(conn, organisation, year_ce, kind)
    cur = conn.cursor(row_factory=class_row(DeviceMapping))
    return year, cur.execute(_MAPPINGS, (year.id,)).fetchall()


_CANDIDATES = """
SELECT d.id, d.device_id, so.organisation_id, ds.source_class, dr.unit
FROM devices d
LEFT JOIN site_organisations so ON so.site_id = d.site_id
LEFT JOIN device_sources ds ON ds.device_id = d.id
LEFT JOIN device_registers dr ON dr.device_id = d.id
WHERE d.device_id = ANY(%s)
"""


def _check_pairs(
    conn: psycopg.Connection, year: ReportingYear, pairs: Sequence[tuple[str, str]]
) -> list[tuple[int, int]]:
    """(device pk, item id) per pair, or InventoryInvalid naming each bad pair (row = 1-based position)."""
    devices = {r[1]: r for r in conn.execute(_CANDIDATES, ([d for d, _ in pairs],))}
    items = {
        r[1]: r
        for r in conn.execute(
            "SELECT id, item_code, collection, unit, source_class FROM inventory_items WHERE reporting_year_id = %s",
            (year.id,),
        )
    }
    errors: list[RowError] = []
    resolved: list[tuple[int, int]] = []
    first: dict[str, int] = {}
    for row, (device_id, item_code) in enumerate(pairs, start=1):
        before = len(errors)

        def fail(column: str, value: str, message: str, row: int = row) -> None:
            errors.append(RowError(row, column, value, message))

        device, item = devices.get(device_id), items.get(item_code)
        if device_id in first:
            fail("device_id", device_id, f"device listed twice (first at {first[device_id]}): one item per device")
        first.setdefault(device_id, row)
        if device is None:
            fail("device_id", device_id, "no such device (register it with `lccm devices import`)")
        if item is None:
            fail("item_code", item_code, f"no item {item_code!r} in the {year.label} inventory")
        if device is None or item is None:
            continue
        _, _, device_org, device_class, register_unit = device
        item_id, _, collection, unit, item_class = item
        if collection != "metered":
            fail("item_code", item_code, "item is manual: its quantities are entered by hand; a device would count "
                 "them twice (mark the item metered in the inventory file)")  # fmt: skip
        if device_org != year.organisation_id:
            fail("device_id", device_id, "device belongs to a site of another organisation (or of none)")
        if register_unit is None:
            fail("device_id", device_id, "device has no energy or fuel register")
        elif register_unit.lower() != unit.lower():
            counted = units.unit(register_unit).symbol  # the metric catalogue writes litres 'l'
            fail("device_id", device_id, f"device counts {counted}, item {item_code!r} is in {unit}")
        if item_class is not None and device_class != item_class:
            fail(
                "device_id",
                device_id,
                f"device is {device_class or 'unclassified'}, item {item_code!r} is {item_class}",
            )
        if len(errors) == before:
            resolved.append((int(device[0]), int(item_id)))
    if errors:
        raise InventoryInvalid(errors, "device mapping")
    return resolved


def set_mappings(conn: psycopg.Connection, organisation: str, year_ce: int, kind: YearKind,
                 pairs: Sequence[tuple[str, str]]) -> MappingReport:  # fmt: skip
    """Make ``pairs`` (device_id, item_code) the whole mapping of the year: all or nothing. A missing year is carried
    forward from the latest earlier one (with its items and mapping) first."""
    with conn.transaction():
        lock_organisation(conn, organisation)
        year, created = _year(conn, organisation, year_ce, kind, create=True)
        resolved = _check_pairs(conn, year, pairs)
        before: dict[int, int] = {
            int(d): int(i)
            for d, i in conn.execute(
                "SELECT device_id, item_id FROM device_item_map WHERE reporting_year_id = %s", (year.id,)
            )
        }
        wanted = dict(resolved)
        conn.execute(
            "DELETE FROM device_item_map WHERE reporting_year_id = %s AND NOT device_id = ANY(%s)",
            (year.id, list(wanted)),
        )
        conn.cursor().executemany(
            "INSERT INTO device_item_map (device_id, reporting_year_id, item_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id, reporting_year_id) DO UPDATE SET item_id = EXCLUDED.item_id, mapped_at = now()"
            " WHERE device_item_map.item_id <> EXCLUDED.item_id",
            [(d, year.id, i) for d, i in resolved],
        )
    return MappingReport(
        year=year.label,
        added=sum(1 for d in wanted if d not in before),
        changed=sum(1 for d, i in wanted.items() if d in before and before[d] != i),
        removed=sum(1 for d in before if d not in wanted),
        unchanged=sum(1 for d, i in wanted.items() if before.get(d) == i),
        year_created=created,
    )


def auto_map(conn: psycopg.Connection, organisation: str, year_ce: int, kind: YearKind) -> AutoMapReport:
    """Map each unmapped register device of the organisation to the one metered item of the year whose source class
    is the device's. Devices with no such item, or several, are reported and left for ``set_mappings``."""
    with conn.transaction():
        lock_organisation(conn, organisation)
        year, _ = _year(conn, organisation, year_ce, kind, create=True)
        rows = conn.execute(
            """
            SELECT d.device_id, array_remove(array_agg(i.item_code ORDER BY i.item_code), NULL)
            FROM devices d
            JOIN device_registers dr ON dr.device_id = d.id
            JOIN site_organisations so ON so.site_id = d.site_id AND so.organisation_id = %(org)s
            LEFT JOIN device_sources ds ON ds.device_id = d.id
            LEFT JOIN inventory_items i ON i.reporting_year_id = %(year)s AND i.collection = 'metered'
                                        AND i.source_class = ds.source_class
            WHERE NOT EXISTS (SELECT 1 FROM device_item_map dm
                              WHERE dm.device_id = d.id AND dm.reporting_year_id = %(year)s)
            GROUP BY d.device_id ORDER BY d.device_id
            """,
            {"org": year.organisation_id, "year": year.id},
        ).fetchall()
        report = AutoMapReport(year=year.label)
        for device_id, codes in rows:
            if len(codes) == 1:
                report.mapped.append((device_id, codes[0]))
            elif codes:
                report.ambiguous[device_id] = list(codes)
            else:
                report.unmatched.append(device_id)
        conn.cursor().executemany(
            "INSERT INTO device_item_map (device_id, reporting_year_id, item_id)"
            " SELECT d.id, i.reporting_year_id, i.id FROM devices d, inventory_items i"
            " WHERE d.device_id = %s AND i.reporting_year_id = %s AND i.item_code = %s",
            [(d, year.id, c) for d, c in report.mapped],
        )
    return report


def mapping_problems(conn: psycopg.Connection, organisation: str | None = None, year_ce: int | None = None,
                     kind: YearKind | None = None) -> list[MappingProblem]:  # fmt: skip
    """Rows of the view inventory_mapping_problems, optionally for one organisation and year, errors first."""
    where, params = ["true"], []
    if organisation is not None:
        org = require_organisation(conn, organisation)
        where.append("p.organisation_id = %s")
        params.append(org.id)
        if year_ce is not None:
            year, _ = _year(conn, organisation, year_ce, kind)
            where.append("p.reporting_year_id = %s")
            params.append(year.id)
    cur = conn.cursor(row_factory=class_row(MappingProblem))
    return cur.execute(
        "SELECT p.severity, p.problem, o.code AS organisation, y.kind, y.year_ce, d.device_id, i.item_code, p.detail"
        " FROM inventory_mapping_problems p"
        " JOIN organisations o ON o.id = p.organisation_id"
        " JOIN reporting_years y ON y.id = p.reporting_year_id"
        " LEFT JOIN devices d ON d.id = p.device_id"
        " LEFT JOIN inventory_items i ON i.id = p.item_id"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY p.severity, o.code, y.first_month, p.problem, d.device_id, i.item_code",
        params,
    ).fetchall()
