"""Request and response models of the alert routes. Event times (started_at, raised_at, cleared_at, an event's
``at`` for raised/cleared) are the readings' times; detected_at, acknowledged_at and closed_at are wall-clock
times. Every time is ISO 8601 UTC with a ``Z``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lccm.api.schemas import UtcTime

AlertState = Literal["open", "acknowledged", "cleared", "closed"]
Severity = Literal["info", "warning", "critical"]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # the store's dataclasses are handed over as they are


class AlertOut(_Out):
    id: int
    rule_key: str
    rule_name_en: str | None = Field(description="null when the rule has since been deleted")
    rule_name_th: str | None
    dedup_key: str
    device_id: str | None
    site_code: str | None
    signal: str = Field(description="metric key (pm25_ugm3 ...), index (aqi_th) or 'device' for offline")
    severity: Severity
    state: AlertState
    started_at: UtcTime = Field(description="event time the condition began")
    raised_at: UtcTime = Field(description="event time the raise condition (with its minimum duration) was met")
    raised_value: float | None
    threshold: float | None
    peak_value: float | None
    cleared_at: UtcTime | None
    cleared_value: float | None
    clear_reason: str | None = Field(description="condition, schedule (its schedule ended) or data_resumed")
    acknowledged_by: str | None
    acknowledged_at: UtcTime | None
    ack_note: str | None
    closed_by: str | None
    closed_at: UtcTime | None
    close_note: str | None
    late: bool = Field(description="raised from data that arrived after the lateness horizon: recorded, not paged")
    flaps: int = Field(description="times re-raised within the rule's hold-off after a clear (reopened)")
    detected_at: UtcTime = Field(description="wall-clock time the system raised it")


class AlertEventOut(_Out):
    id: int
    kind: Literal["raised", "reopened", "duplicate", "acknowledged", "cleared", "closed"]
    at: UtcTime
    value: float | None
    device_id: str | None
    actor: str | None
    note: str | None
    late: bool
    page: bool = Field(description="handed to the notifier")
    notified_at: UtcTime | None
    recorded_at: UtcTime


class AlertDetailOut(AlertOut):
    events: list[AlertEventOut]


class AlertPage(_Out):
    items: list[AlertOut]
    next_cursor: str | None


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(min_length=1, max_length=100, description="who (a name or user id)")
    note: str | None = Field(default=None, max_length=2000)


class AlertRuleOut(_Out):
    key: str
    origin: Literal["file", "api"]
    version: int
    updated_at: UtcTime
    definition: dict[str, Any] = Field(description="the rule as validated (durations in seconds)")
