"""Response models of the baseline routes (comparison, projection, targets, KPIs, building M&V): the documents
reports/ builds, which ``lccm compare|projection|targets|kpis --json`` print as they are.

The models describe those documents for the OpenAPI schema and check them on the way out. They allow fields they do
not name (``extra="allow"``), so a field reports/ adds reaches clients at once, before it is described here. Figures
that a ratio or a missing year can leave undefined are nullable (reports.baseline.finite: NaN -> null).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

YearKind = Literal["calendar", "fiscal"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class PeriodOut(_Doc):
    kind: str = Field(description="day, week, month, fytd, ytd, custom, year ...")
    label: str
    start: str = Field(description="ISO 8601, a Bangkok midnight (+07:00), inclusive")
    end: str = Field(description="ISO 8601, exclusive")
    days: float


class ComparisonFiguresOut(_Doc):
    group: str
    actual_kgco2e: float | None
    actual_base_factors_kgco2e: float | None = Field(description="actual activity at the base year's factors")
    baseline_kgco2e: float | None = Field(description="the base year's slice matching the period")
    delta_kgco2e: float | None
    delta_pct: float | None = Field(description="null where the baseline is zero")
    delta_base_factors_kgco2e: float | None
    delta_base_factors_pct: float | None


class ComparisonRowOut(ComparisonFiguresOut):
    items_without_data: list[str] = Field(description="items of the group with no data in the period")


class LikeForLikeOut(ComparisonFiguresOut):
    items: list[str] = Field(description="the items with data in the period, the only ones compared here")


class ComparisonOut(_Doc):
    organisation: str
    base_year: int
    year_kind: YearKind
    period: PeriodOut
    by: str
    rows: list[ComparisonRowOut]
    total: ComparisonFiguresOut
    like_for_like: LikeForLikeOut
    items_without_data: list[str]
    missing_reporting_years: list[int]


class ProjectionRowOut(_Doc):
    group: str
    actual_ytd_kgco2e: float | None
    baseline_ytd_kgco2e: float | None
    baseline_rest_kgco2e: float | None
    ratio: float | None = Field(description="actual to date / baseline to date; null where undefined")
    projected_kgco2e: float | None
    defined: bool


class ProjectionOut(_Doc):
    organisation: str
    year: int
    year_kind: YearKind
    ytd: PeriodOut
    by: str
    rows: list[ProjectionRowOut]
    projected_total_kgco2e: float | None
    missing_reporting_years: list[int]


class TargetOut(_Doc):
    target_key: str
    category: str | None
    kpi: str | None
    base_year: int
    year_kind: YearKind
    target_year: int
    reduction_pct: float
    kpi_values: dict[int, float] = Field(description="KPI value per CE year")


class AmountOut(_Doc):
    value: float | None
    unit: str


class KpiOut(_Doc):
    kpi: str
    unit: str
    value: float | None = Field(description="the full-year figure (projected while the year runs)")
    value_kind: str | None
    measured_to_date: float | None
    scale_to_year: float
    numerator: AmountOut
    denominator: AmountOut
    devices: list[str]
    coverage: float | None
    reason: str | None
    excluded_sites: list[str]
    excluded_amount: float
    months_without_distance: list[str]


class _StatusOut(TargetOut):
    year: int
    trajectory: float = Field(description="the target's value on the straight line for this year")
    value_kind: str | None
    margin: float | None
    margin_pct: float | None


class KpiTargetStatusOut(_StatusOut):
    value: float | None = Field(description="reported for the year, else measured (full-year); null if neither")
    measured: KpiOut | None = Field(description="the KPI measured from the meters; null before the year starts")
    on_track: bool | None = Field(description="null where there is no value to judge")


class EmissionTargetStatusOut(_StatusOut):
    base_value_kgco2e: float
    value: float | None = Field(description="actual once the year is over, else the projected year end")
    actual_to_date_kgco2e: float
    on_track: bool | None = Field(description="null where the data cannot support a verdict")


class KpisOut(_Doc):
    organisation: str
    year: int
    year_kind: YearKind
    period: PeriodOut
    elapsed_days: float
    year_days: float
    year_over: bool
    missing_reporting_years: list[int]
    kpis: list[KpiOut]


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
