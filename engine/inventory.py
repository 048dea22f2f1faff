"""Inventory arithmetic: GWPs, CO2e of an item, the baseline slice of any period, comparison with the baseline,
year-end projection, reduction targets with a linear trajectory, and action-plan KPIs.

GWPs (100-year) are those of IPCC AR4 (2007) Table 2.14, AR5 (2013) Table 8.A.1 and AR6 (2021) Tables 7.15/7.SM.7
(docs/reference.md#global-warming-potentials). The default set is AR5, the set of TGO's CFO emission-factor table of
April 2022; AR4 and AR6 are selectable per inventory, and base and reporting years must use the same set (ISO
14064-1 practice). Where sources differ the AR6 column follows the GHG Protocol list of August 2024 (IPCC AR6
Table 7.SM.7): HFC-134a 1,530 (Table 7.15 prints 1,526), SF6 24,300 (others print 25,200), CH4
non-fossil 27.0 (some tables print 27.2). Only AR6 splits CH4 into fossil and non-fossil in the reference; under
AR4/AR5 both keys take the single CH4 value, so an inventory that tags its methane keeps working when the set
changes. HCFC-22 (R-22) is outside the Kyoto basket and is reported separately (memo item;
docs/reference.md#scopes-and-cfo-categories).

Baseline slice: the base year is monthly by source (TGO CFO calculation form 1.5(1), January-December), held here by
calendar month. The slice of a period is, for every calendar month the period touches, the base year's value of
the same calendar month times the share of that month the period covers (:class:`engine.calendar.MonthSlice`).
A whole month therefore always matches the whole base month, whatever the day counts: February 2024 (29 days)
against a 28-day base February takes the whole base February, and 29 February alone takes 1/29 of it. (Pro-rating
by the base month's daily rate instead would make a leap-year February 29/28 of the base February, and the twelve
months of a year would no longer add up to the base-year total.)

Comparison: delta = actual - baseline (negative = below the baseline, a reduction), delta % = 100 x delta /
baseline. Emissions are compared twice, with the same baseline (reported at the base year's factors): actual at the
factors in force (what the inventory reports) and actual at the base year's factors (like-for-like: activity
change only, docs/reference.md#grid-electricity-factors).

Year-end projection (ratio method, also called seasonal-index projection): the year to date runs at the ratio
r = actual YTD / baseline YTD of its baseline slice; the rest of the year is assumed to keep that ratio and the
baseline's monthly shape, so projected = actual YTD + r x baseline rest of year (= r x baseline full year). This
keeps seasonality, which a run rate (YTD / days elapsed x days in year) loses, and keeps the YTD trend, which
"actual YTD + baseline rest" loses. Where the baseline YTD is 0 the ratio is undefined: the projection is the
baseline's full year if nothing happened yet either (the start of the year), otherwise NaN (``defined`` False).

Coverage (docs/reference.md#coverage-of-comparisons): where part of a period has no data (a meter that was not
reporting, a month whose activity is not entered yet), the plain figures count that part as zero. The like-for-like
figures compare actual with the baseline over the covered time only: ``Baseline.covered`` weights each calendar month
of the base year by the share of it that is covered (``covered_weights[m - 1, j]`` = covered seconds of series j in
month m / seconds of the month), so actual and baseline span the same time. :func:`covered_projection` projects the
year end from those like-for-like ratios, one series at a time (inventory items: every grouping, the total and a
target's value are then sums of the same item projections).

Targets: a reduction of ``reduction_pct`` (default 5 %, the criterion of the LCRS programme of the National Municipal
League of Thailand, 2015-2017; a per-target setting, docs/reference.md#base-year-and-targets) below the base-year
value by the target year; the trajectory is the straight line from the base-year value in the base year to the
target value in the target year, held flat after it. A year is on track when its value (actual, or projected
year-end) is at or below the trajectory; margin = trajectory - value (positive = headroom), margin % = 100 x margin
/ trajectory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import numpy as np

from lccm.engine.calendar import (
    Period,
    YearKind,
    month_slices,
    rest_of_year_period,
    year_months,
    year_of,
    year_period,
    ytd_period,
)

GwpSet = Literal["AR4", "AR5", "AR6"]
GWP_SETS: tuple[str, ...] = get_args(GwpSet)
DEFAULT_GWP_SET: GwpSet = "AR5"  # the set of TGO's CFO emission-factor table of April 2022
DEFAULT_REDUCTION_PCT = 5.0  # LCRS "at least 5 % below the base year" (docs/reference.md#base-year-and-targets)

_GWP_DOC = "docs/reference.md#global-warming-potentials"
SRC_GWP = f"IPCC AR4 Table 2.14, AR5 Table 8.A.1, AR6 Table 7.SM.7 (GHG Protocol GWP list, Aug 2024); {_GWP_DOC}"
_SRC_HFC = f"IPCC AR4/AR5/AR6 (GHG Protocol GWP list, Aug 2024); {_GWP_DOC}"


@dataclass(frozen=True, slots=True)
class Gas:
    """A greenhouse gas (or refrigerant blend) with its 100-year GWP in each IPCC assessment report."""

    key: str
    ar4: float
    ar5: float
    ar6: float
    source: str
    kyoto: bool = True  # in the Kyoto basket of the CFO; False = memo item (HCFC-22, Montreal Protocol)
    composition: tuple[tuple[str, float], ...] = ()  # blends: (component, mass fraction)

    def gwp(self, gwp_set: GwpSet = DEFAULT_GWP_SET) -> float:
        if gwp_set not in GWP_SETS:
            raise ValueError(f"unknown GWP set {gwp_set!r}; one of {GWP_SETS}")
        return float(getattr(self, gwp_set.lower()))


GASES: tuple[Gas, ...] = (
    Gas("CO2", 1, 1, 1, "by definition"),
    Gas("CH4", 25, 28, 27.9, f"{SRC_GWP}; AR6 27.9 = all methane"),
    Gas("CH4_fossil", 25, 28, 29.8, f"{SRC_GWP}; AR4/AR5 do not split CH4 in the reference"),
    Gas("CH4_nonfossil", 25, 28, 27.0, f"{SRC_GWP}; AR6 27.0 per GHG Protocol 2024 (some tables print 27.2)"),
    Gas("N2O", 298, 265, 273, SRC_GWP),
    Gas("HFC-32", 675, 677, 771, _SRC_HFC),
    Gas("HFC-125", 3500, 3170, 3740, _SRC_HFC),
    Gas("HFC-134a", 1430, 1300, 1530, f"{_SRC_HFC}; AR6 1,530 per Table 7.SM.7 (Table 7.15: 1,526)"),
    Gas("HCFC-22", 1810, 1760, 1960, f"US EPA Class II ODS list (AR4), TGO CFO table April 2022 (AR5), IPCC AR6; "
        f"{_GWP_DOC}", kyoto=False),
    Gas("R-410A", 2088, 1924, 2256, f"GHG Protocol GWP list, Aug 2024; 50/50 by mass HFC-32/HFC-125, published "
        f"rounded; {_GWP_DOC}", composition=(("HFC-32", 0.5), ("HFC-125", 0.5))),
    Gas("SF6", 22800, 23500, 24300, f"{_SRC_HFC}; AR6 24,300 per GHG Protocol 2024 (others print 25,200)"),
)  # fmt: skip
GAS_BY_KEY: dict[str, Gas] = {g.key: g for g in GASES}
GAS_ALIASES: dict[str, str] = {"R-32": "HFC-32", "R-125": "HFC-125", "R-134a": "HFC-134a", "R-22": "HCFC-22"}


def gas(key: str) -> Gas:
    """A gas by key or refrigerant alias (``R-32``, ``R-134a``, ``R-22``)."""
    try:
        return GAS_BY_KEY[GAS_ALIASES.get(key, key)]
    except KeyError:
        raise KeyError(f"unknown gas {key!r}; one of {sorted(GAS_BY_KEY) + sorted(GAS_ALIASES)}") from None


def gwp(key: str, gwp_set: GwpSet = DEFAULT_GWP_SET) -> float:
    """100-year GWP of a gas in an IPCC set (AR5 unless told)."""
    return gas(key).gwp(gwp_set)


def blend_gwp(composition: Mapping[str, float], gwp_set: GwpSet = DEFAULT_GWP_SET) -> float:
    """GWP of a refrigerant blend: the mass-weighted mean of its components' GWPs (unrounded)."""
    total = sum(composition.values())
    if any(f < 0 for f in composition.values()) or abs(total - 1.0) > 1e-9:
        raise ValueError(f"blend mass fractions must be >= 0 and add up to 1, got {dict(composition)}")
    return sum(f * gwp(g, gwp_set) for g, f in composition.items())


# --------------------------------------------------------------------------------------------------------- CO2e
def co2e_by_gas_kg(
    activity: float | np.ndarray, kg_gas_per_unit: Mapping[str, float], gwp_set: GwpSet = DEFAULT_GWP_SET
) -> dict[str, np.ndarray]:
    """kgCO2e of each gas of an inventory item: activity (units) x emission factor (kg of gas per unit) x GWP."""
    amount = np.asarray(activity, dtype=np.float64)
    if not np.all(np.isfinite(amount)):
        raise ValueError("activity must be finite")
    out = {}
    for key, factor in kg_gas_per_unit.items():
        if not (np.isfinite(factor) and factor >= 0):
            raise ValueError(f"factor for {key!r} must be finite and >= 0, got {factor}")
        out[key] = amount * factor * gwp(key, gwp_set)
    return out


def co2e_kg(
    activity: float | np.ndarray, kg_gas_per_unit: Mapping[str, float], gwp_set: GwpSet = DEFAULT_GWP_SET
) -> np.ndarray:
    """kgCO2e of an inventory item: activity x sum over gases of (kg gas per unit x GWP).

    A refrigerant top-up of ``m`` kg of R-410A is ``co2e_kg(m, {"R-410A": 1.0})``. A factor already in kgCO2e per
    unit (the TGO tables) is ``co2e_kg(activity, {"CO2": factor})``."""
    parts = co2e_by_gas_kg(activity, kg_gas_per_unit, gwp_set)
    return np.asarray(sum(parts.values(), np.zeros(np.shape(activity))), dtype=np.float64)


# ------------------------------------------------------------------------------------------------------ baseline
@dataclass(frozen=True, slots=True)
class Baseline:
    """Base-year values by calendar month (rows Jan..Dec) and series (columns: sources, scopes, sites...).

    ``monthly[m - 1, j]`` is series j in calendar month m of the base year (for a fiscal base year, October to
    December fall in ``base_year - 1``). Values are in one unit per series (kgCO2e at the base year's factors, or
    activity such as kWh)."""

    base_year: int
    year_kind: YearKind
    monthly: np.ndarray  # float64[12, n_series]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        m = self.monthly
        if m.ndim != 2 or m.shape[0] != 12 or m.shape[1] != len(self.labels):
            raise ValueError(f"monthly must be 12 x {len(self.labels)} (months x labels), got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            bad = [self.labels[j] for j in np.nonzero(~np.isfinite(m).all(axis=0))[0]]
            raise ValueError(f"baseline has missing or infinite months in {bad}")

    @classmethod
    def from_year_order(
        cls,
        base_year: int,
        year_kind: YearKind,
        values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
        labels: Sequence[str],
    ) -> Baseline:
        """Build from 12 rows in reporting-year order (Jan..Dec, or Oct..Sep for a fiscal year); a flat list of 12
        values is one series."""
        rows = np.asarray(values, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[:, None]
        if rows.shape[0] != 12:
            raise ValueError(f"a base year has 12 months, got {rows.shape[0]} rows")
        monthly = np.empty_like(rows)
        for i, (_, month) in enumerate(year_months(base_year, year_kind)):
            monthly[month - 1] = rows[i]
        return cls(base_year, year_kind, monthly, tuple(labels))

    @property
    def period(self) -> Period:
        return year_period(self.base_year, self.year_kind)

    @property
    def total(self) -> np.ndarray:
        """Base-year total per series."""
        return self.monthly.sum(axis=0)

    def slice(self, period: Period) -> np.ndarray:
        """Baseline of a period per series: matching calendar months, partial months pro-rated by their share."""
        out = np.zeros(self.monthly.shape[1])
        for s in month_slices(period):
            out += s.fraction * self.monthly[s.month - 1]
        return out

    def covered(self, covered_weights: np.ndarray) -> np.ndarray:
        """Baseline over the covered time per series: each calendar month times the share of it covered
        (``covered_weights[m - 1, j]``, 0..1 per month and period year; summed over the years of a period longer than
        a year, as :meth:`slice` sums its month slices)."""
        w = np.asarray(covered_weights, dtype=np.float64)
        if w.shape != self.monthly.shape:
            raise ValueError(f"covered weights must be {self.monthly.shape} (months x series), got {w.shape}")
        return np.asarray((self.monthly * w).sum(axis=0), dtype=np.float64)

    def column(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"no baseline series {label!r}; have {list(self.labels)}") from None


@dataclass(frozen=True, slots=True)
class Comparison:
    """Actual against baseline per series: delta = actual - baseline, delta % = 100 x delta / |baseline| (NaN
    where the baseline is 0).

    The % is taken of the baseline's size, so it has the sign of delta: positive when the series adds more to net
    emissions than in the base year. A removal series (negative baseline) that removes less, -100 -> -40 kgCO2e,
    is +60 %; delta / baseline would print -60 %, a fall, for a change that raised net emissions."""

    actual: np.ndarray
    baseline: np.ndarray
    delta: np.ndarray
    delta_pct: np.ndarray


def compare(actual: np.ndarray | float, baseline: np.ndarray | float) -> Comparison:
    """Actual against baseline, element by element."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"actual {a.shape} and baseline {b.shape} differ in shape")
    delta = a - b
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(b != 0, 100.0 * delta / np.where(b != 0, np.abs(b), 1.0), np.nan)
    return Comparison(a, b, delta, pct)


@dataclass(frozen=True, slots=True)
class PeriodComparison:
    """A period against its baseline slice, at the factors in force and at the base year's factors."""

    period: Period
    in_force: Comparison  # actual at the factors in force
    base_factors: Comparison  # actual at the base year's factors (like-for-like)


def compare_period(
    baseline: Baseline, period: Period, actual_in_force: np.ndarray, actual_base_factors: np.ndarray
) -> PeriodComparison:
    """Emissions of a period (per baseline series) against the baseline slice, at both sets of factors."""
    base = baseline.slice(period)
    return PeriodComparison(period, compare(actual_in_force, base), compare(actual_base_factors, base))


# ---------------------------------------------------------------------------------------------------- projection
@dataclass(frozen=True, slots=True)
class Projection:
    """Year-end projection by the ratio method from a fully covered year to date (module docstring)."""

    year: int
    year_kind: YearKind
    ytd: Period
    actual_ytd: np.ndarray
    baseline_ytd: np.ndarray
    baseline_rest: np.ndarray
    ratio: np.ndarray  # actual YTD / baseline YTD; 1 where nothing happened in either; NaN where undefined
    projected: np.ndarray  # NaN where undefined
    defined: np.ndarray  # bool


def project_year_end(
    baseline: Baseline, as_of: datetime, actual_ytd: np.ndarray, year_kind: YearKind | None = None
) -> Projection:
    """Projected total of the reporting year containing ``as_of`` (calendar or fiscal, the baseline's kind unless
    told), from the actual year to date ``[year start, as_of)`` per baseline series, every instant of it covered:
    :func:`covered_projection` with the baseline to date as the covered baseline."""
    kind: YearKind = baseline.year_kind if year_kind is None else year_kind
    ytd = ytd_period(as_of, kind)
    base_ytd = baseline.slice(ytd)
    base_rest = baseline.slice(rest_of_year_period(as_of, kind))
    actual = np.asarray(actual_ytd, dtype=np.float64)
    if actual.shape != base_ytd.shape:
        raise ValueError(f"actual_ytd has shape {actual.shape}, the baseline has {base_ytd.shape[0]} series")
    year = year_period(year_of(as_of, kind), kind)
    share = np.full(actual.shape, (ytd.end_us - ytd.start_us) / (year.end_us - year.start_us))
    p = covered_projection(actual, base_ytd, base_ytd + base_rest, share)
    defined = np.array([m != "undefined" for m in p.method], dtype=bool)
    return Projection(year_of(as_of, kind), kind, ytd, actual, base_ytd, base_rest, p.ratio, p.projected, defined)


ProjectionMethod = Literal["ratio", "baseline", "run_rate", "undefined"]


@dataclass(frozen=True, slots=True)
class CoveredProjection:
    """Year-end projection per series from its covered time (:func:`covered_projection`)."""

    projected: np.ndarray  # NaN where undefined
    ratio: np.ndarray  # actual / baseline over covered time; 1 for 'baseline'; NaN for 'run_rate' and 'undefined'
    method: tuple[ProjectionMethod, ...]


def covered_projection(
    actual: np.ndarray, baseline_covered: np.ndarray, baseline_year: np.ndarray, covered_share_of_year: np.ndarray
) -> CoveredProjection:
    """Projected year total per series (ratio method over the covered time, module docstring).

    - ``ratio``: r = actual / baseline over the covered time; projected = r x baseline full year (the covered time
      keeps its trend, the rest of the year, gaps included, follows the base year's shape at that ratio). With full
      coverage this is the classic ratio projection, actual YTD + r x baseline rest of year.
    - ``baseline``: no baseline over the covered time and nothing recorded (no data yet, or months that were 0 in the
      base year too): no evidence against the base year, projected = baseline full year.
    - ``run_rate``: no baseline over the covered time but something recorded (a source new since the base year, or
      one the base year had in other months only): actual / covered share of the year.
    - ``undefined`` (NaN): something recorded and no covered time to scale it by.

    ``covered_share_of_year`` is each series' covered time / the year's time (0..1)."""
    a, bc, by, share = (np.asarray(x, dtype=np.float64) for x in (actual, baseline_covered, baseline_year,
                                                                   covered_share_of_year))  # fmt: skip
    if not a.shape == bc.shape == by.shape == share.shape:
        raise ValueError(f"shapes differ: {a.shape}, {bc.shape}, {by.shape}, {share.shape}")
    has_base = bc != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(has_base, a / np.where(has_base, bc, 1.0), np.nan)
        run_rate = np.where(share > 0, a / np.where(share > 0, share, 1.0), np.nan)
    nothing = ~has_base & (a == 0)
    ratio = np.where(nothing, 1.0, ratio)
    projected = np.where(has_base, ratio * by, np.where(nothing, by, run_rate))
    method: list[ProjectionMethod] = [
        "ratio" if h else "baseline" if n else "run_rate" if np.isfinite(p) else "undefined"
        for h, n, p in zip(has_base, nothing, projected, strict=True)
    ]
    return CoveredProjection(projected, ratio, tuple(method))


# ------------------------------------------------------------------------------------------------------- targets
@dataclass(frozen=True, slots=True)
class TargetStatus:
    year: int
    trajectory: np.ndarray  # the value allowed in that year
    value: np.ndarray  # actual or projected
    margin: np.ndarray  # trajectory - value; >= 0 is on track
    margin_pct: np.ndarray  # 100 x margin / trajectory (NaN where the trajectory is 0)
    on_track: np.ndarray  # bool


@dataclass(frozen=True, slots=True)
class Target:
    """A reduction of ``reduction_pct`` below the base-year value by ``target_year``, on a linear trajectory.

    Works for any series of yearly values with the same year kind as the baseline: tCO2e of the organisation or of
    a category, or an action-plan KPI (kWh per streetlight, kWh per m², litres per 100 km)."""

    base_year: int
    target_year: int
    base_value: float | np.ndarray
    reduction_pct: float = DEFAULT_REDUCTION_PCT

    def __post_init__(self) -> None:
        if self.target_year <= self.base_year:
            raise ValueError(f"target year {self.target_year} must come after the base year {self.base_year}")
        if not 0.0 <= self.reduction_pct <= 100.0:
            raise ValueError(f"reduction must be 0..100 %, got {self.reduction_pct}")
        if not np.all(np.isfinite(self.base_value)):
            raise ValueError("base value must be finite")

    @property
    def target_value(self) -> np.ndarray:
        return np.asarray(self.base_value, dtype=np.float64) * (1.0 - self.reduction_pct / 100.0)

    def trajectory(self, year: int) -> np.ndarray:
        """Value allowed in ``year``: linear from base to target, flat after the target year."""
        if year < self.base_year:
            raise ValueError(f"year {year} precedes the base year {self.base_year}")
        progress = min(1.0, (year - self.base_year) / (self.target_year - self.base_year))
        base = np.asarray(self.base_value, dtype=np.float64)
        return base + progress * (self.target_value - base)

    def status(self, year: int, value: np.ndarray | float) -> TargetStatus:
        """On-track status of a year's value (actual, or the projected year end) against the trajectory."""
        allowed = self.trajectory(year)
        v = np.asarray(value, dtype=np.float64)
        margin = allowed - v
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(allowed != 0, 100.0 * margin / np.where(allowed != 0, allowed, 1.0), np.nan)
        return TargetStatus(year, allowed, v, margin, pct, margin >= 0)


# ---------------------------------------------------------------------------------------------------------- KPIs
def _intensity(numerator: np.ndarray | float, denominator: np.ndarray | float, what: str) -> np.ndarray:
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if np.any(~np.isfinite(den) | (den <= 0)):
        raise ValueError(f"{what} must be finite and > 0, got {den}")
    return num / den


def kwh_per_lamp(energy_kwh: np.ndarray | float, lamp_count: np.ndarray | float) -> np.ndarray:
    """Streetlight energy intensity, kWh per lamp."""
    return _intensity(energy_kwh, lamp_count, "lamp count")


def kwh_per_m2(energy_kwh: np.ndarray | float, floor_area_m2: np.ndarray | float) -> np.ndarray:
    """Building energy intensity, kWh per m² of floor area."""
    return _intensity(energy_kwh, floor_area_m2, "floor area (m²)")


def litres_per_100km(fuel_l: np.ndarray | float, distance_km: np.ndarray | float) -> np.ndarray:
    """Fleet fuel intensity, litres per 100 km."""
    return 100.0 * _intensity(fuel_l, distance_km, "distance (km)")
