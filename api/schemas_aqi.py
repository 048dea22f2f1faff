"""Response models of the air-quality routes (/aqi/current, /aqi/history, /aqi/stations.geojson).

Every index row carries its status and, per measured pollutant, the coverage of its sub-index (engine/aqi.py,
docs/reference.md#averaging-and-completeness): an index from incomplete data, or withheld, says so and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["complete", "incomplete", "withheld"]
STATUS_DOC = (
    "complete: every measured pollutant's sub-index meets its averaging rule; incomplete: a measured pollutant is "
    "withheld (listed in missing) or a sub-index comes from fewer hours than its rule needs - the AQI is the "
    "highest sub-index there is, a lower bound; withheld: no sub-index could be computed, no AQI"
)


class CategoryOut(BaseModel):
    index: int
    name_en: str
    name_th: str
    colour: str
    colour_hex: str
    aqi_lo: int
    aqi_hi: int | None


class CoverageOut(BaseModel):
    """How a sub-index's averaging window is covered: the rule is at least ``needed`` of the latest
    ``of_latest_h`` hours with data (an average: of its whole window; a NowCast: 2 of the 3 latest hours)."""

    series: str = Field(description="the series looked up: pm25_24h, o3_8h, no2_1h, pm25_nowcast ...")
    status: Status
    window_h: int = Field(description="hours in the averaging window")
    hours_with_data: int = Field(description="hours of the window with an hourly mean")
    needed: int = Field(description="hours with data the rule needs (ceil(completeness x window) for an average)")
    of_latest_h: int = Field(description="the latest hours the needed ones must lie in")
    latest_with_data: int = Field(description="hours with data among those latest hours")


class StationAqiOut(BaseModel):
    device_id: str
    name: str
    site_code: str
    lat: float | None
    lon: float | None
    hour_start: datetime = Field(description="the hour the index is for; the running hour is recomputed live")
    status: Status = Field(description=STATUS_DOC)
    reason: str | None = Field(description="what is incomplete or withheld, and why; null when complete")
    missing: list[str] = Field(description="measured pollutants whose sub-index is withheld")
    aqi: int | None = Field(description="the highest sub-index; a lower bound when incomplete; null when withheld")
    responsible: str | None = Field(description="the pollutant with the highest sub-index")
    category: CategoryOut | None
    sub_index: dict[str, int] = Field(description="the sub-indices that could be computed")
    average: dict[str, float] = Field(description="window averages, in the store's canonical units")
    coverage: dict[str, CoverageOut] = Field(description="per measured pollutant, its sub-index's coverage")


class StationProperties(BaseModel):
    device_id: str
    name: str
    site_code: str
    index: str
    status: Status = Field(description=STATUS_DOC + "; a station with no data yet is withheld")
    reason: str | None
    missing: list[str]
    aqi: int | None
    hour_start: str | None = Field(description="ISO 8601 hour the index is for")
    responsible: str | None
    category_en: str | None
    category_th: str | None
    colour: str | None = Field(
        description="the category's colour when the index is complete, or incomplete but already past the "
        "categories that call the air good (a lower bound there is a warning whatever is missing); null otherwise "
        "(grey on a map): a station is never painted good by omission"
    )


class PointGeometry(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float] = Field(description="[longitude, latitude] (RFC 7946)")


class StationFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: PointGeometry | None
    properties: StationProperties


class StationCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[StationFeature]
