"""Service dates of sites and devices (issue 15): read and edit when a site or device entered and left service,
and which device a device replaced. A PATCH changes the fields the body names (null clears one) and leaves the
others; the dates are Bangkok days in CE (store/assets.py, migration 014).

Reads follow the registry's policy; a change is an admin's (api/policy.py) and is audited with its before and after.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import date

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lccm.api.audit import Audit
from lccm.api.deps import Conn
from lccm.api.principal import CurrentPrincipal
from lccm.imports.registry import DEVICE_ID_PATTERN, check_common_era
from lccm.store import assets

router = APIRouter(tags=["registry"])


class _DatesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    commissioned_on: date | None = Field(default=None, description="first day in service (Bangkok, CE); null = open")
    decommissioned_on: date | None = Field(default=None, description="first day out of service; null = open")

    @field_validator("commissioned_on", "decommissioned_on")
    @classmethod
    def _ce(cls, v: date | None) -> date | None:
        return check_common_era(v)


class SiteDatesIn(_DatesIn):
    pass


class DeviceDatesIn(_DatesIn):
    replaces: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN, description="device_id it replaced")


class ServiceDatesOut(BaseModel):
    code: str = Field(description="site_code or device_id")
    commissioned_on: date | None
    decommissioned_on: date | None
    replaces: str | None = None


def _merged(current: assets.ServiceDates, body: BaseModel) -> assets.ServiceDates:
    """The stored dates with the fields the body names replaced (PATCH: absent = unchanged, null = cleared)."""
    return replace(current, **{k: getattr(body, k) for k in body.model_fields_set})


_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "unknown site or device"},
    422: {"description": "dates out of order, a Buddhist-era year, or an unknown replaced device"},
}


@router.get("/sites/{site_code}/service", response_model=ServiceDatesOut, responses=_ERRORS)
def get_site_dates(site_code: str, conn: Conn, principal: CurrentPrincipal) -> ServiceDatesOut:
    found = assets.get_dates(conn, "site", site_code, scope=principal.scope)
    return ServiceDatesOut.model_validate(found, from_attributes=True)


@router.patch("/sites/{site_code}/service", response_model=ServiceDatesOut, responses=_ERRORS)
def patch_site_dates(
    site_code: str, body: SiteDatesIn, conn: Conn, principal: CurrentPrincipal, audit: Audit
) -> ServiceDatesOut:
    """Set or clear a site's commissioning and decommissioning dates (floor area counts only in between)."""
    before = assets.get_dates(conn, "site", site_code, scope=principal.scope)  # outside the scope: 404
    f = _merged(before, body)
    done = assets.set_site_dates(conn, site_code, f.commissioned_on, f.decommissioned_on)
    audit.record(f"site:{site_code}/service", before=asdict(before), after=asdict(done))
    return ServiceDatesOut.model_validate(done, from_attributes=True)


@router.get("/devices/{device_id}/service", response_model=ServiceDatesOut, responses=_ERRORS)
def get_device_dates(device_id: str, conn: Conn, principal: CurrentPrincipal) -> ServiceDatesOut:
    found = assets.get_dates(conn, "device", device_id, scope=principal.scope)
    return ServiceDatesOut.model_validate(found, from_attributes=True)


@router.patch("/devices/{device_id}/service", response_model=ServiceDatesOut, responses=_ERRORS)
def patch_device_dates(
    device_id: str, body: DeviceDatesIn, conn: Conn, principal: CurrentPrincipal, audit: Audit
) -> ServiceDatesOut:
    """Set or clear a device's service dates and the device it replaced (nothing is expected from it outside)."""
    before = assets.get_dates(conn, "device", device_id, scope=principal.scope)  # outside the scope: 404
    f = _merged(before, body)
    done = assets.set_device_dates(
        conn, device_id, f.commissioned_on, f.decommissioned_on, f.replaces, scope=principal.scope
    )
    audit.record(f"device:{device_id}/service", before=asdict(before), after=asdict(done))
    return ServiceDatesOut.model_validate(done, from_attributes=True)
