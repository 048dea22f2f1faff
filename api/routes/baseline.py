"""Comparison against the base year, year-end projection, reduction targets, measured action-plan KPIs and building
M&V (issue 5, items 4-6).

The store returns series (store/baseline.py); the engine does the arithmetic (engine/inventory.py: Baseline.slice,
compare, project_year_end, Target; engine/mv.py: fit_daily_model, goodness_of_fit, avoided). All emissions are
kgCO2e. Periods are whole Bangkok days: ``date`` and ``from``/``to`` are dates, ``to`` exclusive; ``fytd``/``ytd``
run from the start of the fiscal (Oct-Sep) or calendar year to the end of ``date`` (included). KPIs (kWh per lamp,
kWh per m², litres per 100 km) are measured by store/kpi.py from the meters mapped to the organisation's inventory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from lccm.api.deps import Conn
from lccm.api.errors import ApiError, InvalidParameter, NotFound
from lccm.api.upload import csv_upload
from lccm.engine import calendar as cal
from lccm.engine import inventory as einv
from lccm.engine import mv
from lccm.engine.timebase import BANGKOK
from lccm.store import baseline as sb
from lccm.store import inventory as inv
from lccm.store import kpi as kpi_store

router = APIRouter(tags=["baseline"])

PeriodName = Literal["day", "week", "month", "fytd", "ytd", "custom"]
By = Literal["scope", "cfo_category", "gpc_ref", "site", "item"]
YearKind = cal.YearKind


class BaselineNotFound(NotFound):
    code = "not_found"


class BaselineUnanswerable(ApiError):
    status_code = 422
    code = "baseline_unanswerable"


class RowsInvalid(ApiError):
    status_code = 422
    code = "invalid_rows"

    def __init__(self, message: str, errors: Sequence[Any]) -> None:
        super().__init__(message)
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        errors = [{"row": e.row, "column": e.column, "value": e.value, "message": e.message} for e in self.errors]
        return {"error": self.code, "detail": self.message, "errors": errors}


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except inv.UnknownOrganisation as exc:
        raise BaselineNotFound(str(exc)) from exc
    except sb.TemperatureInvalid as exc:
        raise RowsInvalid(str(exc), exc.errors) from exc
    except sb.BaselineError as exc:
        raise (BaselineNotFound if str(exc).startswith("no ") else BaselineUnanswerable)(str(exc)) from exc


def _bangkok_today() -> date:
    return datetime.now(BANGKOK).date()


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=BANGKOK)


def make_period(period: PeriodName, on: date | None, start: date | None, end: date | None) -> cal.Period:
    """The period a request names (module docstring)."""
    if period == "custom":
        if start is None or end is None:
            raise InvalidParameter("from", "a custom period needs from and to (dates; to is exclusive)")
        if end <= start:
            raise InvalidParameter("to", f"must be after from ({start.isoformat()})")
        return cal.custom_period(_midnight(start), _midnight(end), f"{start.isoformat()} to {end.isoformat()}")
    d = on or _bangkok_today()
    if period == "day":
        return cal.day_period(d)
    if period == "week":
        return cal.week_of(d)
    if period == "month":
        return cal.month_period(d.year, d.month)
    return cal.ytd_period(_midnight(d + timedelta(days=1)), "fiscal" if period == "fytd" else "calendar")


# --------------------------------------------------------------------------------------------------------- series
class _Series:
    """Base year and actual of one period aligned on item codes, with each item's grouping attributes."""

    def __init__(self, conn: Conn, base: sb.BaseYearSeries, period: cal.Period) -> None:
        slices = [
            sb.SliceSpec(cal.year_of(s.start, base.kind), date(s.year, s.month, 1), s.start, s.end, s.fraction)
            for s in cal.month_slices(period)
        ]
        for edge in (period.start, period.end):
            if edge.time() != datetime.min.time():
                raise InvalidParameter("period", "periods are whole Bangkok days")
        base_ef = dict(zip(base.codes, base.ef_kgco2e_per_unit, strict=True))
        actual = sb.actual_kgco2e(conn, base.organisation_id, base.kind, slices, base_ef)
        extra = [c for c in actual.in_force if c not in base_ef]
        self.codes = list(base.codes) + extra
        info = {c: actual.items[c] for c in extra}
        self.attrs: dict[str, list[str]] = {
            "scope": [str(s) for s in base.scope] + [str(info[c].scope) for c in extra],
            "cfo_category": list(base.category) + [info[c].category for c in extra],
            "gpc_ref": [g or "(none)" for g in base.gpc_ref] + [info[c].gpc_ref or "(none)" for c in extra],
            "site": [s or "(none)" for s in base.site] + ["(none)"] * len(extra),
            "item": self.codes,
        }
        self.is_removal = list(base.is_removal) + [info[c].is_removal for c in extra]
        monthly = np.hstack([base.monthly_kgco2e, np.zeros((12, len(extra)))])
        self.baseline = einv.Baseline(base.year_ce, base.kind, monthly, tuple(self.codes))
        self.in_force = np.array([actual.in_force.get(c, 0.0) for c in self.codes])
        self.base_factors = np.array([actual.base_factors.get(c, 0.0) for c in self.codes])
        # Items with data in the period (a metered month or an entered quantity); the others count as zero in the
        # plain figures, which would read as a 100 % cut where nobody has entered this year's data yet.
        self.has_data = np.array([c in actual.in_force for c in self.codes], dtype=bool)
        self.missing_years = actual.missing_years

    def groups(self, by: By) -> tuple[list[str], np.ndarray]:
        """Group labels and the 0/1 matrix (items x groups) that sums items into groups."""
        keys = self.attrs[by]
        labels = sorted(set(keys))
        matrix = np.zeros((len(keys), len(labels)))
        for i, k in enumerate(keys):
            matrix[i, labels.index(k)] = 1.0
        return labels, matrix


def _f(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _comparison_rows(labels: Sequence[str], pc: einv.PeriodComparison) -> list[dict[str, Any]]:
    a, b = pc.in_force, pc.base_factors
    return [
        {"group": g, "actual_kgco2e": _f(a.actual[j]), "actual_base_factors_kgco2e": _f(b.actual[j]),
         "baseline_kgco2e": _f(a.baseline[j]), "delta_kgco2e": _f(a.delta[j]), "delta_pct": _f(a.delta_pct[j]),
         "delta_base_factors_kgco2e": _f(b.delta[j]), "delta_base_factors_pct": _f(b.delta_pct[j])}
        for j, g in enumerate(labels)
    ]  # fmt: skip


def _period_out(p: cal.Period) -> dict[str, Any]:
    return {"kind": p.kind, "label": p.label, "start": p.start.isoformat(), "end": p.end.isoformat(), "days": p.days}


@router.get("/organisations/{code}/comparison")
def comparison(
    code: str,
    conn: Conn,
    period: Annotated[PeriodName, Query()] = "fytd",
    on: Annotated[date | None, Query(alias="date", description="day in the period; default today (Bangkok)")] = None,
    start: Annotated[date | None, Query(alias="from", description="custom: first day")] = None,
    end: Annotated[date | None, Query(alias="to", description="custom: day after the last")] = None,
    by: Annotated[By, Query()] = "scope",
) -> dict[str, Any]:
    """Actual emissions of a period against the base year's slice (matching months, partial months pro-rated by
    days), at the factors in force and at the base year's factors, per group and in total (removals count
    negative). Items with no data in the period (no metered month, no entered quantity) count as zero there and
    are listed; ``like_for_like`` compares the items that have data only."""
    p = make_period(period, on, start, end)
    with _errors():
        base = sb.base_year_series(conn, code)
        s = _Series(conn, base, p)
    labels, m = s.groups(by)
    grouped = einv.compare_period(
        einv.Baseline(base.year_ce, base.kind, s.baseline.monthly @ m, tuple(labels)), p,
        s.in_force @ m, s.base_factors @ m,
    )  # fmt: skip
    total, like_for_like = (einv.compare_period(
        einv.Baseline(base.year_ce, base.kind, s.baseline.monthly[:, keep].sum(axis=1, keepdims=True), ("total",)),
        p, s.in_force[keep].sum(keepdims=True), s.base_factors[keep].sum(keepdims=True),
    ) for keep in (np.ones(len(s.codes), dtype=bool), s.has_data))  # fmt: skip
    rows = _comparison_rows(labels, grouped)
    for j, row in enumerate(rows):
        row["items_without_data"] = [c for i, c in enumerate(s.codes) if m[i, j] and not s.has_data[i]]
    return {
        "organisation": code, "base_year": base.year_ce, "year_kind": base.kind, "period": _period_out(p), "by": by,
        "rows": rows, "total": _comparison_rows(["total"], total)[0],
        # the same comparison over the items that have data in the period only
        "like_for_like": _comparison_rows(["items with data"], like_for_like)[0] | {
            "items": [c for c, d in zip(s.codes, s.has_data, strict=True) if d]},
        "items_without_data": [c for c, d in zip(s.codes, s.has_data, strict=True) if not d],
        "missing_reporting_years": s.missing_years,
    }  # fmt: skip


@router.get("/organisations/{code}/projection")
def projection(
    code: str,
    conn: Conn,
    on: Annotated[date | None, Query(alias="date", description="last day of the year to date; default today")] = None,
    kind: Annotated[YearKind | None, Query(description="calendar or fiscal; default the base year's")] = None,
    by: Annotated[By, Query()] = "scope",
) -> dict[str, Any]:
    """Year-end projection of the reporting year containing ``date``: actual to date x (baseline full year /
    baseline to date) per group (ratio method, engine/inventory.py)."""
    d = on or _bangkok_today()
    with _errors():
        base = sb.base_year_series(conn, code)
        year_kind = kind or base.kind
        as_of = _midnight(d + timedelta(days=1))
        s = _Series(conn, base, cal.ytd_period(as_of, year_kind))
    labels, m = s.groups(by)
    proj = einv.project_year_end(einv.Baseline(base.year_ce, base.kind, s.baseline.monthly @ m, tuple(labels)),
                                 as_of, s.in_force @ m, year_kind)  # fmt: skip
    rows = [
        {"group": g, "actual_ytd_kgco2e": _f(proj.actual_ytd[j]), "baseline_ytd_kgco2e": _f(proj.baseline_ytd[j]),
         "baseline_rest_kgco2e": _f(proj.baseline_rest[j]), "ratio": _f(proj.ratio[j]),
         "projected_kgco2e": _f(proj.projected[j]), "defined": bool(proj.defined[j])}
        for j, g in enumerate(labels)
    ]  # fmt: skip
    return {"organisation": code, "year": proj.year, "year_kind": year_kind, "ytd": _period_out(proj.ytd), "by": by,
            "rows": rows, "projected_total_kgco2e": _f(float(np.nansum(proj.projected))),
            "missing_reporting_years": s.missing_years}  # fmt: skip


# --------------------------------------------------------------------------------------------------------- targets
class TargetIn(BaseModel):
    target_key: str = Field(description="a name for the target, e.g. org or streetlights-kpi")
    category: str | None = Field(None, description="CFO category code; none = the whole organisation")
    kpi: Literal["kwh_per_lamp", "kwh_per_m2", "l_per_100km"] | None = None
    base_year: int | None = Field(None, description="default: the organisation's base year")
    target_year: int
    reduction_pct: float = einv.DEFAULT_REDUCTION_PCT
    kpi_values: dict[int, float] = Field(default_factory=dict, description="KPI value per CE year")


class TargetsIn(BaseModel):
    targets: list[TargetIn]


def _target_out(t: sb.TargetRow) -> dict[str, Any]:
    return {"target_key": t.target_key, "category": t.category, "kpi": t.kpi, "base_year": t.base_year,
            "year_kind": t.year_kind, "target_year": t.target_year, "reduction_pct": t.reduction_pct,
            "kpi_values": t.kpi_values}  # fmt: skip


@router.get("/organisations/{code}/targets")
def get_targets(code: str, conn: Conn) -> list[dict[str, Any]]:
    with _errors():
        return [_target_out(t) for t in sb.list_targets(conn, code)]


@router.put("/organisations/{code}/targets")
def put_targets(code: str, body: TargetsIn, conn: Conn) -> list[dict[str, Any]]:
    """Replace the organisation's targets (all or nothing). Emission targets count from the base year."""
    with _errors():
        base = sb.base_year_series(conn, code)
        rows = [
            sb.TargetRow(t.target_key, t.category, t.kpi, t.base_year or base.year_ce, base.kind, t.target_year,
                         t.reduction_pct, t.kpi_values)
            for t in body.targets
        ]  # fmt: skip
        errors = [
            sb.RowError(i, "base_year", str(t.base_year), f"emission targets use the base year {base.year_ce}")
            for i, t in enumerate(rows, start=1)
            if t.kpi is None and t.base_year != base.year_ce
        ]
        errors = errors or sb.put_targets(conn, code, rows)
        if errors:
            raise RowsInvalid("targets refused; nothing was written", errors)
        return [_target_out(t) for t in sb.list_targets(conn, code)]


@router.get("/organisations/{code}/targets/status")
def target_status(
    code: str,
    conn: Conn,
    year: Annotated[int, Query(ge=1990, le=2200, description="reporting year (CE; fiscal: the year it ends in)")],
    on: Annotated[date | None, Query(alias="date", description="data up to this day (included); default today")] = None,
) -> list[dict[str, Any]]:
    """Each target in ``year``: the trajectory value, the year's value (actual when the year is over, else the
    projected year end), margin and on-track status.

    KPI targets: a value typed in for the year (``kpi_values``) is the official figure and wins (``value_kind``
    'reported'); otherwise the KPI measured from the mapped meters (store/kpi.py): 'measured' when the year is over,
    'measured_to_date' while it runs, ``value`` then being the full-year projection (GET .../kpis). ``measured``
    always carries the measured figures, numerator and denominator, for comparison with a reported value."""
    d = on or _bangkok_today()
    as_of = _midnight(d + timedelta(days=1))
    with _errors():
        base = sb.base_year_series(conn, code)
        targets = sb.list_targets(conn, code)
        if year < base.year_ce:
            raise InvalidParameter("year", f"before the base year {base.year_ce}")
        measured: dict[str, dict[str, dict[str, Any]] | None] = {}
        for kind in sorted({t.year_kind for t in targets if t.kpi is not None}):
            measured[kind] = _year_kpis(conn, code, year, kind, as_of)[1] if _started(year, kind, as_of) else None
        out = [_status(conn, base, t, year, as_of, measured.get(t.year_kind)) for t in targets]
    return out


def _status(conn: Conn, base: sb.BaseYearSeries, t: sb.TargetRow, year: int, as_of: datetime,
            measured: dict[str, dict[str, Any]] | None) -> dict[str, Any]:  # fmt: skip
    row = _target_out(t) | {"year": year}
    if t.kpi is not None:
        target = einv.Target(t.base_year, t.target_year, t.kpi_values[t.base_year], t.reduction_pct)
        m = None if measured is None else measured[t.kpi]
        value: float | None = t.kpi_values.get(year)
        kind: str | None = "reported"
        if value is None:
            value, kind = (None, None) if m is None else (m["value"], m["value_kind"])
        row |= {"trajectory": float(target.trajectory(year)), "value": value, "value_kind": kind, "measured": m}
        if value is None:
            return row | {"margin": None, "margin_pct": None, "on_track": None}
        st = target.status(year, value)
    else:
        keep = np.array([not r and (t.category is None or c == t.category)
                         for r, c in zip(base.is_removal, base.category, strict=True)])  # fmt: skip
        series = einv.Baseline(base.year_ce, base.kind, base.monthly_kgco2e[:, keep].sum(axis=1, keepdims=True), ("t",))
        yp = cal.year_period(year, t.year_kind)
        if as_of <= yp.start:
            raise InvalidParameter("date", f"{year} has not started on {as_of.date().isoformat()}")
        s = _Series(conn, base, cal.custom_period(yp.start, min(as_of, yp.end)))
        mask = np.array([not r and (t.category is None or c == t.category)
                         for r, c in zip(s.is_removal, s.attrs["cfo_category"], strict=True)])  # fmt: skip
        actual = float(s.in_force[mask].sum())
        if as_of >= yp.end:
            value, kind = actual, "actual"
        else:
            value, kind = float(einv.project_year_end(series, as_of, np.array([actual]), t.year_kind).projected[0]), \
                "projected"  # fmt: skip
        target = einv.Target(t.base_year, t.target_year, float(series.total[0]), t.reduction_pct)
        st = target.status(year, value)
        row |= {"base_value_kgco2e": float(series.total[0]), "trajectory": float(st.trajectory), "value": value,
                "value_kind": kind, "actual_to_date_kgco2e": actual}  # fmt: skip
    return row | {"margin": _f(float(st.margin)), "margin_pct": _f(float(st.margin_pct)),
                  "on_track": bool(st.on_track)}  # fmt: skip


# ------------------------------------------------------------------------------------------------------------ KPIs
def _started(year: int, kind: YearKind, as_of: datetime) -> bool:
    return as_of > cal.year_period(year, kind).start


def _year_kpis(conn: Conn, code: str, year: int, kind: YearKind,
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
    report = kpi_store.measured_kpis(conn, code, kind, yp.start, end)
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
    info = {"year": year, "year_kind": kind, "period": _period_out(cal.custom_period(yp.start, end, yp.label)),
            "elapsed_days": elapsed_days, "year_days": year_days, "year_over": over,
            "missing_reporting_years": list(report.missing_years)}  # fmt: skip
    return info, out


@router.get("/organisations/{code}/kpis")
def kpis(
    code: str,
    conn: Conn,
    year: Annotated[
        int | None, Query(ge=1990, le=2200, description="reporting year (CE); default the one containing date")
    ] = None,
    on: Annotated[date | None, Query(alias="date", description="data up to this day (included); default today")] = None,
    kind: Annotated[YearKind | None, Query(description="calendar or fiscal; default the base year's")] = None,
) -> dict[str, Any]:
    """The action-plan KPIs (kWh per lamp, kWh per m² of floor, litres per 100 km) measured in a reporting year up
    to ``date``: each with its numerator and denominator, the meters counted (those mapped to the organisation's
    inventory items that year), coverage, and a ``reason`` when no value can be computed (store/kpi.py). ``value`` is
    the full-year figure, projected by elapsed days while the year runs (``_year_kpis``)."""
    d = on or _bangkok_today()
    as_of = _midnight(d + timedelta(days=1))
    with _errors():
        org = inv.require_organisation(conn, code)
        base = inv.find_year(conn, org.id, None, None)
        year_kind: YearKind = kind or (base.kind if base is not None else "calendar")
        y = cal.year_of(d, year_kind) if year is None else year
        if not _started(y, year_kind, as_of):
            raise InvalidParameter("year", f"{cal.year_label(y, year_kind)} has not started on {d.isoformat()}")
        info, out = _year_kpis(conn, code, y, year_kind, as_of)
    return {"organisation": code, **info, "kpis": [out[k] for k in sb.KPIS]}


# --------------------------------------------------------------------------------------------------------------- M&V
class LimitsIn(BaseModel):
    cv_rmse_pct: float = Field(mv.G14_MONTHLY.cv_rmse_pct, gt=0)
    nmbe_pct: float = Field(mv.G14_MONTHLY.nmbe_pct, gt=0)
    resolution: Literal["monthly", "daily"] = Field("monthly", description="statistics of monthly totals or days")


class FitIn(BaseModel):
    baseline_from: date
    baseline_to: date = Field(description="exclusive")
    base_temp_c: float
    station: str | None = Field(None, description="aq_station device_id; none = the organisation's imported CSV")
    workday: bool = Field(True, description="fit a working-day term (Mon-Fri except holidays)")
    holidays: list[date] = Field(default_factory=list)
    zeros_as_missing: bool = True
    limits: LimitsIn = Field(default_factory=lambda: LimitsIn.model_validate({}))


def _temperatures(conn: Conn, site: sb.Site, station_id: int | None, d0: date, d1: date) -> np.ndarray:
    if station_id is None:
        if site.organisation_id is None:
            raise sb.BaselineError(f"site {site.site_code} belongs to no organisation: choose a station")
        return sb.imported_daily_temperature(conn, site.organisation_id, d0, d1)[1]
    ts, temp = sb.station_hourly_temperature(conn, station_id, d0, d1)
    days = np.arange(np.datetime64(d0, "D"), np.datetime64(d1, "D"))
    return mv.daily_mean_temperature_c(ts, temp, days).mean_c


def _gof_out(g: mv.GoodnessOfFit) -> dict[str, Any]:
    return {"n": g.n, "p": g.p, "mean": g.mean, "rmse": g.rmse, "cv_rmse_pct": g.cv_rmse_pct, "nmbe_pct": g.nmbe_pct,
            "r2": _f(g.r2), "adj_r2": _f(g.adj_r2)}  # fmt: skip


@router.post("/sites/{code}/mv/fit")
def mv_fit(code: str, body: FitIn, conn: Conn) -> dict[str, Any]:
    """Fit the building's daily baseline (kWh/day = b0 + b1 x CDD (+ b2 x workday)) and keep it for savings."""
    with _errors():
        site = sb.require_site(conn, code)
        station_id = sb.require_station(conn, body.station) if body.station else None
        days, kwh, _ = sb.site_daily_energy(conn, site.id, body.baseline_from, body.baseline_to)
        temp = _temperatures(conn, site, station_id, body.baseline_from, body.baseline_to)
    work = cal.workdays(days, body.holidays) if body.workday else None
    try:
        model = mv.fit_daily_model(kwh, temp, work, base_temp_c=body.base_temp_c,
                                   zeros_as_missing=body.zeros_as_missing)  # fmt: skip
        monthly = None
        used = np.isfinite(model.predict_kwh(temp, work)) & np.isfinite(kwh) & ~((kwh == 0) & body.zeros_as_missing)
        months = days[used].astype("datetime64[M]")
        if np.unique(months).size > model.p:
            monthly = mv.aggregate_goodness_of_fit(kwh[used], model.predict_kwh(temp, work)[used], months, model.p)
    except ValueError as exc:
        raise BaselineUnanswerable(str(exc)) from exc
    limits = mv.Limits(body.limits.cv_rmse_pct, body.limits.nmbe_pct)
    checked = model.gof if body.limits.resolution == "daily" else monthly
    if checked is None:
        raise BaselineUnanswerable(f"monthly statistics need more than {model.p} months of baseline; give a longer "
                                   "baseline or daily limits")  # fmt: skip
    verdict = checked.check(limits)
    stats = {"daily": _gof_out(model.gof), "monthly": None if monthly is None else _gof_out(monthly),
             "limits": body.limits.model_dump(), "passed": verdict.passed, "cv_rmse_ok": verdict.cv_rmse_ok,
             "nmbe_ok": verdict.nmbe_ok, "n_excluded": model.n_excluded}  # fmt: skip
    sb.save_model(
        conn,
        sb.StoredModel(
            site.id,
            body.baseline_from,
            body.baseline_to,
            body.base_temp_c,
            model.terms,
            model.coef,
            station_id,
            tuple(body.holidays),
            body.zeros_as_missing,
            stats,
        ),
    )
    return {"site": code, "base_temp_c": body.base_temp_c, "terms": list(model.terms),
            "coef": [float(c) for c in model.coef], **stats}  # fmt: skip


@router.get("/sites/{code}/mv/savings")
def mv_savings(
    code: str,
    conn: Conn,
    start: Annotated[date, Query(alias="from", description="first day of the reporting period")],
    end: Annotated[date, Query(alias="to", description="day after the last")],
) -> dict[str, Any]:
    """Avoided energy (the stored model at the period's temperatures and working days - actual) and avoided
    emissions at each day's factor in force (the day's kgCO2e / kWh of the site's meters)."""
    with _errors():
        site = sb.require_site(conn, code)
        stored = sb.load_model(conn, site.id)
        if stored is None:
            raise sb.BaselineError(f"no M&V model for site {code}: POST /sites/{code}/mv/fit first")
        days, kwh, kg = sb.site_daily_energy(conn, site.id, start, end)
        temp = _temperatures(conn, site, stored.station_device_id, start, end)
    model = mv.DailyModel(stored.base_temp_c, stored.coef, stored.terms, _dummy_gof(stored.terms),
                          0, stored.zeros_as_missing)  # fmt: skip
    work = cal.workdays(days, stored.holidays) if "workday" in stored.terms else None
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(kwh > 0, kg / kwh, np.nan)
    s = mv.avoided(model, kwh, temp, work, factor)
    return {"site": code, "from": start.isoformat(), "to": end.isoformat(),
            "adjusted_baseline_kwh": s.total_adjusted_baseline_kwh, "actual_kwh": s.total_actual_kwh,
            "avoided_kwh": s.total_avoided_kwh, "avoided_kgco2e": s.avoided_kgco2e,
            "avoided_kwh_without_factor": s.avoided_kwh_without_factor, "days": s.n_days,
            "days_excluded": s.n_days_excluded}  # fmt: skip


def _dummy_gof(terms: Sequence[str]) -> mv.GoodnessOfFit:
    # The stored model's statistics are in mv_models.stats; avoided() needs only the coefficients.
    nan = float("nan")
    return mv.GoodnessOfFit(0, len(terms), nan, nan, nan, nan, nan, nan)


@router.post("/organisations/{code}/temperatures/import")
def import_temperatures(
    code: str,
    conn: Conn,
    data: Annotated[bytes, Depends(csv_upload)],
    source: Annotated[str, Query(min_length=1, max_length=200, description="where the figures come from")] = "csv",
) -> dict[str, Any]:
    """Daily mean temperatures, CSV ``date,mean_temp_c``: all rows or none; a day sent again is replaced."""
    with _errors():
        n = sb.import_temperature_csv(conn, code, data, source)
    return {"organisation": code, "days": n}
