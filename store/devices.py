"""Device registry: upsert the sites and devices of a validated registry file (imports/registry.py reads it).

``import_registry(conn, rows) -> ImportReport`` writes in one transaction: all or nothing, and idempotent (upsert on
``site_code`` / ``device_id``; a row identical to what is stored is counted as unchanged, not rewritten). A blank cell
clears the stored value: the registry file is the source of truth. Devices or sites absent from the file are left
alone (the import never deletes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from lccm.imports.registry import RegistryInvalid, RegistryRow
from lccm.imports.rows import RowError
from lccm.store.scope import Scope


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class ImportReport:
    sites: UpsertCounts = field(default_factory=UpsertCounts)
    devices: UpsertCounts = field(default_factory=UpsertCounts)


# Serialises concurrent imports so the inserted/updated counts, taken before the upsert, stay exact.
_IMPORT_LOCK_KEY = 0x4C43_4452  # "LCDR"

_COUNT_SITES = "SELECT count(*) FROM sites WHERE site_code = ANY(%s)"
_COUNT_DEVICES = "SELECT count(*) FROM devices WHERE device_id = ANY(%s)"

# Set-based upserts from arrays (one round trip whatever the file size). The WHERE on DO UPDATE skips identical rows,
# so RETURNING yields exactly the inserted plus the changed rows, and updated_at moves only on a real change.
_UPSERT_SITES = """
INSERT INTO sites AS s (site_code, name, name_th, kind, city, lat, lon, floor_area_m2, commissioned_on,
                        decommissioned_on)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                     %s::float8[], %s::float8[], %s::float8[], %s::date[], %s::date[])
ON CONFLICT (site_code) DO UPDATE SET
    name = EXCLUDED.name, name_th = EXCLUDED.name_th, kind = EXCLUDED.kind, city = EXCLUDED.city,
    lat = EXCLUDED.lat, lon = EXCLUDED.lon, floor_area_m2 = EXCLUDED.floor_area_m2,
    commissioned_on = EXCLUDED.commissioned_on, decommissioned_on = EXCLUDED.decommissioned_on, updated_at = now()
WHERE (s.name, s.name_th, s.kind, s.city, s.lat, s.lon, s.floor_area_m2, s.commissioned_on, s.decommissioned_on)
      IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.name_th, EXCLUDED.kind, EXCLUDED.city, EXCLUDED.lat, EXCLUDED.lon,
       EXCLUDED.floor_area_m2, EXCLUDED.commissioned_on, EXCLUDED.decommissioned_on)
RETURNING 1
"""

_UPSERT_DEVICES = """
INSERT INTO devices AS d (device_id, site_id, kind, name, cadence_s, rated_kw, register_modulus, commissioned_on,
                          decommissioned_on, replaces)
SELECT i.device_id, s.id, i.kind, i.name, i.cadence_s, i.rated_kw, i.register_modulus, i.commissioned_on,
       i.decommissioned_on, i.replaces
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int4[], %s::float8[], %s::float8[], %s::date[],
            %s::date[], %s::text[])
     AS i(device_id, site_code, kind, name, cadence_s, rated_kw, register_modulus, commissioned_on, decommissioned_on,
          replaces)
JOIN sites s ON s.site_code = i.site_code
ON CONFLICT (device_id) DO UPDATE SET
    site_id = EXCLUDED.site_id, kind = EXCLUDED.kind, name = EXCLUDED.name,
    cadence_s = EXCLUDED.cadence_s, rated_kw = EXCLUDED.rated_kw, register_modulus = EXCLUDED.register_modulus,
    commissioned_on = EXCLUDED.commissioned_on, decommissioned_on = EXCLUDED.decommissioned_on,
    replaces = EXCLUDED.replaces, updated_at = now()
WHERE (d.site_id, d.kind, d.name, d.cadence_s, d.rated_kw, d.register_modulus, d.commissioned_on,
       d.decommissioned_on, d.replaces)
      IS DISTINCT FROM
      (EXCLUDED.site_id, EXCLUDED.kind, EXCLUDED.name, EXCLUDED.cadence_s, EXCLUDED.rated_kw,
       EXCLUDED.register_modulus, EXCLUDED.commissioned_on, EXCLUDED.decommissioned_on, EXCLUDED.replaces)
RETURNING 1
"""


def _unique_sites(rows: Sequence[RegistryRow]) -> list[RegistryRow]:
    """First row of each site (imports.registry.parse_registry_csv has checked the others agree)."""
    first: dict[str, RegistryRow] = {}
    for r in rows:
        first.setdefault(r.site_code, r)
    return list(first.values())


# Column order of the unnest() arrays in the two upserts above.
_SITE_FIELDS = ("site_code", "site_name", "site_name_th", "site_kind", "city", "lat", "lon", "floor_area_m2",
                "site_commissioned_on", "site_decommissioned_on")  # fmt: skip
_DEVICE_FIELDS = (
    "device_id", "site_code", "device_kind", "device_name", "cadence_s", "rated_kw", "register_modulus",
    "commissioned_on", "decommissioned_on", "replaces",
)  # fmt: skip


def _columns(rows: Sequence[RegistryRow], fields: tuple[str, ...]) -> list[list[Any]]:
    return [[getattr(r, f) for r in rows] for f in fields]


def _upsert(conn: psycopg.Connection, count_sql: str, upsert_sql: str, columns: list[list[Any]]) -> UpsertCounts:
    """Run one upsert; the key is the first column. Counts come from the keys present before it ran."""
    keys = columns[0]
    existing = _scalar(conn, count_sql, (keys,))
    changed = len(conn.execute(upsert_sql, columns).fetchall())  # inserted + really updated rows
    inserted = len(keys) - existing
    return UpsertCounts(inserted=inserted, updated=changed - inserted, unchanged=existing - (changed - inserted))


def _scalar(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def _check_replaced(conn: psycopg.Connection, rows: Sequence[RegistryRow]) -> None:
    """Every ``replaces`` names a device of the file or of the registry: a row error, not a failed commit."""
    in_file = {r.device_id for r in rows}
    wanted = sorted({r.replaces for r in rows if r.replaces and r.replaces not in in_file})
    known = {str(r[0]) for r in conn.execute("SELECT device_id FROM devices WHERE device_id = ANY(%s)", (wanted,))}
    errors = [RowError(r.row, "replaces", r.replaces, "no device with this device_id in the file or the registry")
              for r in rows if r.replaces and r.replaces not in in_file and r.replaces not in known]  # fmt: skip
    if errors:
        raise RegistryInvalid(errors)


def import_registry(
    conn: psycopg.Connection, rows: Sequence[RegistryRow], *, scope: Scope | None = None
) -> ImportReport:
    """Upsert the sites and devices of validated rows in one transaction; returns what changed.

    With a ``scope`` (an API caller), every row must stay inside it: a row naming a site or a device of another
    organisation (or of a site outside the scope's sites), or a new site whose city is another organisation's, is a
    row error and nothing is written (``RegistryInvalid``). The sites of the file are then pinned to the caller's
    organisation (``sites.organisation_id``), so a later change of city keys cannot move them. ``scope=None`` (the
    command line, holding the database's own credentials) imports for any organisation."""
    sites = _unique_sites(rows)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_IMPORT_LOCK_KEY,))
        _check_replaced(conn, rows)
        if scope is not None:
            errors = _outside_scope(conn, rows, scope)
            if errors:
                raise RegistryInvalid(errors)
        site_counts = _upsert(conn, _COUNT_SITES, _UPSERT_SITES, _columns(sites, _SITE_FIELDS))
        device_counts = _upsert(conn, _COUNT_DEVICES, _UPSERT_DEVICES, _columns(rows, _DEVICE_FIELDS))
        if scope is not None:
            conn.execute(
                "UPDATE sites SET organisation_id = %s WHERE site_code = ANY(%s) AND organisation_id IS NULL",
                (scope.organisation_id, [r.site_code for r in sites]),
            )
    return ImportReport(sites=site_counts, devices=device_counts)


# --- credentials (013_device_credentials.sql) --------------------------------------------------------------------


def devices_without_credential(conn: psycopg.Connection, device_ids: Sequence[str]) -> list[str]:
    """Those of the given registered devices that have no credential yet, in the given order."""
    rows = conn.execute(
        "SELECT d.device_id FROM devices d LEFT JOIN device_credentials c ON c.device_id = d.id "
        "WHERE d.device_id = ANY(%s) AND c.device_id IS NULL",
        (list(device_ids),),
    ).fetchall()
    missing = {r[0] for r in rows}
    return [d for d in device_ids if d in missing]


def unknown_devices(conn: psycopg.Connection, device_ids: Sequence[str]) -> list[str]:
    """Those of the given ids that are not registered."""
    rows = conn.execute("SELECT device_id FROM devices WHERE device_id = ANY(%s)", (list(device_ids),)).fetchall()
    known = {r[0] for r in rows}
    return [d for d in device_ids if d not in known]


def store_credential_hashes(conn: psycopg.Connection, hashes: dict[str, str]) -> None:
    """Record each device's current credential (a hash of it): a new one, or a rotation of the stored one."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO device_credentials AS c (device_id, secret_hash)
            SELECT d.id, i.secret_hash FROM unnest(%s::text[], %s::text[]) AS i(device_id, secret_hash)
            JOIN devices d ON d.device_id = i.device_id
            ON CONFLICT (device_id) DO UPDATE SET
                secret_hash = EXCLUDED.secret_hash, issued_at = now(), rotations = c.rotations + 1
            """,
            (list(hashes), list(hashes.values())),
        )


def credential_hash(conn: psycopg.Connection, device_id: str) -> str | None:
    row = conn.execute(
        "SELECT c.secret_hash FROM device_credentials c JOIN devices d ON d.id = c.device_id WHERE d.device_id = %s",
        (device_id,),
    ).fetchone()
    return str(row[0]) if row else None


# --- organisation scope of an import -------------------------------------------------------------------------------


# Per row: whether its site and device exist, the organisation each belongs to now, the site's pinned organisation,
# and the organisation the row's city names (organisations.city_key).
_OWNERS = """
SELECT f.i, s.id, so.organisation_id, s.organisation_id, co.id, d.id IS NOT NULL, dso.organisation_id,
       d.site_id
FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[]) AS f(i, site_code, city, device_id)
LEFT JOIN sites s ON s.site_code = f.site_code
LEFT JOIN site_organisations so ON so.site_id = s.id
LEFT JOIN organisations co ON co.city_key = lower(f.city)
LEFT JOIN devices d ON d.device_id = f.device_id
LEFT JOIN site_organisations dso ON dso.site_id = d.site_id
ORDER BY f.i
"""


def _outside_scope(conn: psycopg.Connection, rows: Sequence[RegistryRow], scope: Scope) -> list[RowError]:
    """The rows that would create or change anything outside ``scope``, each with the reason."""
    org = scope.organisation_id
    found = conn.execute(
        _OWNERS,
        (list(range(len(rows))), [r.site_code for r in rows], [r.city for r in rows], [r.device_id for r in rows]),
    ).fetchall()
    errors = []
    for i, site_id, site_org, pinned, city_org, device_exists, device_org, device_site in found:
        r, site_exists = rows[i], site_id is not None
        if site_exists and (site_org != org or not _allows(scope, site_id)):
            errors.append(RowError(r.row, "site_code", r.site_code, f"site {r.site_code} is not one of your sites"))
        elif not site_exists and scope.site_ids is not None:
            errors.append(RowError(r.row, "site_code", r.site_code, "your scope is limited to its sites: no new site"))
        elif pinned is None and city_org is not None and city_org != org:
            errors.append(RowError(r.row, "city", r.city, f"{r.city} is the city of another organisation"))
        if device_exists and (device_org != org or not _allows(scope, device_site)):
            errors.append(RowError(r.row, "device_id", r.device_id, f"device {r.device_id} is not one of your devices"))
    return errors


def _allows(scope: Scope, site_id: int) -> bool:
    return scope.site_ids is None or site_id in scope.site_ids
