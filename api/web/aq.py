"""The environment division's pages: the air-quality station map (/app/aq) and a station's page
(/app/aq/{device_id}), each with its table as CSV.

Figures come from the JSON API's own route functions, called in the caller's scope: the map from
``GET /aqi/stations.geojson`` (the same rows as ``GET /aqi/current``, plus stations with no index yet, and the
colour rule that never paints a station good by omission), the station page from ``GET /aqi/current``,
``GET /aqi/history`` (24-h averages and NowCast, each index's status and coverage) and ``GET /rollups`` (1-hour
means). Status reasons are rebuilt in both languages from the structured coverage the API gives
(docs/reference.md#averaging-and-completeness).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lccm.api.deps import Conn
from lccm.api.errors import NotFound
from lccm.api.principal import CurrentPrincipal, Principal
from lccm.api.routes import aqi as aqi_routes
from lccm.api.routes.aqi import Categories, IndexName
from lccm.api.routes.rollups import rollups
from lccm.api.schemas_aqi import CoverageOut, StationAqiOut, StationProperties
from lccm.api.web import charts
from lccm.api.web.aq_map import MapPoint, station_map
from lccm.api.web.i18n import Lang, texts, when
from lccm.api.web.render import csv_response, lang, render
from lccm.engine.aqi_tables import POLLUTANT_NAMES
from lccm.store import aqi as aqi_store

router = APIRouter(include_in_schema=False)

GREY = "#9E9E9E"  # a station without a colour: no index, or incomplete and still reading good
Period = Literal["24h", "7d"]
PERIODS: dict[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
CHARTED = ("pm25", "pm10", "so2")  # SO2 where a station measures it (near the Mae Moh power plant)
HISTORY_INDICES: tuple[IndexName, ...] = ("thai", "nowcast")  # 24-h averages (Thai) and NowCast, per hour
INDICES: tuple[IndexName, ...] = ("thai", "epa", "nowcast")
MAP_CSV_COLUMNS = (
    "no", "device_id", "station", "site_code", "lat", "lon", "thai_hour_start", "thai_aqi", "thai_category_en",
    "thai_category_th", "thai_status", "thai_reason", "us_nowcast_hour_start", "us_nowcast_aqi",
    "us_nowcast_category_en", "us_nowcast_category_th", "us_nowcast_status", "us_nowcast_reason",
)  # fmt: skip


# ------------------------------------------------------------------------------------------------ words for people
def status_text(status: str, t: dict[str, str]) -> str:
    return t[f"aq_status_{status}"]


def series_text(series: str, t: dict[str, str]) -> str:
    window = series.rpartition("_")[2]
    if window == "nowcast":
        return t["aq_series_nowcast"]
    return t["aq_series_avg"].format(h=window.removesuffix("h"))


def coverage_text(c: CoverageOut, pollutant: str, t: dict[str, str]) -> str:
    """One pollutant's coverage in words: how many hours had data against the rule."""
    name, series = POLLUTANT_NAMES.get(pollutant, pollutant), series_text(c.series, t)
    if c.of_latest_h < c.window_h:  # a NowCast: the latest hours are what matter
        return t["aq_coverage_latest"].format(
            pollutant=name, series=series, have=c.latest_with_data, of=c.of_latest_h, needed=c.needed
        )
    return t["aq_coverage_hours"].format(
        pollutant=name, series=series, have=c.hours_with_data, of=c.window_h, needed=c.needed
    )


def reason_text(status: str, coverage: dict[str, CoverageOut], t: dict[str, str]) -> str:
    """Why an index is partial or withheld, in the page's language (the API's ``reason`` is English)."""
    if status == "complete":
        return ""
    parts = [coverage_text(c, p, t) for p, c in coverage.items() if c.status != "complete"]
    return "; ".join(parts) or t["aq_no_data_yet"]


# ----------------------------------------------------------------------------------------------------- the map
@dataclass(frozen=True, slots=True)
class IndexCell:
    hour_start: str | None  # ISO, as the API gives it
    hour: datetime | None
    aqi: int | None
    category: str | None  # in the page's language
    category_en: str | None
    category_th: str | None
    colour: str  # GREY when the API gives no colour
    status: str
    status_text: str
    reason: str  # in the page's language; "" when complete
    reason_en: str | None  # the API's own words


@dataclass(frozen=True, slots=True)
class MapRow:
    no: int
    device_id: str
    name: str
    site_code: str
    lat: float | None
    lon: float | None
    thai: IndexCell
    us: IndexCell


def _cell(p: StationProperties, current: StationAqiOut | None, chosen: Lang, t: dict[str, str]) -> IndexCell:
    coverage = {} if current is None else current.coverage
    return IndexCell(
        hour_start=p.hour_start, hour=None if p.hour_start is None else datetime.fromisoformat(p.hour_start),
        aqi=p.aqi,
        category=p.category_th if chosen == "th" else p.category_en, category_en=p.category_en,
        category_th=p.category_th, colour=p.colour or GREY, status=p.status, status_text=status_text(p.status, t),
        reason=reason_text(p.status, coverage, t), reason_en=p.reason,
    )  # fmt: skip


def map_rows(conn: Conn, principal: Principal, categories: Categories, chosen: Lang) -> list[MapRow]:
    """Every station in scope with its Thai AQI and US AQI (NowCast), as the API's GeoJSON layer and
    /aqi/current give them."""
    t = texts(chosen)
    scope = principal.scope
    both: tuple[IndexName, ...] = ("thai", "nowcast")
    layers = {i: aqi_routes.stations_geojson(conn, scope, categories, i).features for i in both}
    current = {i: {r.device_id: r for r in aqi_routes.current(conn, scope, categories, i)} for i in both}
    us_by_device = {f.properties.device_id: f.properties for f in layers["nowcast"]}
    rows = []
    for no, feature in enumerate(layers["thai"], start=1):
        p = feature.properties
        lon, lat = feature.geometry.coordinates if feature.geometry else (None, None)
        rows.append(
            MapRow(
                no, p.device_id, p.name, p.site_code, lat, lon,
                _cell(p, current["thai"].get(p.device_id), chosen, t),
                _cell(us_by_device[p.device_id], current["nowcast"].get(p.device_id), chosen, t),
            )
        )  # fmt: skip
    return rows


def _points(rows: list[MapRow], t: dict[str, str]) -> list[MapPoint]:
    return [
        MapPoint(
            r.device_id, str(r.no), r.lon, r.lat, r.thai.colour,
            f"{r.no}. {r.name}: {t['aq_thai_aqi']} {'–' if r.thai.aqi is None else r.thai.aqi}"
            f" ({r.thai.category or r.thai.status_text}), {t['aq_us_aqi']} {'–' if r.us.aqi is None else r.us.aqi}",
        )
        for r in rows
        if r.lat is not None and r.lon is not None
    ]  # fmt: skip


@router.get("/app/aq")
def aq_map(request: Request, conn: Conn, principal: CurrentPrincipal, categories: Categories) -> HTMLResponse:
    chosen = lang(request)
    t = texts(chosen)
    rows = map_rows(conn, principal, categories, chosen)
    drawing = station_map(_points(rows, t), request.app.state.web_map_tiles_url)
    return render(
        request, "aq_map.html", rows=rows, drawing=drawing, thai_categories=categories["thai"],
        as_of=when(datetime.now(UTC), chosen), user=principal.display_name,
        tiles_attribution=request.app.state.web_map_tiles_attribution,
    )  # fmt: skip


@router.get("/app/aq.csv")
def aq_map_csv(request: Request, conn: Conn, principal: CurrentPrincipal, categories: Categories) -> Response:
    rows = map_rows(conn, principal, categories, lang(request))
    return csv_response(
        "aq-stations.csv", MAP_CSV_COLUMNS,
        (
            (r.no, r.device_id, r.name, r.site_code, r.lat, r.lon,
             r.thai.hour_start, r.thai.aqi, r.thai.category_en, r.thai.category_th, r.thai.status, r.thai.reason_en,
             r.us.hour_start, r.us.aqi, r.us.category_en, r.us.category_th, r.us.status, r.us.reason_en)
            for r in rows
        ),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ a station page
@dataclass(frozen=True, slots=True)
class Station:
    device_id: str
    name: str
    site_code: str
    lat: float | None
    lon: float | None


def find_station(conn: Conn, principal: Principal, device_id: str) -> Station | None:
    """The station if it is in the caller's scope; None otherwise (the page is a 404, as the API would answer)."""
    for row in aqi_store.aq_stations(conn, scope=principal.scope):
        if row[0] == device_id:
            return Station(*row)
    return None


@dataclass(frozen=True, slots=True)
class HourRow:
    hour_start: datetime
    pm25_1h: float | None
    pm25_24h: float | None
    pm25_nowcast: float | None
    pm10_1h: float | None
    pm10_24h: float | None
    pm10_nowcast: float | None
    so2_1h: float | None
    thai_aqi: int | None
    thai_status: str | None
    us_nowcast_aqi: int | None
    us_nowcast_status: str | None


HOUR_COLUMNS = (
    "pm25_1h", "pm25_24h", "pm25_nowcast", "pm10_1h", "pm10_24h", "pm10_nowcast", "so2_1h",
    "thai_aqi", "thai_status", "us_nowcast_aqi", "us_nowcast_status",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StationData:
    station: Station
    start: datetime
    end: datetime
    hours: list[HourRow]
    measured: frozenset[str]  # of pm25, pm10, so2: with data in the period, or in the latest Thai index
    latest: dict[IndexName, StationAqiOut | None]


def _means(
    conn: Conn, principal: Principal, metric: str, device_id: str, start: datetime, end: datetime
) -> dict[datetime, float]:
    """Hourly means of one pollutant, as GET /rollups?interval=1h gives them."""
    out = rollups(conn, principal, metric, start, end, "1h", "device", None, device_id, None)
    return {r.bucket_start: r.mean for r in out.rows}


def station_data(
    conn: Conn, principal: Principal, categories: Categories, station: Station, period: str, now: datetime
) -> StationData:
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)  # the running hour included
    start = end - PERIODS[period]
    d = station.device_id
    means = {m: _means(conn, principal, m, d, start, end) for m in CHARTED}
    history = {
        i: {r.hour_start: r for r in aqi_routes.history(conn, principal, categories, start, end, i, d, None)}
        for i in HISTORY_INDICES
    }
    latest = {
        i: next((r for r in aqi_routes.current(conn, principal.scope, categories, i) if r.device_id == d), None)
        for i in INDICES
    }
    hours = sorted({*means["pm25"], *means["pm10"], *means["so2"], *history["thai"], *history["nowcast"]})
    thai, nowcast = history["thai"], history["nowcast"]

    def average(rows: dict[datetime, StationAqiOut], hour: datetime, series: str) -> float | None:
        row = rows.get(hour)
        return None if row is None else row.average.get(series)

    table = [
        HourRow(
            hour, means["pm25"].get(hour), average(thai, hour, "pm25_24h"), average(nowcast, hour, "pm25_nowcast"),
            means["pm10"].get(hour), average(thai, hour, "pm10_24h"), average(nowcast, hour, "pm10_nowcast"),
            means["so2"].get(hour),
            thai[hour].aqi if hour in thai else None, thai[hour].status if hour in thai else None,
            nowcast[hour].aqi if hour in nowcast else None, nowcast[hour].status if hour in nowcast else None,
        )
        for hour in hours
    ]  # fmt: skip
    latest_thai = latest["thai"]
    in_index = set() if latest_thai is None else set(latest_thai.coverage)
    measured = frozenset(p for p in CHARTED if means[p] or p in in_index or p == "pm25")  # PM2.5 is always shown
    return StationData(station, start, end, table, measured, latest)


def _series(rows: list[HourRow], column: str) -> list[tuple[datetime, float | None]]:
    return [(r.hour_start, getattr(r, column)) for r in rows]


def station_charts(data: StationData, t: dict[str, str]) -> list[dict[str, Any]]:
    """PM2.5 and PM10 (1-h, 24-h, NowCast) and SO2 (1-h), each over the whole period (an hour without data a gap)."""
    found = []
    for pollutant in ("pm25", "pm10"):
        if pollutant in data.measured:
            found.append(
                charts.time_series(
                    t[f"aq_chart_{pollutant}"], "µg/m³",
                    [(t["aq_1h"], _series(data.hours, f"{pollutant}_1h")),
                     (t["aq_24h"], _series(data.hours, f"{pollutant}_24h")),
                     (t["aq_nowcast"], _series(data.hours, f"{pollutant}_nowcast"))],
                )
            )  # fmt: skip
    if "so2" in data.measured:
        found.append(charts.time_series(t["aq_chart_so2"], "ppb", [(t["aq_1h"], _series(data.hours, "so2_1h"))]))
    for option in found:
        option["xAxis"] |= {"min": charts.bangkok_text(data.start), "max": charts.bangkok_text(data.end)}
    return found


@dataclass(frozen=True, slots=True)
class CoverageRow:
    pollutant: str
    series: str
    status: str
    status_text: str
    hours_with_data: int
    window_h: int
    needed: int
    of_latest_h: int
    latest_with_data: int
    text: str


def coverage_rows(row: StationAqiOut | None, t: dict[str, str]) -> list[CoverageRow]:
    if row is None:
        return []
    return [
        CoverageRow(
            POLLUTANT_NAMES.get(p, p), series_text(c.series, t), c.status, status_text(c.status, t),
            c.hours_with_data, c.window_h, c.needed, c.of_latest_h, c.latest_with_data, coverage_text(c, p, t),
        )
        for p, c in row.coverage.items()
    ]  # fmt: skip


class StationNotFound(NotFound):
    """A station that does not exist or is outside the caller's scope (api/web/errors.py makes it a 404 page)."""

    code = "station_not_found"

    def __init__(self, device_id: str) -> None:
        super().__init__(f"no air-quality station {device_id!r} in your scope")


def in_scope(conn: Conn, principal: Principal, device_id: str) -> Station:
    station = find_station(conn, principal, device_id)
    if station is None:
        raise StationNotFound(device_id)
    return station


def _period(request: Request) -> str:
    chosen = request.query_params.get("period", "24h")
    return chosen if chosen in PERIODS else "24h"


@router.get("/app/aq/{device_id}")
def aq_station(
    request: Request, device_id: str, conn: Conn, principal: CurrentPrincipal, categories: Categories
) -> HTMLResponse:
    station = in_scope(conn, principal, device_id)
    chosen, period = lang(request), _period(request)
    t = texts(chosen)
    data = station_data(conn, principal, categories, station, period, datetime.now(UTC))
    latest = [
        (i, row, "" if row is None else reason_text(row.status, row.coverage, t), coverage_rows(row, t))
        for i, row in data.latest.items()
    ]
    return render(
        request, "aq_station.html", data=data, period=period, periods=tuple(PERIODS), latest=latest,
        charts=station_charts(data, t), user=principal.display_name, status_text=lambda s: status_text(s, t),
        pollutant_names=POLLUTANT_NAMES,
    )  # fmt: skip


@router.get("/app/aq/{device_id}/hours.csv")
def aq_station_csv(
    request: Request, device_id: str, conn: Conn, principal: CurrentPrincipal, categories: Categories
) -> Response:
    station = in_scope(conn, principal, device_id)
    data = station_data(conn, principal, categories, station, _period(request), datetime.now(UTC))
    return csv_response(
        f"{device_id}-hours.csv", ("hour_start", *HOUR_COLUMNS),
        ((r.hour_start.isoformat(), *(getattr(r, c) for c in HOUR_COLUMNS)) for r in data.hours),
    )  # fmt: skip
