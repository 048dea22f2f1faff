"""Building M&V: daily mean temperature and CDD, the OLS baseline model against an exact normal-equations solve,
ASHRAE Guideline 14 CV(RMSE)/NMBE against hand-computed examples, pass/fail, avoided energy and emissions."""

from __future__ import annotations

import math
from datetime import date, datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from lccm.engine.calendar import custom_period, day_range, workdays
from lccm.engine.mv import (
    G14_HOURLY,
    G14_MONTHLY,
    Limits,
    aggregate_goodness_of_fit,
    avoided,
    cooling_degree_days,
    daily_mean_temperature_c,
    fit_daily_model,
    goodness_of_fit,
    select_base_temperature,
)
from lccm.engine.timebase import bkk_us

ZONE = ZoneInfo("Asia/Bangkok")
# Thai public holidays Jan-Apr 2025 (New Year, Makha Bucha, Chakri Day substitute, Songkran): inputs, as a caller
# would take them from the municipality's calendar.
HOLIDAYS_2025 = [date(2025, 1, 1), date(2025, 2, 12), date(2025, 4, 7), date(2025, 4, 14), date(2025, 4, 15)]


def exact_ols(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Independent least squares: the normal equations (X'X) b = X'y in exact rational arithmetic (Gauss-Jordan
    on Fractions of the exact float inputs), rounded to float only at the end."""
    rows = [[Fraction(float(v)) for v in r] for r in x]
    ys = [Fraction(float(v)) for v in y]
    p = len(rows[0])
    a = [[sum((r[i] * r[j] for r in rows), Fraction(0)) for j in range(p)]
         + [sum((r[i] * v for r, v in zip(rows, ys, strict=True)), Fraction(0))] for i in range(p)]  # fmt: skip
    for col in range(p):
        pivot = next(r for r in range(col, p) if a[r][col] != 0)
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(p):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [u - f * v for u, v in zip(a[r], a[col], strict=True)]
    return [float(a[i][p] / a[i][i]) for i in range(p)]


def synthetic_building(seed: int = 7, noise_kwh: float = 30.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """120 days (Jan-Apr 2025) of an office: 800 kWh + 55 kWh per CDD (base 24 °C) + 400 kWh on working days."""
    days = day_range(custom_period(datetime(2025, 1, 1, tzinfo=ZONE), datetime(2025, 5, 1, tzinfo=ZONE)))
    rng = np.random.default_rng(seed)
    temp = rng.uniform(25.0, 33.0, days.size)
    work = workdays(days, HOLIDAYS_2025)
    energy = 800.0 + 55.0 * (temp - 24.0) + 400.0 * work + rng.normal(0.0, noise_kwh, days.size)
    return days, temp, work, energy


# ------------------------------------------------------------------------------------------------- statistics
def test_guideline14_statistics_hand_computed() -> None:
    """measured 10, 12, 14, 16; predicted 11, 12, 13, 18; p = 2, n = 4, ybar = 13.
    sum(yhat - y) = 1 + 0 - 1 + 2 = 2 -> NMBE = 2 / ((4 - 2) x 13) = 7.6923 %
    SSE = 1 + 0 + 1 + 4 = 6 -> RMSE = sqrt(6 / 2) = 1.7321 -> CV(RMSE) = 1.7321 / 13 = 13.3235 %"""
    g = goodness_of_fit(np.array([10.0, 12, 14, 16]), np.array([11.0, 12, 13, 18]), p=2)
    assert (g.n, g.p, g.mean) == (4, 2, 13.0)
    assert g.rmse == pytest.approx(math.sqrt(3))
    assert g.cv_rmse_pct == pytest.approx(100 * math.sqrt(3) / 13)  # 13.3235 %
    assert g.nmbe_pct == pytest.approx(100 * 2 / 26)  # 7.6923 %
    # R² = 1 - SSE/SST = 1 - 6/20 = 0.7; adjusted = 1 - 0.3 x (4 - 1)/(4 - 2) = 0.55
    assert g.r2 == pytest.approx(0.7) and g.adj_r2 == pytest.approx(0.55)
    # Guideline 14 monthly limits: CV(RMSE) <= 15 % passes, |NMBE| <= 5 % fails; hourly limits (30 %, 10 %) pass.
    monthly = g.check(G14_MONTHLY)
    assert (monthly.passed, monthly.cv_rmse_ok, monthly.nmbe_ok) == (False, True, False)
    assert g.check(G14_HOURLY).passed
    assert (G14_MONTHLY.cv_rmse_pct, G14_MONTHLY.nmbe_pct, G14_HOURLY.cv_rmse_pct, G14_HOURLY.nmbe_pct) == (
        15.0, 5.0, 30.0, 10.0)  # fmt: skip  # ASHRAE Guideline 14-2014 calibration criteria
    assert not g.check(Limits(13.0, 10.0)).passed  # a stricter configured CV(RMSE) limit
    with pytest.raises(ValueError, match="need n > p"):
        goodness_of_fit(np.array([1.0, 2.0]), np.array([1.0, 2.0]), p=2)
    with pytest.raises(ValueError, match="mean of the measurements is 0"):
        goodness_of_fit(np.array([-1.0, 1.0, 0.0]), np.zeros(3), p=1)


def test_aggregated_statistics_use_group_totals() -> None:
    # Seven days in four groups whose totals are the hand example above: (4+6 | 12 | 7+7 | 16) vs (5+6 | 12 | 6+7 | 18)
    measured = np.array([4.0, 6, 12, 7, 7, 16])
    predicted = np.array([5.0, 6, 12, 6, 7, 18])
    group = np.array(["2025-01", "2025-01", "2025-02", "2025-03", "2025-03", "2025-04"], dtype="datetime64[M]")
    g = aggregate_goodness_of_fit(measured, predicted, group, p=2)
    assert g.n == 4 and g.cv_rmse_pct == pytest.approx(100 * math.sqrt(3) / 13)
    assert g.nmbe_pct == pytest.approx(100 * 2 / 26)


# ------------------------------------------------------------------------------------------------ temperature
def test_daily_mean_temperature_from_readings_and_cdd() -> None:
    """Day 1 (1 Apr 2026, Bangkok): one reading per hour h = 0..23 at 25 + 0.5 h °C, plus one at 00:30 of 35 °C
    (hour 0 mean = (25 + 35) / 2 = 30) and a NaN. Mean of hourly means = (600 + 0.5 x 276 + 5) / 24 = 743 / 24
    = 30.9583 °C; CDD at base 25 °C = 5.9583. Day 2: only 17 hours (00-16) at 30 °C: no mean with 18 required."""
    ts = [bkk_us(2026, 4, 1, h) for h in range(24)] + [bkk_us(2026, 4, 1, 0, 30), bkk_us(2026, 4, 1, 5, 10)]
    temp = [25 + 0.5 * h for h in range(24)] + [35.0, np.nan]
    ts += [bkk_us(2026, 4, 2, h) for h in range(17)] + [bkk_us(2026, 3, 31, 23, 30)]  # last: the day before
    temp += [30.0] * 17 + [99.0]
    days = np.array(["2026-04-01", "2026-04-02"], dtype="datetime64[D]")
    t = daily_mean_temperature_c(np.array(ts), np.array(temp), days)
    assert t.hours.tolist() == [24, 17]
    assert t.mean_c[0] == pytest.approx(743 / 24) and np.isnan(t.mean_c[1])
    assert daily_mean_temperature_c(np.array(ts), np.array(temp), days, min_hours=17).mean_c[1] == 30.0
    cdd = cooling_degree_days(np.array([743 / 24, 23.0, np.nan]), 25.0)
    assert cdd[0] == pytest.approx(743 / 24 - 25) and cdd[1] == 0.0 and np.isnan(cdd[2])
    # 2026-04-01 00:00 Bangkok is 2026-03-31 17:00 UTC: that reading is the first hour of 1 April
    assert bkk_us(2026, 4, 1) == int(datetime(2026, 4, 1, tzinfo=ZONE).timestamp() * 1_000_000)


def test_daily_mean_temperature_of_a_station_without_readings_is_nan() -> None:
    """A station that measured no temperature in the days (the API's M&V fit used to answer 500 for it)."""
    days = np.array(["2026-04-01", "2026-04-02"], dtype="datetime64[D]")
    t = daily_mean_temperature_c(np.array([], np.int64), np.array([], np.float64), days)
    assert t.hours.tolist() == [0, 0] and np.isnan(t.mean_c).all()


# --------------------------------------------------------------------------------------------------------- model
def test_two_parameter_fit_hand_computed() -> None:
    """Daily means 24, 26, 27, 28 °C at base 25 -> CDD 0, 1, 2, 3; energy 100, 300, 200, 400 kWh.
    xbar = 1.5, ybar = 250; Sxy = (-1.5)(-150) + (-0.5)(50) + (0.5)(-50) + (1.5)(150) = 400; Sxx = 5;
    b1 = 80 kWh per °C·day, b0 = 250 - 80 x 1.5 = 130 kWh/day; fitted 130, 210, 290, 370;
    SSE = 30² + 90² + 90² + 30² = 18,000; RMSE = sqrt(18000 / (4 - 2)) = 94.868; CV(RMSE) = 37.947 %; NMBE = 0."""
    m = fit_daily_model(np.array([100.0, 300, 200, 400]), np.array([24.0, 26, 27, 28]), base_temp_c=25.0)
    assert m.terms == ("intercept", "cdd") and m.p == 2
    assert m.coef == pytest.approx([130.0, 80.0])
    assert m.gof.rmse == pytest.approx(math.sqrt(9000))
    assert m.gof.cv_rmse_pct == pytest.approx(100 * math.sqrt(9000) / 250)  # 37.947 %
    assert m.gof.nmbe_pct == pytest.approx(0.0, abs=1e-9)
    assert m.predict_kwh(np.array([30.0])) == pytest.approx([130 + 80 * 5])


def test_three_parameter_fit_agrees_with_an_exact_normal_equations_solve() -> None:
    days, temp, work, energy = synthetic_building()
    m = fit_daily_model(energy, temp, work, base_temp_c=24.0)
    x = np.column_stack([np.ones(days.size), np.maximum(temp - 24.0, 0.0), work.astype(float)])
    assert m.coef == pytest.approx(exact_ols(x, energy), rel=1e-9)
    assert m.coef == pytest.approx([800.0, 55.0, 400.0], rel=0.05)  # and it recovers the building, within noise
    # Guideline 14 statistics recomputed by hand from the residuals, p = 3
    resid = x @ np.array(exact_ols(x, energy)) - energy
    ybar = sum(energy) / len(energy)
    assert m.gof.cv_rmse_pct == pytest.approx(100 * math.sqrt(sum(r * r for r in resid) / (120 - 3)) / ybar)
    assert abs(m.gof.nmbe_pct) < 1e-9  # OLS with an intercept: residuals sum to 0
    assert m.n_excluded == 0 and m.gof.n == 120 and m.gof.p == 3
    # Checked on monthly totals against Guideline 14's monthly limits (4 months, p = 3)
    monthly = aggregate_goodness_of_fit(energy, m.predict_kwh(temp, work), days.astype("datetime64[M]"), m.p)
    assert monthly.n == 4 and monthly.check(G14_MONTHLY).passed


def test_single_regressor_fit_agrees_with_the_closed_form() -> None:
    _, temp, _, energy = synthetic_building(seed=11)
    m = fit_daily_model(energy, temp, base_temp_c=24.0)
    cdd = [max(t - 24.0, 0.0) for t in temp]
    xbar, ybar = sum(cdd) / len(cdd), sum(energy) / len(energy)
    slope = sum((c - xbar) * (e - ybar) for c, e in zip(cdd, energy, strict=True)) / sum((c - xbar) ** 2 for c in cdd)
    assert m.coef == pytest.approx([ybar - slope * xbar, slope], rel=1e-9)


def test_days_left_out_of_the_fit_are_counted() -> None:
    _, temp, work, energy = synthetic_building()
    energy[3], energy[10], temp[20] = np.nan, 0.0, np.nan
    m = fit_daily_model(energy, temp, work, base_temp_c=24.0)
    assert m.n_excluded == 3 and m.gof.n == 117
    assert fit_daily_model(energy, temp, work, base_temp_c=24.0, zeros_as_missing=False).n_excluded == 2


def test_fit_errors_are_specific() -> None:
    _, temp, work, energy = synthetic_building()
    with pytest.raises(ValueError, match="workday is constant"):
        fit_daily_model(energy, temp, np.ones(temp.size, bool), base_temp_c=24.0)
    with pytest.raises(ValueError, match=r"cdd is constant .* 40\.0 °C above every daily mean"):
        fit_daily_model(energy, temp, work, base_temp_c=40.0)
    with pytest.raises(ValueError, match="negative daily energy on 1 day"):
        fit_daily_model(np.where(np.arange(temp.size) == 5, -1.0, energy), temp, work, base_temp_c=24.0)
    with pytest.raises(ValueError, match="3 usable baseline days cannot fit 3 parameters"):
        fit_daily_model(energy[:3], temp[:3], np.array([1, 0, 1]), base_temp_c=24.0)
    m = fit_daily_model(energy, temp, work, base_temp_c=24.0)
    with pytest.raises(ValueError, match="workday term"):
        m.predict_kwh(temp)


def test_base_temperature_search_finds_the_building_balance_point() -> None:
    """Noise-free building with a balance point at 26 °C: only base 26 fits exactly (adjusted R² = 1)."""
    days, temp, work, _ = synthetic_building()
    temp = np.linspace(22.0, 33.0, days.size)[np.random.default_rng(3).permutation(days.size)]
    energy = 700.0 + 60.0 * np.maximum(temp - 26.0, 0.0) + 350.0 * work
    m = select_base_temperature(energy, temp, work, [22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 30.0, 40.0])
    assert m.base_temp_c == 26.0 and m.coef == pytest.approx([700.0, 60.0, 350.0])
    assert m.gof.adj_r2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no candidate"):
        select_base_temperature(energy, temp, work, [40.0, 50.0])


# ------------------------------------------------------------------------------------------------------- savings
def test_avoided_energy_and_emissions_hand_computed() -> None:
    """Baseline (exact data): kWh = 500 + 40 x CDD + 300 x workday, base 25 °C.
    Reporting days: means 30, 32, 27 °C -> CDD 5, 7, 2; workday 1, 1, 0
      adjusted baseline 500+200+300 = 1000, 500+280+300 = 1080, 500+80 = 580; actual 900, 1000, 600
      avoided 100, 80, -20 -> 160 kWh; emissions 100 x 0.4999 + 80 x 0.4750 = 49.99 + 38 = 87.99 kgCO2e and
      -20 kWh on the day without a factor. Two more days are left out: no meter reading, no temperature."""
    base_t = np.array([26.0, 28, 30, 27, 29, 31])  # CDD 1, 3, 5, 2, 4, 6
    base_w = np.array([1, 1, 1, 0, 0, 1])
    base_e = 500 + 40 * (base_t - 25) + 300 * base_w  # 840, 920, 1000, 580, 660, 1040
    m = fit_daily_model(base_e, base_t, base_w, base_temp_c=25.0)
    assert m.coef == pytest.approx([500.0, 40.0, 300.0]) and m.gof.cv_rmse_pct == pytest.approx(0.0, abs=1e-9)

    s = avoided(
        m,
        energy_kwh=np.array([900.0, 1000, 600, np.nan, 700]),
        mean_temp_c=np.array([30.0, 32, 27, 30, np.nan]),
        workday=np.array([1, 1, 0, 1, 1]),
        factor_kgco2e_per_kwh=np.array([0.4999, 0.4750, np.nan, 0.4750, 0.4750]),
    )
    assert s.adjusted_baseline_kwh[:3].tolist() == pytest.approx([1000.0, 1080.0, 580.0])
    assert s.avoided_kwh[:3].tolist() == pytest.approx([100.0, 80.0, -20.0]) and np.isnan(s.avoided_kwh[3:]).all()
    assert (s.total_adjusted_baseline_kwh, s.total_actual_kwh) == pytest.approx((2660.0, 2500.0))
    assert s.total_avoided_kwh == pytest.approx(160.0)
    assert s.avoided_kgco2e == pytest.approx(87.99)
    assert s.avoided_kwh_without_factor == pytest.approx(-20.0)
    assert (s.n_days, s.n_days_excluded) == (3, 2)
    # A single factor for the whole period: 160 x 0.4750 = 76 kgCO2e
    assert avoided(m, np.array([900.0, 1000, 600]), np.array([30.0, 32, 27]), np.array([1, 1, 0]),
                   0.4750).avoided_kgco2e == pytest.approx(76.0)  # fmt: skip
