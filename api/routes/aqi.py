"""Air-quality indices per station: the current (running hour) AQI, its history, and a GeoJSON layer for maps.

Rows come from ``aqi_hourly`` (migration 006), which the AQI updater keeps from the stored hourly means. The Thai
AQI (PCD, table in force since 1 June 2023) is primary; the US EPA AQI (2024) and the EPA NowCast of PM are
secondary, and NowCast is an early-warning overlay, never the Thai AQI (docs/reference.md#air-quality).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lccm.api.deps import Conn, RequiredFrom, RequiredTo, check_range
from lccm.api.errors import InvalidParameter, ResultTooLarge
from lccm.api.schemas import StationsGeoJsonOut
from lccm.engine.aqi_tables import EPA_CATEGORIES, THAI_CATEGORIES, Category
from lccm.store import aqi as aqi_store

router = APIRouter(prefix="/aqi", tags=["air quality"])

IndexName = Literal["thai", "epa", "nowcast"]
INDEX_KEYS: dict[str, str] = {"thai": "thai_pcd_2023", "epa": "us_epa_2024", "nowcast": "us_epa_2024_nowcast"}
CATEGORIES: dict[str, tuple[Category, ...]] = {
    "thai": THAI_CATEGORIES,
    "epa": EPA_CATEGORIES,
    "nowcast": EPA_CATEGORIES,
}
MAX_HISTORY = timedelta(days=366)
MAX_ROWS = 50_000
IndexQuery = Annotated[
    IndexName, Query(description="thai = PCD 2023 (primary); epa = US EPA 2024; nowcast = EPA NowCast of PM")
]


class CategoryOut(BaseModel):
    index: int
    name_en: str
    name_th: str
    colour: str
    colour_hex: str
    aqi_lo: int
    aqi_hi: int | None


class StationAqiOut(BaseModel):
    device_id: str
    name: str
    site_code: str
    lat: float | None
    lon: float | None
    hour_start: datetime = Field(description="the hour the index is for; the running hour is recomputed live")
    aqi: int
    responsible: str = Field(description="the pollutant with the highest sub-index")
    category: CategoryOut
    sub_index: dict[str, int]
    average: dict[str, float] = Field(description="window averages, in the store's canonical units")


def _category(index: str, k: int) -> CategoryOut:
    c = CATEGORIES[index][k]
    return CategoryOut(
        index=c.index, name_en=c.name_en, name_th=c.name_th, colour=c.colour_name, colour_hex=c.colour_hex,
        aqi_lo=c.aqi_lo, aqi_hi=c.aqi_hi,
    )  # fmt: skip


def _out(index: str, r: aqi_store.StationAqi) -> StationAqiOut:
    return StationAqiOut(
        device_id=r.device_id, name=r.name, site_code=r.site_code, lat=r.lat, lon=r.lon, hour_start=r.hour_start,
        aqi=round(r.aqi), responsible=r.responsible, category=_category(index, r.category),
        sub_index={p: round(v) for p, v in r.sub_index.items()}, average=r.average,
    )  # fmt: skip


@router.get("/current", response_model=list[StationAqiOut])
def current(conn: Conn, index: IndexQuery = "thai", site_code: str | None = None) -> list[StationAqiOut]:
    """Each station's latest hour of the index, with category (Thai and English names, colour) and the pollutant
    responsible. A station without enough data for any window is absent (see /aqi/stations.geojson)."""
    return [_out(index, r) for r in aqi_store.current_aqi(conn, INDEX_KEYS[index], site_code)]


@router.get("/history", response_model=list[StationAqiOut])
def history(
    conn: Conn,
    start: RequiredFrom,
    end: RequiredTo,
    index: IndexQuery = "thai",
    device_id: str | None = None,
    site_code: str | None = None,
) -> list[StationAqiOut]:
    """Hourly index rows with hour_start in [from, to), by station then hour (at most 366 days)."""
    check_range(start, end)
    if end - start > MAX_HISTORY:
        raise InvalidParameter("to", f"the range is longer than {MAX_HISTORY.days} days")
    rows = aqi_store.aqi_history(
        conn, INDEX_KEYS[index], start, end, device_id=device_id, site_code=site_code, limit=MAX_ROWS + 1
    )
    if len(rows) > MAX_ROWS:
        raise ResultTooLarge("to", f"more than {MAX_ROWS} rows; narrow the range or pick a station")
    return [_out(index, r) for r in rows]


@router.get("/stations.geojson", response_model=StationsGeoJsonOut)
def stations_geojson(conn: Conn, index: IndexQuery = "thai") -> dict[str, Any]:
    """Every air-quality station as a GeoJSON Feature (RFC 7946: [lon, lat]) with its current AQI, category and
    colour; a station with no index yet has null ones (grey on a map), one with no coordinates a null geometry."""
    latest = {r.device_id: r for r in aqi_store.current_aqi(conn, INDEX_KEYS[index])}
    features = []
    for device_id, name, site_code, lat, lon in aqi_store.aq_stations(conn):
        r = latest.get(device_id)
        props: dict[str, Any] = {"device_id": device_id, "name": name, "site_code": site_code, "index": index}
        if r is not None:
            cat = _category(index, r.category)
            props |= {
                "aqi": round(r.aqi), "hour_start": r.hour_start.isoformat(), "responsible": r.responsible,
                "category_en": cat.name_en, "category_th": cat.name_th, "colour": cat.colour_hex,
            }  # fmt: skip
        else:
            props |= {"aqi": None, "hour_start": None, "responsible": None, "category_en": None,
                      "category_th": None, "colour": None}  # fmt: skip
        geometry = {"type": "Point", "coordinates": [lon, lat]} if lat is not None and lon is not None else None
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    return {"type": "FeatureCollection", "features": features}
