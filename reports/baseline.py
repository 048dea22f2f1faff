"""Comparison of any period with the base year, and the year-end projection (issue 5, item 4; coverage: issue 11).

The store returns series (store/baseline.py); the engine does the arithmetic (engine/inventory.py: Baseline,
compare, covered_projection). All emissions are kgCO2e. The answers are the JSON documents of
``GET /organisations/{code}/comparison`` and ``/projection``; ``lccm compare`` and ``lccm projection`` print the same
documents (``--json``) or tables of them.

Every answer carries its coverage (reports/coverage.py): the share of expected readings and item-months present, per
item and per group. Below the threshold (``min_coverage``, Settings.comparison_min_coverage) the headline % change
and the projection are withheld (null, with the reason); ``covered_time`` always gives the like-for-like figures over
the covered time only: actual against the baseline of the same time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import psycopg

from lccm.engine import calendar as cal
from lccm.engine import inventory as einv
from lccm.reports.coverage import ItemsCoverage, items_coverage
from lccm.reports.periods import bangkok_today, end_of, period_out, slice_specs, today_end, up_to_today
from lccm.store import baseline as sb

By = Literal["scope", "cfo_category", "gpc_ref", "site", "item"]
YearKind = cal.YearKind


def finite(x: float) -> float | None:
    """A float for JSON: NaN and infinities (an undefined ratio or percentage) become None."""
    return float(x) if np.isfinite(x) else None


class Series:
    """Base year and actual of one period aligned on item codes, with each item's grouping attributes and coverage.

    ``baseline`` is each item's base-year slice of the period (matching months, partial months pro-rated by days),
    ``baseline_covered`` the same over the time the item's data cover (reports/coverage.py), ``now`` the instant
    the coverage is counted up to."""

    def __init__(self, conn: psycopg.Connection, base: sb.BaseYearSeries, period: cal.Period, now: datetime) -> None:
        slices = slice_specs(period, base.kind)
        base_ef = dict(zip(base.codes, base.ef_kgco2e_per_unit, strict=True))
        figures = sb.period_figures(conn, base.organisation_id, base.kind, slices, base_ef, now)
        actual = figures.actual
        extra = [c for c in actual.items if c not in base_ef]
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
        self.base = einv.Baseline(base.year_ce, base.kind, monthly, tuple(self.codes))
        self.in_force = np.array([actual.in_force.get(c, 0.0) for c in self.codes])
        self.base_factors = np.array([actual.base_factors.get(c, 0.0) for c in self.codes])
        # Items with data in the period (a metered month or an entered quantity); the others count as zero in the
        # plain figures, which would read as a 100 % cut where nobody has entered this year's data yet.
        self.has_data = np.array([c in actual.in_force for c in self.codes], dtype=bool)
        self.missing_years = actual.missing_years
        self.coverage: ItemsCoverage = items_coverage(self.codes, slices, figures.coverage, now, base.kind)
        self.baseline = self.base.slice(period)
        self.baseline_covered = self.base.covered(self.coverage.weights)
        self.factor_periods = figures.factor_periods

    def groups(self, by: By) -> tuple[list[str], np.ndarray]:
        """Group labels and the 0/1 matrix (items x groups) that sums items into groups."""
        keys = self.attrs[by]
        labels = sorted(set(keys))
        matrix = np.zeros((len(keys), len(labels)))
        for i, k in enumerate(keys):
            matrix[i, labels.index(k)] = 1.0
        return labels, matrix

    def summary(self, mask: np.ndarray, min_coverage: float) -> dict[str, Any]:
        """The coverage object of the items of ``mask``."""
        return self.coverage.summary(mask, self.baseline, self.baseline_covered, min_coverage)

    def items_coverage(self) -> list[dict[str, Any]]:
        return self.coverage.items_out(self.baseline, self.baseline_covered)


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


# ------------------------------------------------------------------------------------------------------ comparison
def factor_periods_out(periods: list[sb.MeteredFactorPeriod]) -> list[dict[str, Any]]:
    """The factor periods of the metered items whose factor in force changed inside the period (fiscal 2026 and
    TGO's grid factor of 1 January 2026): one line per item and factor, each "quantity x factor = kgCO2e" at the
    factor in force and at the base year's factor; an item's lines add up to its actual figures."""
    several = {c for c in {p.item_code for p in periods} if sum(p.item_code == c for p in periods) > 1}
    return [
        {"item_code": p.item_code, "start": p.start.isoformat(), "end": p.end.isoformat(), "quantity": p.quantity,
         "unit": p.unit, "ef_kgco2e_per_unit": p.ef_kgco2e_per_unit, "ef_source": p.ef_source,
         "actual_kgco2e": p.kgco2e,
         "ef_base_year_kgco2e_per_unit": round(p.kgco2e_base / p.quantity, 9) if p.quantity else None,
         "actual_base_factors_kgco2e": p.kgco2e_base}
        for p in periods if p.item_code in several
    ]  # fmt: skip


def _comparison_row(s: Series, group: str, mask: np.ndarray, min_coverage: float) -> dict[str, Any]:
    a, ab = float(s.in_force[mask].sum()), float(s.base_factors[mask].sum())
    b, bc = float(s.baseline[mask].sum()), float(s.baseline_covered[mask].sum())
    plain, plain_bf = einv.compare(a, b), einv.compare(ab, b)
    covered, covered_bf = einv.compare(a, bc), einv.compare(ab, bc)
    cov = s.summary(mask, min_coverage)
    shown = cov["sufficient"]
    return {
        "group": group, "actual_kgco2e": a, "actual_base_factors_kgco2e": ab, "baseline_kgco2e": b,
        "delta_kgco2e": finite(float(plain.delta)) if shown else None,
        "delta_pct": finite(float(plain.delta_pct)) if shown else None,
        "delta_base_factors_kgco2e": finite(float(plain_bf.delta)) if shown else None,
        "delta_base_factors_pct": finite(float(plain_bf.delta_pct)) if shown else None,
        "coverage": cov,
        "covered_time": {
            "baseline_kgco2e": bc, "delta_kgco2e": finite(float(covered.delta)),
            "delta_pct": finite(float(covered.delta_pct)), "delta_base_factors_kgco2e": finite(float(covered_bf.delta)),
            "delta_base_factors_pct": finite(float(covered_bf.delta_pct)),
        },
        "items_without_data": [c for i, c in enumerate(s.codes) if mask[i] and not s.has_data[i]],
    }  # fmt: skip


def comparison(conn: psycopg.Connection, code: str, period: cal.Period, by: By = "scope", *, min_coverage: float,
               now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """Actual emissions of a period against the base year's slice (matching months, partial months pro-rated by
    days), at the factors in force and at the base year's factors, per group and in total (removals count
    negative), each with its coverage. A period running past today is cut at the end of today (``period.partial``),
    so its days so far meet the base year's same days. Below ``min_coverage`` the deltas are null (``coverage.reason``);
    ``covered_time`` compares actual with the baseline over the covered time only. Items with no data in the period
    (no metered day, no entered quantity) count as zero in the plain figures and are listed. ``factor_periods``
    gives, for metered items whose factor changed inside the period, one line per factor (``factor_periods_out``).

    Raises ``UnknownOrganisation``, ``BaselineError`` (no base year) or ``RequestInvalid``."""
    return comparisons(conn, code, period, (by,), min_coverage=min_coverage, now=now)[by]


def comparisons(conn: psycopg.Connection, code: str, period: cal.Period, bys: Sequence[By], *, min_coverage: float,
                now: datetime | None = None) -> dict[By, dict[str, Any]]:  # fmt: skip
    """``comparison`` of one period by each of several groupings, from one reading of the series (the carbon page
    shows four groupings: the series' queries are most of the time, and they do not depend on the grouping)."""
    now = _now(now)
    period, requested_end = up_to_today(period, now, "from" if period.kind == "custom" else "date")
    base = sb.base_year_series(conn, code)
    s = Series(conn, base, period, now)
    every = np.ones(len(s.codes), dtype=bool)
    found: dict[By, dict[str, Any]] = {}
    for by in bys:
        labels, m = s.groups(by)
        found[by] = {
            "organisation": code, "base_year": base.year_ce, "year_kind": base.kind,
            "period": period_out(period, requested_end), "as_of": min(now, period.end).isoformat(), "by": by,
            "rows": [_comparison_row(s, g, m[:, j] > 0, min_coverage) for j, g in enumerate(labels)],
            "total": _comparison_row(s, "total", every, min_coverage),
            "items_coverage": s.items_coverage(),
            "items_without_data": [c for c, d in zip(s.codes, s.has_data, strict=True) if not d],
            "missing_reporting_years": s.missing_years,
            "factor_periods": factor_periods_out(s.factor_periods),
        }  # fmt: skip
    return found


# ------------------------------------------------------------------------------------------------------ projection
@dataclass(frozen=True, slots=True)
class ItemProjection:
    """The year-end projection of every item (engine.inventory.covered_projection): the one source of the
    projection's rows and total and of an emission target's value, so every grouping adds up to the same total."""

    series: Series
    year: int
    kind: YearKind
    ytd: cal.Period
    requested_end: datetime | None
    year_over: bool
    baseline_year: np.ndarray  # each item's baseline of the whole reporting year
    projection: einv.CoveredProjection

    @property
    def projected(self) -> np.ndarray:
        return self.projection.projected


def item_projection(conn: psycopg.Connection, base: sb.BaseYearSeries, year: int, kind: YearKind, as_of: datetime,
                    now: datetime) -> ItemProjection:  # fmt: skip
    """Each item's projected total of reporting year ``year`` from its data up to ``as_of`` (a Bangkok midnight; the
    year's end at most, and never past the end of today), coverage counted up to ``now``."""
    yp = cal.year_period(year, kind)
    end = min(as_of, yp.end)
    cut = max(yp.start, min(end, today_end(now)))
    ytd = cal.Period("fytd" if kind == "fiscal" else "ytd", yp.start, cut,
                     f"{cal.year_label(year, kind)} to {cut.isoformat()}")  # fmt: skip
    s = Series(conn, base, ytd, now)
    baseline_year = s.base.slice(yp)
    year_s = (yp.end - yp.start).total_seconds()
    proj = einv.covered_projection(s.in_force, s.baseline_covered, baseline_year, s.coverage.covered_s / year_s)
    return ItemProjection(s, year, kind, ytd, end if cut < end else None, cut >= yp.end, baseline_year, proj)


def _projection_row(p: ItemProjection, group: str, mask: np.ndarray, min_coverage: float) -> dict[str, Any]:
    s = p.series
    a, bc = float(s.in_force[mask].sum()), float(s.baseline_covered[mask].sum())
    b_ytd = float(s.baseline[mask].sum())
    projected = float(p.projected[mask].sum())
    cov = s.summary(mask, min_coverage)
    methods = [m for m, k in zip(p.projection.method, mask, strict=True) if k]
    codes = [c for c, k in zip(s.codes, mask, strict=True) if k]
    return {
        "group": group, "actual_ytd_kgco2e": a, "baseline_ytd_kgco2e": b_ytd, "baseline_ytd_covered_kgco2e": bc,
        "baseline_rest_kgco2e": float(p.baseline_year[mask].sum()) - b_ytd,
        "ratio": finite(a / bc) if bc != 0 else None,
        "projected_kgco2e": finite(projected) if cov["sufficient"] else None,
        "defined": "undefined" not in methods, "coverage": cov,
        "covered_time": {"projected_kgco2e": finite(projected)},
        "items_baseline_assumed": [c for c, m in zip(codes, methods, strict=True) if m == "baseline"],
        "items_run_rate": [c for c, m in zip(codes, methods, strict=True) if m == "run_rate"],
    }  # fmt: skip


def projection(conn: psycopg.Connection, code: str, on: date | None = None, kind: YearKind | None = None,
               by: By = "scope", *, min_coverage: float, now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """Year-end projection of the reporting year containing ``on`` (default today, Bangkok; data up to that day,
    included, and never past today), item by item over the covered time (engine.inventory.covered_projection):
    ratio = actual / baseline over the covered time, projected = ratio x the base year's full year. Groups and the
    total are sums of the item projections. Below ``min_coverage`` the projection is withheld (null, with
    ``coverage.reason``); ``covered_time.projected_kgco2e`` still gives it. ``kind`` defaults to the base year's.

    Raises ``UnknownOrganisation`` or ``BaselineError`` (no base year)."""
    now = _now(now)
    base = sb.base_year_series(conn, code)
    d = on or bangkok_today(now)
    year_kind = kind or base.kind
    p = item_projection(conn, base, cal.year_of(d, year_kind), year_kind, end_of(d), now)
    labels, m = p.series.groups(by)
    total = _projection_row(p, "total", np.ones(len(p.series.codes), dtype=bool), min_coverage)
    return {
        "organisation": code, "year": p.year, "year_kind": p.kind, "ytd": period_out(p.ytd, p.requested_end),
        "as_of": min(now, p.ytd.end).isoformat(), "by": by,
        "rows": [_projection_row(p, g, m[:, j] > 0, min_coverage) for j, g in enumerate(labels)],
        "total": total, "projected_total_kgco2e": total["projected_kgco2e"],
        "items_coverage": p.series.items_coverage(), "missing_reporting_years": p.series.missing_years,
    }  # fmt: skip


__all__ = ["By", "ItemProjection", "Series", "comparison", "comparisons", "finite", "item_projection", "projection"]
