"""Inventory arithmetic: GWPs pinned to the IPCC values (docs/reference.md#global-warming-potentials), CO2e of items,
baseline slices (fiscal year across December-January, partial months, 29 February), comparison at both factors (a
factor change inside the year), year-end projection, targets and KPIs, each against hand-computed worked examples."""

from __future__ import annotations

import calendar as stdlib_calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccm.engine.calendar import custom_period, day_period, month_period, week_period, year_period, ytd_period
from lccm.engine.factors import TGO_REGISTRY
from lccm.engine.inventory import (
    DEFAULT_GWP_SET,
    GASES,
    Baseline,
    Target,
    blend_gwp,
    co2e_by_gas_kg,
    co2e_kg,
    compare,
    compare_period,
    covered_projection,
    gas,
    gwp,
    kwh_per_lamp,
    kwh_per_m2,
    litres_per_100km,
    project_year_end,
)
from lccm.engine.timebase import us_from_datetime

ZONE = ZoneInfo("Asia/Bangkok")

# Base year FY2019 (Oct 2018 .. Sep 2019), grid kWh of the municipal offices, in fiscal order Oct..Sep. Chosen as
# kWh/day x days so slices are easy to check by hand: Oct 400x31, Nov 400x30, Dec 350x31, Jan 300x31, Feb 400x28,
# Mar 400x31, Apr 500x30, May 500x31, Jun 400x30, Jul 400x31, Aug 400x31, Sep 400x30.
FY2019_KWH = [12_400, 12_000, 10_850, 9_300, 11_200, 12_400, 15_000, 15_500, 12_000, 12_400, 12_400, 12_000]
FY2019_TOTAL_KWH = 147_450  # 12400+12000+10850+9300+11200+12400+15000+15500+12000+12400+12400+12000
BASE_EF = 0.4999  # kgCO2e/kWh in force over FY2019 (TGO April 2022 table); registry checked below


def bkk(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZONE)


def fy2019(labels: tuple[str, ...] = ("kwh",)) -> Baseline:
    rows = np.array(FY2019_KWH, dtype=float)[:, None] * np.arange(1, len(labels) + 1)  # column j = (j+1) x kWh
    return Baseline.from_year_order(2019, "fiscal", rows, labels)


# --------------------------------------------------------------------------------------------------------- GWPs
REFERENCE_GWP = {  # (AR4, AR5, AR6): IPCC AR4 Table 2.14, AR5 Table 8.A.1, AR6 Table 7.SM.7 / GHG Protocol 2024
    "CH4": (25, 28, 27.9),
    "CH4_fossil": (25, 28, 29.8),
    "CH4_nonfossil": (25, 28, 27.0),
    "N2O": (298, 265, 273),
    "HFC-32": (675, 677, 771),
    "HFC-125": (3500, 3170, 3740),
    "HFC-134a": (1430, 1300, 1530),
    "HCFC-22": (1810, 1760, 1960),
    "R-410A": (2088, 1924, 2256),
    "SF6": (22800, 23500, 24300),
}


def test_gwp_table_matches_the_reference_and_defaults_to_ar5() -> None:
    assert DEFAULT_GWP_SET == "AR5"  # TGO April 2022 CFO table uses AR5
    for key, values in REFERENCE_GWP.items():
        assert (gwp(key, "AR4"), gwp(key, "AR5"), gwp(key, "AR6")) == values, key
    assert gwp("CO2", "AR6") == 1 and gwp("R-22") == 1760 and gwp("R-134a") == 1300 and gwp("R-32") == 677
    assert not gas("R-22").kyoto and all(g.kyoto for g in GASES if g.key != "HCFC-22")  # R-22 memo item
    with pytest.raises(KeyError, match="unknown gas"):
        gwp("R-404A")
    with pytest.raises(ValueError, match="GWP set"):
        gwp("CH4", "AR3")  # type: ignore[arg-type]


def test_r410a_is_the_half_half_blend_of_hfc32_and_hfc125() -> None:
    # AR4 0.5x675 + 0.5x3500 = 2087.5; AR5 0.5x677 + 0.5x3170 = 1923.5; AR6 0.5x771 + 0.5x3740 = 2255.5
    blend = {"HFC-32": 0.5, "HFC-125": 0.5}
    assert [blend_gwp(blend, s) for s in ("AR4", "AR5", "AR6")] == [2087.5, 1923.5, 2255.5]
    for s in ("AR4", "AR5", "AR6"):
        assert abs(gwp("R-410A", s) - blend_gwp(blend, s)) <= 0.5  # the published values are rounded
    with pytest.raises(ValueError, match="add up to 1"):
        blend_gwp({"HFC-32": 0.5, "HFC-125": 0.4})


def test_co2e_of_items_per_gas() -> None:
    # A/C top-up of 10 kg R-410A under AR5: 10 x 1924 = 19,240 kgCO2e; 5 kg R-32 under AR6: 5 x 771 = 3,855.
    assert co2e_kg(10.0, {"R-410A": 1.0}) == 19_240.0
    assert co2e_kg(5.0, {"R-32": 1.0}, "AR6") == 3_855.0
    # Illustrative per-gas factors (not TGO values) for 1,000 L of diesel: kg gas per litre CO2 2.68, CH4 0.0001,
    # N2O 0.00002. AR5: 1000 x (2.68 + 0.0001 x 28 + 0.00002 x 265) = 2680 + 2.8 + 5.3 = 2688.1 kgCO2e.
    per_litre = {"CO2": 2.68, "CH4": 0.0001, "N2O": 0.00002}
    assert co2e_kg(1000.0, per_litre) == pytest.approx(2688.1, abs=1e-9)
    assert co2e_kg(1000.0, per_litre, "AR4") == pytest.approx(2680 + 2.5 + 5.96, abs=1e-9)  # 25 and 298
    parts = co2e_by_gas_kg(np.array([1000.0, 500.0]), per_litre)
    assert parts["N2O"] == pytest.approx([5.3, 2.65]) and set(parts) == set(per_litre)
    # A TGO factor already in kgCO2e per unit: 1,000 L on-road diesel x 2.7406 (TGO April 2022) = 2,740.6 kgCO2e.
    assert co2e_kg(1000.0, {"CO2": 2.7406}) == pytest.approx(2740.6)
    with pytest.raises(ValueError, match="finite"):
        co2e_kg(np.array([1.0, np.nan]), {"CO2": 1.0})


# ------------------------------------------------------------------------------------------------------ baseline
def test_baseline_is_held_by_calendar_month() -> None:
    b = fy2019()
    assert b.monthly[9, 0] == 12_400 and b.monthly[11, 0] == 10_850 and b.monthly[0, 0] == 9_300  # Oct, Dec, Jan
    assert b.total[0] == FY2019_TOTAL_KWH
    assert b.slice(b.period)[0] == FY2019_TOTAL_KWH and b.period.start == bkk(2018, 10, 1)
    with pytest.raises(ValueError, match="12 months"):
        Baseline.from_year_order(2019, "fiscal", FY2019_KWH[:11], ["kwh"])
    with pytest.raises(ValueError, match="missing or infinite months in \\['b'\\]"):
        Baseline.from_year_order(2019, "fiscal", [[1.0, np.nan]] * 12, ["a", "b"])


def test_slice_of_fiscal_year_to_date_across_december_and_january_with_a_partial_month() -> None:
    b = fy2019()
    # FYTD 2026 to 15 Jan 00:00: Oct + Nov + Dec whole, 14 of January's 31 days.
    # 12400 + 12000 + 10850 + 14/31 x 9300 (= 4200) = 39,450 kWh
    assert b.slice(ytd_period(bkk(2026, 1, 15), "fiscal"))[0] == pytest.approx(39_450.0)
    # ISO week 2026-W01 (Mon 29 Dec 2025 .. Mon 5 Jan 2026): 3/31 x 10850 + 4/31 x 9300 = 1050 + 1200 = 2,250 kWh
    assert b.slice(week_period(2026, 1))[0] == pytest.approx(2_250.0)
    # One day, 31 Dec 2025: 10850 / 31 = 350 kWh
    assert b.slice(day_period(date(2025, 12, 31)))[0] == pytest.approx(350.0)
    # Half a day, 1 Jan 2026 00:00-12:00: 0.5/31 x 9300 = 150 kWh
    assert b.slice(custom_period(bkk(2026, 1, 1), bkk(2026, 1, 1, 12)))[0] == pytest.approx(150.0)
    # Several series at once: column j is (j+1) x kWh
    assert fy2019(("a", "b", "c")).slice(week_period(2026, 1)) == pytest.approx([2_250.0, 4_500.0, 6_750.0])


def test_29_february_matches_the_base_february_by_calendar_month() -> None:
    # Calendar base year 2019: February 11,200 kWh over 28 days.
    b2019 = Baseline.from_year_order(2019, "calendar", [9_300, 11_200, *[10_000] * 10], ["kwh"])
    assert b2019.slice(month_period(2024, 2))[0] == 11_200.0  # a whole leap February = the whole base February
    assert b2019.slice(day_period(date(2024, 2, 29)))[0] == pytest.approx(11_200 / 29)  # 386.21: 1 of 29 days
    assert b2019.slice(custom_period(bkk(2024, 2, 1), bkk(2024, 2, 29)))[0] == pytest.approx(11_200 * 28 / 29)
    # Leap base year 2020: February 11,600 kWh over 29 days; a 28-day February 2026 still takes all of it.
    b2020 = Baseline.from_year_order(2020, "calendar", [9_300, 11_600, *[10_000] * 10], ["kwh"])
    assert b2020.slice(month_period(2026, 2))[0] == 11_600.0
    assert b2020.slice(day_period(date(2026, 2, 28)))[0] == pytest.approx(11_600 / 28)  # 414.29
    # Every year, leap or not, adds up to the base-year total.
    assert b2020.slice(year_period(2024))[0] == pytest.approx(b2020.total[0])
    assert b2020.slice(year_period(2025))[0] == pytest.approx(b2020.total[0])


@settings(max_examples=150, deadline=None)
@given(st.dates(date(2000, 1, 1), date(2040, 12, 31)), st.integers(0, 800), st.integers(0, 800))
def test_slice_against_a_day_by_day_reference(first: date, length_days: int, cut_days: int) -> None:
    """Pure-Python twin: each whole day adds its calendar month's base value / the month's day count."""
    b = fy2019(("a", "b"))
    last = first + timedelta(days=length_days)
    expected = 0.0
    d = first
    while d < last:
        expected += b.monthly[d.month - 1, 0] / stdlib_calendar.monthrange(d.year, d.month)[1]
        d += timedelta(days=1)
    whole = b.slice(custom_period(bkk(first.year, first.month, first.day), bkk(last.year, last.month, last.day)))
    assert whole == pytest.approx([expected, 2 * expected], rel=1e-12, abs=1e-9)
    # additivity: cutting the period anywhere splits the slice exactly
    cut = first + timedelta(days=min(cut_days, length_days))
    left = b.slice(custom_period(bkk(first.year, first.month, first.day), bkk(cut.year, cut.month, cut.day)))
    right = b.slice(custom_period(bkk(cut.year, cut.month, cut.day), bkk(last.year, last.month, last.day)))
    assert left + right == pytest.approx(whole, rel=1e-12, abs=1e-9)


# ---------------------------------------------------------------------------------------------------- comparison
def test_compare_delta_and_percent() -> None:
    c = compare(np.array([90.0, 120.0, 5.0]), np.array([100.0, 100.0, 0.0]))
    assert c.delta.tolist() == [-10.0, 20.0, 5.0]
    assert c.delta_pct[:2].tolist() == [-10.0, 20.0] and np.isnan(c.delta_pct[2])  # no baseline, no %
    with pytest.raises(ValueError, match="shape"):
        compare(np.zeros(2), np.zeros(3))


def test_fiscal_year_to_date_with_a_factor_change_inside_the_year() -> None:
    """FY2026 to 16 March 2026 00:00 against base year FY2019, grid electricity.

    The grid factor changes inside FY2026: 0.4999 until 31 Dec 2025, 0.4750 from 1 Jan 2026 (TGO).
    Actual kWh: Oct 11,000, Nov 10,500, Dec 8,800 | Jan 8,600, Feb 10,000, Mar 1-15 5,700 (= 54,600 kWh).
    Baseline kWh: 12400 + 12000 + 10850 + 9300 + 11200 + 15/31 x 12400 (= 6000) = 61,750 kWh,
    in kgCO2e at the base year's factor: 61,750 x 0.4999 = 30,868.825.
    In force: (11000 + 10500 + 8800) x 0.4999 + (8600 + 10000 + 5700) x 0.4750 = 15,146.97 + 11,542.5 = 26,689.47.
    At base-year factors: 54,600 x 0.4999 = 27,294.54.
    """
    months = [(2025, 10), (2025, 11), (2025, 12), (2026, 1), (2026, 2), (2026, 3)]
    actual_kwh = [11_000, 10_500, 8_800, 8_600, 10_000, 5_700]
    in_force = []
    for (y, m), kwh in zip(months, actual_kwh, strict=True):
        f = TGO_REGISTRY.in_force("grid_th", us_from_datetime(bkk(y, m, 1)))
        assert f is not None
        in_force.append(kwh * f.kgco2e_per_unit)
    assert [TGO_REGISTRY.in_force("grid_th", us_from_datetime(bkk(y, m, 1))).kgco2e_per_unit  # type: ignore[union-attr]
            for y, m in ((2018, 10), (2019, 9))] == [BASE_EF, BASE_EF]  # fmt: skip
    baseline_kg = Baseline.from_year_order(2019, "fiscal", np.array(FY2019_KWH) * BASE_EF, ["grid_kgco2e"])
    period = ytd_period(bkk(2026, 3, 16), "fiscal")
    result = compare_period(baseline_kg, period, np.array([sum(in_force)]), np.array([54_600 * BASE_EF]))

    assert result.in_force.baseline[0] == pytest.approx(30_868.825)
    assert result.in_force.actual[0] == pytest.approx(26_689.47)
    assert result.in_force.delta[0] == pytest.approx(26_689.47 - 30_868.825)  # -4,179.355
    assert result.in_force.delta_pct[0] == pytest.approx(-4_179.355 / 30_868.825 * 100)  # -13.539 %
    assert result.base_factors.actual[0] == pytest.approx(27_294.54)
    assert result.base_factors.delta[0] == pytest.approx(27_294.54 - 30_868.825)  # -3,574.285
    # like-for-like, the factor cancels: (54600 - 61750) / 61750 = -11.579 %
    assert result.base_factors.delta_pct[0] == pytest.approx((54_600 - 61_750) / 61_750 * 100)


# ---------------------------------------------------------------------------------------------------- projection
def test_year_end_projection_by_the_ratio_method() -> None:
    """Same FY2026 to 16 March: ratio r = 54,600 / 61,750 = 0.884211; baseline rest of the year
    = 147,450 - 61,750 = 85,700 kWh (Mar 16/31 x 12400 = 6,400 + Apr..Sep 79,300);
    projected = 54,600 + r x 85,700 = 54,600 + 75,776.84 = 130,376.84 kWh (= r x 147,450)."""
    p = project_year_end(fy2019(("kwh", "double")), bkk(2026, 3, 16), np.array([54_600.0, 2 * 54_600.0]))
    assert p.year == 2026 and p.year_kind == "fiscal" and p.ytd.start == bkk(2025, 10, 1)
    assert p.baseline_ytd == pytest.approx([61_750.0, 123_500.0])
    assert p.baseline_rest == pytest.approx([85_700.0, 171_400.0])
    assert p.ratio == pytest.approx([54_600 / 61_750] * 2)
    assert p.projected[0] == pytest.approx(54_600 + 54_600 / 61_750 * 85_700)
    assert p.projected[0] == pytest.approx(130_376.8421, abs=1e-3)
    assert p.projected[0] == pytest.approx(FY2019_TOTAL_KWH * 54_600 / 61_750)
    assert p.defined.all()
    # The same instant given in UTC, and a calendar-year projection from the fiscal baseline:
    # calendar 2026 to 16 March: baseline YTD = 9300 + 11200 + 6000 = 26,500; rest = 147,450 - 26,500 = 120,950.
    q = project_year_end(fy2019(), datetime(2026, 3, 15, 17, tzinfo=UTC), np.array([24_300.0]), "calendar")
    assert q.year == 2026 and q.baseline_ytd[0] == pytest.approx(26_500.0)
    assert q.projected[0] == pytest.approx(24_300 + 24_300 / 26_500 * 120_950)


def test_projection_where_the_ratio_is_undefined() -> None:
    p = project_year_end(fy2019(), bkk(2025, 10, 1), np.array([0.0]))  # first instant of FY2026
    assert p.ytd.days == 0 and p.projected[0] == FY2019_TOTAL_KWH and p.ratio[0] == 1.0 and p.defined[0]
    # A source with no baseline so far: 5 kWh in the first 10 days of a 365-day year runs at 5 x 36.5 = 182.5 a year.
    p = project_year_end(fy2019(), bkk(2025, 10, 11), np.array([5.0]))
    base = Baseline(2019, "fiscal", np.zeros((12, 1)), ("new",))
    q = project_year_end(base, bkk(2025, 10, 11), np.array([5.0]))
    assert q.projected[0] == pytest.approx(5 * 365 / 10) and np.isnan(q.ratio[0]) and q.defined[0]
    assert p.projected[0] == pytest.approx(5 / (10 * 400) * FY2019_TOTAL_KWH)  # with a baseline: the ratio
    with pytest.raises(ValueError, match="series"):
        project_year_end(fy2019(), bkk(2026, 3, 16), np.array([1.0, 2.0]))


def test_baseline_over_the_covered_time() -> None:
    """FY2019 by calendar month; the covered share of January 0.5 and of March 10/31: 0.5 x 9,300 + 10/31 x 12,400 =
    4,650 + 4,000 = 8,650 kWh."""
    w = np.zeros((12, 1))
    w[0, 0], w[2, 0] = 0.5, 10 / 31
    assert fy2019().covered(w)[0] == pytest.approx(8_650.0)
    with pytest.raises(ValueError, match="12"):
        fy2019().covered(np.zeros((12, 2)))


def test_projection_over_the_covered_time_item_by_item() -> None:
    """Four items, hand-computed:
    - ratio: 300 recorded against 400 of baseline over its covered time, 4,800 a year: 0.75 x 4,800 = 3,600 (the
      plain ratio over a baseline to date of 1,200, 300 / 1,200 x 4,800 = 1,200, would count the gaps as zero);
    - baseline: nothing recorded and no covered baseline (no data yet): its base year, 1,000;
    - run_rate: 50 recorded over a quarter of the year, no covered baseline (a source new since the base year): 200;
    - undefined: 7 recorded, nothing covered (NaN)."""
    p = covered_projection(np.array([300.0, 0.0, 50.0, 7.0]), np.array([400.0, 0.0, 0.0, 0.0]),
                           np.array([4_800.0, 1_000.0, 0.0, 0.0]), np.array([0.1, 0.0, 0.25, 0.0]))  # fmt: skip
    assert p.method == ("ratio", "baseline", "run_rate", "undefined")
    assert p.projected[:3] == pytest.approx([3_600.0, 1_000.0, 200.0]) and np.isnan(p.projected[3])
    assert p.ratio[:2] == pytest.approx([0.75, 1.0]) and np.isnan(p.ratio[2:]).all()
    with pytest.raises(ValueError, match="shapes"):
        covered_projection(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(3))


# ------------------------------------------------------------------------------------------------------- targets
def test_linear_target_trajectory_and_on_track_status() -> None:
    """Base FY2019 = 147,450 kWh x 0.4999 = 73,710.255 kgCO2e, 5 % below by FY2027 (8 years).
    FY2026 allowed = base x (1 - 0.05 x 7/8) = base x 0.95625 = 70,485.4313.
    Projected FY2026 at base-year factors (from the projection test): 130,376.842 x 0.4999 = 65,175.3834,
    margin = 70,485.4313 - 65,175.3834 = 5,310.0480 (7.534 % of the allowed value): on track."""
    base = FY2019_TOTAL_KWH * BASE_EF
    t = Target(2019, 2027, base)
    assert t.reduction_pct == 5.0 and float(t.target_value) == pytest.approx(base * 0.95)
    assert float(t.trajectory(2019)) == pytest.approx(base)
    assert float(t.trajectory(2026)) == pytest.approx(70_485.4313, abs=1e-3)
    assert float(t.trajectory(2027)) == float(t.trajectory(2035)) == pytest.approx(base * 0.95)  # held
    projected = FY2019_TOTAL_KWH * 54_600 / 61_750 * BASE_EF
    s = t.status(2026, projected)
    assert float(s.margin) == pytest.approx(5_310.0480, abs=1e-3) and bool(s.on_track)
    assert float(s.margin_pct) == pytest.approx(5_310.0480 / 70_485.4313 * 100, rel=1e-6)
    late = t.status(2027, base * 0.96)  # 1 % of base above the 95 % target
    assert not late.on_track and float(late.margin) == pytest.approx(-0.01 * base)
    with pytest.raises(ValueError, match="precedes the base year"):
        t.trajectory(2018)
    with pytest.raises(ValueError, match="after the base year"):
        Target(2019, 2019, base)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        Target(2019, 2027, base, reduction_pct=120)


def test_targets_per_category_and_for_kpis() -> None:
    # Per category: scope 1 = 1,000 t, scope 2 = 4,000 t, 10 % by 2030 from 2020; 2025 is half way: x (1 - 0.05).
    t = Target(2020, 2030, np.array([1_000.0, 4_000.0]), reduction_pct=10.0)
    assert t.trajectory(2025) == pytest.approx([950.0, 3_800.0])
    s = t.status(2025, np.array([940.0, 3_850.0]))
    assert s.on_track.tolist() == [True, False] and s.margin == pytest.approx([10.0, -50.0])
    # KPI target: streetlights 450 kWh/lamp in 2019, LED retrofit target -40 % by 2024; 2022 is 3/5 of the way:
    # 450 x (1 - 0.40 x 3/5) = 450 x 0.76 = 342 kWh/lamp.
    kpi = Target(2019, 2024, 450.0, reduction_pct=40.0)
    assert float(kpi.trajectory(2022)) == pytest.approx(342.0)


def test_kpi_helpers() -> None:
    assert float(kwh_per_lamp(120_000.0, 400)) == 300.0  # 120,000 kWh / 400 lamps
    assert float(kwh_per_m2(250_000.0, 5_000.0)) == 50.0  # 250,000 kWh / 5,000 m²
    assert float(litres_per_100km(1_840.0, 8_000.0)) == pytest.approx(23.0)  # 1,840 L / 8,000 km x 100
    assert kwh_per_lamp(np.array([100.0, 90.0]), np.array([4, 3])).tolist() == [25.0, 30.0]
    with pytest.raises(ValueError, match="lamp count must be finite and > 0"):
        kwh_per_lamp(100.0, 0)
    with pytest.raises(ValueError, match="distance"):
        litres_per_100km(np.array([1.0, 2.0]), np.array([10.0, -1.0]))
