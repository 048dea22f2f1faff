"""Response models of ``GET /conflicts`` (api/routes/conflicts.py)."""

from __future__ import annotations

from pydantic import Field

from lccm.api.schemas import UtcTime, _Out


class ConflictOut(_Out):
    id: int
    device_id: str
    metric: str
    unit: str = Field(description="the metric's canonical unit (as in the message contract), of both values")
    ts: UtcTime = Field(description="event time of the reading")
    stored_value: float = Field(description="the value stored first, which stays (first wins)")
    offered_value: float = Field(description="the other value a later message offered, not stored")
    seq: int | None = Field(description="the offering message's sequence number, if it had one")
    received_at: UtcTime = Field(description="when the offering message was received")


class ConflictPage(_Out):
    items: list[ConflictOut] = Field(description="newest first by received_at")
    next_cursor: str | None
