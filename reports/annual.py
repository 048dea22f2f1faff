"""The annual CFO report and the GPC BASIC table of one organisation-year, as plain dataclasses.

Built from the store's reads (store/inventory.py: the inventory view with metered months, the meters' coverage);
:mod:`reports.render` turns them into CSV, JSON and HTML. The API and ``lccm report`` both call
``build_cfo_report`` / ``build_gpc_report`` and the same renderer, so every format carries the same numbers.

How the numbers are made (stated so a reader of the report can redo them by hand):

* An item's month value is its quantity times the item's factor, negative for a removal. The quantity of a month is
  the metered one (sum of the mapped devices' monthly buckets, ``inventory_metered_months``) when the meters gave
  one, else the imported or entered quantity, else none (a blank month, not a zero). Entered months take the item's
  own factor; metered months the registry factor in force (the one the engine used; the item's own when no registry
  factor applies). Every figure in the report is "quantity x the factor printed beside it" or, for an item at
  several factors in the year, the sum of its factor-period lines, each "quantity x factor".
* Scope totals exclude removals; removals are reported beside them and ``net = gross + removals`` (ISO 14064-1).
* Metered versus manual share: the part of the gross emissions (removals excluded) whose month values came from
  meters, and the rest (imported or entered quantities). An item's ``collection`` is what its file declared; the
  report labels each item by where its months came from (``months_metered``), so a metered item whose meters gave
  nothing reads "meters: 0 of 12 months", in agreement with the 0 % from meters of the footer.
* Completeness of a metered item: seconds covered by its mapped devices' monthly buckets in the year, over the
  seconds each mapped device was in service in the year (its commissioning and decommissioning dates, the whole
  year for a device without them; None when no device is mapped or none was in service).
* Factor periods (reports/factor_periods.py): a metered month is at the registry factor the engine used for it, so
  the item total equals the live figure; where an item's factor changed in the year (fiscal 2026 and TGO's grid
  factor of 1 January 2026), each run of months at one factor is its own line, quantity x factor = kgCO2e, and the
  lines add up to the item. ``months_reported`` counts the
  months with a value, for every item.
* kgCO2e are rounded to the milligram (6 decimals) and tCO2e to 9 decimals, once, here: the renderers print
  these same floats, so every format agrees; the HTML shows tCO2e to 2 decimals for reading.
* GPC: an item's ``gpc_ref`` is a GPC v1.1 reference number, read by ``imports.gpc.resolve`` into its sub-sector,
  scope and reporting level. The third number is the scope in stationary energy and transportation (a two-level
  ``I.2`` takes the item's CFO scope), but in waste it says where the waste is treated: III.x.1 inside the city
  (scope 1), III.x.2 outside it (scope 3), III.x.3 waste of other cities treated inside (scope 1, not BASIC).
  BASIC sums the cells of reference numbers at level BASIC (stationary energy and transportation scopes 1 and 2,
  waste scopes 1 and 3 of the city's own waste); BASIC+ adds IPPU, AFOLU and the scope-3 energy and transport
  cells. Items without ``gpc_ref``, or with one that is no GPC reference number, are listed as unmapped with
  their totals and the reason, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import psycopg

from lccm.engine import calendar as cal
from lccm.engine.timebase import buddhist_era
from lccm.imports import gpc
from lccm.imports.inventory import CATEGORIES
from lccm.reports import factor_periods as fp
from lccm.store import inventory as inv
from lccm.store.factor_history import DatedFactor, factor_histories

SCOPES = (1, 2, 3)
MONTH_ABBR_TH = ("ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค.")
SCOPE_NAMES = {1: ("Scope 1: direct emissions", "ขอบเขตที่ 1: การปล่อยโดยตรง"),
               2: ("Scope 2: energy indirect emissions", "ขอบเขตที่ 2: การปล่อยทางอ้อมจากพลังงาน"),
               3: ("Scope 3: other indirect emissions", "ขอบเขตที่ 3: การปล่อยทางอ้อมอื่น ๆ")}  # fmt: skip

_SECTOR_ORDER = tuple(gpc.SECTORS)
_CATEGORY_ORDER = tuple(c.code for c in CATEGORIES)


@dataclass(frozen=True, slots=True)
class ReportOrganisation:
    code: str
    name_en: str
    name_th: str | None
    province_en: str
    province_th: str | None


@dataclass(frozen=True, slots=True)
class ReportYear:
    kind: inv.YearKind
    year_ce: int
    year_be: int
    label: str  # e.g. "FY2025 (ปีงบประมาณ พ.ศ. 2568)"
    is_base_year: bool
    months: list[str]  # "YYYY-MM", in the year's own order (Oct..Sep for a fiscal year)


@dataclass(frozen=True, slots=True)
class Totals:
    monthly_kgco2e: list[float]  # 12, blank months count as 0
    kgco2e: float
    tco2e: float


@dataclass(frozen=True, slots=True)
class FactorPeriod:
    """A run of an item's months at one factor: quantity x factor = kgCO2e; an item's periods add up to its total."""

    first_month: str  # "YYYY-MM", the first month of the run with a value
    last_month: str  # "YYYY-MM", the last one (included)
    months_reported: int
    quantity: float
    ef_kgco2e_per_unit: float
    ef_unit: str
    ef_source: str
    monthly_kgco2e: list[float | None]  # 12: the run's months, None outside it
    kgco2e: float
    tco2e: float


@dataclass(frozen=True, slots=True)
class CfoItem:
    item_code: str
    activity_en: str | None
    activity_th: str | None
    collection: str  # metered | manual
    is_removal: bool
    unit: str
    ef_kgco2e_per_unit: float | None  # None when the year has several factor periods (then see factor_periods)
    ef_unit: str
    ef_source: str
    gwp_set: str
    gas: str | None
    gpc_ref: str | None
    devices: list[str]
    monthly_quantity: list[float | None]  # 12, in the item's unit; None = no value for that month
    monthly_source: list[str | None]  # 12: "metered", "entered" or None
    monthly_kgco2e: list[float | None]
    quantity: float
    kgco2e: float
    tco2e: float
    months_reported: int
    months_metered: int  # months whose value came from the meters (the rest of the reported ones were entered)
    completeness: float | None  # metered items: share of the expected device-time covered
    factor_periods: list[FactorPeriod]  # one per run of months at one factor; they add up to kgco2e


@dataclass(frozen=True, slots=True)
class CfoCategory:
    code: str
    name_en: str
    name_th: str
    items: list[CfoItem]
    totals: Totals


@dataclass(frozen=True, slots=True)
class CfoScope:
    scope: int
    name_en: str
    name_th: str
    categories: list[CfoCategory]
    totals: Totals


@dataclass(frozen=True, slots=True)
class CfoReport:
    organisation: ReportOrganisation
    year: ReportYear
    gwp_sets: list[str]
    scopes: list[CfoScope]  # always scopes 1, 2, 3 (an empty scope has no categories and zero totals)
    removals: list[CfoItem]
    gross: Totals  # scopes 1 + 2 + 3
    removals_totals: Totals  # negative
    net: Totals
    metered: Totals  # the part of gross from metered months
    manual: Totals  # the part of gross from imported or entered months
    metered_share: float | None  # of gross; None when gross is 0
    manual_share: float | None
    months_reported: int  # item-months with a value
    months_expected: int  # items x 12


@dataclass(frozen=True, slots=True)
class GpcFactorLine:
    """One factor period of an item in a GPC cell, for items whose factor changed in the year: the lines of an
    item add up to its part of the cell."""

    item_code: str
    item_ref: str  # the item's full GPC reference number (its cell)
    scope: int  # the cell's GPC scope
    first_month: str
    last_month: str
    quantity: float
    unit: str
    ef_kgco2e_per_unit: float
    ef_source: str
    kgco2e: float
    tco2e: float


@dataclass(frozen=True, slots=True)
class GpcRow:
    gpc_ref: str  # sub-sector, e.g. "III.1"
    sector: str
    sector_name: str
    subsector_name: str
    in_basic: bool  # the sub-sector has BASIC cells (sectors I-III)
    scope_kgco2e: dict[int, float]  # 1, 2, 3: every item of the sub-sector, by its GPC scope
    scope_tco2e: dict[int, float]
    basic_kgco2e: float  # the part of the row in BASIC (III.x.3 and the scope-3 energy cells are not)
    basic_tco2e: float
    kgco2e: float
    tco2e: float
    item_codes: list[str]
    item_refs: list[str]  # each item's full GPC reference number, in the order of item_codes
    factor_lines: list[GpcFactorLine] = field(default_factory=list)  # items with several factor periods


@dataclass(frozen=True, slots=True)
class GpcUnmapped:
    item_code: str
    scope: int
    category: str
    kgco2e: float
    tco2e: float
    reason: str  # no reference given, or why the one given is no GPC reference number


@dataclass(frozen=True, slots=True)
class GpcReport:
    organisation: ReportOrganisation
    year: ReportYear
    rows: list[GpcRow]  # every sub-sector of I-III, plus any other sub-sector that has items
    basic_kgco2e: float  # cells at level BASIC only (imports/gpc.py REFERENCES)
    basic_tco2e: float
    basic_plus_kgco2e: float  # BASIC plus the cells at level BASIC+
    basic_plus_tco2e: float
    total_kgco2e: float  # every mapped cell, territorial-only and other scope 3 included
    total_tco2e: float
    unmapped: list[GpcUnmapped] = field(default_factory=list)
    unmapped_kgco2e: float = 0.0
    unmapped_tco2e: float = 0.0


# ---------------------------------------------------------------------------------------------------------------


def kg(value: float) -> float:
    """kgCO2e kept to the milligram, so sums print without float noise (342.474, not 342.4740000000001)."""
    return round(value, 6)


def tonnes(value_kg: float) -> float:
    return round(value_kg / 1000.0, 9)


def _totals(monthly: list[float]) -> Totals:
    monthly = [kg(m) for m in monthly]
    total = kg(sum(monthly))
    return Totals(monthly_kgco2e=monthly, kgco2e=total, tco2e=tonnes(total))


def _sum_monthly(rows: Sequence[Sequence[float | None]]) -> list[float]:
    return [sum(r[m] or 0.0 for r in rows) for m in range(12)]


def _completeness(conn: psycopg.Connection, year: inv.ReportingYear) -> dict[str, float | None]:
    """item_code -> covered device-seconds / the device-seconds expected: each mapped device's time in service in the
    year (store/assets.py; the whole year for a device without dates), for items with mapped devices (None when no
    mapped device was in service in the year)."""
    bounds = cal.year_period(year.year_ce, year.kind)
    coverage = inv.metered_coverage(conn, year, bounds.start, bounds.end)
    return {code: min(covered, expected) / expected if expected > 0 else None
            for code, (_, covered, expected) in coverage.items()}  # fmt: skip


SEVERAL_FACTORS = "several factors in the year: see the factor periods"


def _item(view: inv.ItemView, completeness: float | None, history: Sequence[DatedFactor]) -> CfoItem:
    months = fp.month_factors(view, history)
    quantities = [None if m is None else m.quantity for m in months]
    monthly = [None if m is None else kg(m.kgco2e) for m in months]
    total = kg(sum(k for k in monthly if k is not None))
    periods = [_period(view, months, run) for run in fp.runs(months)]
    if len(periods) == 1:
        ef: float | None = periods[0].ef_kgco2e_per_unit
        ef_source = periods[0].ef_source
    else:
        ef, ef_source = (None, SEVERAL_FACTORS) if periods else (view.ef_kgco2e_per_unit, view.ef_source)
    sources = [None if m is None else m.source for m in months]
    return CfoItem(
        item_code=view.item_code, activity_en=view.activity_en, activity_th=view.activity_th,
        collection=view.collection, is_removal=view.is_removal, unit=view.unit,
        ef_kgco2e_per_unit=ef, ef_unit=view.ef_unit, ef_source=ef_source,
        gwp_set=view.gwp_set, gas=view.gas, gpc_ref=view.gpc_ref, devices=list(view.devices),
        monthly_quantity=quantities, monthly_source=sources, monthly_kgco2e=monthly,
        quantity=sum(q for q in quantities if q is not None), kgco2e=total, tco2e=tonnes(total),
        months_reported=sum(1 for q in quantities if q is not None),
        months_metered=sources.count("metered"),
        completeness=completeness if view.collection == "metered" else None,
        factor_periods=periods,
    )  # fmt: skip


def _period(view: inv.ItemView, months: Sequence[fp.MonthFactor | None], run: Sequence[int]) -> FactorPeriod:
    """One factor period: its kgCO2e is the sum of its months (each quantity x factor, or the engine's split month),
    so the periods add up to the item's total."""
    first = months[run[0]]
    assert first is not None  # runs hold months with a value only
    monthly: list[float | None] = [None] * 12
    for i in run:
        m = months[i]
        monthly[i] = None if m is None else kg(m.kgco2e)
    total = kg(sum(k for k in monthly if k is not None))
    labels = [m.strftime("%Y-%m") for m in (view.months[run[0]].month_start, view.months[run[-1]].month_start)]
    quantity = sum(m.quantity for i in run if (m := months[i]) is not None)
    return FactorPeriod(labels[0], labels[1], len(run), quantity, first.ef_kgco2e_per_unit, view.ef_unit,
                        first.ef_source, monthly, total, tonnes(total))  # fmt: skip


def _organisation(org: inv.Organisation) -> ReportOrganisation:
    return ReportOrganisation(org.code, org.name_en, org.name_th, org.province_en, org.province_th)


def _year(year: inv.ReportingYear) -> ReportYear:
    months = [m.strftime("%Y-%m") for m in year.months]
    return ReportYear(year.kind, year.year_ce, year.year_be, year.label, year.is_base_year, months)


def _load(conn: psycopg.Connection, organisation: str, year_ce: int | None, kind: inv.YearKind | None
          ) -> tuple[ReportOrganisation, ReportYear, list[tuple[inv.ItemView, CfoItem]]]:  # fmt: skip
    """Raises ``inv.UnknownOrganisation`` / ``inv.UnknownReportingYear`` with the known choices in the message."""
    org = inv.require_organisation(conn, organisation)
    view = inv.get_inventory(conn, organisation, year_ce, kind)
    completeness = _completeness(conn, view.year)
    histories = factor_histories(conn, [v.source_class for v in view.items if v.source_class])
    items = [(v, _item(v, completeness.get(v.item_code), histories.get(v.source_class or "", [])))
             for v in view.items]  # fmt: skip
    return _organisation(org), _year(view.year), items


def build_cfo_report(conn: psycopg.Connection, organisation: str, year_ce: int | None = None,
                     kind: inv.YearKind | None = None) -> CfoReport:  # fmt: skip
    """The CFO report of one organisation-year (the base year when ``year_ce`` is None)."""
    org, year, items = _load(conn, organisation, year_ce, kind)
    scopes = []
    for scope in SCOPES:
        categories = []
        in_scope = [(v, i) for v, i in items if v.scope == scope and not v.is_removal]
        for code in dict.fromkeys(v.category for v, _ in sorted(in_scope, key=lambda p: _category_sort(p[0]))):
            members = [(v, i) for v, i in in_scope if v.category == code]
            first = members[0][0]
            categories.append(CfoCategory(code, first.category_en, first.category_th, [i for _, i in members],
                                          _totals(_sum_monthly([i.monthly_kgco2e for _, i in members]))))  # fmt: skip
        monthly = _sum_monthly([c.totals.monthly_kgco2e for c in categories])
        scopes.append(CfoScope(scope, *SCOPE_NAMES[scope], categories, _totals(monthly)))
    emitting = [i for v, i in items if not v.is_removal]
    removals = [i for v, i in items if v.is_removal]
    gross = _totals(_sum_monthly([s.totals.monthly_kgco2e for s in scopes]))
    removed = _totals(_sum_monthly([i.monthly_kgco2e for i in removals]))
    metered = _totals(_sum_monthly([_by_source(i, "metered") for i in emitting]))
    manual = _totals(_sum_monthly([_by_source(i, "entered") for i in emitting]))
    return CfoReport(
        organisation=org, year=year, gwp_sets=sorted({i.gwp_set for _, i in items}), scopes=scopes,
        removals=removals, gross=gross, removals_totals=removed,
        net=_totals([g + r for g, r in zip(gross.monthly_kgco2e, removed.monthly_kgco2e, strict=True)]),
        metered=metered, manual=manual,
        metered_share=round(metered.kgco2e / gross.kgco2e, 9) if gross.kgco2e else None,
        manual_share=round(manual.kgco2e / gross.kgco2e, 9) if gross.kgco2e else None,
        months_reported=sum(i.months_reported for _, i in items), months_expected=12 * len(items),
    )  # fmt: skip


def _category_sort(view: inv.ItemView) -> tuple[int, int]:
    """Categories in the order of the TGO form (imports.inventory.CATEGORIES), items in file order."""
    return (_CATEGORY_ORDER.index(view.category), view.position)


def _by_source(item: CfoItem, source: str) -> list[float | None]:
    return [k if s == source else None for k, s in zip(item.monthly_kgco2e, item.monthly_source, strict=True)]


def build_gpc_report(conn: psycopg.Connection, organisation: str, year_ce: int | None = None,
                     kind: inv.YearKind | None = None) -> GpcReport:  # fmt: skip
    """The GPC table of one organisation-year: sub-sector rows with scope 1/2/3 cells (removals count negative)."""
    org, year, items = _load(conn, organisation, year_ce, kind)
    rows = {ref: _GpcCells() for ref in gpc.SUBSECTORS if ref.split(".")[0] in gpc.BASIC_SECTORS}
    level_kg = {level: 0.0 for level in gpc.LEVEL_NAMES}
    unmapped = []
    for view, item in items:
        try:
            ref = gpc.resolve(view.gpc_ref or "", view.scope)
        except gpc.GpcRefInvalid as exc:
            reason = str(exc) if view.gpc_ref else "no GPC reference"
            unmapped.append(GpcUnmapped(item.item_code, view.scope, view.category, item.kgco2e, item.tco2e, reason))
            continue
        rows.setdefault(ref.subsector, _GpcCells()).add(ref, item)
        level_kg[ref.level] += item.kgco2e
    table = [rows[ref].row(ref) for ref in sorted(rows, key=_ref_key)]
    basic = kg(level_kg["basic"])
    basic_plus = kg(level_kg["basic"] + level_kg["basic_plus"])
    total = kg(sum(r.kgco2e for r in table))
    unmapped_kg = kg(sum(u.kgco2e for u in unmapped))
    return GpcReport(org, year, table, basic, tonnes(basic), basic_plus, tonnes(basic_plus), total, tonnes(total),
                     unmapped, unmapped_kg, tonnes(unmapped_kg))  # fmt: skip


def _ref_key(ref: str) -> tuple[int, int]:
    sector, sub = ref.split(".")
    return (_SECTOR_ORDER.index(sector), int(sub))


class _GpcCells:
    """One sub-sector's sums while the table is built."""

    def __init__(self) -> None:
        self.scope_kg = {1: 0.0, 2: 0.0, 3: 0.0}
        self.basic_kg = 0.0
        self.codes: list[str] = []
        self.refs: list[str] = []
        self.lines: list[GpcFactorLine] = []

    def add(self, ref: gpc.Reference, item: CfoItem) -> None:
        self.scope_kg[ref.scope] += item.kgco2e
        self.basic_kg += item.kgco2e if ref.in_basic else 0.0
        self.codes.append(item.item_code)
        self.refs.append(ref.number)
        if len(item.factor_periods) > 1:
            self.lines += [GpcFactorLine(item.item_code, ref.number, ref.scope, p.first_month, p.last_month,
                                         p.quantity, item.unit, p.ef_kgco2e_per_unit, p.ef_source, p.kgco2e,
                                         p.tco2e) for p in item.factor_periods]  # fmt: skip

    def row(self, subsector: str) -> GpcRow:
        sector = subsector.split(".")[0]
        cells = {s: kg(v) for s, v in self.scope_kg.items()}
        total, basic = kg(sum(cells.values())), kg(self.basic_kg)
        return GpcRow(
            gpc_ref=subsector, sector=sector, sector_name=gpc.SECTORS[sector],
            subsector_name=gpc.SUBSECTORS[subsector], in_basic=sector in gpc.BASIC_SECTORS,
            scope_kgco2e=cells, scope_tco2e={s: tonnes(v) for s, v in cells.items()},
            basic_kgco2e=basic, basic_tco2e=tonnes(basic), kgco2e=total, tco2e=tonnes(total),
            item_codes=self.codes, item_refs=self.refs, factor_lines=self.lines,
        )  # fmt: skip


def month_label_th(month: str) -> str:
    """``2024-10`` -> ``ต.ค. 2567`` (Thai month abbreviation, BE year)."""
    d = date.fromisoformat(month + "-01")
    return f"{MONTH_ABBR_TH[d.month - 1]} {buddhist_era(d.year)}"
