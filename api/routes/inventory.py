"""Organisations, their CFO inventories (base-year import, reads), manual activity data, device -> item mappings.

An unknown organisation or year is a 404; an invalid file or entry list is a 422 carrying one error per problem
(row and column), after the store has kept it in the import log (both mapped in api/errors.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from lccm.api.audit import Audit
from lccm.api.deps import Conn, Limits
from lccm.api.errors import InvalidParameter
from lccm.api.limits import XLSX_TYPE
from lccm.api.principal import CurrentPrincipal
from lccm.api.schemas_inventory import (
    ActivityIn,
    ActivityReportOut,
    DeviceMappingOut,
    ImportLogOut,
    InventoryImportOut,
    InventoryOut,
    ItemOut,
    MappingProblemOut,
    MappingReportOut,
    MappingsIn,
    MappingsOut,
    OrganisationIn,
    OrganisationOut,
    OrganisationPutOut,
    ReportingYearOut,
    YearKind,
)
from lccm.api.upload import csv_upload, spreadsheet_upload
from lccm.imports.activity import parse_activity_json
from lccm.imports.inventory import detect_format
from lccm.store import inventory as inv
from lccm.store.inventory_activity import import_activity_file, record_activity
from lccm.store.inventory_mapping import list_mappings, mapping_problems, set_mappings

router = APIRouter(tags=["inventory"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "unknown organisation or reporting year"}}
_INVALID: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    422: {"description": "invalid input, each problem with its row and column; nothing was written"},
}
YearQuery = Annotated[int | None, Query(description="CE year (fiscal years: the year they end in); default: base year")]
KindQuery = Annotated[YearKind | None, Query(description="calendar or fiscal; default: whichever exists")]


def _year_out(year: inv.ReportingYear) -> ReportingYearOut:
    return ReportingYearOut(
        kind=year.kind, year_ce=year.year_ce, year_be=year.year_be, label=year.label, first_month=year.first_month,
        is_base_year=year.is_base_year,
    )  # fmt: skip


# --- organisations -------------------------------------------------------------------------------------------------


@router.get("/organisations", response_model=list[OrganisationOut])
def list_organisations(
    conn: Conn,
    principal: CurrentPrincipal,
    province: Annotated[str | None, Query(description="only this province (English or Thai)")] = None,
) -> list[inv.Organisation]:
    """The caller's organisation (a caller sees its own only), grouped by province (sorted by province, then
    code)."""
    return inv.list_organisations(conn, province, organisation_id=principal.scope.organisation_id)


@router.put("/organisations/{code}", response_model=OrganisationPutOut)
def put_organisation(code: str, body: OrganisationIn, conn: Conn, audit: Audit) -> OrganisationPutOut:
    """Update your organisation (another code answers 404; a new organisation is created with
    `lccm organisations put`)."""
    if not inv.ORG_CODE_PATTERN.match(code):
        raise InvalidParameter(
            "code", "letters, digits, '_', '.' and '-', starting with a letter or digit", where="path"
        )
    before = inv.get_organisation(conn, code)
    created = inv.put_organisation(conn, inv.OrganisationIn(code=code, **body.model_dump()))
    org = inv.get_organisation(conn, code)
    audit.record(f"organisation:{code}", before=asdict(before) if before else None, after=asdict(org) if org else None)
    return OrganisationPutOut.model_validate({**OrganisationOut.model_validate(org).model_dump(), "created": created})


@router.get("/organisations/{code}/years", response_model=list[ReportingYearOut], responses=_NOT_FOUND)
def list_years(code: str, conn: Conn) -> list[ReportingYearOut]:
    org = inv.require_organisation(conn, code)
    return [_year_out(y) for y in inv.list_years(conn, org.id)]


@router.get("/organisations/{code}/imports", response_model=list[ImportLogOut], responses=_NOT_FOUND)
def list_imports(code: str, conn: Conn, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[inv.ImportLog]:
    """Every file or batch of entries offered, newest first; rejected ones keep their errors."""
    org = inv.require_organisation(conn, code)
    return inv.list_imports(conn, org.id, limit)


# --- inventory -----------------------------------------------------------------------------------------------------


@router.get("/organisations/{code}/inventory", response_model=InventoryOut, responses=_NOT_FOUND)
def get_inventory(code: str, conn: Conn, year: YearQuery = None, kind: KindQuery = None) -> InventoryOut:
    """One reporting year: its items with the 12 months, and totals per scope (removals apart)."""
    view = inv.get_inventory(conn, code, year, kind)
    scopes = view.kgco2e_by_scope()
    items = [
        ItemOut.model_validate(
            {**{f: getattr(i, f) for f in ItemOut.model_fields if f != "months"}, "months": i.months}
        )
        for i in view.items
    ]
    return InventoryOut(
        organisation=view.organisation, year=_year_out(view.year), gwp_sets=view.gwp_sets,
        kgco2e_scope1=scopes[1], kgco2e_scope2=scopes[2], kgco2e_scope3=scopes[3],
        removals_kgco2e=view.removals_kgco2e, net_kgco2e=view.net_kgco2e, items=items,
    )  # fmt: skip


def _upload_body(description: str, xlsx: bool) -> dict[str, Any]:
    content: dict[str, Any] = {
        "text/csv": {"schema": {"type": "string"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    }
    if xlsx:
        content[XLSX_TYPE] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


@router.post(
    "/organisations/{code}/inventory/import",
    response_model=InventoryImportOut,
    responses=_INVALID,
    openapi_extra=_upload_body(
        "The base-year CFO in the product's inventory template (TGO form 1.5(1) layout): CSV (UTF-8) or XLSX", xlsx=True
    ),
)
def import_inventory(
    code: str,
    conn: Conn,
    limits: Limits,
    data: Annotated[bytes, Depends(spreadsheet_upload)],
    audit: Audit,
    year: Annotated[int, Query(ge=1990, le=2200, description="CE year (fiscal: the year it ends in)")],
    kind: Annotated[YearKind, Query(description="calendar (Jan-Dec) or fiscal (Oct-Sep)")] = "calendar",
    base_year: Annotated[
        bool | None, Query(description="mark as the base year; default: only if the organisation has none")
    ] = None,
    file_name: Annotated[str | None, Query(max_length=255, description="kept in the import log")] = None,
) -> inv.InventoryImportReport:
    """Import one organisation-year: all rows or none; the same content again changes nothing; a corrected file
    replaces the year's items and quantities."""
    name = file_name or f"upload.{detect_format(data)}"
    report = inv.import_inventory_file(
        conn, data, file_name=name, organisation=code, year_ce=year, kind=kind, base_year=base_year, limits=limits
    )
    audit.record(f"organisation:{code}/inventory/{kind}/{year}", after={"file": name, "report": report})
    return report


# --- activity data -------------------------------------------------------------------------------------------------


@router.post("/organisations/{code}/activity", response_model=ActivityReportOut, responses=_INVALID)
def post_activity(code: str, body: ActivityIn, conn: Conn, audit: Audit) -> Any:
    """Manual activity data (refrigerant top-ups, LPG, waste, water, paper): each entry sets one manual item's total
    for one month (sending it again changes nothing). All entries or none; rows are 1-based positions."""
    entries = [e.model_dump() for e in body.entries]
    raw = json.dumps(entries, sort_keys=True, ensure_ascii=False).encode()
    inv.require_organisation(conn, code)
    parsed = parse_activity_json(entries, raw)
    report = record_activity(conn, code, parsed, origin="api", file_name="api")
    audit.record(f"organisation:{code}/activity", after={"entries": entries, "report": report})
    return report


@router.post(
    "/organisations/{code}/activity/import",
    response_model=ActivityReportOut,
    responses=_INVALID,
    openapi_extra=_upload_body("Activity CSV: item_code, month, quantity, unit, note (Thai headers accepted)", False),
)
def import_activity(
    code: str,
    conn: Conn,
    limits: Limits,
    data: Annotated[bytes, Depends(csv_upload)],
    audit: Audit,
    file_name: Annotated[str | None, Query(max_length=255, description="kept in the import log")] = None,
) -> Any:
    """The CSV variant of POST /organisations/{code}/activity."""
    name = file_name or "upload.csv"
    report = import_activity_file(conn, data, organisation=code, file_name=name, limits=limits)
    audit.record(f"organisation:{code}/activity", after={"file": name, "report": report})
    return report


# --- device -> item mappings ---------------------------------------------------------------------------------------


@router.get("/organisations/{code}/mappings", response_model=MappingsOut, responses=_NOT_FOUND)
def get_mappings(code: str, conn: Conn, year: YearQuery = None, kind: KindQuery = None) -> MappingsOut:
    """Which device feeds which metered item in a year, and what could count an activity twice."""
    reporting_year, mappings = list_mappings(conn, code, year, kind)
    problems = mapping_problems(conn, code, reporting_year.year_ce, reporting_year.kind)
    return MappingsOut(
        year=_year_out(reporting_year),
        mappings=[DeviceMappingOut.model_validate(m) for m in mappings],
        problems=[MappingProblemOut.model_validate(p) for p in problems],
    )


@router.put("/organisations/{code}/mappings", response_model=MappingReportOut, responses=_INVALID)
def put_mappings(
    code: str,
    body: MappingsIn,
    conn: Conn,
    audit: Audit,
    year: Annotated[int, Query(ge=1990, le=2200, description="CE year (fiscal: the year it ends in)")],
    kind: Annotated[YearKind, Query()] = "calendar",
) -> Any:
    """Set the whole device -> item mapping of a year (devices left out are unmapped). All or nothing; a missing
    year is carried forward from the latest earlier one first."""
    pairs = [(m.device_id, m.item_code) for m in body.mappings]
    before = _mapping_pairs(conn, code, year, kind)
    report = set_mappings(conn, code, year, kind, pairs)
    audit.record(f"organisation:{code}/mappings/{kind}/{year}", before={"mappings": before},
                 after={"mappings": sorted(pairs), "report": report})  # fmt: skip
    return report


def _mapping_pairs(conn: Conn, code: str, year: int, kind: YearKind) -> list[tuple[str, str]] | None:
    try:
        _, mappings = list_mappings(conn, code, year, kind)
    except inv.UnknownReportingYear:
        return None
    return sorted((m.device_id, m.item_code) for m in mappings)
