"""Response models of the baseline routes (comparison, projection, targets, KPIs, building M&V): the documents
reports/ builds, which ``lccm compare|projection|targets|kpis --json`` print as they are. Figures that coverage, a
ratio or a missing year can leave undefined are nullable (reports.baseline.finite: NaN -> null); the reason is beside
them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

YearKind = Literal["calendar", "fiscal"]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _Doc(BaseModel):
    # M&V answers: fields the engine adds reach clients before they are described here.
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------------------- baseline comparisons
# The answers of reports/baseline.py, targets.py and kpi.py (GET /organisations/{code}/comparison, /projection,
# /targets, /targets/status, /kpis); `lccm compare|projection|targets|kpis --json` print the same documents.
# Coverage: reports/coverage.py and docs/reference.md#coverage-of-comparisons.

_THRESHOLD = "Settings.comparison_min_coverage (LCCM_COMPARISON_MIN_COVERAGE, default 0.9)"


class PeriodOut(_Out):
    kind: str = Field(description="day, week, month, custom, ytd, fytd")
    label: str
    start: str = Field(description="ISO 8601, a Bangkok midnight (inclusive)")
    end: str = Field(description="ISO 8601, a Bangkok midnight (exclusive); never after the end of today")
    days: float
    partial: bool = Field(
        description="the period asked for runs past today and was cut at the end of today: its days so far are "
        "compared with the base year's same days"
    )
    requested_end: str | None = Field(description="the end asked for, when the period was cut")


class CoverageOut(_Out):
    """How much of the period the data cover, and whether figures drawn from it are shown."""

    share: float | None = Field(
        description="0..1, what the threshold is applied to: with basis 'baseline', the base year's emissions over "
        "the covered time / over the whole period (each item weighted by its baseline, removals by absolute value); "
        "with basis 'time' (the group has no baseline in the period, or a KPI), covered seconds / elapsed seconds"
    )
    basis: Literal["baseline", "time"]
    threshold: float = Field(description=f"the least share for headline figures: {_THRESHOLD}")
    sufficient: bool = Field(description="share >= threshold: the headline figures are shown")
    reason: str | None = Field(description="why the headline figures are withheld (null when sufficient)")
    readings_expected: float = Field(
        description="metered items: each mapped device's elapsed seconds in the period (up to now) / its registry "
        "cadence (devices.cadence_s)"
    )
    readings_present: float = Field(
        description="seconds covered by the devices' daily energy buckets (energy_buckets.covered_s: time spanned by "
        "register intervals, a gap bridged by the register included) / the same cadence"
    )
    readings_share: float | None = Field(description="readings_present / readings_expected")
    item_months_expected: int = Field(description="manual items x the months of the period started by now")
    item_months_present: int = Field(description="of those, the item-months with a quantity entered (0 counts)")
    item_months_share: float | None


class ItemCoverageOut(_Out):
    item_code: str
    collection: Literal["metered", "manual"] | None = Field(description="null: in no reporting year of the period")
    devices: int = Field(description="devices mapped to the item (the most in any month of the period)")
    readings_expected: float
    readings_present: float
    item_months_expected: int
    item_months_present: int
    share: float | None = Field(description="covered seconds / elapsed seconds (a metered item: its devices' mean)")
    baseline_kgco2e: float = Field(description="the base year's slice of the period")
    baseline_covered_kgco2e: float = Field(description="the base year's slice of the item's covered time")
    notes: list[str] = Field(description="e.g. no device mapped, not in the year's inventory")


class CoveredComparisonOut(_Out):
    """Like for like over the covered time: actual against the base year's slice of the same time (each calendar
    month weighted by the share of it covered). Always given, also where the headline is withheld."""

    baseline_kgco2e: float
    delta_kgco2e: float | None
    delta_pct: float | None
    delta_base_factors_kgco2e: float | None
    delta_base_factors_pct: float | None


class ComparisonRowOut(_Out):
    group: str
    actual_kgco2e: float = Field(description="recorded: metered days and entered months only")
    actual_base_factors_kgco2e: float = Field(description="the same activity at the base year's factors")
    baseline_kgco2e: float = Field(description="the base year's slice of the whole period")
    delta_kgco2e: float | None = Field(description="actual - baseline; null when coverage is insufficient")
    delta_pct: float | None = Field(description="100 x delta / baseline; null when coverage is insufficient")
    delta_base_factors_kgco2e: float | None
    delta_base_factors_pct: float | None
    coverage: CoverageOut
    covered_time: CoveredComparisonOut
    items_without_data: list[str] = Field(description="items with no metered day and no entered quantity")


class FactorPeriodOut(_Out):
    item_code: str
    start: str = Field(description="first day of the period at this factor (ISO 8601, Bangkok midnight)")
    end: str = Field(description="the day after its last day (exclusive)")
    quantity: float = Field(description="metered activity in the item's unit")
    unit: str
    ef_kgco2e_per_unit: float = Field(description="the factor in force over the period")
    ef_source: str
    actual_kgco2e: float = Field(description="quantity x the factor in force")
    ef_base_year_kgco2e_per_unit: float | None = Field(description="the base year's factor")
    actual_base_factors_kgco2e: float = Field(description="quantity x the base year's factor")


class ComparisonOut(_Out):
    organisation: str
    base_year: int
    year_kind: YearKind
    period: PeriodOut
    as_of: str = Field(description="coverage is counted up to this instant (ISO 8601)")
    by: str
    rows: list[ComparisonRowOut]
    total: ComparisonRowOut
    items_coverage: list[ItemCoverageOut]
    items_without_data: list[str]
    missing_reporting_years: list[int]
    factor_periods: list[FactorPeriodOut] = Field(
        description="metered items whose factor in force changed inside the period: one line per factor, adding up "
        "to the item's actual figures at both sets of factors"
    )


class CoveredProjectionOut(_Out):
    projected_kgco2e: float | None = Field(description="the projection, also where the headline is withheld")


class ProjectionRowOut(_Out):
    group: str
    actual_ytd_kgco2e: float
    baseline_ytd_kgco2e: float = Field(description="the base year's slice of the whole year to date")
    baseline_ytd_covered_kgco2e: float = Field(description="the base year's slice of the covered time")
    baseline_rest_kgco2e: float
    ratio: float | None = Field(description="actual / baseline over the covered time (the group's)")
    projected_kgco2e: float | None = Field(
        description="sum of the items' projections (each: its own ratio x its base-year full year); null when "
        "coverage is insufficient"
    )
    defined: bool = Field(description="false when an item's projection is undefined")
    coverage: CoverageOut
    covered_time: CoveredProjectionOut
    items_baseline_assumed: list[str] = Field(
        description="items with no data over a covered baseline: projected at their base-year value"
    )
    items_run_rate: list[str] = Field(
        description="items with data but no base-year emissions in their covered time: actual / covered share of "
        "the year"
    )


class ProjectionOut(_Out):
    organisation: str
    year: int
    year_kind: YearKind
    ytd: PeriodOut
    as_of: str
    by: str
    rows: list[ProjectionRowOut]
    total: ProjectionRowOut
    projected_total_kgco2e: float | None = Field(description="= total.projected_kgco2e")
    items_coverage: list[ItemCoverageOut]
    missing_reporting_years: list[int]


class TargetOut(_Out):
    target_key: str
    category: str | None
    kpi: str | None
    base_year: int
    year_kind: YearKind
    target_year: int
    reduction_pct: float
    kpi_values: dict[int, float]


class AmountOut(_Out):
    value: float | None
    unit: str


class CoveredValueOut(_Out):
    value: float | None = Field(description="the full-year value over the covered time, also where it is withheld")


class KpiOut(_Out):
    kpi: Literal["kwh_per_lamp", "kwh_per_m2", "l_per_100km"]
    unit: str
    value: float | None = Field(
        description="the full-year figure over the covered time; null when it cannot be computed or coverage is "
        "insufficient (reason)"
    )
    value_kind: Literal["measured", "gap_filled", "measured_to_date"] | None
    measured_to_date: float | None = Field(description="the KPI of the elapsed part of the year, as measured")
    scale_to_year: float | None = Field(description="value / measured_to_date")
    numerator: AmountOut
    denominator: AmountOut
    devices: list[str]
    coverage: CoverageOut
    reason: str | None
    covered_time: CoveredValueOut
    excluded_sites: list[str]
    excluded_amount: float
    months_without_distance: list[str]


class KpisOut(_Out):
    organisation: str
    year: int
    year_kind: YearKind
    period: PeriodOut
    as_of: str
    elapsed_days: float
    year_days: float
    year_over: bool
    missing_reporting_years: list[int]
    kpis: list[KpiOut]


class CoveredMarginOut(_Out):
    value: float | None
    margin: float | None
    margin_pct: float | None


class TargetStatusOut(TargetOut):
    year: int
    trajectory: float = Field(description="the value allowed in the year (straight line from base to target)")
    value: float | None = Field(
        description="the year's value: emission targets the sum of their items' projections (projected), actual "
        "(the year over and fully covered) or gap_filled; KPI targets reported, measured, gap_filled or "
        "measured_to_date. Null when coverage is insufficient (reason)"
    )
    value_kind: Literal["projected", "actual", "gap_filled", "reported", "measured", "measured_to_date"] | None
    margin: float | None = Field(description="trajectory - value; null with value")
    margin_pct: float | None
    on_track: bool | None = Field(description="value <= trajectory; null when there is no value to judge")
    coverage: CoverageOut | None = Field(description="what a measured or projected value rests on")
    reason: str | None
    covered_time: CoveredMarginOut
    base_value_kgco2e: float | None = None
    actual_to_date_kgco2e: float | None = None
    measured: KpiOut | None = None


class GoodnessOfFitOut(_Doc):
    n: int
    p: int
    mean: float | None
    rmse: float | None
    cv_rmse_pct: float | None
    nmbe_pct: float | None
    r2: float | None
    adj_r2: float | None


class FitLimitsOut(_Doc):
    cv_rmse_pct: float
    nmbe_pct: float
    resolution: Literal["monthly", "daily"]


class MvFitOut(_Doc):
    site: str
    base_temp_c: float
    terms: list[str]
    coef: list[float]
    daily: GoodnessOfFitOut
    monthly: GoodnessOfFitOut | None
    limits: FitLimitsOut
    passed: bool
    cv_rmse_ok: bool
    nmbe_ok: bool
    n_excluded: int


class MvSavingsOut(_Doc):
    site: str
    from_: str = Field(alias="from", description="first day, ISO date")
    to: str = Field(description="the day after the last, ISO date")
    adjusted_baseline_kwh: float | None
    actual_kwh: float | None
    avoided_kwh: float | None
    avoided_kgco2e: float | None
    avoided_kwh_without_factor: float | None
    days: int
    days_excluded: int


class TemperatureImportOut(_Doc):
    organisation: str
    days: int = Field(description="days written (a day sent again replaces the stored one)")
