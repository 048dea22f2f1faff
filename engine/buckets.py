"""Interval amounts (kWh, litres) into time buckets, pro rata by time, with quality and coverage per bucket.

Rule: every interval is spread evenly over the time it covers, always, whatever its length: a 3-hour gap puts a
third into each hourly bucket, and a reading interval 16:50-17:10 UTC puts half on each side of Bangkok midnight.
(The alternative, "all of it to the bucket of the interval end", would put consumption before midnight into the
next day.) Within one reading cadence this is interpolation at the meter's own resolution and keeps the interval's
quality; a gap is already flagged estimated by :mod:`engine.counters`.

Per bucket and device: ``amount`` (sum), ``amount_estimated`` (the part from intervals that are not measured),
``covered_us`` (microseconds of the bucket covered by intervals, each instant once: an interval counts from its
``cover_from_us``), ``count`` (intervals touching the bucket) and
``quality`` (the worst quality among them; missing if none). Partial coverage is not folded into ``quality``
because the bucket at the live edge is partial by nature: :func:`mark_incomplete` does that for buckets that are
closed.

Conservation: the sum over buckets equals the sum over intervals, as long as the edges cover every interval.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from lccm.engine import kernels as k
from lccm.engine.counters import Impl, Intervals, Quality
from lccm.engine.timebase import check_edges


@dataclass(frozen=True, slots=True)
class WeightTable:
    """Piecewise-constant weights per series, CSR (kernel input): rows ``ptr[s]:ptr[s + 1]`` of ``from_us``/``value``
    are series s's steps, each holding from ``from_us`` to the next step; NaN = no weight in force."""

    ptr: np.ndarray  # int64[n_series + 1]
    from_us: np.ndarray  # int64
    value: np.ndarray  # float64

    @classmethod
    def unit(cls) -> WeightTable:
        """One series, weight 1 at all times."""
        return cls(np.array([0, 1], np.int64), np.array([k.NO_TS], np.int64), np.array([1.0]))

    @property
    def n_series(self) -> int:
        return int(self.ptr.shape[0] - 1)


@dataclass(frozen=True, slots=True)
class IntervalBuckets:
    """Interval amounts per bucket (rows) and device (columns)."""

    OPS: ClassVar[dict[str, str]] = {
        "amount": "sum",
        "amount_estimated": "sum",
        "covered_us": "cover",
        "quality": "worst",
        "count": "sum",
    }
    edges_us: np.ndarray  # int64[n_buckets + 1]
    amount: np.ndarray  # float64, register units x multiplier (kWh or L)
    amount_estimated: np.ndarray  # float64, the part of ``amount`` from intervals that are not measured
    covered_us: np.ndarray  # int64, microseconds of the bucket covered by intervals
    quality: np.ndarray  # int8, Quality: worst of the intervals touching the bucket; MISSING if none
    count: np.ndarray  # int32, intervals touching the bucket


def run_spread(
    intervals: Intervals,
    edges_us: np.ndarray,
    n_devices: int,
    weights: WeightTable,
    series_of_device: np.ndarray,
    impl: Impl,
) -> tuple[np.ndarray, ...]:
    """Run the spread kernel; returns (weighted, weighted_estimated, unweighted, covered_us, quality, count)."""
    edges = check_edges(edges_us)
    dev = np.ascontiguousarray(intervals.device_idx, dtype=np.int32)
    if dev.size and (dev.min() < 0 or dev.max() >= n_devices):
        raise ValueError(f"device index outside 0..{n_devices - 1}")
    start = np.ascontiguousarray(intervals.start_us, dtype=np.int64)
    end = np.ascontiguousarray(intervals.end_us, dtype=np.int64)
    if np.any(end < start):
        raise ValueError("interval ends before it starts")
    series = np.ascontiguousarray(series_of_device, dtype=np.int32)
    if series.shape != (n_devices,) or (series.size and series.max() >= weights.n_series):
        raise ValueError("series_of_device must give each device a series index (or -1)")
    shape = (edges.shape[0] - 1, n_devices)
    weighted, weighted_est, unweighted = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    covered = np.zeros(shape, np.int64)
    quality = np.full(shape, -1, np.int8)
    count = np.zeros(shape, np.int32)
    cover_from = np.ascontiguousarray(intervals.cover_from_us, dtype=np.int64)
    if cover_from.shape != start.shape:
        raise ValueError("cover_from_us must have one entry per interval")
    k.kernel(impl, "spread")(
        dev, start, end, np.ascontiguousarray(intervals.amount, dtype=np.float64),
        np.ascontiguousarray(intervals.quality, dtype=np.int8), edges, series,
        np.ascontiguousarray(weights.ptr, dtype=np.int64), np.ascontiguousarray(weights.from_us, dtype=np.int64),
        np.ascontiguousarray(weights.value, dtype=np.float64),
        weighted, weighted_est, unweighted, covered, quality, count, cover_from,
    )  # fmt: skip
    quality[quality < 0] = Quality.MISSING
    return weighted, weighted_est, unweighted, covered, quality, count


def spread_intervals(
    intervals: Intervals, edges_us: np.ndarray, n_devices: int, *, impl: Impl = "numba"
) -> IntervalBuckets:
    """Spread interval amounts over the buckets ``[edges_us[b], edges_us[b + 1])``, pro rata by time.

    Parts of intervals outside the edges are left out: choose edges that cover the intervals (e.g. from
    :func:`engine.timebase.bucket_edges_us` over ``start_us.min()..end_us.max()``) to conserve the total.
    """
    amount, est, _, covered, quality, count = run_spread(
        intervals, edges_us, n_devices, WeightTable.unit(), np.zeros(n_devices, np.int32), impl
    )
    return IntervalBuckets(check_edges(edges_us), amount, est, covered, quality, count)


def mark_incomplete(buckets: IntervalBuckets, complete_before_us: int | np.ndarray) -> IntervalBuckets:
    """Quality MISSING for every bucket that has ended by ``complete_before_us`` (e.g. the watermark; one for all
    devices, or one per device column) and is not fully covered by intervals: part of its amount is missing. Open
    buckets keep their quality."""
    width = np.diff(buckets.edges_us)[:, None]
    closed = buckets.edges_us[1:, None] <= np.asarray(complete_before_us, np.int64)[None, ...]
    short = closed & (buckets.covered_us < width)
    return replace(buckets, quality=np.where(short, np.int8(Quality.MISSING), buckets.quality).astype(np.int8))
