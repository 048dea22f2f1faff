"""Energy - facility manager: live power, today's kWh and kgCO2e, daily kWh and data quality per site."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import stat, table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from lccm.dashboards import sql
from lccm.dashboards._common import SqlQuery, dashboard, datasource, series, site_variable, thresholds, to_model

UID = "lccm-energy"


def _today(title: str, column: str, unit: str) -> stat.Panel:
    # One value per site row: the reduce options show every row's value, not one reduced number.
    return (
        stat.Panel()
        .title(title)
        .datasource(datasource())
        .with_target(SqlQuery(sql.TODAY_ENERGY, fmt="table"))
        .unit(unit)
        .decimals(1)
        .reduce_options(cb.ReduceDataOptions().values(True).fields(f"/^{column}$/").calcs(["lastNotNull"]))
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .grid_pos(dm.GridPos(h=6, w=6, x=18 if column == "kgco2e" else 12, y=0))
    )


def build() -> dict[str, Any]:
    quality_colours = thresholds((None, "green"), (1, "yellow"), (2, "orange"), (3, "red"))
    board = (
        dashboard(UID, "Energy - facility manager", ["energy"], "now-7d")
        .with_variable(site_variable("site", "Site", sql.ENERGY_SITES))
        .with_panel(
            series("Live power per site (sum of meter means, 15 min)", SqlQuery(sql.LIVE_POWER), unit="watt").grid_pos(
                dm.GridPos(h=12, w=12, x=0, y=0)
            )
        )
        .with_panel(_today("Today's energy per site (Bangkok day)", "energy_kwh", "kwatth"))
        .with_panel(_today("Today's emissions per site (factor in force)", "kgco2e", "suffix: kgCO2e"))
        .with_panel(
            series("Daily energy per site (Bangkok days)", SqlQuery(sql.DAILY_ENERGY), unit="kwatth", bars=True)
            .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
            .grid_pos(dm.GridPos(h=6, w=12, x=12, y=6))
        )
        .with_panel(
            table.Panel()
            .title("Data quality per meter (worst: 0 measured, 1 estimated, 2 suspect, 3 missing)")
            .datasource(datasource())
            .with_target(SqlQuery(sql.DATA_QUALITY, fmt="table"))
            .show_header(True)
            .override_by_name(
                "worst_quality", [dm.DynamicConfigValue(id_val="thresholds", value=quality_colours.build())]
            )
            .override_by_name("covered_pct", [dm.DynamicConfigValue(id_val="unit", value="percent")])
            .override_by_name("estimated_pct", [dm.DynamicConfigValue(id_val="unit", value="percent")])
            .grid_pos(dm.GridPos(h=10, w=24, x=0, y=12))
        )
    )
    return to_model(board)
