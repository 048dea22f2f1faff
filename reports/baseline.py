"""Comparison of any period with the base year, and the year-end projection (issue 5, item 4).

The store returns series (store/baseline.py); the engine does the arithmetic (engine/inventory.py: Baseline,
compare_period, project_year_end). All emissions are kgCO2e. The answers are the JSON documents of
``GET /organisations/{code}/comparison`` and ``/projection``; ``lccm compare`` and ``lccm projection`` print the same
documents (``--json``) or tables of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Literal

import numpy as np
import psycopg

from lccm.engine import calendar as cal
from lccm.engine import inventory as einv
from lccm.reports.periods import end_of, period_out, slice_specs
from lccm.store import baseline as sb

By = Literal["scope", "cfo_category", "gpc_ref", "site", "item"]
YearKind = cal.YearKind


def finite(x: float) -> float | None:
    """A float for JSON: NaN and infinities (an undefined ratio or percentage) become None."""
    return float(x) if np.isfinite(x) else None


class Series:
    """Base year and actual of one period aligned on item codes, with each item's grouping attributes."""

    def __init__(self, conn: psycopg.Connection, base: sb.BaseYearSeries, period: cal.Period) -> None:
        slices = slice_specs(period, base.kind)
        base_ef = dict(zip(base.codes, base.ef_kgco2e_per_unit, strict=True))
        actual = sb.actual_kgco2e(conn, base.organisation_id, base.kind, slices, base_ef)
        extra = [c for c in actual.in_force if c not in base_ef]
        self.codes = list(base.codes) + extra
        info = {c: actual.items[c] for c in extra}
        self.attrs: dict[str, list[str]] = {
            "scope": [str(s) for s in base.scope] + [str(info[c].scope) for c in extra],
            "cfo_category": list(base.category) + [info[c].category for c in extra],
            "gpc_ref": [g or "(none)" for g in base.gpc_ref] + [info[c].gpc_ref or "(none)" for c in extra],
            "site": [s or "(none)" for s in base.site] + ["(none)"] * len(extra),
            "item": self.codes,
        }
        self.is_removal = list(base.is_removal) + [info[c].is_removal for c in extra]
        monthly = np.hstack([base.monthly_kgco2e, np.zeros((12, len(extra)))])
        self.baseline = einv.Baseline(base.year_ce, base.kind, monthly, tuple(self.codes))
        self.in_force = np.array([actual.in_force.get(c, 0.0) for c in self.codes])
        self.base_factors = np.array([actual.base_factors.get(c, 0.0) for c in self.codes])
        # Items with data in the period (a metered month or an entered quantity); the others count as zero in the
        # plain figures, which would read as a 100 % cut where nobody has entered this year's data yet.
        self.has_data = np.array([c in actual.in_force for c in self.codes], dtype=bool)
        self.missing_years = actual.missing_years

    def groups(self, by: By) -> tuple[list[str], np.ndarray]:
        """Group labels and the 0/1 matrix (items x groups) that sums items into groups."""
        keys = self.attrs[by]
        labels = sorted(set(keys))
        matrix = np.zeros((len(keys), len(labels)))
        for i, k in enumerate(keys):
            matrix[i, labels.index(k)] = 1.0
        return labels, matrix


def _comparison_rows(labels: Sequence[str], pc: einv.PeriodComparison) -> list[dict[str, Any]]:
    a, b = pc.in_force, pc.base_factors
    return [
        {"group": g, "actual_kgco2e": finite(a.actual[j]), "actual_base_factors_kgco2e": finite(b.actual[j]),
         "baseline_kgco2e": finite(a.baseline[j]), "delta_kgco2e": finite(a.delta[j]),
         "delta_pct": finite(a.delta_pct[j]), "delta_base_factors_kgco2e": finite(b.delta[j]),
         "delta_base_factors_pct": finite(b.delta_pct[j])}
        for j, g in enumerate(labels)
    ]  # fmt: skip


def comparison(conn: psycopg.Connection, code: str, period: cal.Period, by: By = "scope") -> dict[str, Any]:
    """Actual emissions of a period against the base year's slice (matching months, partial months pro-rated by
    days), at the factors in force and at the base year's factors, per group and in total (removals count
    negative). Items with no data in the period (no metered month, no entered quantity) count as zero there and
    are listed; ``like_for_like`` compares the items that have data only.

    Raises ``UnknownOrganisation``, ``BaselineError`` (no base year) or ``RequestInvalid``."""
    base = sb.base_year_series(conn, code)
    s = Series(conn, base, period)
    labels, m = s.groups(by)
    grouped = einv.compare_period(
        einv.Baseline(base.year_ce, base.kind, s.baseline.monthly @ m, tuple(labels)), period,
        s.in_force @ m, s.base_factors @ m,
    )  # fmt: skip
    total, like_for_like = (einv.compare_period(
        einv.Baseline(base.year_ce, base.kind, s.baseline.monthly[:, keep].sum(axis=1, keepdims=True), ("total",)),
        period, s.in_force[keep].sum(keepdims=True), s.base_factors[keep].sum(keepdims=True),
    ) for keep in (np.ones(len(s.codes), dtype=bool), s.has_data))  # fmt: skip
    rows = _comparison_rows(labels, grouped)
    for j, row in enumerate(rows):
        row["items_without_data"] = [c for i, c in enumerate(s.codes) if m[i, j] and not s.has_data[i]]
    return {
        "organisation": code, "base_year": base.year_ce, "year_kind": base.kind, "period": period_out(period),
        "by": by, "rows": rows, "total": _comparison_rows(["total"], total)[0],
        # the same comparison over the items that have data in the period only
        "like_for_like": _comparison_rows(["items with data"], like_for_like)[0] | {
            "items": [c for c, d in zip(s.codes, s.has_data, strict=True) if d]},
        "items_without_data": [c for c, d in zip(s.codes, s.has_data, strict=True) if not d],
        "missing_reporting_years": s.missing_years,
    }  # fmt: skip


def projection(conn: psycopg.Connection, code: str, on: date | None = None, kind: YearKind | None = None,
               by: By = "scope") -> dict[str, Any]:  # fmt: skip
    """Year-end projection of the reporting year containing ``on`` (default today, Bangkok; data up to that day,
    included): actual to date x (baseline full year / baseline to date) per group (ratio method,
    engine/inventory.py). ``kind`` defaults to the base year's.

    Raises ``UnknownOrganisation`` or ``BaselineError`` (no base year)."""
    base = sb.base_year_series(conn, code)
    year_kind = kind or base.kind
    as_of = end_of(on)
    s = Series(conn, base, cal.ytd_period(as_of, year_kind))
    labels, m = s.groups(by)
    proj = einv.project_year_end(einv.Baseline(base.year_ce, base.kind, s.baseline.monthly @ m, tuple(labels)),
                                 as_of, s.in_force @ m, year_kind)  # fmt: skip
    rows = [
        {"group": g, "actual_ytd_kgco2e": finite(proj.actual_ytd[j]),
         "baseline_ytd_kgco2e": finite(proj.baseline_ytd[j]), "baseline_rest_kgco2e": finite(proj.baseline_rest[j]),
         "ratio": finite(proj.ratio[j]), "projected_kgco2e": finite(proj.projected[j]),
         "defined": bool(proj.defined[j])}
        for j, g in enumerate(labels)
    ]  # fmt: skip
    return {"organisation": code, "year": proj.year, "year_kind": year_kind, "ytd": period_out(proj.ytd), "by": by,
            "rows": rows, "projected_total_kgco2e": finite(float(np.nansum(proj.projected))),
            "missing_reporting_years": s.missing_years}  # fmt: skip
