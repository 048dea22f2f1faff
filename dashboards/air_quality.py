"""Air quality - environment division: Thai AQI per station (series, map and status), PM2.5 and SO2 hourly means.

Thresholds (docs/reference.md#air-quality):
- Thai AQI bands 0-25 very good (blue), 26-50 good (green), 51-100 moderate (yellow), 101-200 starting to affect
  health (orange), >200 affects health (red): PCD, Thai AQI table in force from 1 June 2023. The bands and their
  colour codes (UNCONFIRMED as PCD's own, docs/reference.md#thai-aqi; the setting LCCM_AQI_THAI_COLOURS_HEX) come
  from the one definition, engine.aqi_tables.thai_categories, handed in as a :class:`ThaiScale` by lccm/ (the
  dashboards may import only store/).
- PM2.5 24-h standard 37.5 ug/m3 from 1 Jun 2023 (Thai ambient standard; docs/reference.md#thai-ambient-air-standards).
- SO2 1-h standard 0.3 ppm = 300 ppb (PCD ambient air quality standards table).

Every AQI shown says how complete it is (aqi_hourly.status, migration 010): an incomplete hour is its own series, a
withheld one a gap, the map paints a station grey rather than good when its index is withheld or a lower bound that
reads good, and the status table gives each station's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap, table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from lccm.dashboards import sql
from lccm.dashboards._common import SqlQuery, dashboard, datasource, series, site_variable, thresholds, to_model

UID = "lccm-air-quality"
PM25_24H_STANDARD_UGM3 = 37.5  # Thai 24-h standard from 1 June 2023: docs/reference.md#thai-ambient-air-standards
SO2_1H_STANDARD_PPB = 300.0  # Thai 1-h SO2 standard, 0.3 ppm (PCD ambient air quality standards table)
UNKNOWN_COLOUR = "#808080"  # grey: no index, or one that cannot say the air is good (see sql.station_map)


class _Category(Protocol):
    @property
    def aqi_lo(self) -> int: ...
    @property
    def colour_hex(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ThaiScale:
    """The Thai AQI categories as the dashboard draws them: each one's lowest AQI and colour code, and how many of
    the first ones call the air good."""

    lower_bounds: tuple[int, ...]
    colours_hex: tuple[str, ...]
    good_categories: int

    @classmethod
    def of(cls, categories: Sequence[_Category], good_categories: int) -> ThaiScale:
        """From engine.aqi_tables.thai_categories(colours) and THAI_GOOD_CATEGORIES."""
        return cls(tuple(c.aqi_lo for c in categories), tuple(c.colour_hex for c in categories), good_categories)


def _aqi_thresholds(thai: ThaiScale) -> db.ThresholdsConfig:
    bounds = [None, *(float(b) for b in thai.lower_bounds[1:])]
    return thresholds(*zip(bounds, thai.colours_hex, strict=True))


def _category_thresholds(thai: ThaiScale) -> db.ThresholdsConfig:
    # The map's category is the index into the Thai category table (0 very good .. 4 affects health), or -1 (grey).
    steps = [(float(k), colour) for k, colour in enumerate(thai.colours_hex)]
    return thresholds((None, UNKNOWN_COLOUR), *steps)


def _line_at(limit: float) -> db.ThresholdsConfig:
    return thresholds((None, "green"), (limit, "red"))


def _station_layer() -> cb.MapLayerOptions:
    # Markers at (latitude, longitude), coloured by the category field through its thresholds, labelled by name.
    return (
        cb.MapLayerOptions()
        .type("markers")
        .name("Stations")
        .tooltip(True)
        .location(
            cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS).latitude("latitude").longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "category", "fixed": "dark-green"},
                    "size": {"fixed": 12, "min": 8, "max": 20},
                    "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                    "text": {"mode": "field", "field": "station", "fixed": ""},
                    "textConfig": {"fontSize": 12, "offsetY": -14, "textAlign": "center", "textBaseline": "bottom"},
                    "opacity": 0.9,
                },
            }
        )
    )


def build(thai: ThaiScale) -> dict[str, Any]:
    board = (
        dashboard(UID, "Air quality - environment division", ["air-quality", "aqi"], "now-2d", refresh="5m")
        .with_variable(site_variable("station", "Station", sql.STATIONS))
        .with_panel(
            series("Thai AQI per station (PCD 2023)", SqlQuery(sql.THAI_AQI), unit="none")
            .thresholds(_aqi_thresholds(thai))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.AREA))
            .min(0)
            .grid_pos(dm.GridPos(h=10, w=14, x=0, y=0))
        )
        .with_panel(
            geomap.Panel()
            .title("Stations: latest Thai AQI category (grey: withheld, or incomplete and reading good)")
            .datasource(datasource())
            .with_target(SqlQuery(sql.station_map(thai.good_categories), fmt="table"))
            .view(geomap.MapViewConfig().id("fit").zoom(10).all_layers(True))
            .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
            .layers([_station_layer()])
            .override_by_name(
                "category",
                [
                    dm.DynamicConfigValue(id_val="thresholds", value=_category_thresholds(thai).build()),
                    dm.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
                ],
            )
            .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
            .grid_pos(dm.GridPos(h=10, w=10, x=14, y=0))
        )
        .with_panel(
            series(
                "PM2.5: hourly and 24-h moving means (standard 37.5 ug/m3, 24-h)",
                SqlQuery(sql.hourly_mean(sql.PM25, "pm25_ugm3")),
                SqlQuery(sql.PM25_24H, ref_id="B"),
                unit="conμgm3",
            )
            .thresholds(_line_at(PM25_24H_STANDARD_UGM3))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
            .min(0)
            .grid_pos(dm.GridPos(h=9, w=12, x=0, y=10))
        )
        .with_panel(
            series(
                "SO2: hourly means (standard 300 ppb, 1-h)", SqlQuery(sql.hourly_mean(sql.SO2, "so2_ppb")), unit="ppb"
            )
            .thresholds(_line_at(SO2_1H_STANDARD_PPB))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
            .min(0)
            .grid_pos(dm.GridPos(h=9, w=12, x=12, y=10))
        )
        .with_panel(
            table.Panel()
            .title("Stations: latest Thai AQI, whether it is complete, and why not")
            .datasource(datasource())
            .with_target(SqlQuery(sql.STATION_STATUS, fmt="table"))
            .show_header(True)
            .grid_pos(dm.GridPos(h=8, w=24, x=0, y=19))
        )
    )
    return to_model(board)
