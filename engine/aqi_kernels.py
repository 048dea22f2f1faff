"""The loops behind the air-quality indices: hourly means, trailing moving means, NowCast.

Same pattern as :mod:`engine.kernels`: each kernel is written once as plain Python over numpy arrays and compiled
with ``numba.njit(cache=True)``; :data:`KERNELS` holds both builds (``"numba"``, ``"python"``) and the tests run
both. They live in this one file for the reason given there (numba's disk cache follows the kernel's own file).

Layout: hourly series are ``[hour, station]`` float64 arrays (hour-first, as the engine's bucket outputs), NaN for a
missing hour; callers in :mod:`engine.aqi` check shapes, dtypes and values, kernels trust them. Sums run in hour
order in both builds, so the two agree bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

US_PER_H = 3_600_000_000


def hourly_kernel(
    ts_us: Any,
    value: Any,
    station_idx: Any,
    start_us: int,
    n_hours: int,
    out_sum: Any,
    out_count: Any,
) -> tuple:
    """Add each reading into its hour ``[start + h x 1 h, start + (h + 1) x 1 h)``; returns (outside, not_finite).

    Readings before ``start_us`` or past the last hour are counted in ``outside``; NaN/inf values in
    ``not_finite``; neither is added. ``out_sum`` starts at 0, ``out_count`` at 0.
    """
    outside = 0
    not_finite = 0
    for r in range(ts_us.shape[0]):
        v = value[r]
        if not math.isfinite(v):
            not_finite += 1
            continue
        t = ts_us[r]
        if t < start_us:
            outside += 1
            continue
        h = (t - start_us) // US_PER_H
        if h >= n_hours:
            outside += 1
            continue
        s = station_idx[r]
        out_sum[h, s] += v
        out_count[h, s] += 1
    return outside, not_finite


def moving_mean_kernel(values: Any, window: int, min_count: int, out_mean: Any, out_count: Any) -> None:
    """Trailing mean over hours ``i - window + 1 .. i`` (hours before the series count as missing).

    ``out_count`` gets the number of valid (non-NaN) hours in the window; ``out_mean`` their mean when at least
    ``min_count`` (>= 1) are valid, else NaN. The window is summed afresh for each hour (24 additions at most), so
    no rounding drift builds up along a long series.
    """
    n = values.shape[0]
    ns = values.shape[1]
    for i in range(n):
        lo = i - window + 1
        if lo < 0:
            lo = 0
        for s in range(ns):
            acc = 0.0
            c = 0
            for j in range(lo, i + 1):
                v = values[j, s]
                if not math.isnan(v):
                    acc += v
                    c += 1
            out_count[i, s] = c
            out_mean[i, s] = acc / c if c >= min_count else np.nan


def nowcast_kernel(
    values: Any, hours: int, min_weight: float, recent_hours: int, recent_min: int, out: Any, out_count: Any
) -> None:
    """EPA NowCast of each hour from the ``hours`` latest hourly values (docs/reference.md#nowcast).

    Needs ``recent_min`` valid values among the ``recent_hours`` latest, else NaN. Weight factor
    w = 1 - (max - min) / max = min / max over the valid values of the window, floored at ``min_weight``;
    NowCast = sum(w^k c_k) / sum(w^k) over valid hours, k = 0 for the latest. All values equal (all zero included):
    that value. Values must be >= 0 (checked by the caller). ``out_count`` gets the valid hours in the window.
    ``min_weight`` 0 (the ozone NowCast: no floor) lets w reach 0; where no valid hour then carries weight, NaN.
    """
    n = values.shape[0]
    ns = values.shape[1]
    for i in range(n):
        span = hours if hours <= i + 1 else i + 1
        recent_span = recent_hours if recent_hours <= i + 1 else i + 1
        for s in range(ns):
            recent = 0
            for k in range(recent_span):
                if not math.isnan(values[i - k, s]):
                    recent += 1
            c = 0
            cmin = math.inf
            cmax = -math.inf
            for k in range(span):
                v = values[i - k, s]
                if not math.isnan(v):
                    c += 1
                    if v < cmin:
                        cmin = v
                    if v > cmax:
                        cmax = v
            out_count[i, s] = c
            if recent < recent_min or c == 0:
                out[i, s] = np.nan
                continue
            if cmax == cmin:
                out[i, s] = cmax
                continue
            w = cmin / cmax
            if w < min_weight:
                w = min_weight
            num = 0.0
            den = 0.0
            wk = 1.0
            for k in range(span):
                v = values[i - k, s]
                if not math.isnan(v):
                    num += wk * v
                    den += wk
                wk *= w
            # Without a weight floor (ozone) w can be 0: then only the latest hour weighs, and a missing latest
            # hour leaves no weight at all - no NowCast.
            out[i, s] = num / den if den > 0.0 else np.nan


_PLAIN = {
    "hourly": hourly_kernel,
    "moving_mean": moving_mean_kernel,
    "nowcast": nowcast_kernel,
}

KERNELS: dict[str, dict[str, Any]] = {
    "python": dict(_PLAIN),
    "numba": {name: njit(cache=True)(fn) for name, fn in _PLAIN.items()},
}
"""``KERNELS[impl][name]``: impl ``"numba"`` (compiled lazily on first call, cached on disk) or ``"python"``."""


def kernel(impl: str, name: str) -> Any:
    """The kernel ``name`` of implementation ``impl`` (``"numba"`` or ``"python"``)."""
    try:
        return KERNELS[impl][name]
    except KeyError:
        raise ValueError(f"unknown engine implementation {impl!r} or AQI kernel {name!r}") from None
