"""Comparison against the base year, year-end projection, reduction targets, measured action-plan KPIs and building
M&V (issue 5, items 4-6): the HTTP face of reports/ (baseline.py, targets.py, kpi.py, mv.py), which ``lccm compare``,
``projection``, ``targets`` and ``kpis`` call too.

All emissions are kgCO2e. Periods are whole Bangkok days: ``date`` and ``from``/``to`` are dates, ``to`` exclusive;
``fytd``/``ytd`` run from the start of the fiscal (Oct-Sep) or calendar year to the end of ``date`` (included).
Domain errors (unknown organisation, no base year, a year not started ...) are mapped to HTTP in api/errors.py.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from lccm.api.audit import Audit
from lccm.api.deps import Conn, Limits
from lccm.api.principal import CurrentPrincipal
from lccm.api.schemas_baseline import (
    ComparisonOut,
    KpisOut,
    MvFitOut,
    MvSavingsOut,
    ProjectionOut,
    TargetOut,
    TargetStatusOut,
    TemperatureImportOut,
)
from lccm.api.upload import csv_upload
from lccm.reports import baseline, kpi, mv, targets
from lccm.reports.baseline import By
from lccm.reports.mv import FitIn
from lccm.reports.periods import PeriodName, YearKind, make_period
from lccm.reports.targets import TargetsIn
from lccm.store import baseline as sb

router = APIRouter(tags=["baseline"])

DateQuery = Annotated[date | None, Query(alias="date", description="data up to this day (included); default today")]


def _min_coverage(request: Request) -> float:
    return float(request.app.state.comparison_min_coverage)


# The coverage threshold of the running service (Settings.comparison_min_coverage), not a request parameter.
MinCoverage = Annotated[float, Depends(_min_coverage)]

_COVERAGE_DOC = """

Coverage: every row and the total carry ``coverage``: readings expected
(each mapped device's elapsed seconds / its registry cadence) and present (seconds covered by its daily energy
buckets / the same cadence) for metered items, item-months expected and entered for manual items, and ``share``:
the base year's emissions over the covered time / over the whole period. Below the threshold
(LCCM_COMPARISON_MIN_COVERAGE, default 0.9) the headline figures are null and ``coverage.reason`` says why;
``covered_time`` gives the like-for-like figures over the covered time only, beside them. ``items_coverage`` lists
every item's figures."""


_COMPARISON_DOC = """Actual emissions of a period against the base year's slice (matching months, partial months
pro-rated by days), at the factors in force and at the base year's factors, per group and in total (removals count
negative). A period that runs past today (this month, this week) is cut at the end of today and compared with the
base year's same days (``period.partial``). Items with no data in the period (no metered day, no entered quantity)
count as zero in the recorded actual and are listed in ``items_without_data``."""

_PROJECTION_DOC = """Year-end projection of the reporting year containing ``date``, item by item over the covered time
(ratio method): each item's ratio = actual / base year over its covered time, projected = ratio x its base-year full
year (an item with data but no covered baseline: its run rate; with neither: its base-year value). Groups and the
total are sums of the item projections, so every ``by`` and a target's value add up to the same total."""


@router.get(
    "/organisations/{code}/comparison", response_model=ComparisonOut, description=_COMPARISON_DOC + _COVERAGE_DOC
)
def comparison(
    code: str,
    conn: Conn,
    min_coverage: MinCoverage,
    period: Annotated[PeriodName, Query()] = "fytd",
    on: Annotated[date | None, Query(alias="date", description="day in the period; default today (Bangkok)")] = None,
    start: Annotated[date | None, Query(alias="from", description="custom: first day")] = None,
    end: Annotated[date | None, Query(alias="to", description="custom: day after the last")] = None,
    by: Annotated[By, Query()] = "scope",
) -> dict[str, Any]:
    return baseline.comparison(conn, code, make_period(period, on, start, end), by, min_coverage=min_coverage)


@router.get(
    "/organisations/{code}/projection", response_model=ProjectionOut, description=_PROJECTION_DOC + _COVERAGE_DOC
)
def projection(
    code: str,
    conn: Conn,
    min_coverage: MinCoverage,
    on: Annotated[date | None, Query(alias="date", description="last day of the year to date; default today")] = None,
    kind: Annotated[YearKind | None, Query(description="calendar or fiscal; default the base year's")] = None,
    by: Annotated[By, Query()] = "scope",
) -> dict[str, Any]:
    return baseline.projection(conn, code, on, kind, by, min_coverage=min_coverage)


@router.get("/organisations/{code}/targets", response_model=list[TargetOut])
def get_targets(code: str, conn: Conn) -> list[dict[str, Any]]:
    return targets.list_targets(conn, code)


@router.put("/organisations/{code}/targets", response_model=list[TargetOut])
def put_targets(code: str, body: TargetsIn, conn: Conn, audit: Audit) -> list[dict[str, Any]]:
    """Replace the organisation's targets (all or nothing). Emission targets count from the base year."""
    before = targets.list_targets(conn, code)
    after = targets.set_targets(conn, code, body.targets)
    audit.record(f"organisation:{code}/targets", before={"targets": before}, after={"targets": after})
    return after


@router.get("/organisations/{code}/targets/status", response_model=list[TargetStatusOut])
def target_status(
    code: str,
    conn: Conn,
    min_coverage: MinCoverage,
    year: Annotated[int, Query(ge=1990, le=2200, description="reporting year (CE; fiscal: the year it ends in)")],
    on: DateQuery = None,
) -> list[dict[str, Any]]:
    """Each target in ``year``: the trajectory value, the year's value, margin and on-track status, and the
    coverage the value rests on.

    Emission targets: the sum of the target's items' year-end projections (GET .../projection): 'projected' while
    the year runs, 'actual' once it is over and every item is covered all year, else 'gap_filled'. KPI targets: a
    value typed in for the year (``kpi_values``) is the official figure and wins (``value_kind`` 'reported');
    otherwise the KPI measured from the mapped meters (GET .../kpis). ``measured`` always carries the measured
    figures, numerator and denominator, for comparison with a reported value.

    Below the coverage threshold (LCCM_COMPARISON_MIN_COVERAGE, default 0.9) ``value``, ``margin``,
    ``margin_pct`` and ``on_track`` are null and ``reason`` says why: nothing is on track by data that cannot show
    it. ``covered_time`` gives the value and margin over the covered time beside them (no verdict)."""
    return targets.target_status(conn, code, year, on, min_coverage=min_coverage)


@router.get("/organisations/{code}/kpis", response_model=KpisOut)
def kpis(
    code: str,
    conn: Conn,
    min_coverage: MinCoverage,
    year: Annotated[
        int | None, Query(ge=1990, le=2200, description="reporting year (CE); default the one containing date")
    ] = None,
    on: DateQuery = None,
    kind: Annotated[YearKind | None, Query(description="calendar or fiscal; default the base year's")] = None,
) -> dict[str, Any]:
    """The action-plan KPIs (kWh per lamp, kWh per m² of floor, litres per 100 km) measured in a reporting year up
    to ``date``: each with its numerator and denominator, the meters counted (those mapped to the organisation's
    inventory items that year), ``coverage`` (readings expected at each meter's registry cadence over the elapsed
    time, and present: seconds covered by its daily energy buckets / cadence; ``share`` = covered / elapsed
    seconds), and a ``reason`` when no value can be computed. ``value`` is the full-year figure over
    the covered time (kWh per lamp and per m² by the meters' covered days, litres per 100 km / coverage); below the
    coverage threshold (LCCM_COMPARISON_MIN_COVERAGE, default 0.9) it is null with the reason, and
    ``covered_time.value`` still gives it."""
    return kpi.kpis(conn, code, year, on, kind, min_coverage=min_coverage)


@router.post("/sites/{code}/mv/fit", response_model=MvFitOut)
def mv_fit(code: str, body: FitIn, conn: Conn, principal: CurrentPrincipal, audit: Audit) -> dict[str, Any]:
    """Fit the building's daily baseline (kWh/day = b0 + b1 x CDD (+ b2 x workday)) and keep it for savings."""
    fitted = mv.fit(conn, code, body, scope=principal.scope)
    audit.record(f"site:{code}/mv", after={"request": body, "model": fitted})
    return fitted


@router.get("/sites/{code}/mv/savings", response_model=MvSavingsOut)
def mv_savings(
    code: str,
    conn: Conn,
    principal: CurrentPrincipal,
    start: Annotated[date, Query(alias="from", description="first day of the reporting period")],
    end: Annotated[date, Query(alias="to", description="day after the last")],
) -> dict[str, Any]:
    """Avoided energy (the stored model at the period's temperatures and working days - actual) and avoided
    emissions at each day's factor in force (the day's kgCO2e / kWh of the site's meters)."""
    return mv.savings(conn, code, start, end, scope=principal.scope)


@router.post("/organisations/{code}/temperatures/import", response_model=TemperatureImportOut)
def import_temperatures(
    code: str,
    conn: Conn,
    limits: Limits,
    data: Annotated[bytes, Depends(csv_upload)],
    audit: Audit,
    source: Annotated[str, Query(min_length=1, max_length=200, description="where the figures come from")] = "csv",
) -> dict[str, Any]:
    """Daily mean temperatures, CSV ``date,mean_temp_c``: all rows or none; a day sent again is replaced."""
    days = sb.import_temperature_csv(conn, code, data, source, limits)
    digest = hashlib.sha256(data).hexdigest()
    audit.record(f"organisation:{code}/temperatures", after={"days": days, "source": source, "sha256": digest})
    return {"organisation": code, "days": days}
