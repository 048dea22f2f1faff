"""Dated assets (issue 15): when sites and devices are in service, and what a period counts of them.

A site or device is in service over ``[commissioned_on, decommissioned_on)``, Bangkok days (migration 014): from the
midnight starting its commissioning day to the midnight starting its decommissioning day; a blank date is open.
Over a period ``[lo, hi)`` a thing counts for the share of the period it was in service, so a denominator is the
time-weighted mean over the period:

- lamps: the sum over the lamps at the cabinets' sites of (their seconds in service within the period / the
  period's seconds). 10 lamps until 1 March and 12 from then count 10 before, 12 after, and over a fiscal year
  (10 x 151 + 12 x 214) / 365 days;
- floor area: the sum over the sites of floor_area_m2 x the site's share of the period in service;
- expected device time (completeness): a device is expected to report only while in service.

Edits (API PATCH, ``lccm devices dates``) go through :func:`set_device_dates` / :func:`set_site_dates`, which check
the order of the dates and the replaced device like the registry import does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg import sql

from lccm.engine.timebase import CITY_TZ_NAME
from lccm.store.scope import Scope, scope_and


class AssetDatesInvalid(ValueError):
    """Dates or a replaced device that cannot be stored; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class AssetNotFound(LookupError):
    """No site or device with that code."""


def service_start_sql(table: str) -> str:
    """SQL for the instant ``table`` enters service (-infinity when open); ``%(tz)s`` must be CITY_TZ_NAME."""
    return f"coalesce({table}.commissioned_on::timestamp AT TIME ZONE %(tz)s, '-infinity'::timestamptz)"


def service_end_sql(table: str) -> str:
    """SQL for the instant ``table`` leaves service (infinity when open); ``%(tz)s`` must be CITY_TZ_NAME."""
    return f"coalesce({table}.decommissioned_on::timestamp AT TIME ZONE %(tz)s, 'infinity'::timestamptz)"


def _in_service_s(table: str) -> str:
    """Seconds of ``[%(lo)s, %(hi)s)`` that ``table`` is in service."""
    return (f"greatest(0, extract(epoch FROM least(%(hi)s, {service_end_sql(table)})"
            f" - greatest(%(lo)s, {service_start_sql(table)})))::float8")  # fmt: skip


def lamp_count(conn: psycopg.Connection, site_ids: Sequence[int], lo: datetime, hi: datetime) -> float:
    """Time-weighted number of lamps (devices of kind 'lamp') at these sites over ``[lo, hi)``."""
    row = conn.execute(
        f"SELECT coalesce(sum({_in_service_s('d')}), 0) FROM devices d"
        " WHERE d.kind = 'lamp' AND d.site_id = ANY(%(s)s)",
        {"s": list(site_ids), "lo": lo, "hi": hi, "tz": CITY_TZ_NAME},
    ).fetchone()
    return float(row[0]) / (hi - lo).total_seconds() if row else 0.0


def floor_areas(conn: psycopg.Connection, site_ids: Sequence[int], lo: datetime, hi: datetime) -> dict[int, float]:
    """site id -> floor_area_m2 x the site's share of ``[lo, hi)`` in service (sites with a floor area)."""
    rows = conn.execute(
        f"SELECT st.id, st.floor_area_m2 * {_in_service_s('st')} FROM sites st"
        " WHERE st.id = ANY(%(s)s) AND st.floor_area_m2 IS NOT NULL",
        {"s": list(site_ids), "lo": lo, "hi": hi, "tz": CITY_TZ_NAME},
    ).fetchall()
    span = (hi - lo).total_seconds()
    return {int(r[0]): float(r[1]) / span for r in rows}


# ------------------------------------------------------------------------------------------------------ editing
@dataclass(frozen=True, slots=True)
class ServiceDates:
    code: str  # site_code or device_id
    commissioned_on: date | None
    decommissioned_on: date | None
    replaces: str | None = None  # devices only


def _check_order(commissioned_on: date | None, decommissioned_on: date | None) -> None:
    if commissioned_on and decommissioned_on and decommissioned_on <= commissioned_on:
        raise AssetDatesInvalid("decommissioned_on", f"must be after the commissioning date {commissioned_on}"
                                " (it is the first day out of service)")  # fmt: skip


def set_site_dates(conn: psycopg.Connection, site_code: str, commissioned_on: date | None,
                   decommissioned_on: date | None) -> ServiceDates:  # fmt: skip
    """Set (or clear, with None) a site's service dates. Raises AssetNotFound, AssetDatesInvalid."""
    _check_order(commissioned_on, decommissioned_on)
    row = conn.execute(
        "UPDATE sites SET commissioned_on = %s, decommissioned_on = %s, updated_at = now() WHERE site_code = %s"
        " RETURNING site_code",
        (commissioned_on, decommissioned_on, site_code),
    ).fetchone()
    if row is None:
        raise AssetNotFound(f"no site {site_code!r}")
    return ServiceDates(site_code, commissioned_on, decommissioned_on)


def set_device_dates(conn: psycopg.Connection, device_id: str, commissioned_on: date | None,
                     decommissioned_on: date | None, replaces: str | None, *,
                     scope: Scope | None = None) -> ServiceDates:  # fmt: skip
    """Set (or clear, with None) a device's service dates and the device it replaced (one in ``scope``: a device
    outside it reads as unknown). Raises AssetNotFound, AssetDatesInvalid."""
    _check_order(commissioned_on, decommissioned_on)
    if replaces is not None:
        if replaces == device_id:
            raise AssetDatesInvalid("replaces", "a device cannot replace itself")
        query = sql.SQL("SELECT 1 FROM devices d WHERE d.device_id = %s") + scope_and(scope, "d.site_id")
        if conn.execute(query, (replaces,)).fetchone() is None:
            raise AssetDatesInvalid("replaces", f"no device {replaces!r} in the registry")
    row = conn.execute(
        "UPDATE devices SET commissioned_on = %s, decommissioned_on = %s, replaces = %s, updated_at = now()"
        " WHERE device_id = %s RETURNING device_id",
        (commissioned_on, decommissioned_on, replaces, device_id),
    ).fetchone()
    if row is None:
        raise AssetNotFound(f"no device {device_id!r}")
    return ServiceDates(device_id, commissioned_on, decommissioned_on, replaces)


def get_dates(conn: psycopg.Connection, kind: str, code: str, *, scope: Scope | None = None) -> ServiceDates:
    """The stored dates of a site (``kind`` 'site') or device ('device'). Raises AssetNotFound, also for one
    outside ``scope`` (``None``: the command line's whole deployment)."""
    if kind == "site":
        query = sql.SQL("SELECT s.site_code, s.commissioned_on, s.decommissioned_on, NULL FROM sites s"
                        " WHERE s.site_code = %s") + scope_and(scope, "s.id")  # fmt: skip
    else:
        query = sql.SQL("SELECT d.device_id, d.commissioned_on, d.decommissioned_on, d.replaces FROM devices d"
                        " WHERE d.device_id = %s") + scope_and(scope, "d.site_id")  # fmt: skip
    row = conn.execute(query, (code,)).fetchone()
    if row is None:
        raise AssetNotFound(f"no {kind} {code!r}")
    return ServiceDates(str(row[0]), row[1], row[2], row[3])
