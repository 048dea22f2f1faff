"""Emissions - city: kgCO2e per Bangkok month by CFO scope, CFO category and GPC reference, each at the factor in
force and at the base year's factor (like-for-like with the baseline; docs/reference.md#grid-electricity-factors)."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from lccm.dashboards import sql
from lccm.dashboards._common import SqlQuery, dashboard, datasource, series, site_variable, to_model

UID = "lccm-emissions"
KGCO2E = "suffix: kgCO2e"
_TITLES = {"scope": "CFO scope", "cfo_category": "CFO category", "gpc_ref": "GPC reference"}
_FACTORS = {"in_force": "factor in force", "base_year": "base-year factor"}


def _monthly(group: str, value: str, x: int, y: int) -> Any:
    return (
        series(
            f"Monthly kgCO2e by {_TITLES[group]} ({_FACTORS[value]})",
            SqlQuery(sql.monthly_emissions(group, value)),
            unit=KGCO2E,
            bars=True,
        )
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        .grid_pos(dm.GridPos(h=8, w=12, x=x, y=y))
    )


def build() -> dict[str, Any]:
    board = dashboard(UID, "Emissions - city", ["emissions", "cfo", "gpc"], "now-1y/M", refresh="15m").with_variable(
        site_variable("city", "City", sql.CITIES)
    )
    for row, group in enumerate(sql.EMISSION_GROUPS):
        for col, value in enumerate(sql.EMISSION_VALUES):
            board = board.with_panel(_monthly(group, value, 12 * col, 8 * row))
    board = board.with_panel(
        table.Panel()
        .title("Totals by scope over the range: factor in force vs base-year factor")
        .datasource(datasource())
        .with_target(SqlQuery(sql.EMISSIONS_BY_SCOPE_TABLE, fmt="table"))
        .show_header(True)
        .unit(KGCO2E)
        .decimals(1)
        .grid_pos(dm.GridPos(h=6, w=24, x=0, y=24))
    )
    return to_model(board)
