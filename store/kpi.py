"""Measured action-plan KPIs (issue 5, item 5): kWh per streetlight, kWh per m² of building floor and litres per
100 km of fleet, for an organisation and a period ``[start, end)``, from what the system stores.

Which devices count: those mapped to one of the organisation's inventory items in the reporting year (calendar or
fiscal, as asked) containing each Bangkok month of the period: the explicit device -> item mapping of
store/inventory_mapping.py, exactly as the base-year comparison reads it (store/baseline.actual_kgco2e). A device not
mapped that year is not counted, so no meter is counted twice nor for an organisation it does not report to. Among
the mapped devices, the device's source class (view ``device_sources``) says which KPI it feeds:

- ``kwh_per_lamp``: kWh of the mapped ``streetlight_electricity`` meters (streetlight cabinets) / the lamps, i.e. the
  devices of kind ``lamp`` registered at those cabinets' sites (the registry puts a cabinet and its lamps on one
  street site), counted for the share of the period each was in service (store/assets.py: commissioning and
  decommissioning dates, migration 014), so a mid-year LED retrofit divides each part of the year by its own lamps.
- ``kwh_per_m2``: kWh of the mapped ``building_electricity`` meters / the summed ``sites.floor_area_m2`` of their
  sites, each for the share of the period it was in service (store/assets.py). A site without a floor area is left
  out of both sides and named in ``excluded_sites`` (its meters' kWh in ``excluded_amount``).
- ``l_per_100km``: litres of the mapped fleet fuel meters (``fleet_diesel``, ``fleet_gasoline``, ``fleet_lpg``) / the
  fleet's km x 100. No sensor measures km: they come from the organisation's manual activity data, items in unit
  ``km`` of category ``mobile_combustion`` (entered per month like any manual item, factor 0 when the fuel meters
  carry the emissions), each month's entry pro-rated by the covered share of the month. A month without an entry
  for every such item is left out of both sides (``months_without_distance``; its litres in ``excluded_amount``),
  so litres and km always cover the same months.

The period comes as the caller's month slices (``store.baseline.SliceSpec``: part of one Bangkok month, whole days,
its reporting year and covered share), exactly as the comparison passes them to ``store.baseline.actual_kgco2e``;
reports/kpi.py cuts them with ``engine.calendar.month_slices`` and checks the period first. Energy and fuel are
summed from ``energy_buckets`` '1d' (Bangkok days). ``coverage`` is the seconds covered by the counted meters'
intervals / (elapsed seconds, up to ``now``, of the period each counted meter was mapped in and in service), 0..1:
below 1 when a meter's data is missing or it started reporting mid-period (nothing is expected from a meter before
its commissioning date or from its decommissioning date on); ``readings_expected`` and ``readings_present`` are the
same seconds divided by each meter's registry cadence (``devices.cadence_s``). ``per_period`` tells whether the
numerator grows with the period (kWh per lamp, kWh per m²: a yearly KPI needs a whole year, or scaling) or not
(litres per 100 km, a ratio of two flows over the same months).

A KPI that cannot be computed has ``value`` None and a ``reason`` a person can act on. The store does no
projection; reports/kpi.py scales a year-to-date figure to the full year.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import psycopg

from lccm.engine.timebase import CITY_TZ_NAME
from lccm.store import assets
from lccm.store.baseline import KPIS, SliceSpec, YearKind
from lccm.store.inventory import require_organisation

STREETLIGHT_CLASSES = ("streetlight_electricity",)
BUILDING_CLASSES = ("building_electricity",)
# The mobile-combustion source classes of engine/factors.py, all metered in litres (store/ may not import engine/).
FLEET_CLASSES = ("fleet_diesel", "fleet_gasoline", "fleet_lpg")
DISTANCE_UNIT = "km"
DISTANCE_CATEGORY = "mobile_combustion"


@dataclass(frozen=True, slots=True)
class KpiValue:
    """One KPI of one period: ``value = numerator / denominator`` (x 100 for litres per 100 km), or None with a
    ``reason``. ``devices`` are the counted meters' device_ids; ``excluded_amount`` is in ``numerator_unit``."""

    kpi: str
    unit: str  # kWh/lamp, kWh/m2, L/100km
    value: float | None
    numerator: float
    numerator_unit: str  # kWh or L
    denominator: float | None
    denominator_unit: str  # lamp, m2 or km
    per_period: bool
    devices: tuple[str, ...]
    coverage: float | None
    reason: str | None = None
    readings_expected: float = 0.0
    readings_present: float = 0.0
    excluded_sites: tuple[str, ...] = ()
    excluded_amount: float = 0.0
    months_without_distance: tuple[str, ...] = ()  # 'YYYY-MM' (l_per_100km only)


@dataclass(frozen=True, slots=True)
class MeasuredKpis:
    organisation: str
    kind: YearKind
    start: datetime
    end: datetime
    missing_years: tuple[int, ...]  # reporting years of the period that do not exist (nothing can be mapped there)
    kpis: tuple[KpiValue, ...]  # in store.baseline.KPIS order

    def get(self, kpi: str) -> KpiValue:
        for k in self.kpis:
            if k.kpi == kpi:
                return k
        raise KeyError(kpi)


@dataclass(frozen=True, slots=True)
class _Slice:
    """The part ``[lo, hi)`` of one Bangkok month in the period, and the reporting year it belongs to."""

    month: date
    lo: datetime
    hi: datetime
    fraction: float  # covered share of the month (pro-rates monthly distance entries)
    year_ce: int
    year_id: int | None

    @property
    def label(self) -> str:
        return f"{self.month.year:04d}-{self.month.month:02d}"


@dataclass(frozen=True, slots=True)
class _Meter:
    """One mapped meter in one slice."""

    slice: int
    device_id: str
    source_class: str
    site_id: int
    site_code: str
    floor_area_m2: float | None
    amount: float
    covered_s: float  # capped at expected_s
    expected_s: float  # elapsed seconds of the slice (up to now)
    cadence_s: int


def _slices(conn: psycopg.Connection, organisation_id: int, kind: YearKind,
            specs: Sequence[SliceSpec]) -> list[_Slice]:  # fmt: skip
    years = sorted({s.year_ce for s in specs})
    ids = {
        int(y): int(i)
        for y, i in conn.execute(
            "SELECT year_ce, id FROM reporting_years WHERE organisation_id = %s AND kind = %s AND year_ce = ANY(%s)",
            (organisation_id, kind, years),
        )
    }
    return [_Slice(s.month_start, s.start, s.end, s.fraction, s.year_ce, ids.get(s.year_ce)) for s in specs]


_METERS = """
WITH s(i, lo, hi, year_id) AS (SELECT * FROM unnest(%s::int[], %s::timestamptz[], %s::timestamptz[], %s::int[]))
SELECT s.i, d.device_id, ds.source_class, st.id, st.site_code, st.floor_area_m2,
       coalesce(sum(eb.amount), 0), coalesce(sum(eb.covered_s), 0),
       greatest(0, extract(epoch FROM least(s.hi, %s, coalesce(d.decommissioned_on::timestamp AT TIME ZONE %s,
                                                            'infinity'::timestamptz))
                                 - greatest(s.lo, coalesce(d.commissioned_on::timestamp AT TIME ZONE %s,
                                                           '-infinity'::timestamptz))))::float8, d.cadence_s
FROM s
JOIN device_item_map dm ON dm.reporting_year_id = s.year_id
JOIN devices d ON d.id = dm.device_id
JOIN sites st ON st.id = d.site_id
JOIN device_sources ds ON ds.device_id = d.id AND ds.source_class = ANY(%s)
JOIN device_registers dr ON dr.device_id = d.id
LEFT JOIN energy_buckets eb ON eb.resolution = '1d' AND eb.device_id = d.id AND eb.metric_id = dr.metric_id
     AND eb.bucket_start >= s.lo AND eb.bucket_start < s.hi
GROUP BY s.i, s.lo, s.hi, d.id, ds.source_class, st.id, d.commissioned_on, d.decommissioned_on
ORDER BY s.i, d.device_id
"""

# Per slice: the distance items of its reporting year, how many have an entry for the month, and their sum (km).
_DISTANCE = """
WITH s(i, month, year_id) AS (SELECT * FROM unnest(%s::int[], %s::date[], %s::int[]))
SELECT s.i, count(i.id), count(q.item_id), coalesce(sum(q.quantity), 0)
FROM s
JOIN inventory_items i ON i.reporting_year_id = s.year_id AND i.collection = 'manual' AND lower(i.unit) = %s
     AND i.cfo_category = %s
LEFT JOIN inventory_quantities q ON q.item_id = i.id AND q.month_start = s.month
GROUP BY s.i
"""


def _meters(conn: psycopg.Connection, slices: Sequence[_Slice], now: datetime) -> list[_Meter]:
    known = [j for j, s in enumerate(slices) if s.year_id is not None]
    classes = [*STREETLIGHT_CLASSES, *BUILDING_CLASSES, *FLEET_CLASSES]
    rows = conn.execute(
        _METERS,
        (known, [slices[j].lo for j in known], [slices[j].hi for j in known], [slices[j].year_id for j in known],
         now, CITY_TZ_NAME, CITY_TZ_NAME, classes),
    ).fetchall()  # fmt: skip
    return [
        _Meter(int(r[0]), r[1], r[2], int(r[3]), r[4], None if r[5] is None else float(r[5]), float(r[6]),
               min(float(r[7]), float(r[8])), float(r[8]), int(r[9]))
        for r in rows
    ]  # fmt: skip


def _coverage(meters: Sequence[_Meter]) -> dict[str, Any]:
    """``coverage``, ``readings_expected`` and ``readings_present`` of the counted meters (module docstring)."""
    expected = sum(m.expected_s for m in meters)
    return {
        "coverage": sum(m.covered_s for m in meters) / expected if expected > 0 else None,
        "readings_expected": sum(m.expected_s / m.cadence_s for m in meters),
        "readings_present": sum(m.covered_s / m.cadence_s for m in meters),
    }


def _not_mapped(what: str, slices: Sequence[_Slice], kind: YearKind) -> str:
    years = sorted({s.year_ce for s in slices})
    missing = sorted({s.year_ce for s in slices if s.year_id is None})
    text = f"no {what} is mapped to an inventory item of the {kind} year(s) {', '.join(map(str, years))}"
    if missing:
        text += f"; there is no {kind} reporting year {', '.join(map(str, missing))}: import or carry one forward"
    return text + "; map the meters with `lccm inventory map` or PUT /organisations/<code>/mappings"


def _checked(value: KpiValue, counted: Sequence[_Meter]) -> KpiValue:
    """``value``, unless the counted meters have no interval at all in the period (a 0 would look measured)."""
    if any(m.covered_s > 0 for m in counted):
        return value
    return replace(value, value=None, reason="the mapped meters have no readings in the period")


def _lamps(conn: psycopg.Connection, meters: Sequence[_Meter], slices: Sequence[_Slice], kind: YearKind) -> KpiValue:
    counted = [m for m in meters if m.source_class in STREETLIGHT_CLASSES]
    kwh = sum(m.amount for m in counted)
    devices = tuple(sorted({m.device_id for m in counted}))
    base = KpiValue("kwh_per_lamp", "kWh/lamp", None, kwh, "kWh", None, "lamp", True, devices,
                    **_coverage(counted))  # fmt: skip
    if not counted:
        return replace(base, reason=_not_mapped("streetlight cabinet", slices, kind))
    sites = sorted({m.site_id for m in counted})
    lamps = assets.lamp_count(conn, sites, slices[0].lo, slices[-1].hi)
    if lamps <= 0:
        codes = ", ".join(sorted({m.site_code for m in counted}))
        reason = f"no devices of kind 'lamp' in service at the cabinets' sites ({codes}) in the period"
        return replace(base, denominator=0.0, reason=reason)
    return _checked(replace(base, value=kwh / lamps, denominator=lamps), counted)


def _floor(conn: psycopg.Connection, meters: Sequence[_Meter], slices: Sequence[_Slice], kind: YearKind) -> KpiValue:
    building = [m for m in meters if m.source_class in BUILDING_CLASSES]
    counted = [m for m in building if m.floor_area_m2 is not None]
    left_out = [m for m in building if m.floor_area_m2 is None]
    kwh = sum(m.amount for m in counted)
    # Each site's floor area for the share of the period it was in service (store/assets.py).
    area = sum(assets.floor_areas(conn, sorted({m.site_id for m in counted}), slices[0].lo, slices[-1].hi).values())
    base = KpiValue(
        "kwh_per_m2", "kWh/m2", None, kwh, "kWh", area if counted else None, "m2", True,
        tuple(sorted({m.device_id for m in counted})), **_coverage(counted),
        excluded_sites=tuple(sorted({m.site_code for m in left_out})), excluded_amount=sum(m.amount for m in left_out),
    )  # fmt: skip
    if not building:
        return replace(base, reason=_not_mapped("building electricity meter", slices, kind))
    if not counted:
        reason = (f"none of the sites of the mapped building meters has a floor area ({', '.join(base.excluded_sites)}"
                  "): fill floor_area_m2 in the device registry")  # fmt: skip
        return replace(base, reason=reason)
    if area <= 0:
        codes = ", ".join(sorted({m.site_code for m in counted}))
        return replace(base, reason=f"the sites of the mapped building meters ({codes}) were not in service in the "
                                    "period (their commissioning and decommissioning dates)")  # fmt: skip
    return _checked(replace(base, value=kwh / area), counted)


def _fleet(conn: psycopg.Connection, meters: Sequence[_Meter], slices: Sequence[_Slice], kind: YearKind) -> KpiValue:
    fleet = [m for m in meters if m.source_class in FLEET_CLASSES]
    known = [j for j, s in enumerate(slices) if s.year_id is not None]
    distance = {
        int(r[0]): (int(r[1]), int(r[2]), float(r[3]))
        for r in conn.execute(
            _DISTANCE,
            (known, [slices[j].month for j in known], [slices[j].year_id for j in known], DISTANCE_UNIT,
             DISTANCE_CATEGORY),
        )
    }  # fmt: skip
    with_km = {j for j, (items, entered, _) in distance.items() if items > 0 and entered == items}
    km = sum(distance[j][2] * slices[j].fraction for j in with_km)
    counted = [m for m in fleet if m.slice in with_km]
    litres = sum(m.amount for m in counted)
    base = KpiValue(
        "l_per_100km", "L/100km", None, litres, "L", km if with_km else None, "km", False,
        tuple(sorted({m.device_id for m in counted})), **_coverage(counted),
        excluded_amount=sum(m.amount for m in fleet if m.slice not in with_km),
        months_without_distance=tuple(s.label for j, s in enumerate(slices) if j not in with_km),
    )  # fmt: skip
    if not fleet:
        return replace(base, reason=_not_mapped("fleet fuel meter", slices, kind))
    if not distance:
        reason = (f"no distance activity: no sensor measures km; add a manual item in unit {DISTANCE_UNIT}, category "
                  f"{DISTANCE_CATEGORY} (factor 0 when the fuel meters carry the emissions), and enter the fleet's "
                  "km each month")  # fmt: skip
        return replace(base, reason=reason)
    if not with_km:
        reason = f"no month of the period has the fleet's km entered (months: {', '.join(s.label for s in slices)})"
        return replace(base, reason=reason)
    if km <= 0:
        return replace(base, reason="the fleet's distance entered for the period is 0 km")
    return _checked(replace(base, value=100.0 * litres / km), counted)


def measured_kpis(conn: psycopg.Connection, organisation: str, kind: YearKind, specs: Sequence[SliceSpec],
                  now: datetime) -> MeasuredKpis:  # fmt: skip
    """The three KPIs of ``organisation`` over the month slices ``specs`` (whole Bangkok days, in time order, at least
    one), counting the devices mapped in the ``kind`` reporting year of each slice, coverage counted up to ``now``
    (module docstring). Raises ``UnknownOrganisation``."""
    if not specs:
        raise ValueError("measured_kpis needs at least one month slice")
    org = require_organisation(conn, organisation)
    lo, hi = specs[0].start, specs[-1].end
    slices = _slices(conn, org.id, kind, specs)
    meters = _meters(conn, slices, now)
    values = {
        "kwh_per_lamp": _lamps(conn, meters, slices, kind),
        "kwh_per_m2": _floor(conn, meters, slices, kind),
        "l_per_100km": _fleet(conn, meters, slices, kind),
    }
    missing = tuple(sorted({s.year_ce for s in slices if s.year_id is None}))
    return MeasuredKpis(org.code, kind, lo, hi, missing, tuple(values[k] for k in KPIS))
