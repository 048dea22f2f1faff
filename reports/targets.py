"""Reduction targets of an organisation and whether each is on track in a year (issue 5, item 5).

An emission target (the whole organisation, or one CFO category) counts from the base year's emissions; a KPI
target (kWh per lamp, kWh per m², litres per 100 km) from the KPI value of its base year. engine/inventory.py's
``Target`` draws the straight trajectory and judges a value against it. The answers are the JSON of
``GET|PUT /organisations/{code}/targets`` and ``GET .../targets/status``, and of ``lccm targets list|set|status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import psycopg
from pydantic import BaseModel, Field

from lccm.engine import calendar as cal
from lccm.engine import inventory as einv
from lccm.imports.rows import RowError, RowsInvalid
from lccm.reports.baseline import ItemProjection, finite, item_projection
from lccm.reports.kpi import started, year_kpis
from lccm.reports.periods import RequestInvalid, end_of, today_end
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


def target_status(conn: psycopg.Connection, code: str, year: int, on: date | None = None, *, min_coverage: float,
                  now: datetime | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Each target in ``year`` with data up to ``on`` (default today, Bangkok; included; never past today): the
    trajectory value, the year's value, margin and on-track status, and the coverage the value rests on.

    Emission targets: the value is the sum of the target's items' year-end projections over their covered time
    (reports/baseline.py ``item_projection``, the same numbers as GET .../projection): 'projected' while the year
    runs; when it is over, 'actual' if every item is covered all year, else 'gap_filled' (each item's actual scaled
    to its whole year by its like-for-like ratio with the base year).

    KPI targets: a value typed in for the year (``kpi_values``) is the official figure and wins (``value_kind``
    'reported'); otherwise the KPI measured from the mapped meters (store/kpi.py): 'measured' when the year is over,
    'measured_to_date' while it runs, ``value`` then being the full-year figure (reports/kpi.py). ``measured``
    always carries the measured figures, numerator and denominator, for comparison with a reported value.

    Below ``min_coverage`` a measured or projected value, its margin and the verdict are null, with ``reason``;
    ``covered_time`` gives the value and margin over the covered time beside them. Nothing is on track by data that
    cannot show it.

    Raises ``UnknownOrganisation``, ``BaselineError`` (no base year) or ``RequestInvalid`` (a year before the base
    year; an emission target's year not started on ``on``)."""
    now = datetime.now(UTC) if now is None else now
    as_of = min(end_of(on), today_end(now))  # data cannot reach past today
    base = sb.base_year_series(conn, code)
    targets = sb.list_targets(conn, code)
    if year < base.year_ce:
        raise RequestInvalid("year", f"before the base year {base.year_ce}")
    measured: dict[str, dict[str, dict[str, Any]] | None] = {}
    for kind in sorted({t.year_kind for t in targets if t.kpi is not None}):
        measured[kind] = (
            year_kpis(conn, code, year, kind, as_of, min_coverage=min_coverage, now=now)[1]
            if started(year, kind, as_of) else None
        )  # fmt: skip
    projections: dict[str, ItemProjection] = {}
    for kind in sorted({t.year_kind for t in targets if t.kpi is None}):
        if as_of <= cal.year_period(year, kind).start:
            raise RequestInvalid("date", f"{year} has not started on {(as_of - timedelta(days=1)).date().isoformat()}")
        projections[kind] = item_projection(conn, base, year, kind, as_of, now)
    return [
        _kpi_status(t, year, measured.get(t.year_kind)) if t.kpi is not None
        else _emission_status(base, t, year, projections[t.year_kind], min_coverage)
        for t in targets
    ]  # fmt: skip


def _verdict(target: einv.Target, year: int, value: float | None) -> dict[str, Any]:
    if value is None:
        return {"margin": None, "margin_pct": None, "on_track": None}
    st = target.status(year, value)
    return {"margin": finite(float(st.margin)), "margin_pct": finite(float(st.margin_pct)),
            "on_track": bool(st.on_track)}  # fmt: skip


def _kpi_status(t: sb.TargetRow, year: int, measured: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    row = target_out(t) | {"year": year}
    target = einv.Target(t.base_year, t.target_year, t.kpi_values[t.base_year], t.reduction_pct)
    m = None if measured is None or t.kpi is None else measured[t.kpi]
    reported = t.kpi_values.get(year)
    coverage = None if reported is not None or m is None else m["coverage"]
    if reported is not None:
        value, kind, reason = reported, "reported", None
    elif m is None:
        value, kind, reason = None, None, f"{year} has not started"
    else:
        value, kind, reason = m["value"], m["value_kind"], m["reason"]
    covered = None if m is None else m["covered_time"]["value"]
    covered_margin = _verdict(target, year, covered)
    return row | {
        "base_value_kgco2e": None, "actual_to_date_kgco2e": None,
        "trajectory": float(target.trajectory(year)), "value": value, "value_kind": kind, "measured": m,
        "coverage": coverage, "reason": None if value is not None else reason,
        "covered_time": {"value": covered, "margin": covered_margin["margin"],
                         "margin_pct": covered_margin["margin_pct"]},
    } | _verdict(target, year, value)  # fmt: skip


def _emission_status(base: sb.BaseYearSeries, t: sb.TargetRow, year: int, p: ItemProjection,
                     min_coverage: float) -> dict[str, Any]:  # fmt: skip
    row = target_out(t) | {"year": year}
    keep = np.array([not r and (t.category is None or c == t.category)
                     for r, c in zip(base.is_removal, base.category, strict=True)])  # fmt: skip
    series = einv.Baseline(base.year_ce, base.kind, base.monthly_kgco2e[:, keep].sum(axis=1, keepdims=True), ("t",))
    s = p.series
    mask = np.array([not r and (t.category is None or c == t.category)
                     for r, c in zip(s.is_removal, s.attrs["cfo_category"], strict=True)])  # fmt: skip
    actual = float(s.in_force[mask].sum())
    coverage = s.summary(mask, min_coverage)
    estimate = finite(float(p.projected[mask].sum()))
    if not p.year_over:
        kind = "projected"
    elif s.coverage.complete(mask):
        kind, estimate = "actual", actual
    else:
        kind = "gap_filled"
    value = estimate if coverage["sufficient"] else None
    target = einv.Target(t.base_year, t.target_year, float(series.total[0]), t.reduction_pct)
    covered = _verdict(target, year, estimate)
    return row | {
        "base_value_kgco2e": float(series.total[0]), "trajectory": float(target.trajectory(year)), "value": value,
        "value_kind": None if value is None else kind, "actual_to_date_kgco2e": actual, "measured": None,
        "coverage": coverage,
        "reason": coverage["reason"] if value is None else None,
        "covered_time": {"value": estimate, "margin": covered["margin"], "margin_pct": covered["margin_pct"]},
    } | _verdict(target, year, value)  # fmt: skip
