"""How much of a period the data cover, and when a figure drawn from it is withheld (issue 11, point 2).

Every comparison, projection, target status and KPI carries its coverage (docs/reference.md#coverage-of-comparisons):

- **Metered items**: readings expected = each mapped device's elapsed seconds in the period (up to now) while in
  service (its commissioning and decommissioning dates, store/assets.py) / its registry cadence
  (``devices.cadence_s``); readings present = the seconds its daily energy buckets cover
  (``energy_buckets.covered_s``) / the same cadence. Buckets, not raw readings: a year of a meter is 365 rows
  whatever its cadence. Covered seconds are the time spanned by register intervals, so a gap the register bridges
  (the energy is known, only its spread over time is estimated) counts as covered, and a meter that stopped
  reporting does not.
- **Manual items**: item-months expected = the months of the period (started by now); present = those with the
  month's quantity entered (an entered 0 counts).
- An item's **time share** is its covered seconds / elapsed seconds (a metered item covers, of each month slice, the
  share of its devices' time in service that their buckets cover, all of it when none was in service: a meter that
  replaced another mid-year completes the item; a manual item covers the elapsed part of every entered month). An
  item that is not in the year's inventory, or a metered item with no device mapped, covers nothing.
- The **share** the threshold is applied to is weighted by the base year: the baseline over the covered time / the
  baseline of the whole period (each over the group's items, removals by their absolute value). That is the share of
  the base year's emissions in the period that the data can be compared with, so a missing refrigerant top-up does
  not withhold a city's figures and a missing electricity meter does. Where the group's baseline of the period is 0
  (sources new since the base year) the time share of its items is used instead (``basis`` 'time').

Below the threshold (``Settings.comparison_min_coverage``, ``LCCM_COMPARISON_MIN_COVERAGE``, default 0.9) the headline
% change, the projection, a target's value, margin and on-track verdict, and a KPI's full-year value are null, with
the ``reason``; the like-for-like figures over the covered time are given beside them (``covered_time``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from lccm.store.baseline import ItemSliceCoverage, SliceSpec

SETTING = "LCCM_COMPARISON_MIN_COVERAGE"
Basis = Literal["baseline", "time"]


def pct(share: float) -> str:
    """A share for people: 0.0043 -> '0.43 %' (two decimals, so 89.99 % never prints as 90 %)."""
    return f"{100 * share:.2f} %"


def below(share: float | None, threshold: float) -> str | None:
    """The reason a figure drawn from ``share`` of the data is withheld, or None when the share suffices."""
    if share is None:
        return "no data is expected in the period: nothing to compare"
    if share >= threshold:
        return None
    return f"coverage {pct(share)} is below the threshold {pct(threshold)} ({SETTING})"


def coverage_out(share: float | None, basis: Basis, threshold: float, *, readings_expected: float,
                 readings_present: float, months_expected: int, months_present: int) -> dict[str, Any]:  # fmt: skip
    """The ``coverage`` object of every answer (api/schemas_inventory.py CoverageOut)."""
    reason = below(share, threshold)
    return {
        "share": share, "basis": basis, "threshold": threshold, "sufficient": reason is None, "reason": reason,
        "readings_expected": readings_expected, "readings_present": readings_present,
        "readings_share": readings_present / readings_expected if readings_expected > 0 else None,
        "item_months_expected": months_expected, "item_months_present": months_present,
        "item_months_share": months_present / months_expected if months_expected > 0 else None,
    }  # fmt: skip


@dataclass
class ItemsCoverage:
    """Coverage of a period per item code (aligned with ``codes``), summed over the period's month slices."""

    codes: list[str]
    collection: list[str] = field(default_factory=list)  # metered, manual, or '' where no year of the period has it
    devices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # most devices mapped in a slice
    expected_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # elapsed seconds of the period
    covered_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # covered seconds (devices' mean)
    readings_expected: np.ndarray = field(default_factory=lambda: np.zeros(0))
    readings_present: np.ndarray = field(default_factory=lambda: np.zeros(0))
    months_expected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    months_present: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((12, 0)))  # covered share of each calendar month
    notes: list[list[str]] = field(default_factory=list)

    @property
    def time_share(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.expected_s > 0, self.covered_s / np.where(self.expected_s > 0, self.expected_s, 1), 0)

    def complete(self, mask: np.ndarray) -> bool:
        """Whether every item of ``mask`` is covered for all of its elapsed time."""
        return bool(np.all(self.covered_s[mask] >= self.expected_s[mask] * (1 - 1e-9)))

    def summary(self, mask: np.ndarray, baseline: np.ndarray, baseline_covered: np.ndarray,
                threshold: float) -> dict[str, Any]:  # fmt: skip
        """The coverage object of the items of ``mask`` (module docstring), given each item's baseline of the period
        and over its covered time."""
        whole = float(np.abs(baseline[mask]).sum())
        share: float | None
        basis: Basis
        if whole > 0:
            share, basis = min(1.0, float(np.abs(baseline_covered[mask]).sum()) / whole), "baseline"
        else:
            expected = float(self.expected_s[mask].sum())
            share, basis = (float(self.covered_s[mask].sum()) / expected if expected > 0 else None), "time"
        return coverage_out(
            share, basis, threshold,
            readings_expected=float(self.readings_expected[mask].sum()),
            readings_present=float(self.readings_present[mask].sum()),
            months_expected=int(self.months_expected[mask].sum()), months_present=int(self.months_present[mask].sum()),
        )  # fmt: skip

    def items_out(self, baseline: np.ndarray, baseline_covered: np.ndarray) -> list[dict[str, Any]]:
        """Per item: what is expected and present, its time share, its baseline of the period and over its covered
        time, and notes (no device mapped, not in the year's inventory)."""
        share = self.time_share
        return [
            {"item_code": c, "collection": self.collection[i] or None, "devices": int(self.devices[i]),
             "readings_expected": float(self.readings_expected[i]), "readings_present": float(self.readings_present[i]),
             "item_months_expected": int(self.months_expected[i]), "item_months_present": int(self.months_present[i]),
             "share": float(share[i]) if self.expected_s[i] > 0 else None,
             "baseline_kgco2e": float(baseline[i]), "baseline_covered_kgco2e": float(baseline_covered[i]),
             "notes": self.notes[i]}
            for i, c in enumerate(self.codes)
        ]  # fmt: skip


def items_coverage(codes: Sequence[str], slices: Sequence[SliceSpec], rows: Sequence[ItemSliceCoverage],
                   now: datetime, kind: str) -> ItemsCoverage:  # fmt: skip
    """Sum the store's per-slice coverage (store.baseline.coverage) into per-item figures and month weights."""
    n = len(codes)
    index = {c: i for i, c in enumerate(codes)}
    out = ItemsCoverage(
        list(codes), [""] * n, np.zeros(n, np.int64), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
        np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros((12, n)), [[] for _ in codes],
    )  # fmt: skip
    by_slice: dict[int, dict[str, ItemSliceCoverage]] = {}
    for row in rows:
        by_slice.setdefault(row.slice, {})[row.item_code] = row
    for j, s in enumerate(slices):
        slice_s = (s.end - s.start).total_seconds()
        month_s = slice_s / s.fraction
        elapsed = max(0.0, (min(s.end, now) - s.start).total_seconds())
        if elapsed <= 0:
            continue
        present = by_slice.get(j)
        for c, i in index.items():
            out.expected_s[i] += elapsed
            r = None if present is None else present.get(c)
            if r is None:
                why = (
                    f"no {kind} reporting year {s.year_ce}" if present is None else f"not in the {s.year_ce} inventory"
                )
                _note(out.notes[i], why)
                continue
            out.collection[i] = r.collection
            if r.collection == "manual":
                out.months_expected[i] += 1
                if r.entered:
                    out.months_present[i] += 1
                    out.covered_s[i] += elapsed
                    out.weights[s.month_start.month - 1, i] += s.fraction  # the actual counts the entry pro rata
                continue
            out.devices[i] = max(int(out.devices[i]), r.devices)
            if r.devices == 0:
                _note(out.notes[i], f"no device mapped in {s.year_ce}")
                continue
            out.readings_expected[i] += r.readings_expected
            out.readings_present[i] += r.readings_present
            # The share of the device time expected (each device while in service) that is covered; a slice in which
            # no mapped device was in service expects nothing and misses nothing. Without dates this is the
            # devices' mean covered time over the elapsed time, as before.
            share = min(r.covered_s, r.expected_s) / r.expected_s if r.expected_s > 0 else 1.0
            out.covered_s[i] += share * elapsed
            out.weights[s.month_start.month - 1, i] += share * elapsed / month_s
    return out


def _note(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)
