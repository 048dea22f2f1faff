"""Apache ECharts options built on the server: a page puts one in ``data-chart`` of a ``<div class="chart">`` (the
``tojson_attr`` filter) and static/charts.js draws it. Times go to the chart as Bangkok wall-clock strings, so the
axis reads as the municipality reads its day whatever the browser's time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lccm.engine.timebase import BANGKOK

Point = tuple[datetime, float | None]


def bangkok_text(moment: datetime) -> str:
    return moment.astimezone(BANGKOK).strftime("%Y-%m-%d %H:%M:%S")


# The time axis' labels in figures only: ECharts' own ("Dec", "2026") are English month names and CE years, wrong on
# a Thai page, and it has no Thai locale to load. Day/month reads the same in both languages.
TIME_LABELS = {"year": "{d}/{M}", "month": "{d}/{M}", "day": "{d}/{M}", "hour": "{HH}:{mm}", "minute": "{HH}:{mm}"}


def time_series(
    title: str, unit: str, series: Sequence[tuple[str, Sequence[Point]]], kind: str = "line"
) -> dict[str, Any]:
    """A chart of one or more series over time; None is a gap (missing data is not drawn as zero)."""
    return {
        "title": {"text": title, "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 24} if len(series) > 1 else {"show": False},
        "grid": {"left": 56, "right": 16, "top": 56 if len(series) > 1 else 40, "bottom": 40},
        "xAxis": {"type": "time", "axisLabel": {"formatter": TIME_LABELS}},
        "yAxis": {"type": "value", "name": unit},
        "series": [
            {"name": name, "type": kind, "showSymbol": False, "connectNulls": False,
             "data": [[bangkok_text(t), v] for t, v in points]}
            for name, points in series
        ],
    }  # fmt: skip


def categories(
    title: str,
    unit: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    kind: str = "bar",
) -> dict[str, Any]:
    """A bar chart over labelled categories (days, months, scopes); ``kind="line"`` draws lines over them (years of
    a trajectory), None being a gap."""
    return {
        "title": {"text": title, "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 24} if len(series) > 1 else {"show": False},
        "grid": {"left": 56, "right": 16, "top": 56 if len(series) > 1 else 40, "bottom": 40},
        "xAxis": {"type": "category", "data": list(labels)},
        "yAxis": {"type": "value", "name": unit},
        "series": [
            {"name": name, "type": kind, "connectNulls": False, "data": list(values)} for name, values in series
        ],
    }
