"""Request and response models of the inventory routes (organisations, reporting years, CFO items, activity data,
device -> item mappings). Quantities are in the item's ``unit``; emissions in kgCO2e with the unit in the name.
Years are CE with the Buddhist Era beside them (``year_be`` = CE + 543); a fiscal year is named by the year it ends
in (fiscal 2025 = October 2024 to September 2025)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lccm.api.schemas import RowErrorOut, UtcTime

YearKind = Literal["calendar", "fiscal"]
MunicipalityType = Literal["city", "town", "subdistrict", "sao", "pao", "special"]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class OrganisationIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    name_en: str = Field(min_length=1)
    name_th: str | None = None
    province_en: str = Field(min_length=1)
    province_th: str | None = None
    municipality_type: MunicipalityType = Field(
        description="city เทศบาลนคร, town เทศบาลเมือง, subdistrict เทศบาลตำบล, sao อบต., pao อบจ., special กทม./พัทยา"
    )
    city_key: str | None = Field(
        default=None, description="the device registry's 'city' value whose sites belong to this organisation"
    )


class OrganisationOut(_Out):
    code: str
    name_en: str
    name_th: str | None
    province_en: str
    province_th: str | None
    municipality_type: str
    city_key: str | None
    site_count: int
    updated_at: UtcTime


class OrganisationPutOut(OrganisationOut):
    created: bool


class ReportingYearOut(_Out):
    kind: YearKind
    year_ce: int
    year_be: int
    label: str
    first_month: date = Field(description="first day of the first Bangkok month (October for a fiscal year)")
    is_base_year: bool


class MonthOut(_Out):
    month_start: date = Field(description="first day of the Bangkok month")
    quantity: float | None = Field(description="imported or entered quantity in the item's unit; null = none")
    origin: Literal["import", "api", "csv"] | None
    note: str | None
    metered_quantity: float | None = Field(description="sum of the mapped devices' monthly buckets (metered items)")
    metered_kgco2e: float | None = Field(description="the devices' emissions at the factor in force")


class ItemOut(_Out):
    item_code: str
    scope: int
    category: str
    category_en: str
    category_th: str
    is_removal: bool
    activity_en: str | None
    activity_th: str | None
    unit: str
    ef_kgco2e_per_unit: float
    ef_unit: str
    ef_source: str
    gwp_set: Literal["AR4", "AR5", "AR6"]
    gas: str | None
    gpc_ref: str | None
    collection: Literal["metered", "manual"]
    source_class: str | None
    note: str | None
    devices: list[str] = Field(description="devices mapped to this item in this year")
    quantity: float = Field(description="sum of the months' quantities")
    kgco2e: float = Field(description="quantity x factor; negative for a removal")
    metered_quantity: float | None
    metered_kgco2e: float | None
    months: list[MonthOut] = Field(description="the 12 months of the reporting year in its own order")


class InventoryOut(_Out):
    organisation: str
    year: ReportingYearOut
    gwp_sets: list[str]
    kgco2e_scope1: float
    kgco2e_scope2: float
    kgco2e_scope3: float
    removals_kgco2e: float = Field(description="sum of the removal items (negative), reported separately")
    net_kgco2e: float
    items: list[ItemOut]


class InventoryImportOut(_Out):
    status: Literal["applied", "unchanged"]
    import_id: int
    organisation: str
    kind: YearKind
    year_ce: int
    year_be: int
    rows: int
    items_inserted: int
    items_updated: int
    items_unchanged: int
    items_deleted: int
    quantities: int
    is_base_year: bool
    base_year_changed: bool
    devices_unmapped: list[str] = Field(description="devices whose item left the year or became manual")


class InventoryErrorOut(_Out):
    error: Literal["inventory_invalid"]
    detail: str
    errors: list[RowErrorOut]


class ImportLogOut(_Out):
    id: int
    kind: Literal["inventory", "activity"]
    year_kind: YearKind | None
    year_ce: int | None
    file_name: str
    file_format: str
    sha256: str
    status: Literal["applied", "unchanged", "rejected"]
    rows: int
    errors: list[dict[str, object]]
    summary: dict[str, object]
    imported_at: UtcTime


class ActivityEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: str = Field(description="the inventory item, e.g. S1-LPG-KITCHEN")
    month: str = Field(description="YYYY-MM (a Buddhist Era year such as 2569-03 is accepted)", examples=["2026-03"])
    quantity: float = Field(description="the month's total, not negative", allow_inf_nan=False)
    unit: str = Field(description="must convert to the item's unit (t for a kg item is fine, kg for an L item not)")
    note: str | None = None


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[ActivityEntryIn] = Field(min_length=1)


class ActivityTargetOut(_Out):
    item_code: str
    month: date
    year: str
    quantity: float
    unit: str


class ActivityReportOut(_Out):
    import_id: int
    entries: int
    inserted: int
    updated: int
    unchanged: int
    years_created: list[str]
    targets: list[ActivityTargetOut]


class MappingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str
    item_code: str


class MappingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mappings: list[MappingIn] = Field(description="the whole mapping of the year; devices left out are unmapped")


class DeviceMappingOut(_Out):
    device_id: str
    site_code: str
    device_kind: str
    device_source_class: str | None
    item_code: str
    item_source_class: str | None


class MappingProblemOut(_Out):
    severity: Literal["error", "warning"]
    problem: str
    organisation: str
    kind: YearKind
    year_ce: int
    device_id: str | None
    item_code: str | None
    detail: str


class MappingsOut(_Out):
    year: ReportingYearOut
    mappings: list[DeviceMappingOut]
    problems: list[MappingProblemOut] = Field(description="double counting (error) and unmapped meters (warning)")


class MappingReportOut(_Out):
    year: str
    added: int
    changed: int
    removed: int
    unchanged: int
    year_created: bool


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
