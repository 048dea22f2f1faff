"""Reduction targets of an organisation and whether each is on track in a year (issue 5, item 5).

An emission target (the whole organisation, or one CFO category) counts from the base year's emissions; a KPI
target (kWh per lamp, kWh per m², litres per 100 km) from the KPI value of its base year. engine/inventory.py's
``Target`` draws the straight trajectory and judges a value against it. The answers are the JSON of
``GET|PUT /organisations/{code}/targets`` and ``GET .../targets/status``, and of ``lccm targets list|set|status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
import psycopg
from pydantic import BaseModel, Field

from lccm.engine import calendar as cal
from lccm.engine import inventory as einv
from lccm.imports.rows import RowError, RowsInvalid
from lccm.reports.baseline import Series, finite
from lccm.reports.kpi import started, year_kpis
from lccm.reports.periods import RequestInvalid, end_of
from lccm.store import baseline as sb


class TargetIn(BaseModel):
    """One target as a person sets it (the API's request body, the CLI's file)."""

    target_key: str = Field(description="a name for the target, e.g. org or streetlights-kpi")
    category: str | None = Field(None, description="CFO category code; none = the whole organisation")
    kpi: Literal["kwh_per_lamp", "kwh_per_m2", "l_per_100km"] | None = None
    base_year: int | None = Field(None, description="default: the organisation's base year")
    target_year: int
    reduction_pct: float = einv.DEFAULT_REDUCTION_PCT
    kpi_values: dict[int, float] = Field(default_factory=dict, description="KPI value per CE year")


class TargetsIn(BaseModel):
    targets: list[TargetIn]


def target_out(t: sb.TargetRow) -> dict[str, Any]:
    return {"target_key": t.target_key, "category": t.category, "kpi": t.kpi, "base_year": t.base_year,
            "year_kind": t.year_kind, "target_year": t.target_year, "reduction_pct": t.reduction_pct,
            "kpi_values": t.kpi_values}  # fmt: skip


def list_targets(conn: psycopg.Connection, code: str) -> list[dict[str, Any]]:
    """The organisation's targets, by key. Raises ``UnknownOrganisation``."""
    return [target_out(t) for t in sb.list_targets(conn, code)]


def set_targets(conn: psycopg.Connection, code: str, targets: Sequence[TargetIn]) -> list[dict[str, Any]]:
    """Replace the organisation's targets (all or nothing); returns the stored list. Emission targets count from
    the base year. Raises ``UnknownOrganisation``, ``BaselineError`` (no base year) or ``RowsInvalid`` naming each
    refused target (row = 1-based position)."""
    base = sb.base_year_series(conn, code)
    rows = [
        sb.TargetRow(t.target_key, t.category, t.kpi, t.base_year or base.year_ce, base.kind, t.target_year,
                     t.reduction_pct, t.kpi_values)
        for t in targets
    ]  # fmt: skip
    errors = [
        RowError(i, "base_year", str(t.base_year), f"emission targets use the base year {base.year_ce}")
        for i, t in enumerate(rows, start=1)
        if t.kpi is None and t.base_year != base.year_ce
    ]
    errors = errors or sb.put_targets(conn, code, rows)
    if errors:
        raise RowsInvalid("targets refused; nothing was written", errors)
    return list_targets(conn, code)


def target_status(conn: psycopg.Connection, code: str, year: int, on: date | None = None) -> list[dict[str, Any]]:
    """Each target in ``year`` with data up to ``on`` (default today, Bangkok; included): the trajectory value, the
    year's value (actual when the year is over, else the projected year end), margin and on-track status.

    KPI targets: a value typed in for the year (``kpi_values``) is the official figure and wins (``value_kind``
    'reported'); otherwise the KPI measured from the mapped meters (store/kpi.py): 'measured' when the year is over,
    'measured_to_date' while it runs, ``value`` then being the full-year projection (reports/kpi.py). ``measured``
    always carries the measured figures, numerator and denominator, for comparison with a reported value.

    Raises ``UnknownOrganisation``, ``BaselineError`` (no base year) or ``RequestInvalid`` (a year before the base
    year; an emission target's year not started on ``on``)."""
    as_of = end_of(on)
    base = sb.base_year_series(conn, code)
    targets = sb.list_targets(conn, code)
    if year < base.year_ce:
        raise RequestInvalid("year", f"before the base year {base.year_ce}")
    measured: dict[str, dict[str, dict[str, Any]] | None] = {}
    for kind in sorted({t.year_kind for t in targets if t.kpi is not None}):
        measured[kind] = year_kpis(conn, code, year, kind, as_of)[1] if started(year, kind, as_of) else None
    return [_status(conn, base, t, year, as_of, measured.get(t.year_kind)) for t in targets]


def _status(conn: psycopg.Connection, base: sb.BaseYearSeries, t: sb.TargetRow, year: int, as_of: datetime,
            measured: dict[str, dict[str, Any]] | None) -> dict[str, Any]:  # fmt: skip
    row = target_out(t) | {"year": year}
    if t.kpi is not None:
        target = einv.Target(t.base_year, t.target_year, t.kpi_values[t.base_year], t.reduction_pct)
        m = None if measured is None else measured[t.kpi]
        value: float | None = t.kpi_values.get(year)
        kind: str | None = "reported"
        if value is None:
            value, kind = (None, None) if m is None else (m["value"], m["value_kind"])
        row |= {"trajectory": float(target.trajectory(year)), "value": value, "value_kind": kind, "measured": m}
        if value is None:
            return row | {"margin": None, "margin_pct": None, "on_track": None}
        st = target.status(year, value)
    else:
        keep = np.array([not r and (t.category is None or c == t.category)
                         for r, c in zip(base.is_removal, base.category, strict=True)])  # fmt: skip
        series = einv.Baseline(base.year_ce, base.kind, base.monthly_kgco2e[:, keep].sum(axis=1, keepdims=True), ("t",))
        yp = cal.year_period(year, t.year_kind)
        if as_of <= yp.start:
            raise RequestInvalid("date", f"{year} has not started on {as_of.date().isoformat()}")
        s = Series(conn, base, cal.custom_period(yp.start, min(as_of, yp.end)))
        mask = np.array([not r and (t.category is None or c == t.category)
                         for r, c in zip(s.is_removal, s.attrs["cfo_category"], strict=True)])  # fmt: skip
        actual = float(s.in_force[mask].sum())
        if as_of >= yp.end:
            value, kind = actual, "actual"
        else:
            value, kind = float(einv.project_year_end(series, as_of, np.array([actual]), t.year_kind).projected[0]), \
                "projected"  # fmt: skip
        target = einv.Target(t.base_year, t.target_year, float(series.total[0]), t.reduction_pct)
        st = target.status(year, value)
        row |= {"base_value_kgco2e": float(series.total[0]), "trajectory": float(st.trajectory), "value": value,
                "value_kind": kind, "actual_to_date_kgco2e": actual}  # fmt: skip
    return row | {"margin": finite(float(st.margin)), "margin_pct": finite(float(st.margin_pct)),
                  "on_track": bool(st.on_track)}  # fmt: skip
