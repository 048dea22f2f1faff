"""Air quality - environment division: Thai AQI per station (series and map), PM2.5 and SO2 hourly means.

Thresholds (docs/reference.md#air-quality):
- Thai AQI bands 0-25 very good (blue), 26-50 good (green), 51-100 moderate (yellow), 101-200 starting to affect
  health (orange), >200 affects health (red): PCD, Thai AQI table in force from 1 June 2023. Colour codes: the rgb
  values of one public Thai AQI site, UNCONFIRMED as PCD's own (the same defaults as engine/aqi_tables.py,
  docs/reference.md#thai-aqi).
- PM2.5 24-h standard 37.5 ug/m3 from 1 Jun 2023 (Thai ambient standard; docs/reference.md#thai-ambient-air-standards).
- SO2 1-h standard 0.3 ppm = 300 ppb (PCD ambient air quality standards table).
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from lccm.dashboards import sql
from lccm.dashboards._common import SqlQuery, dashboard, datasource, series, site_variable, thresholds, to_model

UID = "lccm-air-quality"
PM25_24H_STANDARD_UGM3 = 37.5  # Thai 24-h standard from 1 June 2023: docs/reference.md#thai-ambient-air-standards
SO2_1H_STANDARD_PPB = 300.0  # Thai 1-h SO2 standard, 0.3 ppm (PCD ambient air quality standards table)
THAI_COLOURS = ("#00BFF3", "#00A651", "#FDC04E", "#F26522", "#CD0000")  # UNCONFIRMED (docs/reference.md#thai-aqi)
THAI_AQI_LOWER_BOUNDS = (None, 26.0, 51.0, 101.0, 201.0)  # PCD, Thai AQI table of 2023


def _aqi_thresholds() -> db.ThresholdsConfig:
    return thresholds(*zip(THAI_AQI_LOWER_BOUNDS, THAI_COLOURS, strict=True))


def _category_thresholds() -> db.ThresholdsConfig:
    # aqi_hourly.category is the index into the Thai category table: 0 very good .. 4 affects health.
    return thresholds(*zip((None, 1.0, 2.0, 3.0, 4.0), THAI_COLOURS, strict=True))


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


def build() -> dict[str, Any]:
    board = (
        dashboard(UID, "Air quality - environment division", ["air-quality", "aqi"], "now-2d", refresh="5m")
        .with_variable(site_variable("station", "Station", sql.STATIONS))
        .with_panel(
            series("Thai AQI per station (PCD 2023)", SqlQuery(sql.THAI_AQI), unit="none")
            .thresholds(_aqi_thresholds())
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.AREA))
            .min(0)
            .grid_pos(dm.GridPos(h=10, w=14, x=0, y=0))
        )
        .with_panel(
            geomap.Panel()
            .title("Stations: latest Thai AQI category")
            .datasource(datasource())
            .with_target(SqlQuery(sql.STATION_MAP, fmt="table"))
            .view(geomap.MapViewConfig().id("fit").zoom(10).all_layers(True))
            .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
            .layers([_station_layer()])
            .override_by_name(
                "category",
                [
                    dm.DynamicConfigValue(id_val="thresholds", value=_category_thresholds().build()),
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
    )
    return to_model(board)
