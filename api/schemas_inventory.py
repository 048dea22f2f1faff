"""Request and response models of the inventory routes (organisations, reporting years, CFO items, activity data,
device -> item mappings). Quantities are in the item's ``unit``; emissions in kgCO2e with the unit in the name.
Years are CE with the Buddhist Era beside them (``year_be`` = CE + 543); a fiscal year is named by the year it ends
in (fiscal 2025 = October 2024 to September 2025)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lccm.api.schemas import UtcTime

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
