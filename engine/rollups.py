"""Rollups of readings (power W, registers, any instantaneous metric) per bucket and device.

Per bucket and device: ``sum``, ``min``, ``max``, ``count``, ``last`` (the value with the latest timestamp) and
``last_ts_us``; ``mean`` is ``sum / count``. Energy per bucket comes from :mod:`engine.buckets` (interval amounts
spread over time), not from here; ``last`` of a register here is the billing-style closing reading.

Resolutions: pass edges from :func:`engine.timebase.bucket_edges_us` (1 min, 15 min, 1 h, 1 day, 1 month, 1 year,
fiscal year; days and longer cut in Asia/Bangkok time). Sites and the city: :func:`engine.combine.regroup_devices`
with a device -> site map (all zeros for the city). A month from days: :func:`engine.combine.coarsen_buckets`. A new
batch into a stored bucket: :func:`engine.combine.merge` (every field is mergeable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lccm.engine import kernels as k
from lccm.engine.counters import Impl
from lccm.engine.timebase import check_edges


@dataclass(frozen=True, slots=True)
class SampleStats:
    """Statistics of readings per bucket (rows) and device (columns), in the metric's canonical unit."""

    OPS: ClassVar[dict[str, str]] = {
        "sum": "sum",
        "min": "min",
        "max": "max",
        "count": "sum",
        "last": "last",
        "last_ts_us": "last_ts",
    }
    edges_us: np.ndarray  # int64[n_buckets + 1]
    sum: np.ndarray  # float64
    min: np.ndarray  # float64, +inf where count == 0
    max: np.ndarray  # float64, -inf where count == 0
    count: np.ndarray  # int64
    last: np.ndarray  # float64, NaN where count == 0
    last_ts_us: np.ndarray  # int64, NO_TS where count == 0

    @property
    def mean(self) -> np.ndarray:
        """sum / count; NaN where count == 0."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum / np.maximum(self.count, 1), np.nan)


@dataclass(frozen=True, slots=True)
class SamplePrefix:
    """Statistics already stored for some (bucket, device) cells, over the readings up to their ``last_ts_us``: the
    rollup continues from them with later readings only. The kernel adds readings one at a time in the order given,
    so continuing a stored sum with the readings after it, in time order, gives the same bits as one pass over all of
    them (a sum of two partial sums would not)."""

    bucket_start_us: np.ndarray  # int64, one of the edges
    device: np.ndarray  # int64, column (the updaters': the span's index)
    sum: np.ndarray  # float64
    min: np.ndarray  # float64
    max: np.ndarray  # float64
    count: np.ndarray  # int64
    last: np.ndarray  # float64
    last_ts_us: np.ndarray  # int64


def sample_rollup(
    device_idx: np.ndarray,
    ts_us: np.ndarray,
    value: np.ndarray,
    edges_us: np.ndarray,
    n_devices: int,
    *,
    impl: Impl = "numba",
    prefix: SamplePrefix | None = None,
) -> SampleStats:
    """Roll readings (any order) up into the buckets ``[edges_us[b], edges_us[b + 1])``.

    Readings outside the edges and non-finite values are skipped. With ``prefix``, its cells start from the stored
    statistics instead of empty ones; pass only readings after a cell's ``last_ts_us``, in time order, for it.
    """
    edges = check_edges(edges_us)
    dev = np.ascontiguousarray(device_idx, dtype=np.int32)
    ts = np.ascontiguousarray(ts_us, dtype=np.int64)
    val = np.ascontiguousarray(value, dtype=np.float64)
    if not (dev.shape == ts.shape == val.shape) or dev.ndim != 1:
        raise ValueError("device_idx, ts_us and value must be 1-D arrays of one length")
    if dev.size and (dev.min() < 0 or dev.max() >= n_devices):
        raise ValueError(f"device index outside 0..{n_devices - 1}")
    shape = (edges.shape[0] - 1, n_devices)
    out = SampleStats(
        edges_us=edges,
        sum=np.zeros(shape),
        min=np.full(shape, np.inf),
        max=np.full(shape, -np.inf),
        count=np.zeros(shape, np.int64),
        last=np.full(shape, np.nan),
        last_ts_us=np.full(shape, k.NO_TS, np.int64),
    )
    if prefix is not None:
        cell = (np.searchsorted(edges, prefix.bucket_start_us), prefix.device)
        out.sum[cell], out.min[cell], out.max[cell] = prefix.sum, prefix.min, prefix.max
        out.count[cell], out.last[cell], out.last_ts_us[cell] = prefix.count, prefix.last, prefix.last_ts_us
    k.kernel(impl, "sample")(dev, ts, val, edges, out.sum, out.min, out.max, out.count, out.last, out.last_ts_us)
    return out
