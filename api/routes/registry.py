"""Sites, devices and the registry import."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from lccm.api import cursors
from lccm.api.audit import Audit
from lccm.api.deps import Conn, Cursor, Limits
from lccm.api.errors import DeviceNotFound, SiteNotFound
from lccm.api.principal import CurrentPrincipal
from lccm.api.schemas import DeviceOut, DevicePage, ImportReportOut, SiteDetailOut, SiteOut
from lccm.api.upload import UPLOAD_LIMIT_DOC, csv_upload
from lccm.imports.registry import DeviceKind, parse_registry_csv
from lccm.store import queries
from lccm.store.devices import import_registry

router = APIRouter(tags=["registry"])

_DEVICE_CURSOR = "devices"


@router.get("/sites", response_model=list[SiteOut])
def list_sites(conn: Conn, principal: CurrentPrincipal) -> list[queries.Site]:
    return queries.list_sites(conn, scope=principal.scope)


@router.get("/sites/{site_code}", response_model=SiteDetailOut, responses={404: {"description": "unknown site"}})
def get_site(site_code: str, conn: Conn, principal: CurrentPrincipal) -> SiteDetailOut:
    site = queries.get_site(conn, site_code, scope=principal.scope)
    if site is None:
        raise SiteNotFound(site_code)
    devices = queries.list_devices(conn, scope=principal.scope, site_code=site_code)
    return SiteDetailOut.model_validate(
        {**SiteOut.model_validate(site).model_dump(), "devices": [DeviceOut.model_validate(d) for d in devices]}
    )


@router.get("/devices", response_model=DevicePage, responses={404: {"description": "unknown site"}})
def list_devices(
    conn: Conn,
    principal: CurrentPrincipal,
    site_code: str | None = None,
    kind: DeviceKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> DevicePage:
    if site_code is not None and queries.get_site(conn, site_code, scope=principal.scope) is None:
        raise SiteNotFound(site_code)  # an empty page would hide a typo in the site code
    after = str(cursors.decode(_DEVICE_CURSOR, cursor, (str,))[0]) if cursor else None
    rows = queries.list_devices(
        conn, scope=principal.scope, site_code=site_code, kind=kind, after_device_id=after, limit=limit + 1
    )
    page, more = rows[:limit], len(rows) > limit
    return DevicePage(
        items=[DeviceOut.model_validate(d) for d in page],
        next_cursor=cursors.encode(_DEVICE_CURSOR, page[-1].device_id) if more else None,
    )


@router.get("/devices/{device_id}", response_model=DeviceOut, responses={404: {"description": "unknown device"}})
def get_device(device_id: str, conn: Conn, principal: CurrentPrincipal) -> queries.Device:
    device = queries.get_device(conn, device_id, scope=principal.scope)
    if device is None:
        raise DeviceNotFound(device_id)
    return device


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"The registry CSV (English or Thai headers, UTF-8, {UPLOAD_LIMIT_DOC})",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "/devices/import",
    response_model=ImportReportOut,
    openapi_extra=_IMPORT_BODY,
    responses={422: {"description": "the file is invalid, each problem with its row and column; nothing imported"}},
)
def import_devices(
    conn: Conn, principal: CurrentPrincipal, limits: Limits, audit: Audit, data: Annotated[bytes, Depends(csv_upload)]
) -> ImportReportOut:
    """Upsert sites and devices from a registry CSV: all rows or none, idempotent on re-import. Every row must be
    of the caller's organisation: a row naming another organisation's site or device, or a new site in another
    organisation's city, is a row error."""
    rows = parse_registry_csv(data, limits)  # RegistryInvalid -> 422 with the per-row errors (api/errors.py)
    report = import_registry(conn, rows, scope=principal.scope)
    summary = {"rows": len(rows), "sites": report.sites, "devices": report.devices}
    audit.record("devices", after={**summary, "sha256": hashlib.sha256(data).hexdigest()})
    return ImportReportOut.model_validate({"rows": len(rows), "sites": report.sites, "devices": report.devices})
