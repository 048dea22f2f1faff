"""Read and write what the baseline comparison, targets and building M&V need (issue 5, items 4-6).

The store does no modelling: it returns the base year's monthly CO2e per item, the actual CO2e of the month slices
a caller asks for, daily building energy, daily or hourly temperatures, targets and fitted models; reports/ runs
the engine (engine/inventory.py, engine/mv.py) on them (reports/baseline.py, targets.py, mv.py).

Conventions:

- Series are inventory items, keyed by ``item_code``. An item's CO2e is ``sign x quantity x factor`` (sign -1 for a
  removal). The base year uses its imported quantities (bills, even for items metered later).
- Actual CO2e of a slice (part of one Bangkok month, whole days): metered items sum ``energy_buckets`` '1d' of the
  devices mapped to them in the reporting year containing the month (``kgco2e`` at the factor in force,
  ``kgco2e_base`` at the base year's factor); manual items take the month's entered quantity x the covered share
  of the month, at the item's factor (in force) and at the base-year item's factor (like-for-like).
- An item's site is the one site of all devices ever mapped to it, else None (a base year has no sites of its own).
- Coverage of a slice (``period_figures``): per item of the slice's reporting year, the seconds its mapped devices' '1d'
  buckets cover and the readings their registry cadence expects up to a given instant (metered items), or whether
  the month is entered (manual items). reports/baseline.py turns it into shares and like-for-like baselines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from lccm.engine.timebase import BANGKOK, CITY_TZ_NAME
from lccm.imports.limits import DEFAULT_LIMITS, InputLimits
from lccm.imports.rows import RowError
from lccm.imports.temperature import parse_temperature_csv
from lccm.store.inventory import Organisation, UnknownOrganisation, find_year, require_organisation
from lccm.store.scope import Scope, scope_and

YearKind = Literal["calendar", "fiscal"]
TEMPERATURE_METRIC = 15  # temperature_c
ENERGY_METRIC = 1  # energy_kwh
KPIS = ("kwh_per_lamp", "kwh_per_m2", "l_per_100km")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BaselineError(Exception):
    """A request the data cannot answer (no base year, an empty day range, a model that cannot be fitted): a person
    must act."""


class BaselineNotFound(BaselineError):
    """What the request names does not exist: a site, a weather station, a fitted M&V model."""


# ------------------------------------------------------------------------------------------------------ base year
@dataclass(frozen=True, slots=True)
class BaseYearSeries:
    """The base year's items and their CO2e per calendar month (``monthly_kgco2e[m - 1, j]``)."""

    organisation_id: int
    year_ce: int
    kind: YearKind
    codes: tuple[str, ...]
    scope: tuple[int, ...]
    category: tuple[str, ...]
    gpc_ref: tuple[str | None, ...]
    site: tuple[str | None, ...]
    is_removal: tuple[bool, ...]
    ef_kgco2e_per_unit: tuple[float, ...]
    monthly_kgco2e: np.ndarray  # float64[12, n]


def base_year_series(conn: psycopg.Connection, organisation: str) -> BaseYearSeries:
    org = require_organisation(conn, organisation)
    year = find_year(conn, org.id, None, None)
    if year is None or not year.is_base_year:
        raise BaselineError(f"organisation {organisation!r} has no base year: import its base-year inventory first")
    rows = conn.execute(
        "SELECT i.id, i.item_code, i.scope, i.cfo_category, i.gpc_ref, i.is_removal, i.ef_kgco2e_per_unit"
        " FROM inventory_items i WHERE i.reporting_year_id = %s ORDER BY i.position, i.id",
        (year.id,),
    ).fetchall()
    index = {int(r[0]): j for j, r in enumerate(rows)}
    monthly = np.zeros((12, len(rows)))
    for item_id, month_start, quantity in conn.execute(
        "SELECT q.item_id, q.month_start, q.quantity FROM inventory_quantities q"
        " JOIN inventory_items i ON i.id = q.item_id WHERE i.reporting_year_id = %s",
        (year.id,),
    ):
        j = index[int(item_id)]
        sign = -1.0 if rows[j][5] else 1.0
        monthly[month_start.month - 1, j] += sign * float(quantity) * float(rows[j][6])
    sites = item_sites(conn, org.id)
    return BaseYearSeries(
        organisation_id=org.id, year_ce=year.year_ce, kind=year.kind, codes=tuple(r[1] for r in rows),
        scope=tuple(int(r[2]) for r in rows), category=tuple(r[3] for r in rows), gpc_ref=tuple(r[4] for r in rows),
        site=tuple(sites.get(r[1]) for r in rows), is_removal=tuple(bool(r[5]) for r in rows),
        ef_kgco2e_per_unit=tuple(float(r[6]) for r in rows), monthly_kgco2e=monthly,
    )  # fmt: skip


def item_sites(conn: psycopg.Connection, organisation_id: int) -> dict[str, str]:
    """item_code -> site code, for items whose mapped devices (in any year) are all at one site."""
    rows = conn.execute(
        "SELECT i.item_code, min(s.site_code) FROM device_item_map dm"
        " JOIN inventory_items i ON i.id = dm.item_id JOIN reporting_years y ON y.id = dm.reporting_year_id"
        " JOIN devices d ON d.id = dm.device_id JOIN sites s ON s.id = d.site_id"
        " WHERE y.organisation_id = %s GROUP BY i.item_code HAVING count(DISTINCT s.id) = 1",
        (organisation_id,),
    ).fetchall()
    return {r[0]: r[1] for r in rows}


@dataclass(frozen=True, slots=True)
class ItemInfo:
    scope: int
    category: str
    gpc_ref: str | None
    is_removal: bool


# ------------------------------------------------------------------------------------------------------- actuals
@dataclass(frozen=True, slots=True)
class SliceSpec:
    """Part ``[start, end)`` (Bangkok midnights) of the month beginning ``month_start``, in reporting year
    ``year_ce``; ``fraction`` is the covered share of the month (pro-rates manual monthly quantities)."""

    year_ce: int
    month_start: date
    start: datetime
    end: datetime
    fraction: float


@dataclass
class ActualSeries:
    """Actual kgCO2e per item code, at the factors in force and at the base year's factors."""

    in_force: dict[str, float] = field(default_factory=dict)
    base_factors: dict[str, float] = field(default_factory=dict)
    items: dict[str, ItemInfo] = field(default_factory=dict)
    missing_years: list[int] = field(default_factory=list)  # reporting years the period needs but that do not exist

    def add(self, code: str, in_force: float, base: float) -> None:
        self.in_force[code] = self.in_force.get(code, 0.0) + in_force
        self.base_factors[code] = self.base_factors.get(code, 0.0) + base


def whole_months(lo: str, hi: str) -> tuple[str, str]:
    """SQL for the first and the end of the Bangkok months lying wholly in ``[lo, hi)`` (SQL expressions;
    ``%(tz)s`` must be CITY_TZ_NAME). The end is before the first when there is none."""
    first = f"(date_trunc('month', ({lo} - interval '1 microsecond') AT TIME ZONE %(tz)s) + interval '1 month')"
    return f"{first} AT TIME ZONE %(tz)s", f"date_trunc('month', {hi} AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s"


_SUMMED = ("amount", "covered_s", "kgco2e", "kgco2e_base")


def mapped_rows(mapped: str, keys: str) -> str:
    """SQL for the sums of the 'energy_buckets' columns amount, covered_s, kgco2e and kgco2e_base (with ``keys`` of
    ``x``) over each row ``x`` of the CTE ``mapped`` (columns device_id, metric_id, lo, hi, mlo, mhi: whole_months
    of [lo, hi)) starting in [lo, hi), in several rows to be summed: the '1mo' rows of the months wholly in it,
    joined in one go (a probe per device and slice cost more than its 30 day rows), and the '1d' rows of the days
    left, probed per device only where there are such days (a slice that is not a whole month) and summed per device
    in the probe (sorting a month of 2,000 meters' day rows for the caller's GROUP BY spilled to disk). A month row
    is the sum of its day rows, so the sums are those of the days."""
    summed = ", ".join(f"sum(eb.{c}) AS {c}" for c in _SUMMED)
    day = (
        "SELECT {keys}, u.* FROM {mapped} x CROSS JOIN LATERAL (SELECT {summed} FROM energy_buckets eb"
        " WHERE eb.resolution = '1d' AND eb.device_id = x.device_id AND eb.metric_id = x.metric_id"
        " AND eb.bucket_start >= {lo} AND eb.bucket_start < {hi} HAVING count(*) > 0) u WHERE {lo} < {hi}"
    )
    return (
        f"SELECT {keys}, {', '.join(f'eb.{c}' for c in _SUMMED)} FROM {mapped} x"
        " JOIN energy_buckets eb ON eb.device_id = x.device_id AND eb.metric_id = x.metric_id"
        " WHERE eb.resolution = '1mo' AND eb.bucket_start >= x.mlo AND eb.bucket_start < x.mhi"
        " UNION ALL "
        + day.format(keys=keys, mapped=mapped, summed=summed, lo="x.lo", hi="least(x.mlo, x.hi)")
        + " UNION ALL "
        + day.format(keys=keys, mapped=mapped, summed=summed, lo="greatest(x.mhi, x.mlo, x.lo)", hi="x.hi")
    )


# The actual figures, the coverage and the metered factor periods of a period's slices, from one read of the buckets.
#
# piece: each slice of an item with mapped devices, cut where the item's factor in force changes (a factor's bound
# inside the slice; TGO's changes fall on a midnight, so a day has one factor). rd: the one read of the buckets, the
# rows of mapped_rows per piece and mapped device (a slice is one month's part: one '1mo' row or one sum of '1d'
# rows). Each figure sums rd's rows as they were read (no join or grouping in between), as the three queries did,
# so the sums are added in the same order. From rd: per slice and item the metered kgCO2e (manual items: the
# month's entered quantity); per slice, item and device the seconds covered (capped at the slice's elapsed seconds
# while the device was in service, migration 014) and the readings its registry cadence expects; per piece under a
# registry factor its sums, and its first and last day with data from one index probe each over the piece's '1d'
# rows (energy_buckets_time_idx, the item's devices as a filter: the first row usually hits; `device_id + 0` keeps
# the planner off the primary key, where min() read a month). Buckets, not raw readings: a year of a meter is 365
# rows, whatever its cadence. The three answers come back in one result, told apart by `tag` (m: metered kgCO2e,
# q: manual quantity, c: coverage, f: factor period); they were three queries that each read the same rows.
_FIGURES = """
WITH s(i, lo, hi, month, year_id) AS (
    SELECT * FROM unnest(%(i)s::int[], %(lo)s::timestamptz[], %(hi)s::timestamptz[], %(month)s::date[],
                         %(year)s::int[])),
cut AS (
    SELECT s.i, it.id AS item_id, s.hi AS slice_hi, c.lo
    FROM s JOIN inventory_items it ON it.reporting_year_id = s.year_id
    CROSS JOIN LATERAL (
        SELECT s.lo
        UNION
        SELECT v.t FROM source_classes sc JOIN emission_factors f ON f.key = sc.factor_key
        CROSS JOIN LATERAL (VALUES (f.valid_from), (f.valid_to)) v(t)
        WHERE sc.key = it.source_class AND it.ef_unit = 'kgCO2e/' || f.unit AND v.t > s.lo AND v.t < s.hi) c(lo)
    WHERE EXISTS (SELECT 1 FROM device_item_map dm WHERE dm.item_id = it.id)),
piece AS MATERIALIZED (
    SELECT row_number() OVER ()::int AS k, p.*, {mlo} AS mlo, {mhi} AS mhi
    FROM (SELECT c.i, c.item_id, c.lo,
                 coalesce(lead(c.lo) OVER (PARTITION BY c.i, c.item_id ORDER BY c.lo), c.slice_hi) AS hi
          FROM cut c) p),
mapped AS MATERIALIZED (
    SELECT p.k, p.i, p.item_id, p.lo, p.hi, p.mlo, p.mhi, dm.device_id, mt.id AS metric_id
    FROM piece p JOIN device_item_map dm ON dm.item_id = p.item_id
    JOIN inventory_items it ON it.id = p.item_id JOIN metrics mt ON lower(mt.unit) = lower(it.unit)),
rd AS MATERIALIZED ({rows}),
-- grouped on integers: sorting the slices' rows by item code spilled to disk
metered AS (
    SELECT i, item_id, sum(kgco2e) AS kgco2e, sum(kgco2e_base) AS kgco2e_base FROM rd GROUP BY i, item_id),
-- Each mapped device's covered seconds per slice meet its cadence and elapsed seconds in one grouping, not a join
-- (CTEs carry no statistics: a join of the two was planned as a merge join re-reading 4 M rows).
dev AS (
    SELECT i, item_id, max(cadence_s) AS cadence_s, max(elapsed_s) AS elapsed_s,
           coalesce(sum(covered_s), 0)::float8 AS covered_s
    FROM (SELECT p.i, p.item_id, d.id AS device_id, d.cadence_s,
                 greatest(0, extract(epoch FROM
                     least(s.hi, %(now)s, coalesce(d.decommissioned_on::timestamp AT TIME ZONE %(tz)s, 'infinity'))
                     - greatest(s.lo, coalesce(d.commissioned_on::timestamp AT TIME ZONE %(tz)s, '-infinity'))
                 ))::float8 AS elapsed_s,
                 NULL::float8 AS covered_s
          FROM (SELECT DISTINCT i, item_id FROM piece) p JOIN s ON s.i = p.i
          JOIN device_item_map dm ON dm.item_id = p.item_id JOIN devices d ON d.id = dm.device_id
          UNION ALL
          SELECT i, item_id, device_id, NULL, NULL, covered_s FROM rd) u
    GROUP BY i, item_id, device_id),
cov AS (
    SELECT i, item_id, count(*)::int AS devices, sum(least(covered_s, elapsed_s)) AS covered_s,
           sum(elapsed_s / cadence_s) AS expected, sum(least(covered_s, elapsed_s) / cadence_s) AS present,
           sum(elapsed_s) AS expected_s
    FROM dev GROUP BY i, item_id),
win AS (
    SELECT p.k, p.lo, p.hi, it.item_code, it.unit, mt.id AS metric_id, f.valid_from, f.kgco2e_per_unit, f.source,
           array(SELECT dm.device_id FROM device_item_map dm WHERE dm.item_id = p.item_id) AS devices
    FROM piece p JOIN inventory_items it ON it.id = p.item_id JOIN source_classes sc ON sc.key = it.source_class
    JOIN emission_factors f ON f.key = sc.factor_key AND it.ef_unit = 'kgCO2e/' || f.unit
        AND f.valid_from <= p.lo AND p.lo < f.valid_to
    JOIN metrics mt ON lower(mt.unit) = lower(it.unit)),
ends AS (
    SELECT win.*,
           (SELECT b.bucket_start FROM energy_buckets b WHERE b.resolution = '1d' AND b.metric_id = win.metric_id
             AND b.bucket_start >= win.lo AND b.bucket_start < win.hi AND b.device_id + 0 = ANY(win.devices)
             ORDER BY b.bucket_start LIMIT 1) AS first,
           (SELECT b.bucket_start FROM energy_buckets b WHERE b.resolution = '1d' AND b.metric_id = win.metric_id
             AND b.bucket_start >= win.lo AND b.bucket_start < win.hi AND b.device_id + 0 = ANY(win.devices)
             ORDER BY b.bucket_start DESC LIMIT 1) AS last
    FROM win)
SELECT 'm' AS tag, a.i, it.item_code, NULL AS collection, NULL::int AS n, a.kgco2e AS f1, a.kgco2e_base AS f2,
       NULL::float8 AS f3, NULL::float8 AS f4, NULL::float8 AS f5, NULL::timestamptz AS t1, NULL::timestamptz AS t2,
       NULL AS unit, NULL AS source, NULL::bool AS flag, 0 AS position, 0 AS item_id
FROM metered a JOIN inventory_items it ON it.id = a.item_id
UNION ALL
SELECT 'q', s.i, it.item_code, NULL, NULL, q.quantity::float8, it.ef_kgco2e_per_unit::float8, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, it.is_removal, 0, 0
FROM s JOIN inventory_items it ON it.reporting_year_id = s.year_id AND it.collection = 'manual'
JOIN inventory_quantities q ON q.item_id = it.id AND q.month_start = s.month
UNION ALL
SELECT 'c', s.i, it.item_code, it.collection, coalesce(a.devices, 0), coalesce(a.covered_s, 0),
       coalesce(a.expected, 0), coalesce(a.present, 0), coalesce(a.expected_s, 0), NULL, NULL, NULL, NULL, NULL,
       EXISTS (SELECT 1 FROM inventory_quantities q WHERE q.item_id = it.id AND q.month_start = s.month),
       it.position, it.id
FROM s JOIN inventory_items it ON it.reporting_year_id = s.year_id
LEFT JOIN cov a ON a.i = s.i AND a.item_id = it.id
UNION ALL
SELECT 'f', NULL, e.item_code, NULL, NULL, sum(u.amount), e.kgco2e_per_unit, sum(u.kgco2e), sum(u.kgco2e_base),
       extract(epoch FROM e.valid_from)::float8, min(e.first), max(e.last) + interval '1 day', e.unit, e.source, NULL,
       0, 0
FROM ends e JOIN (SELECT k, sum(amount) AS amount, sum(kgco2e) AS kgco2e, sum(kgco2e_base) AS kgco2e_base
                  FROM rd GROUP BY k) u ON u.k = e.k
WHERE e.first IS NOT NULL
GROUP BY e.item_code, e.unit, e.valid_from, e.kgco2e_per_unit, e.source
ORDER BY tag, i, position, item_id
""".format(
    mlo=whole_months("p.lo", "p.hi")[0],
    mhi=whole_months("p.lo", "p.hi")[1],
    rows=mapped_rows("mapped", "x.k, x.i, x.item_id, x.device_id"),
)


@dataclass(frozen=True, slots=True)
class ItemSliceCoverage:
    """What is present of one inventory item in one slice (``slices[slice]``) of a period, from its reporting year.

    Metered items: ``devices`` mapped to it that year; ``covered_s`` the seconds their '1d' energy buckets cover
    (``energy_buckets.covered_s``: time spanned by register intervals, a gap bridged by the register included),
    summed over the devices, each capped at the slice's elapsed seconds; ``readings_expected`` the readings the devices'
    registry cadence (``devices.cadence_s``) gives over the slice's elapsed seconds (up to ``now``) while each device
    was in service (``expected_s``, summed over the devices: migration 014's commissioning dates) and
    ``readings_present`` the covered seconds in readings (covered_s / cadence_s). Manual items: ``entered`` tells
    whether the month has a quantity (an entered 0 counts)."""

    slice: int
    item_code: str
    collection: Literal["metered", "manual"]
    devices: int
    covered_s: float
    readings_expected: float
    readings_present: float
    entered: bool
    expected_s: float = 0.0  # metered: the devices' elapsed seconds of the slice while in service, summed


@dataclass(frozen=True, slots=True)
class MeteredFactorPeriod:
    """A metered item's daily buckets over ``[start, end)`` at one factor in force (and the base year's factor)."""

    item_code: str
    start: datetime  # the first day's bucket start
    end: datetime  # the day after the last day's bucket
    quantity: float
    unit: str
    ef_kgco2e_per_unit: float
    ef_source: str
    kgco2e: float  # at the factor in force (the engine's)
    kgco2e_base: float  # at the base year's factor (the engine's)


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """What a comparison or projection reads of its period's slices (``period_figures``)."""

    actual: ActualSeries
    coverage: list[ItemSliceCoverage]  # every item of each slice's reporting year, in slice then inventory order
    factor_periods: list[MeteredFactorPeriod]  # per metered item and registry factor, in time order


def period_figures(conn: psycopg.Connection, organisation_id: int, kind: YearKind, slices: Sequence[SliceSpec],
                   base_ef: Mapping[str, float], now: datetime) -> PeriodFigures:  # fmt: skip
    """The slices' actual CO2e per item code (module docstring; ``base_ef`` is the base year's factor per item code,
    used for manual items at base-year factors: an item new since the base year keeps its own factor), the coverage
    of every item of each slice's reporting year up to ``now`` (a slice of a year that does not exist has none:
    :class:`ItemSliceCoverage`) and the factor periods of the metered items (the kgCO2e are the engine's, as the
    actual figures sum them), from one query (_FIGURES)."""
    out = ActualSeries()
    ids = _year_ids(conn, organisation_id, kind, sorted({s.year_ce for s in slices}))
    order = list(dict.fromkeys(s.year_ce for s in slices))
    out.missing_years = [y for y in order if y not in ids]
    infos: dict[int, list[tuple[str, ItemInfo]]] = {}
    for year_id, code, scope, cat, gpc, removal in conn.execute(
        "SELECT reporting_year_id, item_code, scope, cfo_category, gpc_ref, is_removal FROM inventory_items"
        " WHERE reporting_year_id = ANY(%s) ORDER BY id",
        (list(ids.values()),),
    ):
        infos.setdefault(int(year_id), []).append((str(code), ItemInfo(int(scope), cat, gpc, bool(removal))))
    for y in order:  # an item's attributes from the first year of the period that has it
        for code, info in infos.get(ids.get(y, -1), []):
            out.items.setdefault(code, info)
    known = [j for j, s in enumerate(slices) if s.year_ce in ids]
    rows = conn.execute(
        _FIGURES,
        {"i": known, "lo": [slices[j].start for j in known], "hi": [slices[j].end for j in known],
         "month": [slices[j].month_start for j in known], "year": [ids[slices[j].year_ce] for j in known],
         "now": now, "tz": CITY_TZ_NAME},
    ).fetchall()  # fmt: skip
    covered: list[ItemSliceCoverage] = []
    merged: dict[tuple[str, float], MeteredFactorPeriod] = {}  # (item, factor's valid_from as epoch: may be -inf)
    # Added slice by slice, metered before manual ('m' < 'q', then by slice), as the figures were summed when each
    # slice was a query.
    for r in sorted((r for r in rows if r[0] in "mq"), key=lambda r: (r[1], r[0])):
        code = r[2]
        if r[0] == "m":  # f1, f2: kgCO2e at the factors in force and at the base year's
            out.add(code, float(r[5]), float(r[6]))
            continue
        # f1, f2: the month's quantity and the item's factor; flag: a removal
        q, ef = (-1.0 if r[14] else 1.0) * float(r[5]) * slices[r[1]].fraction, float(r[6])
        out.add(code, q * ef, q * float(base_ef.get(code, ef)))
    for tag, j, code, collection, n, f1, f2, f3, f4, f5, first, last, unit, source, flag, _, _ in rows:
        if tag == "c":
            covered.append(ItemSliceCoverage(int(j), code, collection, int(n), float(f1), float(f2), float(f3),
                                             bool(flag), float(f4)))  # fmt: skip
        elif tag == "f":  # f1..f5: quantity, factor, kgCO2e, kgCO2e at base-year factors, valid_from (epoch)
            start, end = first.astimezone(BANGKOK), last.astimezone(BANGKOK)  # Bangkok midnights, printed as such
            qty, kg, kg_base = float(f1), float(f3), float(f4)
            key = (str(code), float(f5))
            p = merged.get(key)
            if p is not None:
                start, end = min(start, p.start), max(end, p.end)
                qty, kg, kg_base = qty + p.quantity, kg + p.kgco2e, kg_base + p.kgco2e_base
            merged[key] = MeteredFactorPeriod(str(code), start, end, qty, str(unit), float(f2), str(source), kg,
                                              kg_base)  # fmt: skip
    periods = sorted(merged.values(), key=lambda p: (p.item_code, p.start))
    return PeriodFigures(out, covered, periods)


def _year_ids(conn: psycopg.Connection, organisation_id: int, kind: YearKind, years: Sequence[int]) -> dict[int, int]:
    return {
        int(y): int(i)
        for y, i in conn.execute(
            "SELECT year_ce, id FROM reporting_years WHERE organisation_id = %s AND kind = %s AND year_ce = ANY(%s)",
            (organisation_id, kind, list(years)),
        )
    }


# --------------------------------------------------------------------------------------------------------- targets
@dataclass(frozen=True, slots=True)
class TargetRow:
    target_key: str
    category: str | None
    kpi: str | None
    base_year: int
    year_kind: YearKind
    target_year: int
    reduction_pct: float
    kpi_values: dict[int, float]


def list_targets(conn: psycopg.Connection, organisation: str) -> list[TargetRow]:
    org = require_organisation(conn, organisation)
    rows = conn.execute(
        "SELECT target_key, category, kpi, base_year, year_kind, target_year, reduction_pct, kpi_values"
        " FROM targets WHERE organisation_id = %s ORDER BY target_key",
        (org.id,),
    ).fetchall()
    return [
        TargetRow(
            r[0], r[1], r[2], int(r[3]), r[4], int(r[5]), float(r[6]), {int(k): float(v) for k, v in r[7].items()}
        )
        for r in rows
    ]


def put_targets(conn: psycopg.Connection, organisation: str, targets: Sequence[TargetRow]) -> list[RowError]:
    """Make ``targets`` the organisation's whole target list: all or nothing. Returns the problems (row = 1-based
    position) and writes nothing when there are any."""
    org = require_organisation(conn, organisation)
    errors = _target_errors(conn, targets)
    if errors:
        return errors
    with conn.transaction():
        conn.execute("DELETE FROM targets WHERE organisation_id = %s", (org.id,))
        conn.cursor().executemany(
            "INSERT INTO targets (organisation_id, target_key, category, kpi, base_year, year_kind, target_year,"
            " reduction_pct, kpi_values) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(org.id, t.target_key, t.category, t.kpi, t.base_year, t.year_kind, t.target_year, t.reduction_pct,
              Jsonb({str(k): v for k, v in t.kpi_values.items()})) for t in targets],
        )  # fmt: skip
    return []


def _target_errors(conn: psycopg.Connection, targets: Sequence[TargetRow]) -> list[RowError]:
    categories = {r[0] for r in conn.execute("SELECT DISTINCT code FROM cfo_categories")}
    errors: list[RowError] = []
    seen: set[str] = set()
    for row, t in enumerate(targets, start=1):

        def bad(column: str, value: object, message: str, row: int = row) -> None:
            errors.append(RowError(row, column, str(value), message))

        if not _KEY.match(t.target_key):
            bad("target_key", t.target_key, "letters, digits, '_', '.' and '-', starting with a letter or digit")
        if t.target_key in seen:
            bad("target_key", t.target_key, "given twice")
        seen.add(t.target_key)
        if t.category is not None and t.category not in categories:
            bad("category", t.category, f"not a CFO category; one of {sorted(categories)}")
        if t.kpi is not None and t.category is not None:
            bad("kpi", t.kpi, "a KPI target has no category")
        if t.kpi is not None and t.kpi not in KPIS:
            bad("kpi", t.kpi, f"one of {list(KPIS)}")
        if t.kpi is not None and t.base_year not in t.kpi_values:
            bad("kpi_values", t.base_year, "a KPI target needs its base-year value")
        if t.target_year <= t.base_year:
            bad("target_year", t.target_year, f"must come after the base year {t.base_year}")
        if not 0.0 <= t.reduction_pct <= 100.0:
            bad("reduction_pct", t.reduction_pct, "must be 0..100")
        if any(not np.isfinite(v) for v in t.kpi_values.values()):
            bad("kpi_values", "", "values must be finite numbers")
    return errors


# ------------------------------------------------------------------------------------------------------- buildings
@dataclass(frozen=True, slots=True)
class Site:
    id: int
    site_code: str
    organisation_id: int | None


def require_site(conn: psycopg.Connection, site_code: str, *, scope: Scope | None) -> Site:
    """The site; ``BaselineNotFound`` when there is none of that code in ``scope`` (outside it looks unknown)."""
    query = sql.SQL(
        "SELECT s.id, s.site_code, so.organisation_id FROM sites s"
        " JOIN site_organisations so ON so.site_id = s.id WHERE s.site_code = %s{scope}"
    ).format(scope=scope_and(scope, "s.id"))
    row = conn.execute(query, (site_code,)).fetchone()
    if row is None:
        raise BaselineNotFound(f"no site {site_code!r}")
    return Site(int(row[0]), row[1], row[2])


def _days(day_from: date, day_to: date) -> np.ndarray:
    if day_to <= day_from:
        raise BaselineError(f"empty day range {day_from} .. {day_to} (the end is exclusive)")
    return np.arange(np.datetime64(day_from, "D"), np.datetime64(day_to, "D"))


def _bkk_midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=BANGKOK)


def site_daily_energy(conn: psycopg.Connection, site_id: int, day_from: date,
                      day_to: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(days, kWh, kgCO2e at the factor in force) per Bangkok day ``[day_from, day_to)`` of the site's electricity
    meters, from energy_buckets '1d'; NaN where no meter has a bucket that day."""
    days = _days(day_from, day_to)
    kwh = np.full(days.shape[0], np.nan)
    kg = np.full(days.shape[0], np.nan)
    for day, amount, kgco2e in conn.execute(
        "SELECT (eb.bucket_start AT TIME ZONE %s)::date, sum(eb.amount), sum(eb.kgco2e)"
        " FROM energy_buckets eb JOIN devices d ON d.id = eb.device_id"
        " WHERE eb.resolution = '1d' AND eb.metric_id = %s AND d.site_id = %s AND d.kind = 'electricity_meter'"
        " AND eb.bucket_start >= %s AND eb.bucket_start < %s GROUP BY 1",
        (CITY_TZ_NAME, ENERGY_METRIC, site_id, _bkk_midnight(day_from), _bkk_midnight(day_to)),
    ):
        i = (np.datetime64(day, "D") - days[0]).astype(int)
        kwh[i], kg[i] = float(amount), float(kgco2e)
    return days, kwh, kg


def require_station(conn: psycopg.Connection, device_id: str, *, organisation_id: int | None) -> int:
    """The station's id; ``BaselineNotFound`` when there is no such station of the organisation (any, for None). A
    station anywhere in the organisation serves: a facility manager's building takes the city's weather."""
    query = sql.SQL(
        "SELECT d.id FROM devices d JOIN metrics m ON m.id = %s WHERE d.device_id = %s AND d.kind = 'aq_station'{org}"
    ).format(
        org=sql.SQL("")
        if organisation_id is None
        else sql.SQL(" AND d.site_id IN (SELECT site_id FROM site_organisations WHERE organisation_id = {})").format(
            sql.Literal(organisation_id)
        )
    )
    row = conn.execute(query, (TEMPERATURE_METRIC, device_id)).fetchone()
    if row is None:
        raise BaselineNotFound(f"no aq_station device {device_id!r} (temperatures come from aq_station readings)")
    return int(row[0])


def station_hourly_temperature(conn: psycopg.Connection, station_id: int, day_from: date,
                               day_to: date) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(hour start in UTC epoch µs, hourly mean °C) of a station from sample_buckets '1h'."""
    rows = conn.execute(
        "SELECT (extract(epoch FROM bucket_start) * 1000000)::bigint, sum / n FROM sample_buckets"
        " WHERE resolution = '1h' AND device_id = %s AND metric_id = %s AND bucket_start >= %s AND bucket_start < %s"
        " ORDER BY bucket_start",
        (station_id, TEMPERATURE_METRIC, _bkk_midnight(day_from), _bkk_midnight(day_to)),
    ).fetchall()
    return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.float64)


def imported_daily_temperature(conn: psycopg.Connection, organisation_id: int, day_from: date,
                               day_to: date) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(days, mean °C) of ``[day_from, day_to)`` from temperature_daily; NaN where no temperature was imported."""
    days = _days(day_from, day_to)
    mean = np.full(days.shape[0], np.nan)
    for day, mean_c in conn.execute(
        "SELECT day, mean_c FROM temperature_daily WHERE organisation_id = %s AND day >= %s AND day < %s",
        (organisation_id, day_from, day_to),
    ):
        mean[(np.datetime64(day, "D") - days[0]).astype(int)] = float(mean_c)
    return days, mean


def import_temperature_csv(conn: psycopg.Connection, organisation: str, data: bytes, source: str,
                           limits: InputLimits = DEFAULT_LIMITS) -> int:  # fmt: skip
    """Import daily means for an organisation from a CSV (imports/temperature.py reads it): all rows or none; a day
    imported again is replaced. Raises ``UnknownOrganisation`` or ``TemperatureInvalid``."""
    org = require_organisation(conn, organisation)
    rows = parse_temperature_csv(data, limits)
    with conn.transaction():
        conn.cursor().executemany(
            "INSERT INTO temperature_daily (organisation_id, day, mean_c, source) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (organisation_id, day) DO UPDATE SET mean_c = EXCLUDED.mean_c, source = EXCLUDED.source,"
            " imported_at = now()",
            [(org.id, d, t, source) for d, t in rows],
        )
    return len(rows)


# ---------------------------------------------------------------------------------------------------------- models
@dataclass(frozen=True, slots=True)
class StoredModel:
    site_id: int
    baseline_from: date
    baseline_to: date
    base_temp_c: float
    terms: tuple[str, ...]
    coef: np.ndarray
    station_device_id: int | None
    holidays: tuple[date, ...]
    zeros_as_missing: bool
    stats: dict[str, Any]


def save_model(conn: psycopg.Connection, m: StoredModel) -> None:
    conn.execute(
        "INSERT INTO mv_models (site_id, baseline_from, baseline_to, base_temp_c, terms, coef, station_device_id,"
        " holidays, zeros_as_missing, stats) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (site_id) DO UPDATE SET baseline_from = EXCLUDED.baseline_from,"
        " baseline_to = EXCLUDED.baseline_to, base_temp_c = EXCLUDED.base_temp_c, terms = EXCLUDED.terms,"
        " coef = EXCLUDED.coef, station_device_id = EXCLUDED.station_device_id, holidays = EXCLUDED.holidays,"
        " zeros_as_missing = EXCLUDED.zeros_as_missing, stats = EXCLUDED.stats, fitted_at = now()",
        (m.site_id, m.baseline_from, m.baseline_to, m.base_temp_c, list(m.terms), [float(c) for c in m.coef],
         m.station_device_id, list(m.holidays), m.zeros_as_missing, Jsonb(json.loads(json.dumps(m.stats)))),
    )  # fmt: skip


def load_model(conn: psycopg.Connection, site_id: int) -> StoredModel | None:
    row = conn.execute(
        "SELECT site_id, baseline_from, baseline_to, base_temp_c, terms, coef, station_device_id, holidays,"
        " zeros_as_missing, stats FROM mv_models WHERE site_id = %s",
        (site_id,),
    ).fetchone()
    if row is None:
        return None
    return StoredModel(int(row[0]), row[1], row[2], float(row[3]), tuple(row[4]), np.array(row[5], np.float64),
                       row[6], tuple(row[7]), bool(row[8]), dict(row[9]))  # fmt: skip


__all__ = [
    "BaseYearSeries", "BaselineError", "BaselineNotFound", "ItemSliceCoverage", "MeteredFactorPeriod", "Organisation",
    "PeriodFigures", "SliceSpec", "StoredModel", "TargetRow", "UnknownOrganisation", "base_year_series",
    "import_temperature_csv", "imported_daily_temperature", "list_targets", "load_model", "period_figures",
    "put_targets", "require_site", "require_station", "save_model", "site_daily_energy", "station_hourly_temperature",
]  # fmt: skip
