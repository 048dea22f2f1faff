"""Response models. Units are in field names where a field has one fixed unit (``cadence_s``, ``rated_kw``); a
reading's unit varies with its metric, so readings carry ``value`` with a ``unit`` field beside it (the metric's
canonical unit, docs/contract.md). Every time is serialised as ISO 8601 in UTC with a ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema


def _iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[
    datetime,
    PlainSerializer(_iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


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


class ImportErrorOut(_Out):
    error: Literal["registry_invalid"]
    detail: str
    errors: list[RowErrorOut]
