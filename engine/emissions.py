"""Emissions: interval amounts (kWh, litres) x the emission factor in force, per interval or per bucket.

An interval is spread over time evenly (as in :mod:`engine.buckets`) and cut at every factor change, so an interval
straddling a change is split at the change instant, pro rata by time: 10 kWh over 16:30-17:30 UTC on
2025-12-31 is 5 kWh x 0.4999 + 5 kWh x 0.4750 = 4.8745 kgCO2e (the change is 2026-01-01 00:00 Bangkok = 17:00 UTC).

Two views of every figure, same code, different factor table:

- in force: :meth:`engine.factors.FactorRegistry.table` - the factor valid at each instant;
- base year: :meth:`engine.factors.FactorRegistry.base_year_table` - the base year's factor for all time, for
  like-for-like comparison with the baseline (docs/reference.md#grid-electricity-factors).

Amounts at instants with no factor in force (a key whose history has a hole, a device without a source class) are
not dropped: they are returned as ``amount_without_factor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lccm.engine import kernels as k
from lccm.engine.buckets import WeightTable, run_spread
from lccm.engine.counters import Impl, Intervals
from lccm.engine.factors import FactorRegistry, SourceClass


@dataclass(frozen=True, slots=True)
class EmissionBuckets:
    """Emissions per bucket (rows) and device or group (columns)."""

    OPS: ClassVar[dict[str, str]] = {"kgco2e": "sum", "kgco2e_estimated": "sum", "amount_without_factor": "sum"}
    edges_us: np.ndarray  # int64[n_buckets + 1]
    kgco2e: np.ndarray  # float64
    kgco2e_estimated: np.ndarray  # float64, the part from intervals that are not measured
    amount_without_factor: np.ndarray  # float64, activity units (kWh or L) at instants with no factor in force


def factor_series(
    registry: FactorRegistry,
    class_of_device: Sequence[SourceClass | None],
    *,
    base_year_us: tuple[int, int] | None = None,
) -> tuple[WeightTable, np.ndarray]:
    """The factor table and ``series_of_device`` for devices classified by source class (None = no emissions).

    With ``base_year_us = (start, end)`` every factor is the base year's, constant for all time.
    """
    keys = sorted({c.factor_key for c in class_of_device if c is not None})
    index = {key: i for i, key in enumerate(keys)}
    series = np.array([-1 if c is None else index[c.factor_key] for c in class_of_device], dtype=np.int32)
    if base_year_us is None:
        return registry.table(keys), series
    return registry.base_year_table(keys, *base_year_us), series


def bucket_emissions(
    intervals: Intervals,
    edges_us: np.ndarray,
    n_devices: int,
    factors: WeightTable,
    series_of_device: np.ndarray,
    *,
    impl: Impl = "numba",
) -> EmissionBuckets:
    """kgCO2e per bucket ``[edges_us[b], edges_us[b + 1])`` and device: interval amounts spread pro rata by time,
    each piece at the factor in force over it (``series_of_device[d]`` picks device d's series; -1 = none)."""
    kg, kg_est, without, *_ = run_spread(intervals, edges_us, n_devices, factors, series_of_device, impl)
    return EmissionBuckets(np.ascontiguousarray(edges_us, dtype=np.int64), kg, kg_est, without)


def interval_emissions(
    intervals: Intervals,
    factors: WeightTable,
    series_of_device: np.ndarray,
    *,
    impl: Impl = "numba",
) -> tuple[np.ndarray, np.ndarray]:
    """Per interval: (kgCO2e, amount without a factor in force), split at factor changes pro rata by time."""
    dev = np.ascontiguousarray(intervals.device_idx, dtype=np.int32)
    series = np.ascontiguousarray(series_of_device, dtype=np.int32)
    if dev.size and (dev.min() < 0 or dev.max() >= series.shape[0]):
        raise ValueError("device index outside series_of_device")
    if series.size and series.max() >= factors.n_series:
        raise ValueError("series index outside the factor table")
    n = dev.shape[0]
    kg = np.empty(n)
    without = np.empty(n)
    k.kernel(impl, "weight")(
        dev,
        np.ascontiguousarray(intervals.start_us, dtype=np.int64),
        np.ascontiguousarray(intervals.end_us, dtype=np.int64),
        np.ascontiguousarray(intervals.amount, dtype=np.float64),
        series, factors.ptr, factors.from_us, factors.value, kg, without,
    )  # fmt: skip
    return kg, without


def classify(class_of_device: Sequence[SourceClass | None], by: str) -> tuple[np.ndarray, list[object]]:
    """``group_of_device`` and labels for :func:`engine.combine.regroup_devices`, grouping devices by a source-class
    attribute: ``"scope"``, ``"cfo_category"``, ``"gpc_ref"`` or ``"key"``. Unclassified devices get -1."""
    if by not in ("scope", "cfo_category", "gpc_ref", "key"):
        raise ValueError(f"cannot group by {by!r}")
    values = [None if c is None else getattr(c, by) for c in class_of_device]
    labels = sorted({v for v in values if v is not None}, key=str)
    index = {v: i for i, v in enumerate(labels)}
    return np.array([-1 if v is None else index[v] for v in values], dtype=np.int64), labels
