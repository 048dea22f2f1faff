"""Air-quality indices per station: the current (running hour) AQI, its history, and a GeoJSON layer for maps.

Rows come from ``aqi_hourly`` (migrations 006 and 010), which the AQI updater keeps from the stored hourly means.
The Thai AQI (PCD, table in force since 1 June 2023) is primary; the US EPA AQI (2024) on its averaging windows and
the US AQI of current conditions as AirNow reports it (NowCast for PM and O3) are secondary, and the NowCast figure
is never the Thai AQI (docs/reference.md#air-quality). Every row says whether it is complete, and if not which
pollutant is missing and why (status, reason, missing, coverage; docs/reference.md#averaging-and-completeness).

The Thai category colours are settings (``LCCM_AQI_THAI_COLOURS_HEX``): ``create_app`` puts the categories built
from them in ``app.state.aqi_categories`` (:func:`categories_state`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from lccm.api.deps import Conn, RequiredFrom, RequiredTo, check_range
from lccm.api.errors import InvalidParameter, ResultTooLarge
from lccm.api.principal import CurrentPrincipal, NotAuthenticated, Principal, Scope
from lccm.api.schemas_aqi import (
    CategoryOut,
    CoverageOut,
    PointGeometry,
    StationAqiOut,
    StationCollection,
    StationFeature,
    StationProperties,
)
from lccm.engine.aqi_tables import (
    EPA_CATEGORIES,
    EPA_GOOD_CATEGORIES,
    POLLUTANTS,
    THAI_GOOD_CATEGORIES,
    Category,
    thai_categories,
)
from lccm.store import aqi as aqi_store

router = APIRouter(prefix="/aqi", tags=["air quality"])

IndexName = Literal["thai", "epa", "nowcast"]
INDEX_KEYS: dict[str, str] = {"thai": "thai_pcd_2023", "epa": "us_epa_2024", "nowcast": "us_epa_2024_nowcast"}
GOOD_CATEGORIES: dict[str, int] = {"thai": THAI_GOOD_CATEGORIES, "epa": EPA_GOOD_CATEGORIES,
                                   "nowcast": EPA_GOOD_CATEGORIES}  # fmt: skip
MAX_HISTORY = timedelta(days=366)
MAX_ROWS = 50_000
NO_DATA = "No pollutant data from this station yet."
IndexQuery = Annotated[
    IndexName,
    Query(
        description="thai = PCD 2023 (primary; PM 24 h, O3 and CO 8 h, NO2 and SO2 1 h); epa = US EPA 2024 on the "
        "same trailing windows; nowcast = the US AQI of current conditions as AirNow reports it (NowCast for PM2.5, "
        "PM10 and O3; CO 8 h, NO2 and SO2 1 h)"
    ),
]


def categories_state(thai_colours_hex: Sequence[str]) -> dict[str, tuple[Category, ...]]:
    """The categories of each index, with the Thai colours given (a setting); for ``app.state.aqi_categories``."""
    thai = thai_categories(tuple(thai_colours_hex))
    return {"thai": thai, "epa": EPA_CATEGORIES, "nowcast": EPA_CATEGORIES}


def _categories(request: Request) -> dict[str, tuple[Category, ...]]:
    found: dict[str, tuple[Category, ...]] = request.app.state.aqi_categories
    return found


Categories = Annotated[dict[str, tuple[Category, ...]], Depends(_categories)]


def _category(categories: tuple[Category, ...], k: int | None) -> CategoryOut | None:
    if k is None:
        return None
    c = categories[k]
    return CategoryOut(
        index=c.index, name_en=c.name_en, name_th=c.name_th, colour=c.colour_name, colour_hex=c.colour_hex,
        aqi_lo=c.aqi_lo, aqi_hi=c.aqi_hi,
    )  # fmt: skip


def _out(categories: tuple[Category, ...], r: aqi_store.StationAqi) -> StationAqiOut:
    return StationAqiOut(
        device_id=r.device_id, name=r.name, site_code=r.site_code, lat=r.lat, lon=r.lon, hour_start=r.hour_start,
        status=r.status,  # type: ignore[arg-type]  # the table's CHECK constraint allows only the three
        reason=r.reason, missing=list(r.missing), aqi=None if r.aqi is None else round(r.aqi),
        responsible=r.responsible, category=_category(categories, r.category),
        sub_index={p: round(v) for p, v in r.sub_index.items()}, average=r.average,
        coverage={p: CoverageOut.model_validate(r.coverage[p]) for p in POLLUTANTS if p in r.coverage},
    )  # fmt: skip


def feed_scope(request: Request) -> Scope | None:
    """The caller's scope; for an anonymous caller of the citizens' feed (``LCCM_PUBLIC_AQI``, the only way the
    identity layer lets one through to these routes), None: every organisation's stations, as the public sees them."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        return principal.scope
    if request.app.state.auth.public_aqi:
        return None
    raise NotAuthenticated(f"{request.method} {request.url.path} was reached without an authenticated caller")


FeedScope = Annotated[Scope | None, Depends(feed_scope)]


@router.get("/current", response_model=list[StationAqiOut])
def current(
    conn: Conn,
    scope: FeedScope,
    categories: Categories,
    index: IndexQuery = "thai",
    site_code: str | None = None,
) -> list[StationAqiOut]:
    """Each station's latest hour of the index: the headline figure of current conditions (thai: as PCD reports it;
    nowcast: as AirNow reports it). With its status - complete, incomplete (a measured pollutant is missing, listed
    in ``missing``, or a sub-index comes from fewer hours than its rule needs: the AQI is then a lower bound) or
    withheld (no AQI) - the reason in words, and each sub-index's coverage. A station that has never sent a
    pollutant is absent (see /aqi/stations.geojson)."""
    rows = aqi_store.current_aqi(conn, INDEX_KEYS[index], site_code, scope=scope)
    return [_out(categories[index], r) for r in rows]


@router.get("/history", response_model=list[StationAqiOut])
def history(
    conn: Conn,
    principal: CurrentPrincipal,
    categories: Categories,
    start: RequiredFrom,
    end: RequiredTo,
    index: IndexQuery = "thai",
    device_id: str | None = None,
    site_code: str | None = None,
) -> list[StationAqiOut]:
    """Hourly index rows with hour_start in [from, to), by station then hour (at most 366 days), each with its
    status, reason and coverage as in /aqi/current."""
    check_range(start, end)
    if end - start > MAX_HISTORY:
        raise InvalidParameter("to", f"the range is longer than {MAX_HISTORY.days} days")
    rows = aqi_store.aqi_history(
        conn, INDEX_KEYS[index], start, end, device_id=device_id, site_code=site_code, limit=MAX_ROWS + 1,
        scope=principal.scope,
    )  # fmt: skip
    if len(rows) > MAX_ROWS:
        raise ResultTooLarge("to", f"more than {MAX_ROWS} rows; narrow the range or pick a station")
    return [_out(categories[index], r) for r in rows]


def _properties(
    index: str, categories: tuple[Category, ...], device_id: str, name: str, site_code: str,
    r: aqi_store.StationAqi | None,
) -> StationProperties:  # fmt: skip
    if r is None:
        return StationProperties(
            device_id=device_id, name=name, site_code=site_code, index=index, status="withheld", reason=NO_DATA,
            missing=[], aqi=None, hour_start=None, responsible=None, category_en=None, category_th=None, colour=None,
        )  # fmt: skip
    cat = None if r.category is None else categories[r.category]
    certain = cat is not None and (r.status == "complete" or cat.index >= GOOD_CATEGORIES[index])
    return StationProperties(
        device_id=device_id, name=name, site_code=site_code, index=index,
        status=r.status,  # type: ignore[arg-type]  # the table's CHECK constraint allows only the three
        reason=r.reason, missing=list(r.missing), aqi=None if r.aqi is None else round(r.aqi),
        hour_start=r.hour_start.isoformat(), responsible=r.responsible,
        category_en=None if cat is None else cat.name_en, category_th=None if cat is None else cat.name_th,
        colour=cat.colour_hex if certain and cat is not None else None,
    )  # fmt: skip


@router.get("/stations.geojson", response_model=StationCollection)
def stations_geojson(
    conn: Conn, scope: FeedScope, categories: Categories, index: IndexQuery = "thai"
) -> StationCollection:
    """Every air-quality station as a GeoJSON Feature (RFC 7946: [lon, lat]) with its current AQI, category, status
    and reason, and the colour to paint it: null (grey) for a station with no index yet, a withheld index, or an
    incomplete one whose lower bound still reads good - never good by omission. A station with no coordinates has a
    null geometry."""
    latest = {r.device_id: r for r in aqi_store.current_aqi(conn, INDEX_KEYS[index], scope=scope)}
    features = []
    for device_id, name, site_code, lat, lon in aqi_store.aq_stations(conn, scope=scope):
        props = _properties(index, categories[index], device_id, name, site_code, latest.get(device_id))
        geometry = PointGeometry(coordinates=(lon, lat)) if lat is not None and lon is not None else None
        features.append(StationFeature(geometry=geometry, properties=props))
    return StationCollection(features=features)
