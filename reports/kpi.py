"""The action-plan KPIs measured from the meters: kWh per lamp, kWh per m² of floor, litres per 100 km (issue 5,
item 5), for any whole-day period or for a reporting year to date with its full-year value.

store/kpi.py measures them over month slices (which meters count, numerators, denominators, coverage, reasons); this
module checks the period, cuts it into slices (engine.calendar.month_slices, as the comparison does) and scales a
year to date to the full year. The answer of ``kpis`` is the JSON of ``GET /organisations/{code}/kpis`` and of
``lccm kpis --json``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from lccm.engine import calendar as cal
from lccm.reports.coverage import coverage_out
from lccm.reports.periods import (
    RequestInvalid,
    YearKind,
    bangkok_today,
    end_of,
    period_out,
    slice_specs,
    today_end,
    whole_days,
)
from lccm.store import inventory as inv
from lccm.store import kpi as kpi_store
from lccm.store.baseline import KPIS


def measured_kpis(conn: psycopg.Connection, code: str, kind: YearKind, start: datetime, end: datetime,
                  now: datetime | None = None) -> kpi_store.MeasuredKpis:  # fmt: skip
    """The three KPIs of organisation ``code`` over ``[start, end)``: aware datetimes at Bangkok midnights, counting
    the devices mapped in the ``kind`` reporting year containing each month (store/kpi.py), coverage counted up to
    ``now`` (default: the current instant). Raises ``RequestInvalid`` (parameter ``period``) for a period that is
    not whole days or is empty, and ``UnknownOrganisation``."""
    lo, hi = whole_days(start, end)
    specs = slice_specs(cal.custom_period(lo, hi), kind)
    return kpi_store.measured_kpis(conn, code, kind, specs, datetime.now(UTC) if now is None else now)


def started(year: int, kind: YearKind, as_of: datetime) -> bool:
    """Whether reporting year ``year`` has begun before ``as_of``."""
    return as_of > cal.year_period(year, kind).start


def _full_year(k: kpi_store.KpiValue, year_days: float, counted_days: float) -> float | None:
    """The KPI of the whole year over the covered time: kWh per lamp or per m² by the meters' covered days (their
    run rate: year days / (elapsed days x coverage)), litres per 100 km by the litres the meters would have logged
    over all the counted months' time (/ coverage)."""
    if k.value is None or not k.coverage:
        return None
    return k.value * year_days / (counted_days * k.coverage) if k.per_period else k.value / k.coverage


def year_kpis(conn: psycopg.Connection, code: str, year: int, kind: YearKind, as_of: datetime, *,
              min_coverage: float, now: datetime) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:  # fmt: skip
    """The KPIs measured in reporting year ``year`` up to ``as_of`` (a Bangkok midnight after the year's start;
    never past the end of today): the period's description and one entry per KPI.

    ``measured_to_date`` is the KPI of the part of the year elapsed, as measured. ``value`` is the full-year figure
    over the covered time (``_full_year``; no seasonality: streetlight nights and cooling loads vary over the year):
    'measured' once the year is over with every counted meter covering all of it (then the measured figure itself),
    'gap_filled' when over with gaps, 'measured_to_date' while it runs. ``scale_to_year`` = value /
    measured_to_date. Below ``min_coverage`` the value is null with the ``reason``; ``covered_time.value`` still
    gives it."""
    yp = cal.year_period(year, kind)
    end = min(as_of, yp.end)
    cut = min(end, today_end(now))
    report = measured_kpis(conn, code, kind, yp.start, cut, now)
    day = timedelta(days=1)
    elapsed_days = (cut - yp.start) / day
    counted_days = (min(cut, now) - yp.start) / day
    year_days = (yp.end - yp.start) / day
    over = cut >= yp.end
    out: dict[str, dict[str, Any]] = {}
    for k in report.kpis:
        cov = coverage_out(k.coverage, "time", min_coverage, readings_expected=k.readings_expected,
                           readings_present=k.readings_present, months_expected=0, months_present=0)  # fmt: skip
        full = _full_year(k, year_days, counted_days)
        value = full if cov["sufficient"] else None
        complete = k.coverage is not None and k.coverage >= 1 - 1e-9
        if over and complete:
            full = value = k.value
        kind_of = "measured_to_date" if not over else "measured" if complete else "gap_filled"
        out[k.kpi] = {
            "kpi": k.kpi, "unit": k.unit, "value": value, "value_kind": None if value is None else kind_of,
            "measured_to_date": k.value, "scale_to_year": None if full is None or not k.value else full / k.value,
            "numerator": {"value": k.numerator, "unit": k.numerator_unit},
            "denominator": {"value": k.denominator, "unit": k.denominator_unit},
            "devices": list(k.devices), "coverage": cov,
            "reason": k.reason or (cov["reason"] if value is None else None),
            "covered_time": {"value": full},
            "excluded_sites": list(k.excluded_sites), "excluded_amount": k.excluded_amount,
            "months_without_distance": list(k.months_without_distance),
        }  # fmt: skip
    info = {"year": year, "year_kind": kind,
            "period": period_out(cal.custom_period(yp.start, cut, yp.label), end if cut < end else None),
            "as_of": min(now, cut).isoformat(), "elapsed_days": elapsed_days, "year_days": year_days,
            "year_over": over, "missing_reporting_years": list(report.missing_years)}  # fmt: skip
    return info, out


def kpis(conn: psycopg.Connection, code: str, year: int | None = None, on: date | None = None,
         kind: YearKind | None = None, *, min_coverage: float,
         now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The KPIs measured in a reporting year (default: the one containing ``on``) up to ``on`` (default today,
    Bangkok; included; never past today): each with its numerator and denominator, the meters counted (those mapped
    to the organisation's inventory items that year), coverage, and a ``reason`` when no value can be computed
    (store/kpi.py) or the coverage is below ``min_coverage``. ``value`` is the full-year figure over the covered time
    (``year_kpis``). ``kind`` defaults to the base year's (calendar without one).

    Raises ``UnknownOrganisation`` or ``RequestInvalid`` (parameter ``year``: not started on ``on``)."""
    now = datetime.now(UTC) if now is None else now
    d = on or bangkok_today(now)
    as_of = min(end_of(d), today_end(now))  # data cannot reach past today
    org = inv.require_organisation(conn, code)
    base = inv.find_year(conn, org.id, None, None)
    year_kind: YearKind = kind or (base.kind if base is not None else "calendar")
    y = cal.year_of(d, year_kind) if year is None else year
    if not started(y, year_kind, as_of):
        last = (as_of - timedelta(days=1)).date()
        raise RequestInvalid("year", f"{cal.year_label(y, year_kind)} has not started on {last.isoformat()}")
    info, out = year_kpis(conn, code, y, year_kind, as_of, min_coverage=min_coverage, now=now)
    return {"organisation": code, **info, "kpis": [out[k] for k in KPIS]}
