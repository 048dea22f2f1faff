"""Response models. Units are in field names where a field has one fixed unit (``cadence_s``, ``rated_kw``); a
reading's unit varies with its metric, so readings carry ``value`` with a ``unit`` field beside it (the metric's
canonical unit, docs/contract.md). Every time is serialised as ISO 8601 in UTC with a ``Z``; where a Bangkok
calendar boundary matters (days, months) a ``*_local`` twin gives the same instant with its +07:00 offset.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from lccm.engine.timebase import BANGKOK


def _iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[
    datetime,
    PlainSerializer(_iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


_Date = date  # the response field is called date


def _iso_bangkok(value: datetime) -> str:
    return value.astimezone(BANGKOK).isoformat()


BangkokTime = Annotated[
    datetime,
    PlainSerializer(_iso_bangkok, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]

# energy_buckets.quality, worst first from the right: the engine's codes (engine/kernels.py Q_*).
QUALITY_LABELS: tuple[str, ...] = ("measured", "estimated", "suspect", "missing")
Quality = Literal["measured", "estimated", "suspect", "missing"]
_QUALITY_DOC = "worst quality: 0 measured, 1 estimated, 2 suspect, 3 missing"


def quality_label(code: int | None) -> Quality | None:
    return None if code is None else QUALITY_LABELS[code]  # type: ignore[return-value]  # one of the literals


class _Out(BaseModel):
    # from_attributes: routes hand over the store's dataclasses as they are.
    model_config = ConfigDict(from_attributes=True)


class HealthOut(_Out):
    status: Literal["ok", "unavailable"]
    database_reachable: bool
    layout: str | None = Field(default=None, description="readings layout chosen at migrate time (store_layout)")
    readings_estimate: int | None = Field(default=None, description="planner estimate of the readings row count")
    last_received_at: UtcTime | None = Field(
        default=None, description="latest arrival among readings whose event time is within the last 7 days"
    )
    detail: str | None = None


class LiveOut(_Out):
    status: Literal["live"]


class ReadyOut(_Out):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Any] = Field(description="database: ok/unreachable; schema: current/behind; migrations named")
    reasons: list[str] = Field(description="why not ready, one line each (empty when ready)")


class SiteOut(_Out):
    site_code: str
    name: str
    name_th: str | None
    kind: str
    city: str
    lat: float | None
    lon: float | None
    floor_area_m2: float | None
    device_count: int
    updated_at: UtcTime


class DeviceOut(_Out):
    device_id: str
    site_code: str
    kind: str
    name: str
    cadence_s: int
    rated_kw: float | None
    status: str | None = Field(description="last retained status message: online / offline, null if never seen")
    status_changed_at: UtcTime | None
    updated_at: UtcTime


class SiteDetailOut(SiteOut):
    devices: list[DeviceOut]


class DevicePage(_Out):
    items: list[DeviceOut]
    next_cursor: str | None


class LatestValueOut(_Out):
    device_id: str
    metric: str
    unit: str = Field(description="canonical unit of the metric")
    ts: UtcTime = Field(description="event time (device clock)")
    value: float
    received_at: UtcTime


class DeviceLatestOut(_Out):
    device_id: str
    values: list[LatestValueOut]


class SiteLatestOut(_Out):
    site_code: str
    values: list[LatestValueOut]


class ReadingOut(_Out):
    metric: str
    unit: str = Field(description="canonical unit of the metric")
    ts: UtcTime = Field(description="event time (device clock)")
    value: float
    seq: int | None
    received_at: UtcTime


class ReadingPage(_Out):
    device_id: str
    items: list[ReadingOut] = Field(description="ordered by metric, then event time")
    next_cursor: str | None


class DeadLetterOut(_Out):
    id: int
    received_at: UtcTime
    topic: str
    reason: str
    detail: str
    device_ref: str | None
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = Field(
        description="utf-8 when the raw payload was valid UTF-8 (shown as text), else base64 of the raw bytes"
    )
    payload_bytes: int


class DeadLetterPage(_Out):
    items: list[DeadLetterOut] = Field(description="newest first")
    next_cursor: str | None


class ReasonCountOut(_Out):
    reason: str
    count: int
    first_received_at: UtcTime
    last_received_at: UtcTime


class DeadLetterSummary(_Out):
    total: int
    reasons: list[ReasonCountOut]


class UpsertCountsOut(_Out):
    inserted: int
    updated: int
    unchanged: int


class ImportReportOut(_Out):
    rows: int
    sites: UpsertCountsOut
    devices: UpsertCountsOut


class RowErrorOut(_Out):
    row: int = Field(description="line in the file where the record starts; the header is row 1")
    column: str
    value: str
    message: str


# --- errors (api/errors.py answers them; api/openapi.py documents them on every operation) -------------------------


class ErrorOut(BaseModel):
    """Every error the API raises itself: a stable code and a message for people (some add fields, e.g. 409's
    ``state``)."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="stable machine-readable code, e.g. site_not_found, database_unavailable")
    detail: str


class RowErrorsOut(ErrorOut):
    """An input refused row by row (a file, a list of entries); nothing of it was written."""

    errors: list[RowErrorOut] = Field(description="the first problems found (setting import_max_errors_listed)")
    errors_total: int = Field(description="how many problems were found in all")


class ProblemOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # FastAPI adds input and ctx

    type: str
    loc: list[str | int] = Field(description="where: path, query, header or body, then the name (and path within)")
    msg: str


class ParameterErrorOut(BaseModel):
    """A parameter or a body field that cannot be taken: the request's shape, or a value the server refuses (a NUL
    character, a date outside 1900-2199, a number out of range)."""

    detail: list[ProblemOut]


class HttpErrorOut(BaseModel):
    """A request the server cannot read at all (e.g. a body that is not UTF-8)."""

    detail: str


# --- energy and emissions ------------------------------------------------------------------------------------------


class LiveDeviceOut(_Out):
    device_id: str
    kind: str
    cadence_s: int
    power_w: float | None = Field(description="latest power reading by event time, fresh or stale; null if none")
    power_ts: UtcTime | None
    power_stale: bool | None = Field(
        description="the latest power reading is older than 3 x cadence_s, so it is not in the site's power_w"
    )
    energy_today_kwh: float
    fuel_today_l: float
    kgco2e_today: float
    quality: int | None = Field(description=_QUALITY_DOC + " of today's buckets; null if none")


class SiteLiveOut(_Out):
    site_code: str
    as_of: UtcTime
    day_start: UtcTime = Field(description="today's 00:00 in Asia/Bangkok: the start of the *_today sums")
    day_start_local: BangkokTime
    power_w: float | None = Field(
        description="sum of each device's latest power reading, counting only readings newer than 3 x the device's "
        "cadence; null when no device contributed. Lamps are left out: their cabinet's meter measures them too"
    )
    power_devices: int = Field(description="devices whose latest power reading is fresh (summed in power_w)")
    power_devices_stale: int = Field(description="devices whose latest power reading is too old to count")
    energy_today_kwh: float
    fuel_today_l: float
    kgco2e_today: float = Field(description="electricity and fuel, at the factors in force")
    quality: int | None = Field(description=_QUALITY_DOC + " of today's 15-minute buckets; null if none")
    quality_label: Quality | None
    devices: list[LiveDeviceOut]


class EnergyRowOut(_Out):
    bucket_start: UtcTime
    bucket_start_local: BangkokTime = Field(description="bucket_start in Asia/Bangkok time (+07:00)")
    group: str | None = Field(
        description="the group_by value (site_code, device_id, device kind, scope '1'/'2'/'3', TGO CFO category, "
        "GPC reference, city); null for devices without a source class for this metric"
    )
    metric: Literal["energy", "fuel"]
    unit: str = Field(description="unit of amount: kWh for energy, l for fuel")
    amount: float
    kgco2e: float = Field(description="at the emission factor in force over each part of each interval")
    kgco2e_base_year: float = Field(description="at the base year's factor, like-for-like with the baseline")
    quality: int = Field(description=_QUALITY_DOC)
    quality_label: Quality
    covered_fraction: float | None = Field(
        description="seconds covered by reading intervals / (the bucket's elapsed seconds x devices); null for a "
        "bucket that has not started"
    )
    devices: int = Field(
        description="devices of the group metering this metric: those whose source class is for it, plus any "
        "other with data in the range"
    )


class EmissionFactorOut(_Out):
    key: str
    kgco2e_per_unit: float
    unit: str = Field(description="activity unit the factor applies to (kWh, L, kg, MJ, scf)")
    source: str
    valid_from: UtcTime | None = Field(description="inclusive; null = since always")
    valid_to: UtcTime | None = Field(description="exclusive; null = until further notice")
    description: str


class EnergyOut(_Out):
    start: UtcTime = Field(description="'from' as given: buckets starting at or after it")
    end: UtcTime = Field(description="'to' as given: buckets starting before it")
    interval: Literal["15min", "1h", "1d", "1mo", "fy"]
    group_by: str
    rows: list[EnergyRowOut] = Field(description="ordered by bucket_start, group (null last), metric")
    factors: list[EmissionFactorOut] = Field(
        description="emission factors in force at some instant of the range, for the source classes of the "
        "devices in scope"
    )


class CompletenessCounts(_Out):
    expected: int = Field(description="readings expected: elapsed seconds of the day / cadence_s, summed")
    received: int = Field(description="distinct event times received (over all metrics), summed")
    completeness_pct: float | None = Field(
        description="100 x received / expected, each device's received capped at its expected (a device sending "
        "more often than its cadence cannot make up for another); null when nothing was expected"
    )
    messages_expected: int | None = Field(description="seq_last - seq_first + 1, summed over devices sending seq")
    messages_received: int | None = Field(description="distinct sequence numbers received")
    messages_lost: int | None = Field(description="messages_expected - messages_received")


class DeviceCompletenessOut(CompletenessCounts):
    device_id: str
    site_code: str
    kind: str
    cadence_s: int
    seq_first: int | None
    seq_last: int | None


class SiteCompletenessOut(CompletenessCounts):
    site_code: str
    devices: int


class TotalCompletenessOut(CompletenessCounts):
    devices: int


class CompletenessOut(_Out):
    date: _Date = Field(description="the Asia/Bangkok calendar day")
    day_start: UtcTime
    day_end: UtcTime
    as_of: UtcTime = Field(description="expected counts run to min(day_end, as_of)")
    total: TotalCompletenessOut
    sites: list[SiteCompletenessOut]
    devices: list[DeviceCompletenessOut]
