"""Shared pieces of the dashboards: the provisioned datasource, a PostgreSQL query target, variables, thresholds.

The Grafana Foundation SDK has no builder for the PostgreSQL datasource's query, so :class:`SqlQuery` is one (it
implements the SDK's ``Dataquery`` variant, so panels accept it like any other target).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from lccm.engine.timebase import CITY_TZ_NAME

# deploy/grafana/provisioning/datasources/lccm.yaml: keep in step (tests/test_dashboards.py checks it).
DATASOURCE_UID = "lccm-pg"
DATASOURCE_TYPE = "grafana-postgresql-datasource"


# deploy/grafana/provisioning/datasources/prometheus.yaml: the operations dashboard's metrics.
PROM_DATASOURCE_UID = "lccm-prom"
PROM_DATASOURCE_TYPE = "prometheus"


def datasource() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


def prom_datasource() -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=PROM_DATASOURCE_TYPE, uid=PROM_DATASOURCE_UID)


class _Sql(cogvariants.Dataquery):
    def __init__(self, ref_id: str, sql: str, fmt: str) -> None:
        self.ref_id, self.sql, self.fmt = ref_id, sql, fmt

    def to_json(self) -> dict[str, object]:
        # rawQuery + editorMode "code": Grafana runs rawSql as written (no visual query builder).
        return {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorMode": "code",
            "rawQuery": True,
            "format": self.fmt,
            "rawSql": self.sql,
        }


class SqlQuery(Builder[cogvariants.Dataquery]):
    """A raw-SQL target of the PostgreSQL datasource; ``fmt`` is Grafana's "time_series" or "table"."""

    def __init__(self, sql: str, *, ref_id: str = "A", fmt: Literal["time_series", "table"] = "time_series") -> None:
        self._internal = _Sql(ref_id, sql.strip(), fmt)

    def build(self) -> cogvariants.Dataquery:
        return self._internal


def site_variable(name: str, label: str, sql: str) -> db.QueryVariable:
    """A multi-value variable with "All" over the rows of ``sql`` (``__value``/``__text`` columns).

    Multi-value and include-all make Grafana render the selection as a quoted list ('A','B'), so panels filter
    with ``IN ($name)``.
    """
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(datasource())
        .query(sql.strip())
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (Grafana's -Infinity base)."""
    return (
        db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def series(title: str, *targets: SqlQuery, unit: str, bars: bool = False) -> timeseries.Panel:
    """A time-series panel over long-format SQL (time, metric, value), legend as a table with mean and max."""
    panel = (
        timeseries.Panel()
        .title(title)
        .datasource(datasource())
        .targets(list(targets))
        .unit(unit)
        .legend(
            cb.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
    return panel


def dashboard(uid: str, title: str, tags: list[str], time_from: str, refresh: str = "1m") -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .tags(["lccm", *tags])
        .timezone(CITY_TZ_NAME)
        .time(time_from, "now")
        .refresh(refresh)
        .readonly()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )


def to_model(builder: db.Dashboard) -> dict[str, Any]:
    """The dashboard's JSON model as plain data (what Grafana's file provisioning and HTTP API take)."""
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model
