"""Building M&V (issue 5, item 6): fit a building's daily energy against cooling degree days (and working days),
judge the fit by ASHRAE Guideline 14, keep it, and report avoided energy and emissions of a later period.

The store returns daily energy, temperatures and the stored model (store/baseline.py); engine/mv.py fits and
predicts. The answers are the JSON of ``POST /sites/{code}/mv/fit`` and ``GET /sites/{code}/mv/savings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

import numpy as np
import psycopg
from pydantic import BaseModel, Field

from lccm.engine import calendar as cal
from lccm.engine import mv
from lccm.reports.baseline import finite
from lccm.store import baseline as sb
from lccm.store.scope import Scope


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


def _temperatures(conn: psycopg.Connection, site: sb.Site, station_id: int | None, d0: date, d1: date) -> np.ndarray:
    if station_id is None:
        if site.organisation_id is None:
            raise sb.BaselineError(f"site {site.site_code} belongs to no organisation: choose a station")
        return sb.imported_daily_temperature(conn, site.organisation_id, d0, d1)[1]
    ts, temp = sb.station_hourly_temperature(conn, station_id, d0, d1)
    days = np.arange(np.datetime64(d0, "D"), np.datetime64(d1, "D"))
    return mv.daily_mean_temperature_c(ts, temp, days).mean_c


def _gof_out(g: mv.GoodnessOfFit) -> dict[str, Any]:
    return {"n": g.n, "p": g.p, "mean": g.mean, "rmse": g.rmse, "cv_rmse_pct": g.cv_rmse_pct, "nmbe_pct": g.nmbe_pct,
            "r2": finite(g.r2), "adj_r2": finite(g.adj_r2)}  # fmt: skip


def fit(conn: psycopg.Connection, code: str, body: FitIn, *, scope: Scope | None) -> dict[str, Any]:
    """Fit site ``code``'s daily baseline (kWh/day = b0 + b1 x CDD (+ b2 x workday)) and keep it for savings.
    Raises ``BaselineNotFound`` (site, station; outside ``scope`` they look unknown) or ``BaselineError`` (a model
    that cannot be fitted or judged)."""
    site = sb.require_site(conn, code, scope=scope)
    org = None if scope is None else scope.organisation_id
    station_id = sb.require_station(conn, body.station, organisation_id=org) if body.station else None
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
        raise sb.BaselineError(str(exc)) from exc
    limits = mv.Limits(body.limits.cv_rmse_pct, body.limits.nmbe_pct)
    checked = model.gof if body.limits.resolution == "daily" else monthly
    if checked is None:
        raise sb.BaselineError(f"monthly statistics need more than {model.p} months of baseline; give a longer "
                               "baseline or daily limits")  # fmt: skip
    verdict = checked.check(limits)
    stats = {"daily": _gof_out(model.gof), "monthly": None if monthly is None else _gof_out(monthly),
             "limits": body.limits.model_dump(), "passed": verdict.passed, "cv_rmse_ok": verdict.cv_rmse_ok,
             "nmbe_ok": verdict.nmbe_ok, "n_excluded": model.n_excluded}  # fmt: skip
    sb.save_model(conn, sb.StoredModel(site.id, body.baseline_from, body.baseline_to, body.base_temp_c, model.terms,
                                       model.coef, station_id, tuple(body.holidays), body.zeros_as_missing,
                                       stats))  # fmt: skip
    return {"site": code, "base_temp_c": body.base_temp_c, "terms": list(model.terms),
            "coef": [float(c) for c in model.coef], **stats}  # fmt: skip


def savings(conn: psycopg.Connection, code: str, start: date, end: date, *, scope: Scope | None) -> dict[str, Any]:
    """Avoided energy of site ``code`` over days ``[start, end)`` (the stored model at the period's temperatures and
    working days - actual) and avoided emissions at each day's factor in force (the day's kgCO2e / kWh of the
    site's meters). Raises ``BaselineNotFound`` (site, model) or ``BaselineError`` (an empty day range)."""
    site = sb.require_site(conn, code, scope=scope)
    stored = sb.load_model(conn, site.id)
    if stored is None:
        raise sb.BaselineNotFound(f"no M&V model for site {code}: POST /sites/{code}/mv/fit first")
    days, kwh, kg = sb.site_daily_energy(conn, site.id, start, end)
    temp = _temperatures(conn, site, stored.station_device_id, start, end)
    model = mv.DailyModel(stored.base_temp_c, stored.coef, stored.terms, _no_gof(stored.terms),
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


def _no_gof(terms: Sequence[str]) -> mv.GoodnessOfFit:
    # The stored model's statistics are in mv_models.stats; avoided() needs only the coefficients.
    nan = float("nan")
    return mv.GoodnessOfFit(0, len(terms), nan, nan, nan, nan, nan, nan)
