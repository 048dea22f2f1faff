"""The device registry CSV: its columns (English or Thai headers), reading and validation. Pure.

``parse_registry_csv(data) -> list[RegistryRow]`` reads the whole file and either returns every row validated or
raises ``RegistryInvalid`` carrying one ``RowError`` per problem (row number as in the file, column as written in its
header, the value, a message), so a person can fix the spreadsheet in one pass. ``store.devices.import_registry``
writes the rows.

The file has one row per device with its site's columns repeated. Headers may be English or Thai, in any case, with
spaces or underscores, and the file may start with the UTF-8 BOM Excel writes. A blank cell or a missing optional
column means "no value": the registry file is the source of truth, so re-importing it clears what it leaves blank.

``register_modulus`` (optional) is where the device's cumulative register wraps to 0, in the metric's canonical unit
(kWh for energy, l for fuel): a meter showing at most 99999.99 kWh in steps of 0.01 wraps at 100000, and so does one
showing at most 99999999 Wh in steps of 1. Blank means unknown or no rollover; only devices with a register
(electricity meters, streetlight cabinets, fuel meters) may have one.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lccm.imports.limits import DEFAULT_LIMITS, InputLimits
from lccm.imports.rows import NUL_MESSAGE, RowError, RowsInvalid, first_nul_line, normalise_header

SiteKind = Literal["building", "street", "station", "fleet", "plant"]
DeviceKind = Literal["electricity_meter", "streetlight_cabinet", "lamp", "aq_station", "fuel_meter"]
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Topic levels the product publishes on (docs/contract.md#topics; ingest/topic.py RESERVED_DEVICE_IDS, tied by a
# test): a device with such an id would publish where alert consumers read.
RESERVED_DEVICE_IDS = frozenset({"alerts"})
# A device id is also its MQTT user name and client id (docs/contract.md#authentication). The product's own broker
# identities (ingest workers, the alert publisher, alert readers, the broker admin: lccm/mqtt_identity.py) all start
# with this prefix, so no device credential can ever carry a service's name or take a service's session. Compared
# case-insensitively ("LCCM-ingest-1" would be a different broker user, but reads as the same to a person).
RESERVED_IDENTITY_PREFIX = "lccm"
_RESERVED_IDENTITY = re.compile(rf"^{RESERVED_IDENTITY_PREFIX}([-_.]|$)", re.IGNORECASE)


def is_reserved_identity(name: str) -> bool:
    """Whether ``name`` is in the broker namespace kept for the product's own services (``lccm``, ``lccm-...``,
    ``lccm_...``, ``lccm....``, any case) or is a reserved topic level."""
    return name in RESERVED_DEVICE_IDS or _RESERVED_IDENTITY.match(name) is not None


CITY_SLUG_MAX = 32
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def city_slug(city: str) -> str | None:
    """The ``<city>`` level of a device's MQTT topics (docs/contract.md#topics), from its site's registry city: the
    name case-folded, accents dropped, every run of other characters one ``-``, at most 32 characters
    (``Khon Kaen`` -> ``khon-kaen``). None when the name has no Latin letter or digit (a name in Thai script only).
    The one definition: the ingest checks topics against it and the alert topic is built with it."""
    ascii_name = unicodedata.normalize("NFKD", city).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")
    return slug[:CITY_SLUG_MAX].rstrip("-") or None


# Canonical column -> Thai header. Both spellings are accepted; see imports.rows.normalise_header for the folding.
COLUMNS: dict[str, str] = {
    "site_code": "รหัสสถานที่",
    "site_name": "ชื่อสถานที่",
    "site_name_th": "ชื่อสถานที่ภาษาไทย",
    "site_kind": "ประเภทสถานที่",
    "city": "เมือง",
    "lat": "ละติจูด",
    "lon": "ลองจิจูด",
    "floor_area_m2": "พื้นที่ใช้สอย_ตร.ม.",
    "device_id": "รหัสอุปกรณ์",
    "device_kind": "ประเภทอุปกรณ์",
    "device_name": "ชื่ออุปกรณ์",
    "cadence_s": "รอบส่งข้อมูล_วินาที",
    "rated_kw": "พิกัดกำลัง_กิโลวัตต์",
    "register_modulus": "ค่าวนกลับของมิเตอร์",
    # Dated assets (issue 15): ISO dates (CE), Bangkok days; see ``DATE_COLUMNS_DOC``.
    "site_commissioned_on": "วันเริ่มใช้สถานที่",
    "site_decommissioned_on": "วันเลิกใช้สถานที่",
    "commissioned_on": "วันเริ่มใช้งาน",
    "decommissioned_on": "วันเลิกใช้งาน",
    "replaces": "แทนอุปกรณ์",
}
REQUIRED_COLUMNS = frozenset(
    {"site_code", "site_name", "site_kind", "city", "device_id", "device_kind", "device_name", "cadence_s"}
)
# The columns that describe a site; rows sharing a site_code must agree on all of them.
SITE_COLUMNS = ("site_name", "site_name_th", "site_kind", "city", "lat", "lon", "floor_area_m2",
                "site_commissioned_on", "site_decommissioned_on")  # fmt: skip
# Device kinds with a cumulative register (energy or fuel), the only ones a register_modulus applies to.
REGISTER_KINDS = frozenset({"electricity_meter", "streetlight_cabinet", "fuel_meter"})

# Header row is line 1 of the file; errors about the file as a whole use it too.
HEADER_ROW = 1


class RegistryInvalid(RowsInvalid):
    """The file failed validation; nothing was written. ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[RowError], *, max_listed: int | None = None) -> None:
        super().__init__(f"{len(errors)} error(s) in the device registry file", errors, max_listed=max_listed)


class RegistryRow(BaseModel):
    """One validated row: a device and the site it belongs to."""

    # allow_inf_nan=False: "inf" and "nan" parse as floats and would slip past the range checks.
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, allow_inf_nan=False)

    row: int = Field(exclude=True)
    site_code: str = Field(min_length=1)
    site_name: str = Field(min_length=1)
    site_name_th: str | None = None
    site_kind: SiteKind
    city: str = Field(min_length=1)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    floor_area_m2: float | None = Field(default=None, gt=0)
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    device_kind: DeviceKind
    device_name: str = Field(min_length=1)
    cadence_s: int = Field(gt=0)
    rated_kw: float | None = Field(default=None, ge=0)
    register_modulus: float | None = Field(default=None, gt=0)  # canonical unit (kWh, l); None = no rollover
    # In service over [commissioned_on, decommissioned_on), Bangkok days; None = since always / until further notice.
    site_commissioned_on: date | None = None
    site_decommissioned_on: date | None = None
    commissioned_on: date | None = None
    decommissioned_on: date | None = None
    replaces: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)  # the device_id this device replaced

    @field_validator("site_commissioned_on", "site_decommissioned_on", "commissioned_on", "decommissioned_on")
    @classmethod
    def _common_era(cls, v: date | None) -> date | None:
        return check_common_era(v)

    @field_validator("site_decommissioned_on", "decommissioned_on")
    @classmethod
    def _after_commissioning(cls, v: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("commissioned_on" if info.field_name == "decommissioned_on" else "site_commissioned_on")
        if v is not None and start is not None and v <= start:
            raise ValueError(f"must be after the commissioning date {start.isoformat()} (the first day out of service)")
        return v

    @field_validator("replaces")
    @classmethod
    def _not_itself(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and v == info.data.get("device_id"):
            raise ValueError("a device cannot replace itself")
        return v

    @field_validator("site_kind", "device_kind", mode="before")
    @classmethod
    def _fold_kind(cls, v: Any) -> Any:
        # Spreadsheet users type "Building"; the kinds themselves are lower-case identifiers.
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("city")
    @classmethod
    def _city_has_a_slug(cls, v: str) -> str:
        if city_slug(v) is None:
            raise ValueError(
                "write the municipality's name in Latin letters (e.g. Lampang, Khon Kaen): it gives the <city> of "
                "the devices' MQTT topics (lampang, khon-kaen)"
            )
        return v

    @field_validator("device_id")
    @classmethod
    def _device_id_not_reserved(cls, v: str) -> str:
        if v in RESERVED_DEVICE_IDS:
            raise ValueError(f"{v!r} is reserved: the product publishes on lccm/v1/<city>/{v}/...")
        if is_reserved_identity(v):
            raise ValueError(
                f"{v!r} is reserved: device ids starting with {RESERVED_IDENTITY_PREFIX!r} followed by '-', '_', '.' "
                "or nothing are the product's own MQTT identities (ingest, alert publisher and readers, broker admin)"
            )
        return v

    @model_validator(mode="after")
    def _lat_lon_together(self) -> RegistryRow:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together (or both left blank)")
        return self

    @field_validator("register_modulus")
    @classmethod
    def _modulus_needs_a_register(cls, v: float | None, info: ValidationInfo) -> float | None:
        # A field validator (device_kind is declared earlier, so it is in info.data when valid): the error then
        # names the register_modulus column.
        kind = info.data.get("device_kind")
        if v is not None and kind is not None and kind not in REGISTER_KINDS:
            kinds = ", ".join(sorted(REGISTER_KINDS))
            raise ValueError(f"a {kind} has no register; register_modulus applies only to {kinds}")
        return v


BE_YEAR_FROM = 2400  # a year this high is a Buddhist-era year typed into a CE date (2569 BE = 2026 CE)


def check_common_era(v: date | None) -> date | None:
    """A service date in CE: 2569-03-01 is 2026-03-01 typed in the Buddhist era, refused with the fix."""
    if v is not None and v.year >= BE_YEAR_FROM:
        raise ValueError(f"year {v.year} looks like a Buddhist-era year: write the CE date "
                         f"({v.replace(year=v.year - 543).isoformat()})")  # fmt: skip
    return v


_HEADER_LOOKUP: dict[str, str] = {
    normalise_header(alias): canonical for canonical, thai in COLUMNS.items() for alias in (canonical, thai)
}


def _decode(data: bytes | str) -> str:
    if isinstance(data, bytes):
        # utf-8-sig drops the BOM Excel puts at the start of "CSV UTF-8" files.
        return data.decode("utf-8-sig")
    return data.removeprefix("\ufeff")


def _map_header(header: list[str]) -> tuple[dict[int, str], list[RowError]]:
    """Column index -> canonical name, plus errors for unknown, duplicated or missing columns."""
    mapping: dict[int, str] = {}
    errors: list[RowError] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(header):
        if not raw.strip():
            continue  # Excel leaves empty trailing header cells; their data cells must be empty too (checked later)
        canonical = _HEADER_LOOKUP.get(normalise_header(raw))
        if canonical is None:
            errors.append(RowError(HEADER_ROW, raw, raw, "unknown column; expected one of: " + ", ".join(COLUMNS)))
        elif canonical in seen:
            errors.append(RowError(HEADER_ROW, raw, raw, f"same column as {seen[canonical]!r}"))
        else:
            seen[canonical] = raw
            mapping[index] = canonical
    for missing in sorted(REQUIRED_COLUMNS - set(seen)):
        message = f"required column missing (English {missing!r} or Thai {COLUMNS[missing]!r})"
        errors.append(RowError(HEADER_ROW, missing, "", message))
    return mapping, errors


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, cells), skipping blank lines; quoted cells may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise RegistryInvalid([RowError(start, "", "", f"not valid CSV: {exc}")]) from exc


def _validate_row(
    line: int, cells: list[str], mapping: dict[int, str], labels: dict[str, str]
) -> tuple[RegistryRow | None, list[RowError]]:
    raw: dict[str, str] = {}
    errors: list[RowError] = []
    for index, value in enumerate(cells):
        if index in mapping:
            raw[mapping[index]] = value
        elif value.strip():
            errors.append(RowError(line, f"column {index + 1}", value, "value in a column with no header"))
    values: dict[str, Any] = {k: v for k, v in raw.items() if v.strip()}  # blank = no value
    try:
        row = RegistryRow(row=line, **values)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            column = str(err["loc"][0]) if err["loc"] else ""
            errors.append(RowError(line, labels.get(column, column), raw.get(column, ""), _message(err)))
        return None, errors
    return (row if not errors else None), errors


_FRIENDLY = {
    "missing": "required value is blank",
    "string_pattern_mismatch": "must start with a letter or digit and contain only letters, digits, '_', '.' "
    "and '-' (at most 64 characters)",
}


def _message(err: Any) -> str:
    if err["type"] in _FRIENDLY:
        return _FRIENDLY[err["type"]]
    return str(err["msg"]).removeprefix("Value error, ")


def _duplicate_ids(device_ids: Sequence[tuple[int, str]], label: str) -> list[RowError]:
    """A device id used twice. Checked on the raw cells so a duplicate shows even on a row with other errors."""
    errors: list[RowError] = []
    first: dict[str, int] = {}
    for line, device_id in device_ids:
        if device_id in first:
            errors.append(RowError(line, label, device_id, f"duplicate device_id, first on row {first[device_id]}"))
        else:
            first[device_id] = line
    return errors


def _site_conflicts(rows: Sequence[RegistryRow], labels: dict[str, str]) -> list[RowError]:
    """Rows naming the same site_code must describe it the same way (compared after parsing: 18.3 == 18.30)."""
    errors: list[RowError] = []
    first: dict[str, RegistryRow] = {}
    for row in rows:
        site = first.setdefault(row.site_code, row)
        for col in SITE_COLUMNS:
            mine, theirs = getattr(row, col), getattr(site, col)
            if mine != theirs:
                value = "" if mine is None else str(mine)
                message = f"site {row.site_code!r} has {col} = {theirs!r} on row {site.row}"
                errors.append(RowError(row.row, labels.get(col, col), value, message))
    return errors


def parse_registry_csv(data: bytes | str, limits: InputLimits = DEFAULT_LIMITS) -> list[RegistryRow]:
    """Validate a whole registry file. Returns every row, or raises ``RegistryInvalid`` listing the problems (the
    first ``limits.max_errors_listed``, with the count of all)."""
    try:
        text = _decode(data)
    except UnicodeDecodeError as exc:
        message = f"file is not UTF-8 ({exc.reason} at byte {exc.start}); save it as 'CSV UTF-8'"
        raise RegistryInvalid([RowError(HEADER_ROW, "", "", message)]) from exc
    if (line := first_nul_line(text)) is not None:
        raise RegistryInvalid([RowError(line, "", "", NUL_MESSAGE)])
    records = _records(text)
    header = next(records, None)
    if header is None:
        raise RegistryInvalid([RowError(HEADER_ROW, "", "", "file is empty")])
    mapping, errors = _map_header(header[1])
    if errors:  # row checks against a wrong header would only add noise
        raise RegistryInvalid(errors, max_listed=limits.max_errors_listed)
    labels = {canonical: header[1][index].strip() for index, canonical in mapping.items()}
    device_col = next(i for i, c in mapping.items() if c == "device_id")
    rows: list[RegistryRow] = []
    device_ids: list[tuple[int, str]] = []
    for line, cells in records:
        row, row_errors = _validate_row(line, cells, mapping, labels)
        errors.extend(row_errors)
        if row is not None:
            rows.append(row)
        if device_col < len(cells) and cells[device_col].strip():
            device_ids.append((line, cells[device_col].strip()))
    if not device_ids and not errors:
        errors.append(RowError(HEADER_ROW, "", "", "file has a header but no device rows"))
    errors.extend(_duplicate_ids(device_ids, labels["device_id"]))
    errors.extend(_site_conflicts(rows, labels))
    if errors:
        raise RegistryInvalid(sorted(errors, key=lambda e: e.row), max_listed=limits.max_errors_listed)
    return rows
