"""The action-plan KPIs measured from the meters: kWh per lamp, kWh per m² of floor, litres per 100 km (issue 5,
item 5), for any whole-day period or for a reporting year to date with its full-year value.

store/kpi.py measures them over month slices (which meters count, numerators, denominators, coverage, reasons); this
module checks the period, cuts it into slices (engine.calendar.month_slices, as the comparison does) and scales a
year to date to the full year. The answer of ``kpis`` is the JSON of ``GET /organisations/{code}/kpis`` and of
``lccm kpis --json``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import psycopg

from lccm.engine import calendar as cal
from lccm.reports.periods import RequestInvalid, YearKind, bangkok_today, end_of, period_out, slice_specs, whole_days
from lccm.store import inventory as inv
from lccm.store import kpi as kpi_store
from lccm.store.baseline import KPIS


def measured_kpis(conn: psycopg.Connection, code: str, kind: YearKind, start: datetime,
                  end: datetime) -> kpi_store.MeasuredKpis:  # fmt: skip
    """The three KPIs of organisation ``code`` over ``[start, end)``: aware datetimes at Bangkok midnights, counting
    the devices mapped in the ``kind`` reporting year containing each month (store/kpi.py). Raises
    ``RequestInvalid`` (parameter ``period``) for a period that is not whole days or is empty, and
    ``UnknownOrganisation``."""
    lo, hi = whole_days(start, end)
    return kpi_store.measured_kpis(conn, code, kind, slice_specs(cal.custom_period(lo, hi), kind))


def started(year: int, kind: YearKind, as_of: datetime) -> bool:
    """Whether reporting year ``year`` has begun before ``as_of``."""
    return as_of > cal.year_period(year, kind).start


def year_kpis(conn: psycopg.Connection, code: str, year: int, kind: YearKind,
              as_of: datetime) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:  # fmt: skip
    """The KPIs measured in reporting year ``year`` up to ``as_of`` (a Bangkok midnight after the year's start):
    the period's description and one entry per KPI.

    ``measured_to_date`` is the KPI of the part of the year elapsed. ``value`` is the full-year figure: the measured
    one once the year is over (``value_kind`` 'measured'); while it runs (``value_kind`` 'measured_to_date') a
    per-period KPI (kWh per lamp, kWh per m², whose numerator grows with time) is scaled by year days / elapsed days
    (``scale_to_year``; no seasonality: streetlight nights and cooling loads vary over the year), and litres per
    100 km, a ratio of two flows over the same months, is the to-date value as it is."""
    yp = cal.year_period(year, kind)
    end = min(as_of, yp.end)
    report = measured_kpis(conn, code, kind, yp.start, end)
    elapsed_days = (end - yp.start) / timedelta(days=1)
    year_days = (yp.end - yp.start) / timedelta(days=1)
    over = end >= yp.end
    out: dict[str, dict[str, Any]] = {}
    for k in report.kpis:
        scale = 1.0 if over or not k.per_period else year_days / elapsed_days
        out[k.kpi] = {
            "kpi": k.kpi, "unit": k.unit,
            "value": None if k.value is None else k.value * scale,
            "value_kind": None if k.value is None else ("measured" if over else "measured_to_date"),
            "measured_to_date": k.value, "scale_to_year": scale,
            "numerator": {"value": k.numerator, "unit": k.numerator_unit},
            "denominator": {"value": k.denominator, "unit": k.denominator_unit},
            "devices": list(k.devices), "coverage": k.coverage, "reason": k.reason,
            "excluded_sites": list(k.excluded_sites), "excluded_amount": k.excluded_amount,
            "months_without_distance": list(k.months_without_distance),
        }  # fmt: skip
    info = {"year": year, "year_kind": kind, "period": period_out(cal.custom_period(yp.start, end, yp.label)),
            "elapsed_days": elapsed_days, "year_days": year_days, "year_over": over,
            "missing_reporting_years": list(report.missing_years)}  # fmt: skip
    return info, out


def kpis(conn: psycopg.Connection, code: str, year: int | None = None, on: date | None = None,
         kind: YearKind | None = None) -> dict[str, Any]:  # fmt: skip
    """The KPIs measured in a reporting year (default: the one containing ``on``) up to ``on`` (default today,
    Bangkok; included): each with its numerator and denominator, the meters counted (those mapped to the
    organisation's inventory items that year), coverage, and a ``reason`` when no value can be computed
    (store/kpi.py). ``value`` is the full-year figure, projected by elapsed days while the year runs
    (``year_kpis``). ``kind`` defaults to the base year's (calendar without one).

    Raises ``UnknownOrganisation`` or ``RequestInvalid`` (parameter ``year``: not started on ``on``)."""
    d = on or bangkok_today()
    as_of = end_of(d)
    org = inv.require_organisation(conn, code)
    base = inv.find_year(conn, org.id, None, None)
    year_kind: YearKind = kind or (base.kind if base is not None else "calendar")
    y = cal.year_of(d, year_kind) if year is None else year
    if not started(y, year_kind, as_of):
        raise RequestInvalid("year", f"{cal.year_label(y, year_kind)} has not started on {d.isoformat()}")
    info, out = year_kpis(conn, code, y, year_kind, as_of)
    return {"organisation": code, **info, "kpis": [out[k] for k in KPIS]}
