"""The data of the live feed's events (GET /live/events, api/live.py): one JSON object per event, by event name.
The OpenAPI document carries them as the stream's item schema; tests/test_live_feed.py checks each event it
receives against them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PowerEventData(_Data):
    """event: power. A site's live power changed (and every site in scope once when the stream opens)."""

    site_code: str
    power_w: float | None = Field(description="as GET /sites/{code}/live power_w at as_of; null: no fresh power")
    power_devices: int = Field(description="devices whose fresh power is counted")
    as_of: datetime


class AlertEventData(_Data):
    """event: alert (with id: the event id, for Last-Event-ID). An alert changed."""

    event_id: int
    alert_id: int
    kind: Literal["raised", "reopened", "acknowledged", "cleared", "closed", "revised"]
    at: datetime = Field(
        description="event time (raised, cleared ...) or wall time (acknowledged, closed, revised: the evaluator's"
        " correction once readings that arrived late are known)"
    )
    site_code: str
    device_id: str | None
    rule_key: str
    signal: str
    severity: Literal["info", "warning", "critical"]
    state: Literal["open", "acknowledged", "cleared", "closed"] = Field(description="the alert's state when read")
    value: float | None
    actor: str | None = Field(description="who acknowledged or closed it")


class AqiEventData(_Data):
    """event: aqi. An AQI hour of a station was (re)computed."""

    station: str = Field(description="the station's device id")
    site_code: str
    index: Literal["thai_pcd_2023", "us_epa_2024", "us_epa_2024_nowcast"]
    hour_start: datetime
    aqi: float | None = Field(description="null when withheld")
    category: int | None = Field(description="the index's category number, 0 = best")
    responsible: str | None
    status: Literal["complete", "incomplete", "withheld"]


EVENT_DATA: dict[str, type[_Data]] = {"power": PowerEventData, "alert": AlertEventData, "aqi": AqiEventData}


def stream_openapi() -> dict[str, Any]:
    """The 200 answer's text/event-stream content: each event's data schema, inline (OpenAPI 3.2 itemSchema)."""
    data = [
        {**model.model_json_schema(mode="serialization"), "title": f"data of event: {name}"}
        for name, model in EVENT_DATA.items()
    ]
    return {
        "itemSchema": {
            "type": "object",
            "properties": {
                "event": {"type": "string", "enum": list(EVENT_DATA)},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"oneOf": data}},
                "id": {"type": "string", "description": "alert events only: the event id"},
                "retry": {"type": "integer", "minimum": 0},
            },
        },
    }
