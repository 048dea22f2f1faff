"""Building baselines for measurement and verification (IPMVP Option C, ASHRAE Guideline 14 statistics).

Model (per building, daily): energy_kwh[d] = b0 + b1 x CDD[d] + b2 x workday[d] + error, fitted by ordinary least
squares on a baseline period; b2 is dropped for buildings without a working-day pattern (``workday=None``). This is
CalTRACK's daily model use-per-day = mu + beta_C x CDD (CalTRACK Methods v2.0) with the heating term left out
(heating degree days are mostly irrelevant in Thailand) and a working-day indicator added for offices
(docs/reference.md#caltrack-daily-model-and-cooling-degree-days).

Cooling degree days: CDD[d] = max(0, T_mean[d] - T_base) in °C·day, where T_mean[d] is the day's mean temperature
(Bangkok day), as in CalTRACK's daily methods. From hourly station readings, T_mean is the mean of the day's hourly
means (so a station reporting every minute in some hours does not weigh those hours more), and a day needs
``min_hours`` hours with data (default 18: CalTRACK interpolates temperature gaps of up to 6 hours; here a day
missing more than 6 hours has no mean rather than a guessed one). The base temperature is a setting with no
default: no public source gives a value for Thailand, and CalTRACK searches it per building
(:func:`select_base_temperature`, best adjusted R² among fits with a non-negative CDD slope).

Statistics of ASHRAE Guideline 14-2014, Annex B (docs/reference.md#ashrae-guideline-14-statistics), with p = the
number of model parameters (3, or 2 without the workday term) and n = the number of observations:

    CV(RMSE) = sqrt(sum((yhat - y)²) / (n - p)) / ybar,     NMBE = sum(yhat - y) / ((n - p) x ybar)

(NMBE's sign follows Guideline 14: positive = the model over-predicts. OLS with an intercept has sum of residuals
= 0, so the in-sample NMBE of the daily fit is 0 up to rounding; it matters on aggregated or out-of-sample data.)
Acceptance limits are parameters: :data:`G14_MONTHLY` (CV(RMSE) <= 15 %, |NMBE| <= 5 %) and :data:`G14_HOURLY`
(30 %, 10 %) are Guideline 14-2014's calibration criteria. There is no sourced limit for daily data (no public
source confirms the whole-building regression limits): check a daily model on its monthly totals
(:func:`aggregate_goodness_of_fit`) against :data:`G14_MONTHLY`, or pass limits configured for daily data.

Avoided energy = adjusted baseline - actual, per day and summed over the reporting period (the baseline model
evaluated at the reporting period's weather and working days), as CalTRACK defines it; avoided emissions = avoided
kWh x the emission factor of each day (kgCO2e/kWh, e.g. from :class:`engine.factors.FactorRegistry`).

Everything here is a few thousand rows per building at most, so it is plain numpy (no numba kernel to twin).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lccm.engine.timebase import BKK_OFFSET_US, US_PER_DAY, US_PER_H

DEFAULT_MIN_HOURS = 18  # a day needs 18 of 24 hourly means (gaps <= 6 h, after CalTRACK Methods v2.0)
HOURS_PER_DAY = 24


@dataclass(frozen=True, slots=True)
class Limits:
    """Acceptance limits, in %: CV(RMSE) <= cv_rmse_pct and |NMBE| <= nmbe_pct."""

    cv_rmse_pct: float
    nmbe_pct: float
    source: str = ""


G14_MONTHLY = Limits(15.0, 5.0, "ASHRAE Guideline 14-2014 calibration criteria, monthly data")
G14_HOURLY = Limits(30.0, 10.0, "ASHRAE Guideline 14-2014 calibration criteria, hourly data")


@dataclass(frozen=True, slots=True)
class GoodnessOfFit:
    """Guideline 14 statistics of predictions against measurements (module docstring for the formulas)."""

    n: int
    p: int
    mean: float  # ybar, mean of the measurements
    rmse: float  # sqrt(SSE / (n - p))
    cv_rmse_pct: float
    nmbe_pct: float
    r2: float
    adj_r2: float

    def check(self, limits: Limits) -> Verdict:
        cv_ok = self.cv_rmse_pct <= limits.cv_rmse_pct
        nmbe_ok = abs(self.nmbe_pct) <= limits.nmbe_pct
        return Verdict(cv_ok and nmbe_ok, cv_ok, nmbe_ok, self, limits)


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    cv_rmse_ok: bool
    nmbe_ok: bool
    gof: GoodnessOfFit
    limits: Limits


def goodness_of_fit(measured: np.ndarray, predicted: np.ndarray, p: int) -> GoodnessOfFit:
    """CV(RMSE), NMBE (both in %), RMSE, R² and adjusted R² with ``p`` model parameters."""
    y = np.asarray(measured, dtype=np.float64)
    yhat = np.asarray(predicted, dtype=np.float64)
    if y.shape != yhat.shape or y.ndim != 1:
        raise ValueError(f"measured {y.shape} and predicted {yhat.shape} must be 1-D and of one length")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(yhat))):
        raise ValueError("measured and predicted must be finite (drop missing observations first)")
    n = y.shape[0]
    if n - p <= 0:
        raise ValueError(f"{n} observations cannot test a model of {p} parameters (need n > p)")
    ybar = float(y.mean())
    if ybar == 0:
        raise ValueError("mean of the measurements is 0: CV(RMSE) and NMBE are undefined")
    err = yhat - y
    sse = float(err @ err)
    rmse = float(np.sqrt(sse / (n - p)))
    sst = float(((y - ybar) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    adj_r2 = 1.0 - (1.0 - r2) * (n - 1) / (n - p) if sst > 0 else float("nan")
    nmbe = float(err.sum()) / ((n - p) * ybar)
    return GoodnessOfFit(n, p, ybar, rmse, 100.0 * rmse / ybar, 100.0 * nmbe, r2, adj_r2)


def aggregate_goodness_of_fit(measured: np.ndarray, predicted: np.ndarray, group: np.ndarray, p: int) -> GoodnessOfFit:
    """Statistics of group totals (e.g. the months of a daily model: ``group = days.astype("datetime64[M]")``)."""
    y = np.asarray(measured, dtype=np.float64)
    yhat = np.asarray(predicted, dtype=np.float64)
    g = np.asarray(group)
    if not (y.shape == yhat.shape == g.shape):
        raise ValueError("measured, predicted and group must have one shape")
    _, idx = np.unique(g, return_inverse=True)
    return goodness_of_fit(np.bincount(idx, weights=y), np.bincount(idx, weights=yhat), p)


# ---------------------------------------------------------------------------------------------------- temperature
@dataclass(frozen=True, slots=True)
class DailyTemperature:
    day: np.ndarray  # datetime64[D], Bangkok dates
    mean_c: np.ndarray  # float64, NaN = too few hours
    hours: np.ndarray  # int64, hours with at least one reading


def daily_mean_temperature_c(
    ts_us: np.ndarray, temp_c: np.ndarray, days: np.ndarray, *, min_hours: int = DEFAULT_MIN_HOURS
) -> DailyTemperature:
    """Daily mean temperature of each Bangkok date in ``days`` from station readings (any cadence): the mean of the
    day's hourly means; NaN where fewer than ``min_hours`` hours have a reading. Readings outside ``days`` and NaN
    readings are not used."""
    if not 1 <= min_hours <= HOURS_PER_DAY:
        raise ValueError(f"min_hours must be 1..24, got {min_hours}")
    ts = np.asarray(ts_us, dtype=np.int64)
    temp = np.asarray(temp_c, dtype=np.float64)
    if ts.shape != temp.shape:
        raise ValueError(f"{ts.shape[0]} timestamps for {temp.shape[0]} temperatures")
    day = np.asarray(days, dtype="datetime64[D]")
    if day.size and np.any(np.diff(day.astype(np.int64)) != 1):
        raise ValueError("days must be consecutive dates")
    n_days = day.shape[0]
    first = day[0].astype(np.int64) if n_days else 0
    local_hour = (ts + BKK_OFFSET_US) // US_PER_H - first * (US_PER_DAY // US_PER_H)
    keep = np.isfinite(temp) & (local_hour >= 0) & (local_hour < n_days * HOURS_PER_DAY)
    slot = local_hour[keep]
    per_hour_n = np.bincount(slot, minlength=n_days * HOURS_PER_DAY)
    # float64 even with no reading at all: bincount of nothing returns integers, weights or not.
    per_hour_sum = np.bincount(slot, weights=temp[keep], minlength=n_days * HOURS_PER_DAY).astype(np.float64)
    has = per_hour_n > 0
    hourly = np.divide(per_hour_sum, per_hour_n, out=np.zeros_like(per_hour_sum), where=has)
    hours = has.reshape(n_days, HOURS_PER_DAY).sum(axis=1)
    total = hourly.reshape(n_days, HOURS_PER_DAY).sum(axis=1)
    mean = np.where(hours >= min_hours, total / np.maximum(hours, 1), np.nan)
    return DailyTemperature(day, mean, hours.astype(np.int64))


def cooling_degree_days(mean_temp_c: np.ndarray | float, base_temp_c: float) -> np.ndarray:
    """CDD (°C·day) of each day: max(0, daily mean temperature - base temperature); NaN stays NaN."""
    if not np.isfinite(base_temp_c):
        raise ValueError("base temperature must be finite")
    t = np.asarray(mean_temp_c, dtype=np.float64)
    return np.where(np.isnan(t), np.nan, np.maximum(t - base_temp_c, 0.0))


# ----------------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True, slots=True)
class DailyModel:
    """A fitted daily baseline: kWh/day = b0 + b1 x CDD (+ b2 x workday)."""

    base_temp_c: float
    coef: np.ndarray  # float64[p]: intercept kWh/day, kWh per °C·day, workday uplift kWh/day
    terms: tuple[str, ...]  # ("intercept", "cdd") or ("intercept", "cdd", "workday")
    gof: GoodnessOfFit  # in-sample, daily
    n_excluded: int  # baseline days left out (missing energy or temperature, or zero energy)
    zeros_as_missing: bool

    @property
    def p(self) -> int:
        return len(self.terms)

    def design(self, mean_temp_c: np.ndarray, workday: np.ndarray | None) -> np.ndarray:
        cdd = cooling_degree_days(mean_temp_c, self.base_temp_c)
        return _design(cdd, workday, with_workday="workday" in self.terms)

    def predict_kwh(self, mean_temp_c: np.ndarray, workday: np.ndarray | None = None) -> np.ndarray:
        """Predicted kWh per day (NaN where the temperature is missing)."""
        return self.design(mean_temp_c, workday) @ self.coef


def _design(cdd: np.ndarray, workday: np.ndarray | None, *, with_workday: bool) -> np.ndarray:
    cols = [np.ones_like(cdd), cdd]
    if with_workday:
        if workday is None:
            raise ValueError("this model has a workday term: give the working-day indicator")
        w = np.asarray(workday)
        if w.shape != cdd.shape:
            raise ValueError(f"workday has shape {w.shape}, temperatures {cdd.shape}")
        cols.append(w.astype(np.float64))
    elif workday is not None:
        raise ValueError("this model has no workday term (fitted with workday=None)")
    return np.column_stack(cols)


def _usable(energy: np.ndarray, x: np.ndarray, zeros_as_missing: bool) -> np.ndarray:
    if np.any(energy < 0):
        raise ValueError(f"negative daily energy on {int((energy < 0).sum())} day(s)")
    ok = np.isfinite(energy) & np.all(np.isfinite(x), axis=1)
    return ok & (energy != 0) if zeros_as_missing else ok


def fit_daily_model(
    energy_kwh: np.ndarray,
    mean_temp_c: np.ndarray,
    workday: np.ndarray | None = None,
    *,
    base_temp_c: float,
    zeros_as_missing: bool = True,
) -> DailyModel:
    """OLS fit of daily kWh on CDD (and the working-day indicator) over a baseline period.

    Days with missing energy or temperature are left out and counted (``n_excluded``); so are days of zero energy
    when ``zeros_as_missing`` (CalTRACK Methods v2.0 treat electricity zeros as missing)."""
    energy = np.asarray(energy_kwh, dtype=np.float64)
    t = np.asarray(mean_temp_c, dtype=np.float64)
    if energy.shape != t.shape or energy.ndim != 1:
        raise ValueError(f"energy {energy.shape} and temperature {t.shape} must be 1-D and of one length")
    x = _design(cooling_degree_days(t, base_temp_c), workday, with_workday=workday is not None)
    ok = _usable(energy, x, zeros_as_missing)
    terms = ("intercept", "cdd", "workday")[: x.shape[1]]
    xo, yo = x[ok], energy[ok]
    for j, name in enumerate(terms[1:], start=1):
        if xo.shape[0] and np.ptp(xo[:, j]) == 0:
            raise ValueError(
                f"{name} is constant over the {xo.shape[0]} usable baseline days"
                + (f" (is {base_temp_c} °C above every daily mean?)" if name == "cdd" else "")
                + ": its coefficient cannot be fitted"
            )
    if xo.shape[0] <= x.shape[1]:
        raise ValueError(f"{xo.shape[0]} usable baseline days cannot fit {x.shape[1]} parameters")
    coef, *_ = np.linalg.lstsq(xo, yo, rcond=None)
    gof = goodness_of_fit(yo, xo @ coef, x.shape[1])
    return DailyModel(float(base_temp_c), coef, terms, gof, int((~ok).sum()), zeros_as_missing)


def select_base_temperature(
    energy_kwh: np.ndarray,
    mean_temp_c: np.ndarray,
    workday: np.ndarray | None,
    candidates_c: Iterable[float],
    *,
    zeros_as_missing: bool = True,
) -> DailyModel:
    """The fit with the best adjusted R² over candidate base temperatures, among fits whose CDD slope is >= 0
    (CalTRACK's balance-point search); candidates whose CDD is constant over the baseline are skipped."""
    best: DailyModel | None = None
    tried = []
    for base in candidates_c:
        tried.append(base)
        try:
            m = fit_daily_model(energy_kwh, mean_temp_c, workday, base_temp_c=base, zeros_as_missing=zeros_as_missing)
        except ValueError:
            continue
        if m.coef[1] >= 0 and (best is None or m.gof.adj_r2 > best.gof.adj_r2):
            best = m
    if best is None:
        raise ValueError(f"no candidate base temperature gave a fit with a CDD slope >= 0: tried {tried}")
    return best


# --------------------------------------------------------------------------------------------------------- savings
@dataclass(frozen=True, slots=True)
class Savings:
    """Avoided energy and emissions over a reporting period, per day and in total."""

    adjusted_baseline_kwh: np.ndarray  # per day; NaN where the day is excluded
    actual_kwh: np.ndarray  # per day, as given
    avoided_kwh: np.ndarray  # adjusted baseline - actual; NaN where excluded
    total_adjusted_baseline_kwh: float
    total_actual_kwh: float  # over the days used
    total_avoided_kwh: float
    avoided_kgco2e: float  # over the days with a factor
    avoided_kwh_without_factor: float  # avoided kWh on days with no factor in force (not in avoided_kgco2e)
    n_days: int  # used
    n_days_excluded: int  # missing actual energy or temperature (or zero energy, as in the baseline fit)


def avoided(
    model: DailyModel,
    energy_kwh: np.ndarray,
    mean_temp_c: np.ndarray,
    workday: np.ndarray | None = None,
    factor_kgco2e_per_kwh: np.ndarray | float | None = None,
) -> Savings:
    """Avoided energy = the baseline model at the reporting period's weather and working days - actual energy; and
    avoided emissions at each day's factor (scalar or per day; NaN = no factor in force that day)."""
    energy = np.asarray(energy_kwh, dtype=np.float64)
    t = np.asarray(mean_temp_c, dtype=np.float64)
    if energy.shape != t.shape or energy.ndim != 1:
        raise ValueError(f"energy {energy.shape} and temperature {t.shape} must be 1-D and of one length")
    x = model.design(t, workday)
    ok = _usable(energy, x, model.zeros_as_missing)
    baseline = np.where(ok, x @ model.coef, np.nan)
    saved = baseline - np.where(ok, energy, np.nan)
    factor = np.broadcast_to(np.asarray(np.nan if factor_kgco2e_per_kwh is None else factor_kgco2e_per_kwh,
                                        dtype=np.float64), energy.shape)  # fmt: skip
    if np.any(factor < 0):
        raise ValueError("emission factors must be >= 0")
    with_factor = ok & np.isfinite(factor)
    return Savings(
        adjusted_baseline_kwh=baseline,
        actual_kwh=energy,
        avoided_kwh=saved,
        total_adjusted_baseline_kwh=float(baseline[ok].sum()),
        total_actual_kwh=float(energy[ok].sum()),
        total_avoided_kwh=float(saved[ok].sum()),
        avoided_kgco2e=float((saved[with_factor] * factor[with_factor]).sum()),
        avoided_kwh_without_factor=float(saved[ok & ~with_factor].sum()),
        n_days=int(ok.sum()),
        n_days_excluded=int((~ok).sum()),
    )
