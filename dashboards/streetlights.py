"""Streetlights: burning hours, day burning, outage share per road (site) per Bangkok day, and cabinet kWh."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from lccm.dashboards import sql
from lccm.dashboards._common import SqlQuery, dashboard, series, site_variable, thresholds, to_model

UID = "lccm-streetlights"


def build() -> dict[str, Any]:
    board = (
        dashboard(UID, "Streetlights", ["streetlights"], "now-30d", refresh="15m")
        .with_variable(site_variable("road", "Road", sql.ROADS))
        .with_panel(
            series(
                "Burning lamp-hours per road per day", SqlQuery(sql.lamps_per_day("burning_h")), unit="h", bars=True
            ).grid_pos(dm.GridPos(h=8, w=12, x=0, y=0))
        )
        .with_panel(
            series(
                "Day burning (lamp on while the sun is up), lamp-hours per day",
                SqlQuery(sql.lamps_per_day("day_burning_h")),
                unit="h",
                bars=True,
            ).grid_pos(dm.GridPos(h=8, w=12, x=12, y=0))
        )
        .with_panel(
            series(
                "Outage share of the known night, per road per day",
                SqlQuery(sql.lamps_per_day("outage_pct")),
                unit="percent",
            )
            .min(0)
            .max(100)
            .thresholds(thresholds((None, "green"), (5, "orange"), (20, "red")))
            .grid_pos(dm.GridPos(h=8, w=12, x=0, y=8))
        )
        .with_panel(
            series("Cabinet energy per road per day", SqlQuery(sql.CABINET_ENERGY), unit="kwatth", bars=True).grid_pos(
                dm.GridPos(h=8, w=12, x=12, y=8)
            )
        )
    )
    return to_model(board)
