"""The organisation inventory (TGO CFO) in the store: organisations, reporting years, the base-year import, reads.

- ``import_inventory_file(conn, data, ...)`` has a CSV or XLSX in the template of docs/inventory-template.md read
  by :mod:`imports.inventory` and writes it as the items and monthly quantities of one organisation-year, in one
  transaction: all or nothing. Idempotent: a file whose content equals what is stored changes nothing and is
  reported ``unchanged``; a corrected file replaces that year's items (kept by ``item_code``, so device mappings
  survive) and quantities. Every attempt, rejected ones with their errors, is kept in ``inventory_imports``.
- Manual activity entries (:mod:`store.inventory_activity`) and the device -> item mapping
  (:mod:`store.inventory_mapping`) work on the same tables.

Reporting years: ``calendar`` (Jan-Dec, TGO form 1.5(1)) or ``fiscal`` (Thai government year Oct-Sep, named by the
calendar year it ends in: fiscal 2025 = 2024-10-01 .. 2025-09-30, ปีงบประมาณ พ.ศ. 2568). BE = CE + 543.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lccm.engine.timebase import BE_OFFSET_YEARS, CITY_TZ_NAME, FISCAL_YEAR_FIRST_MONTH
from lccm.imports import units
from lccm.imports.inventory import (
    CATEGORY_BY_CODE,
    InventoryInvalid,
    ParsedInventory,
    SourceClassInfo,
    detect_format,
    parse_inventory,
)
from lccm.imports.limits import DEFAULT_LIMITS, InputLimits
from lccm.imports.rows import RowError, RowsInvalid

ORG_CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as the organisations.code check
YearKind = Literal["calendar", "fiscal"]
YEAR_KINDS: tuple[YearKind, ...] = ("calendar", "fiscal")
MunicipalityType = Literal["city", "town", "subdistrict", "sao", "pao", "special"]

# pg_advisory_xact_lock(key, organisation id): one writer per organisation's inventory at a time.
_LOCK_KEY = 0x4C43_4956  # "LCIV"


class InventoryError(Exception):
    """An organisation or reporting year that does not exist (api/errors.py: 404; the CLI: exit 2)."""


class UnknownOrganisation(InventoryError):
    def __init__(self, code: str, known: Sequence[str]) -> None:
        self.code = code
        super().__init__(f"no organisation {code!r}; known: {', '.join(known) or 'none'}")


class UnknownReportingYear(InventoryError):
    def __init__(self, code: str, kind: str | None, year_ce: int | None) -> None:
        what = "no base year" if year_ce is None else f"no {kind or 'calendar or fiscal'} {year_ce} inventory"
        super().__init__(f"organisation {code!r} has {what}; import one with `lccm inventory import`")


# ---------------------------------------------------------------------------------------------------------------
# Calendar of reporting years (pure)


def be(year_ce: int) -> int:
    return year_ce + BE_OFFSET_YEARS


def year_months(kind: YearKind, year_ce: int) -> list[date]:
    """First days of the 12 Bangkok months of a reporting year, in the year's own order (Oct..Sep if fiscal)."""
    if kind == "calendar":
        return [date(year_ce, m, 1) for m in range(1, 13)]
    first = [date(year_ce - 1, m, 1) for m in range(FISCAL_YEAR_FIRST_MONTH, 13)]
    return first + [date(year_ce, m, 1) for m in range(1, FISCAL_YEAR_FIRST_MONTH)]


def calendar_month_dates(kind: YearKind, year_ce: int) -> list[date]:
    """The same 12 months in January..December order (the order of a parsed row's ``months``)."""
    return sorted(year_months(kind, year_ce), key=lambda d: d.month)


def year_containing(kind: YearKind, month: date) -> int:
    """CE year of the calendar or fiscal year that contains a month."""
    return month.year + 1 if kind == "fiscal" and month.month >= FISCAL_YEAR_FIRST_MONTH else month.year


def year_label(kind: YearKind, year_ce: int) -> str:
    if kind == "fiscal":
        return f"FY{year_ce} (ปีงบประมาณ พ.ศ. {be(year_ce)})"
    return f"{year_ce} (พ.ศ. {be(year_ce)})"


# ---------------------------------------------------------------------------------------------------------------
# Organisations


@dataclass(frozen=True, slots=True)
class Organisation:
    id: int
    code: str
    name_en: str
    name_th: str | None
    province_en: str
    province_th: str | None
    municipality_type: str
    city_key: str | None
    site_count: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OrganisationIn:
    code: str
    name_en: str
    province_en: str
    municipality_type: MunicipalityType
    name_th: str | None = None
    province_th: str | None = None
    city_key: str | None = None  # the registry "city" whose sites belong to it (case-folded)


_ORGANISATIONS = """
SELECT o.id, o.code, o.name_en, o.name_th, o.province_en, o.province_th, o.municipality_type, o.city_key,
       (SELECT count(*) FROM site_organisations so WHERE so.organisation_id = o.id)::int AS site_count, o.updated_at
FROM organisations o
"""


def list_organisations(
    conn: psycopg.Connection, province: str | None = None, *, organisation_id: int | None = None
) -> list[Organisation]:
    """Organisations grouped by province (sorted by province, then code); optionally one province (EN or TH), and
    only the organisation ``organisation_id`` (a caller's scope: it sees its own organisation only)."""
    clauses = [] if province is None else ["(lower(o.province_en) = lower(%(p)s) OR o.province_th = %(p)s)"]
    if organisation_id is not None:
        clauses.append("o.id = %(org)s")
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    cur = conn.cursor(row_factory=class_row(Organisation))
    params = {"p": province, "org": organisation_id}
    return cur.execute(_ORGANISATIONS + where + " ORDER BY o.province_en, o.code", params).fetchall()


def get_organisation(conn: psycopg.Connection, code: str) -> Organisation | None:
    cur = conn.cursor(row_factory=class_row(Organisation))
    return cur.execute(_ORGANISATIONS + " WHERE o.code = %s", (code,)).fetchone()


def require_organisation(conn: psycopg.Connection, code: str) -> Organisation:
    org = get_organisation(conn, code)
    if org is None:
        known = [str(r[0]) for r in conn.execute("SELECT code FROM organisations ORDER BY code")]
        raise UnknownOrganisation(code, known)
    return org


def put_organisation(conn: psycopg.Connection, org: OrganisationIn) -> bool:
    """Create or update an organisation by code; True if it was created."""
    city_key = org.city_key.strip().lower() if org.city_key else None
    with conn.transaction():
        row = conn.execute(
            """
            INSERT INTO organisations AS o (code, name_en, name_th, province_en, province_th, municipality_type,
                                            city_key)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (code) DO UPDATE SET
                name_en = EXCLUDED.name_en, name_th = EXCLUDED.name_th, province_en = EXCLUDED.province_en,
                province_th = EXCLUDED.province_th, municipality_type = EXCLUDED.municipality_type,
                city_key = EXCLUDED.city_key, updated_at = now()
            RETURNING (xmax = 0)
            """,
            (org.code, org.name_en, org.name_th, org.province_en, org.province_th, org.municipality_type, city_key),
        ).fetchone()
    return bool(row and row[0])


def lock_organisation(conn: psycopg.Connection, code: str) -> Organisation:
    """The organisation, with its inventory locked until the end of the current transaction."""
    org = require_organisation(conn, code)
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_KEY, org.id))
    return org


# ---------------------------------------------------------------------------------------------------------------
# Reporting years


@dataclass(frozen=True, slots=True)
class ReportingYear:
    id: int
    organisation_id: int
    kind: YearKind
    year_ce: int
    year_be: int
    first_month: date
    is_base_year: bool

    @property
    def months(self) -> list[date]:
        return year_months(self.kind, self.year_ce)

    def contains(self, month: date) -> bool:
        return month in self.months

    @property
    def label(self) -> str:
        return year_label(self.kind, self.year_ce)


_YEARS = "SELECT id, organisation_id, kind, year_ce, year_be, first_month, is_base_year FROM reporting_years"


def list_years(conn: psycopg.Connection, organisation_id: int) -> list[ReportingYear]:
    cur = conn.cursor(row_factory=class_row(ReportingYear))
    return cur.execute(_YEARS + " WHERE organisation_id = %s ORDER BY first_month, kind", (organisation_id,)).fetchall()


def find_year(
    conn: psycopg.Connection, organisation_id: int, year_ce: int | None, kind: YearKind | None
) -> ReportingYear | None:
    """A year by CE year and kind; without a kind the one year of that number (calendar if both exist); without a
    year the base year."""
    cur = conn.cursor(row_factory=class_row(ReportingYear))
    if year_ce is None:
        return cur.execute(_YEARS + " WHERE organisation_id = %s AND is_base_year", (organisation_id,)).fetchone()
    kinds = [kind] if kind else list(YEAR_KINDS)
    return cur.execute(
        _YEARS + " WHERE organisation_id = %s AND year_ce = %s AND kind = ANY(%s) ORDER BY kind LIMIT 1",
        (organisation_id, year_ce, kinds),
    ).fetchone()


def _create_year(conn: psycopg.Connection, organisation_id: int, kind: YearKind, year_ce: int) -> ReportingYear:
    cur = conn.cursor(row_factory=class_row(ReportingYear))
    row = cur.execute(
        "INSERT INTO reporting_years (organisation_id, kind, year_ce) VALUES (%s, %s, %s)"
        " RETURNING id, organisation_id, kind, year_ce, year_be, first_month, is_base_year",
        (organisation_id, kind, year_ce),
    ).fetchone()
    assert row is not None
    return row


def _set_base_year(conn: psycopg.Connection, year: ReportingYear, base_year: bool | None) -> bool:
    """Apply the base-year request (None: make it the base year only if the organisation has none). True if the
    flag moved."""
    has_base = conn.execute(
        "SELECT 1 FROM reporting_years WHERE organisation_id = %s AND is_base_year", (year.organisation_id,)
    ).fetchone()
    want = (not has_base or year.is_base_year) if base_year is None else base_year
    if want == year.is_base_year:
        return False
    if want:
        conn.execute("UPDATE reporting_years SET is_base_year = false WHERE organisation_id = %s AND is_base_year",
                     (year.organisation_id,))  # fmt: skip
    conn.execute("UPDATE reporting_years SET is_base_year = %s WHERE id = %s", (want, year.id))
    return True


def carry_forward(conn: psycopg.Connection, organisation_id: int, kind: YearKind, year_ce: int,
                  codes: Sequence[str] | None = None) -> ReportingYear:  # fmt: skip
    """The year (created if missing) with the items of the latest earlier year of the organisation copied into it:
    all of them for a new year, otherwise only ``codes`` it lacks. Metered items bring their device mappings, so
    a current year is counted from the same meters as the year before until someone changes that.

    A copied metered item takes the factor the engine uses for its source class in the new year when one factor is
    in force all year (the TGO grid factor of 2026 for 2026's electricity), with the registry's source, so the
    report's "quantity x factor" equals the engine's kgCO2e. Otherwise (a fiscal year across a factor change, an
    item without a source class, a unit that differs) and for manual items, factors are copied as they were: a
    new factor edition takes a re-import of the year (docs/inventory-template.md).
    """
    target = find_year(conn, organisation_id, year_ce, kind) or _create_year(conn, organisation_id, kind, year_ce)
    template = conn.execute(
        "SELECT id FROM reporting_years WHERE organisation_id = %s AND id <> %s AND first_month < %s"
        " ORDER BY first_month DESC, kind LIMIT 1",
        (organisation_id, target.id, target.first_month),
    ).fetchone()
    if template is None:
        return target
    copied = conn.execute(
        """
        INSERT INTO inventory_items (reporting_year_id, item_code, position, scope, cfo_category, is_removal,
            activity_en, activity_th, unit, ef_kgco2e_per_unit, ef_unit, ef_source, gwp_set, gas, gpc_ref,
            collection, source_class, note)
        SELECT %(target)s, t.item_code, t.position, t.scope, t.cfo_category, t.is_removal, t.activity_en,
               t.activity_th, t.unit, t.ef_kgco2e_per_unit, t.ef_unit, t.ef_source, t.gwp_set, t.gas, t.gpc_ref,
               t.collection, t.source_class, t.note
        FROM inventory_items t
        WHERE t.reporting_year_id = %(template)s AND (%(codes)s::text[] IS NULL OR t.item_code = ANY(%(codes)s))
        ON CONFLICT (reporting_year_id, item_code) DO NOTHING
        RETURNING id
        """,
        {"target": target.id, "template": template[0], "codes": None if codes is None else list(codes)},
    ).fetchall()
    _factors_in_force(conn, [int(r[0]) for r in copied])
    conn.execute(
        """
        INSERT INTO device_item_map (device_id, reporting_year_id, item_id)
        SELECT dm.device_id, n.reporting_year_id, n.id
        FROM device_item_map dm
        JOIN inventory_items t ON t.id = dm.item_id
        JOIN inventory_items n ON n.reporting_year_id = %s AND n.item_code = t.item_code AND n.collection = 'metered'
        WHERE dm.reporting_year_id = %s
        ON CONFLICT (device_id, reporting_year_id) DO NOTHING
        """,
        (target.id, template[0]),
    )
    return target


def _factors_in_force(conn: psycopg.Connection, item_ids: Sequence[int]) -> None:
    """Give these (just copied) metered items the registry's factor of their source class when that one factor is
    in force over the whole year (Bangkok months) in the item's unit; leave the others as copied."""
    if not item_ids:
        return
    conn.execute(
        """
        UPDATE inventory_items i
        SET ef_kgco2e_per_unit = f.kgco2e_per_unit, ef_source = f.source
        FROM reporting_years y, source_classes sc, emission_factors f
        WHERE i.id = ANY(%(ids)s) AND i.collection = 'metered' AND y.id = i.reporting_year_id
          AND sc.key = i.source_class AND f.key = sc.factor_key AND i.ef_unit = 'kgCO2e/' || f.unit
          AND f.valid_from <= (y.first_month::timestamp AT TIME ZONE %(tz)s)
          AND f.valid_to >= ((y.first_month + interval '1 year')::timestamp AT TIME ZONE %(tz)s)
        """,
        {"ids": list(item_ids), "tz": CITY_TZ_NAME},
    )


# ---------------------------------------------------------------------------------------------------------------
# The import log


@dataclass(frozen=True, slots=True)
class ImportLog:
    id: int
    kind: str
    year_kind: str | None
    year_ce: int | None
    file_name: str
    file_format: str
    sha256: str
    status: str
    rows: int
    errors: list[dict[str, Any]]
    summary: dict[str, Any]
    imported_at: datetime


def _log(conn: psycopg.Connection, organisation_id: int, kind: str, file_name: str, file_format: str, sha256: str,
         status: str, rows: int, *, year: tuple[str, int] | None = None, errors: Sequence[RowError] = (),
         summary: Mapping[str, Any] | None = None) -> int:  # fmt: skip
    row = conn.execute(
        "INSERT INTO inventory_imports (organisation_id, kind, year_kind, year_ce, file_name, file_format, sha256,"
        " status, rows, errors, summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            organisation_id, kind, year[0] if year else None, year[1] if year else None, file_name, file_format,
            sha256, status, rows, Jsonb([asdict(e) for e in errors]), Jsonb(dict(summary or {})),
        ),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def record_rejection(conn: psycopg.Connection, organisation_id: int, kind: str, file_name: str, file_format: str,
                     sha256: str, invalid: RowsInvalid, *, rows: int = 0,
                     year: tuple[str, int] | None = None) -> int:  # fmt: skip
    """Keep a rejected file's errors where people can see them: those the reader listed, and the count of all in
    the summary (``errors_total``). Committed at once (the caller is about to fail and roll back), so call it outside
    a transaction block."""
    import_id = _log(conn, organisation_id, kind, file_name, file_format, sha256, "rejected", rows, year=year,
                     errors=invalid.errors, summary={"errors_total": invalid.total})  # fmt: skip
    conn.commit()
    return import_id


def list_imports(conn: psycopg.Connection, organisation_id: int, limit: int = 100) -> list[ImportLog]:
    cur = conn.cursor(row_factory=class_row(ImportLog))
    return cur.execute(
        "SELECT id, kind, year_kind, year_ce, file_name, file_format, sha256, status, rows, errors, summary,"
        " imported_at FROM inventory_imports WHERE organisation_id = %s ORDER BY id DESC LIMIT %s",
        (organisation_id, limit),
    ).fetchall()


# ---------------------------------------------------------------------------------------------------------------
# Base-year import


@dataclass(frozen=True, slots=True)
class InventoryImportReport:
    status: Literal["applied", "unchanged"]
    import_id: int
    organisation: str
    kind: YearKind
    year_ce: int
    year_be: int
    rows: int
    items_inserted: int = 0
    items_updated: int = 0
    items_unchanged: int = 0
    items_deleted: int = 0
    quantities: int = 0  # month cells stored
    is_base_year: bool = False
    base_year_changed: bool = False
    devices_unmapped: list[str] = field(default_factory=list)  # mappings dropped with their item


def load_source_classes(conn: psycopg.Connection) -> dict[str, SourceClassInfo] | None:
    """The source classes the application registered (store.energy.sync_factor_registry), or None if none."""
    rows = conn.execute(
        "SELECT sc.key, sc.scope, m.unit FROM source_classes sc JOIN metrics m ON m.id = sc.metric_id"
    ).fetchall()
    if not rows:
        return None
    return {str(k): SourceClassInfo(str(k), int(s), units.unit(str(u)).symbol) for k, s, u in rows}


def import_inventory_file(conn: psycopg.Connection, data: bytes, *, file_name: str, organisation: str,
                          year_ce: int, kind: YearKind = "calendar", base_year: bool | None = None,
                          limits: InputLimits = DEFAULT_LIMITS) -> InventoryImportReport:  # fmt: skip
    """Validate a CSV or XLSX (within ``limits``) and import it as ``organisation``'s inventory of that year (see
    module docstring).

    Raises ``UnknownOrganisation`` (nothing logged) or ``InventoryInvalid`` (logged as rejected, committed)."""
    org = require_organisation(conn, organisation)
    try:
        parsed = parse_inventory(data, source_classes=load_source_classes(conn), limits=limits)
    except InventoryInvalid as exc:
        digest = hashlib.sha256(data).hexdigest()
        record_rejection(conn, org.id, "inventory", file_name, detect_format(data), digest, exc,
                         year=(kind, year_ce))  # fmt: skip
        raise
    return import_inventory(conn, parsed, file_name=file_name, organisation=organisation, year_ce=year_ce,
                            kind=kind, base_year=base_year)  # fmt: skip


def check_inventory_file(conn: psycopg.Connection, data: bytes, *, organisation: str,
                         limits: InputLimits = DEFAULT_LIMITS) -> ParsedInventory:  # fmt: skip
    """A dry run of ``import_inventory_file``: the same validation (the file, against the registered source
    classes), and nothing stored or logged. Raises ``UnknownOrganisation`` or ``InventoryInvalid``."""
    require_organisation(conn, organisation)
    return parse_inventory(data, source_classes=load_source_classes(conn), limits=limits)


_ITEM_COLUMNS = (
    "item_code", "scope", "cfo_category", "is_removal", "activity_en", "activity_th", "unit", "ef_kgco2e_per_unit",
    "ef_unit", "ef_source", "gwp_set", "gas", "gpc_ref", "collection", "source_class", "note",
)  # fmt: skip


def _stored_content(conn: psycopg.Connection, year: ReportingYear) -> dict[str, tuple[Any, ...]]:
    """item_code -> the same tuple as ``InventoryRow.content()``, from the database (insertion order = position)."""
    order = calendar_month_dates(year.kind, year.year_ce)
    items: dict[str, tuple[Any, ...]] = {}
    rows = conn.execute(
        f"SELECT i.{', i.'.join(_ITEM_COLUMNS)},"
        " coalesce(array_agg(q.month_start) FILTER (WHERE q.item_id IS NOT NULL), '{}'),"
        " coalesce(array_agg(q.quantity) FILTER (WHERE q.item_id IS NOT NULL), '{}')"
        " FROM inventory_items i LEFT JOIN inventory_quantities q ON q.item_id = i.id"
        " WHERE i.reporting_year_id = %s GROUP BY i.id ORDER BY i.position, i.id",
        (year.id,),
    ).fetchall()
    for r in rows:
        months_stored = dict(zip(r[-2], r[-1], strict=True))
        items[r[0]] = (*r[:-2], tuple(months_stored.get(m) for m in order))
    return items


_UPSERT_ITEM = f"""
INSERT INTO inventory_items AS i (reporting_year_id, position, import_id, {", ".join(_ITEM_COLUMNS)})
VALUES (%s, %s, %s, {", ".join(["%s"] * len(_ITEM_COLUMNS))})
ON CONFLICT (reporting_year_id, item_code) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in ("position", "import_id", *_ITEM_COLUMNS[1:]))}
RETURNING id
"""


def import_inventory(conn: psycopg.Connection, parsed: ParsedInventory, *, file_name: str, organisation: str,
                     year_ce: int, kind: YearKind = "calendar",
                     base_year: bool | None = None) -> InventoryImportReport:  # fmt: skip
    """Write validated rows as the organisation's inventory of one year, in one transaction."""
    with conn.transaction():
        org = lock_organisation(conn, organisation)
        year = find_year(conn, org.id, year_ce, kind) or _create_year(conn, org.id, kind, year_ce)
        base_changed = _set_base_year(conn, year, base_year)
        is_base = conn.execute("SELECT is_base_year FROM reporting_years WHERE id = %s", (year.id,)).fetchone()
        stored = _stored_content(conn, year)
        new = {r.item_code: r.content() for r in parsed.rows}
        report: dict[str, Any] = {"organisation": org.code, "kind": kind, "year_ce": year_ce, "year_be": be(year_ce),
                  "rows": len(parsed.rows), "is_base_year": bool(is_base and is_base[0]),
                  "base_year_changed": base_changed}  # fmt: skip
        log_args = (org.id, "inventory", file_name, parsed.file_format, parsed.sha256)
        if list(stored.items()) == list(new.items()):  # same items, same order, same numbers
            summary = {"items_unchanged": len(new), **_json_safe(report)}
            import_id = _log(conn, *log_args, "unchanged", len(parsed.rows), year=(kind, year_ce), summary=summary)
            return InventoryImportReport(status="unchanged", import_id=import_id, items_unchanged=len(new), **report)
        import_id = _log(conn, *log_args, "applied", len(parsed.rows), year=(kind, year_ce))
        counts = _replace_items(conn, year, parsed, stored, import_id, file_name)
        conn.execute("UPDATE inventory_imports SET summary = %s WHERE id = %s",
                     (Jsonb({**counts, **_json_safe(report)}), import_id))  # fmt: skip
    return InventoryImportReport(status="applied", import_id=import_id, **counts, **report)


def _json_safe(report: Mapping[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(report, default=str)))


def _replace_items(conn: psycopg.Connection, year: ReportingYear, parsed: ParsedInventory,
                   stored: dict[str, tuple[Any, ...]], import_id: int, file_name: str) -> dict[str, Any]:  # fmt: skip
    codes = [r.item_code for r in parsed.rows]
    manual = [r.item_code for r in parsed.rows if r.collection != "metered"]
    # Mappings that cannot stay: their item leaves the year or stops being metered (the foreign key would refuse
    # the latter). They are dropped here and named in the report.
    dropped = conn.execute(
        "DELETE FROM device_item_map dm USING inventory_items i, devices d"
        " WHERE i.id = dm.item_id AND d.id = dm.device_id AND i.reporting_year_id = %s"
        " AND (NOT i.item_code = ANY(%s) OR i.item_code = ANY(%s)) RETURNING d.device_id",
        (year.id, codes, manual),
    ).fetchall()
    conn.execute("DELETE FROM inventory_items WHERE reporting_year_id = %s AND NOT item_code = ANY(%s)",
                 (year.id, codes))  # fmt: skip
    months = calendar_month_dates(year.kind, year.year_ce)
    quantities: list[tuple[Any, ...]] = []
    for position, r in enumerate(parsed.rows, start=1):
        values = [getattr(r, "category" if c == "cfo_category" else c) for c in _ITEM_COLUMNS]
        item = conn.execute(_UPSERT_ITEM, (year.id, position, import_id, *values)).fetchone()
        assert item is not None
        quantities += [(item[0], m, q, file_name, import_id) for m, q in zip(months, r.months, strict=True)
                       if q is not None]  # fmt: skip
    conn.execute(
        "DELETE FROM inventory_quantities q USING inventory_items i"
        " WHERE i.id = q.item_id AND i.reporting_year_id = %s",
        (year.id,),
    )
    conn.cursor().executemany(
        "INSERT INTO inventory_quantities (item_id, month_start, quantity, origin, source_file, import_id)"
        " VALUES (%s, %s, %s, 'import', %s, %s)",
        quantities,
    )
    new = {r.item_code: r.content() for r in parsed.rows}
    return {
        "items_inserted": sum(1 for c in new if c not in stored),
        "items_updated": sum(1 for c, v in new.items() if c in stored and stored[c] != v),
        "items_unchanged": sum(1 for c, v in new.items() if stored.get(c) == v),
        "items_deleted": sum(1 for c in stored if c not in new),
        "quantities": len(quantities),
        "devices_unmapped": sorted(str(d[0]) for d in dropped),
    }


# ---------------------------------------------------------------------------------------------------------------
# Reading an inventory


@dataclass(frozen=True, slots=True)
class MonthValue:
    month_start: date
    quantity: float | None  # imported or entered, in the item's unit
    origin: str | None  # import | api | csv
    note: str | None
    metered_quantity: float | None  # from the mapped devices' monthly buckets (metered items)
    metered_kgco2e: float | None  # at the factor in force (the engine's)


@dataclass(frozen=True, slots=True)
class ItemView:
    item_code: str
    position: int
    scope: int
    category: str
    category_en: str
    category_th: str
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
    devices: list[str]
    months: list[MonthValue]

    @property
    def sign(self) -> float:
        return -1.0 if self.is_removal else 1.0

    @property
    def quantity(self) -> float:
        return sum(m.quantity for m in self.months if m.quantity is not None)

    @property
    def kgco2e(self) -> float:
        """Emissions from the imported/entered quantities at the item's factor (negative for a removal)."""
        return self.sign * self.quantity * self.ef_kgco2e_per_unit

    @property
    def metered_quantity(self) -> float | None:
        values = [m.metered_quantity for m in self.months if m.metered_quantity is not None]
        return sum(values) if values else None

    @property
    def metered_kgco2e(self) -> float | None:
        values = [m.metered_kgco2e for m in self.months if m.metered_kgco2e is not None]
        return sum(values) if values else None


@dataclass(frozen=True, slots=True)
class InventoryView:
    organisation: str
    year: ReportingYear
    items: list[ItemView]

    @property
    def gwp_sets(self) -> list[str]:
        return sorted({i.gwp_set for i in self.items})

    def kgco2e_by_scope(self) -> dict[int, float]:
        """Emissions per scope, removals excluded (reported separately, as ISO 14064-1 asks)."""
        totals = {1: 0.0, 2: 0.0, 3: 0.0}
        for i in self.items:
            if not i.is_removal:
                totals[i.scope] += i.kgco2e
        return totals

    @property
    def removals_kgco2e(self) -> float:
        return sum(i.kgco2e for i in self.items if i.is_removal)

    @property
    def net_kgco2e(self) -> float:
        return sum(i.kgco2e for i in self.items)


def get_inventory(conn: psycopg.Connection, organisation: str, year_ce: int | None = None,
                  kind: YearKind | None = None) -> InventoryView:  # fmt: skip
    """One organisation-year with its items and months (the base year when ``year_ce`` is None)."""
    org = require_organisation(conn, organisation)
    year = find_year(conn, org.id, year_ce, kind)
    if year is None:
        raise UnknownReportingYear(organisation, kind, year_ce)
    items = conn.execute(
        f"SELECT i.id, i.position, i.{', i.'.join(_ITEM_COLUMNS)},"
        " coalesce((SELECT array_agg(d.device_id ORDER BY d.device_id) FROM device_item_map dm"
        "           JOIN devices d ON d.id = dm.device_id WHERE dm.item_id = i.id), '{}')"
        " FROM inventory_items i WHERE i.reporting_year_id = %s ORDER BY i.position, i.id",
        (year.id,),
    ).fetchall()
    entered = _by_item_month(conn.execute(
        "SELECT q.item_id, q.month_start, q.quantity, q.origin, q.note FROM inventory_quantities q"
        " JOIN inventory_items i ON i.id = q.item_id WHERE i.reporting_year_id = %s", (year.id,)))  # fmt: skip
    metered = _by_item_month(conn.execute(
        "SELECT item_id, month_start, quantity, kgco2e FROM inventory_metered_months WHERE reporting_year_id = %s",
        (year.id,)))  # fmt: skip
    views = []
    for r in items:
        item_id, position, values, devices = r[0], r[1], dict(zip(_ITEM_COLUMNS, r[2:-1], strict=True)), r[-1]
        months = [_month_value(m, entered.get((item_id, m)), metered.get((item_id, m))) for m in year.months]
        category = CATEGORY_BY_CODE[values["cfo_category"]]
        values["category"] = values.pop("cfo_category")
        views.append(ItemView(position=position, category_en=category.name_en, category_th=category.name_th,
                              devices=list(devices), months=months, **values))  # fmt: skip
    return InventoryView(organisation=org.code, year=year, items=views)


def _by_item_month(cursor: psycopg.Cursor[Any]) -> dict[tuple[int, date], tuple[Any, ...]]:
    return {(int(r[0]), r[1]): tuple(r[2:]) for r in cursor}


def _month_value(month: date, entered: tuple[Any, ...] | None, metered: tuple[Any, ...] | None) -> MonthValue:
    quantity, origin, note = entered if entered else (None, None, None)
    metered_quantity, metered_kgco2e = metered if metered else (None, None)
    return MonthValue(month, quantity, origin, note, metered_quantity, metered_kgco2e)


def metered_coverage(conn: psycopg.Connection, year: ReportingYear, start: datetime,
                     end: datetime) -> dict[str, tuple[int, float, float]]:  # fmt: skip
    """item_code -> (devices mapped to it in the year, seconds covered by their monthly buckets in ``[start, end)``,
    seconds of ``[start, end)`` they were in service: store/assets.py, migration 014), for the items of ``year``
    that have mapped devices (a CFO report's completeness of metered items: nothing is expected from a device before
    its commissioning date or from its decommissioning date on)."""
    rows = conn.execute(
        """
        SELECT i.item_code, count(*)::int,
               coalesce(sum((SELECT sum(eb.covered_s) FROM energy_buckets eb
                             JOIN metrics mt ON mt.id = eb.metric_id AND lower(mt.unit) = lower(i.unit)
                             WHERE eb.device_id = dm.device_id AND eb.resolution = '1mo'
                               AND eb.bucket_start >= %(lo)s AND eb.bucket_start < %(hi)s)), 0),
               sum(greatest(0, extract(epoch FROM
                   least(%(hi)s, coalesce(d.decommissioned_on::timestamp AT TIME ZONE %(tz)s, 'infinity'))
                   - greatest(%(lo)s, coalesce(d.commissioned_on::timestamp AT TIME ZONE %(tz)s, '-infinity')))))
        FROM device_item_map dm JOIN inventory_items i ON i.id = dm.item_id JOIN devices d ON d.id = dm.device_id
        WHERE dm.reporting_year_id = %(year)s GROUP BY i.item_code
        """,
        {"lo": start, "hi": end, "year": year.id, "tz": CITY_TZ_NAME},
    ).fetchall()
    return {str(code): (int(devices), float(covered), float(expected)) for code, devices, covered, expected in rows}
