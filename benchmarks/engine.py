"""Engine benchmark: counters + rollups + emissions over N readings, against pandas, polars, DuckDB and one pass.

One run, one data set, every implementation doing the same aggregation:

1. per device, the delta of consecutive cumulative-register readings (kWh), a negative delta being a rollover of the
   register (``+ modulus``);
2. each interval (previous reading, this reading] spread over the 15-minute buckets it covers, pro rata by time (the
   engine's rule, :mod:`engine.buckets`: about a third of 5-minute intervals straddle a bucket edge, so summing
   whole deltas into the bucket of the reading would be a different answer), summed per (device, bucket);
3. kgCO2e per (device, bucket): kWh x the grid factor in force (TGO 0.4999 until 2026-01-01 00:00 Bangkok, 0.4750
   from then on; the window is centred on that change, which falls on a bucket edge, so the factor is constant
   within a bucket and every implementation sees the change).

Ours is the engine as the stream calls it (``stream/energy.py``): :func:`engine.fused.register_buckets`, one pass
from readings to 15-minute energy and to kgCO2e at the factor in force and at the base-year factor (2025, 0.4999),
under every counter rule (quality, reasons, plausibility cap, gap, bridging, flat runs: nothing to do on this clean
data, but every check is made) and with the estimated part, coverage, count and worst quality per bucket. The peers
compute only kWh and kgCO2e (in force) per (device, bucket): they do less work, which is in their favour. Peers are
idiomatic: pandas ``groupby().diff()/shift()`` and a two-key ``groupby().sum()``; polars lazy expressions with
``.over("device")``; DuckDB SQL with ``lag() OVER (PARTITION BY device ORDER BY ts)`` and ``GROUP BY`` over the same
numpy arrays (a zero-copy pandas frame). pandas and polars are not asked to sort: the rows are already in time
order, so each device's rows are too (sorting 50 M rows first would cost them seconds). Before anything is timed,
every implementation's kWh and kgCO2e are checked against ours, per 15-minute bucket (the total over devices, within
1e-9 relative) and per (device, bucket) cell; and the engine's three-step pipeline (counters, 15-minute spread,
emissions twice: what the stream called before) is run once, timed for information, and must give ours bit for bit.

Data (numpy, seeded): ``--devices`` meters, ``--readings`` in total, one reading every 5 minutes per meter with a
random phase per meter and +-2 s of jitter, power log-normal per meter, registers rounded to 1 Wh and wrapping at
100,000 kWh (5 % of the meters start close enough to the top to roll over inside the window). The rows are in time
order across devices, the way the stream delivers a batch (and the layout the engine's bucket-first outputs are
fastest on, docs/reference.md#platform-measurements).

Threads: ours runs on one thread (the kernels are serial; ``NUMBA_NUM_THREADS=1``). pandas is single-threaded;
polars and DuckDB use their default thread pools (every core), which favours them. The single pass is numpy
summing the three input columns on one thread: the memory-bandwidth bound of anything that reads the input once.
The scatter bound (for information) is a numba kernel in this file doing only the memory traffic of ours: per
reading, read and write the device's 64-byte row and add the interval's kWh, pro rata by time, into the 64-byte
(bucket, device) cells it covers, prefetched as ours prefetches, with the output allocated and zeroed as ours
allocates it; in time order and, where ours regroups by block of devices, regrouped too (the faster is the bound).
Its kWh must be ours (within 1e-9 relative) before it is timed.

Start-up: ``jit_compile_s`` is the first call of ``register_buckets`` in a fresh process with an empty
``NUMBA_CACHE_DIR`` (compiling its two kernels); ``warm_start_s`` is the wall time of a fresh process that imports
the engine and calls it on a few readings with that cache populated (interpreter start, imports, numba's one-time
set-up and cache loads, exit).

Run: ``.venv/bin/python benchmarks/engine.py`` (50 M readings: about 5 minutes, 11 GiB at peak in pandas).
Small: ``--readings 200000 --devices 2000``. polars and DuckDB come with ``pip install -e '.[bench]'``; without
them their rows are skipped with a note. The machine is shared and noisy: read the ratios more than the absolute
figures. The last line printed is one JSON object: the headline figures, then everything under ``detail``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and its name would shadow the ``engine`` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))
os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # ours on one thread (the kernels are serial anyway)

import argparse  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from numba import njit  # noqa: E402

from lccm.engine import fused as fused_module  # noqa: E402
from lccm.engine import kernels as k  # noqa: E402
from lccm.engine.buckets import WeightTable, spread_intervals  # noqa: E402
from lccm.engine.counters import MeterParams, Quality, Reason, check_time_order, register_intervals  # noqa: E402
from lccm.engine.emissions import bucket_emissions, factor_series  # noqa: E402
from lccm.engine.factors import SOURCE_CLASS_BY_KEY, TGO_REGISTRY  # noqa: E402
from lccm.engine.fused import RegisterBuckets, register_buckets  # noqa: E402
from lccm.engine.rollups import sample_rollup  # noqa: E402
from lccm.engine.timebase import US_PER_H, US_PER_MIN, US_PER_S, bkk_us, bucket_edges_us  # noqa: E402

ROOT = _HERE.parent
GOAL_VS_PANDAS = 10.0  # ours at least 10x faster than pandas
GOAL_VS_POLARS = 2.0  # ... and 2x faster than polars
GOAL_X_SINGLE_PASS = 3.0  # ours within 3x of one pass over the input, on one thread
GOAL_WARM_START_S = 1.0  # a fresh process with a warm JIT cache is ready in under a second
RTOL = 1e-9  # agreement of every implementation with ours

CADENCE_US = 5 * US_PER_MIN
JITTER_US = 2 * US_PER_S
WIDTH_US = 15 * US_PER_MIN
MODULUS_KWH = 100_000.0  # a 5-digit kWh register
SOURCE = SOURCE_CLASS_BY_KEY["building_electricity"]
_GRID = TGO_REGISTRY.history(SOURCE.factor_key)
CHANGE_US = _GRID[1].valid_from_us  # 2026-01-01 00:00 Asia/Bangkok
FACTOR_BEFORE = _GRID[0].kgco2e_per_unit  # 0.4999 kgCO2e/kWh
FACTOR_AFTER = _GRID[1].kgco2e_per_unit  # 0.4750 kgCO2e/kWh
BASE_YEAR_US = (bkk_us(2025), bkk_us(2026))  # the stream's base year in the demo: 0.4999 all year
assert CHANGE_US % WIDTH_US == 0, "the factor change must fall on a bucket edge for the peers' per-bucket factor"
assert CADENCE_US + 2 * JITTER_US < WIDTH_US, "the peers split an interval over at most two buckets"


# ------------------------------------------------------------------------------------------------- measuring


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> None:
    """Make the peak RSS (VmHWM) start again from the current RSS (Linux ``clear_refs`` 5); no-op elsewhere."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def rss_gb() -> float:
    return _status_kb("VmRSS") / 2**20


def peak_rss_gb() -> float:
    return _status_kb("VmHWM") / 2**20


@dataclass
class Timing:
    """Wall times of the repeats of one implementation, and the peak RSS while it ran."""

    times_s: list[float]
    peak_rss_gb: float

    @property
    def best_s(self) -> float:
        return min(self.times_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Readings:
    """Cumulative kWh register readings, rows in time order across devices."""

    device_idx: np.ndarray  # int32
    ts_us: np.ndarray  # int64, UTC epoch microseconds
    register_kwh: np.ndarray  # float64
    n_devices: int
    rated_kw: np.ndarray  # float64 per device: the plausibility cap's rated power (never reached here)

    @property
    def n(self) -> int:
        return int(self.device_idx.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.device_idx.nbytes + self.ts_us.nbytes + self.register_kwh.nbytes)

    def edges_us(self) -> np.ndarray:
        return bucket_edges_us("15min", int(self.ts_us.min()), int(self.ts_us.max()))


def make_readings(n_readings: int, n_devices: int, seed: int) -> Readings:
    """``n_readings`` readings of ``n_devices`` meters every 5 minutes, in time order, centred on the factor change."""
    rng = np.random.default_rng(seed)
    per_dev = -(-n_readings // n_devices)
    start_us = CHANGE_US - per_dev * CADENCE_US // 2
    phase = rng.integers(0, CADENCE_US, n_devices, dtype=np.int64)
    ts = np.arange(per_dev, dtype=np.int64) * CADENCE_US + (start_us + phase)[:, None]
    ts += rng.integers(-JITTER_US, JITTER_US + 1, ts.shape, dtype=np.int64)
    power_kw = np.clip(rng.lognormal(np.log(3.0), 1.0, n_devices), 0.05, 500.0)
    used = np.empty(ts.shape)
    used[:, 0] = 0.0
    used[:, 1:] = np.diff(ts, axis=1) * (1.0 / US_PER_H)
    used[:, 1:] *= rng.uniform(0.5, 1.5, (n_devices, per_dev - 1))
    used *= power_kw[:, None]
    np.cumsum(used, axis=1, out=used)
    start_kwh = rng.uniform(0.0, MODULUS_KWH, n_devices)
    near_top = rng.random(n_devices) < 0.05
    start_kwh[near_top] = MODULUS_KWH - rng.random(int(near_top.sum())) * used[near_top, -1]
    used += start_kwh[:, None]
    register = np.mod(np.round(used, 3), MODULUS_KWH).ravel()
    del used
    device = np.repeat(np.arange(n_devices, dtype=np.int32), per_dev)
    ts_flat = ts.ravel()
    del ts
    order = np.argsort(ts_flat, kind="stable")[:n_readings]
    return Readings(
        device_idx=device[order],
        ts_us=ts_flat[order],
        register_kwh=register[order],
        n_devices=n_devices,
        rated_kw=2.0 * power_kw,
    )


# ------------------------------------------------------------------------------------------------- ours


@dataclass(frozen=True)
class Setup:
    """What the engine is configured with once per set of devices (not timed)."""

    params: MeterParams
    edges_us: np.ndarray
    factors: WeightTable  # in force
    series_of_device: np.ndarray
    base_factors: WeightTable  # the base year's, for all time
    base_series_of_device: np.ndarray


def engine_setup(r: Readings) -> Setup:
    params = MeterParams(
        modulus=np.full(r.n_devices, MODULUS_KWH),
        rated_per_h=r.rated_kw,
        cadence_us=np.full(r.n_devices, CADENCE_US, np.int64),
    )
    classes = [SOURCE] * r.n_devices
    table, series = factor_series(TGO_REGISTRY, classes)
    base, base_series = factor_series(TGO_REGISTRY, classes, base_year_us=BASE_YEAR_US)
    return Setup(params, r.edges_us(), table, series, base, base_series)


def run_ours(r: Readings, s: Setup) -> RegisterBuckets:
    """Registers -> 15-minute energy and emissions at the factor in force and at the base-year factor, in one pass:
    :func:`engine.fused.register_buckets`, called as ``stream/energy.py`` calls it."""
    out, _ = register_buckets(
        r.device_idx, r.ts_us, r.register_kwh, s.params, s.edges_us,
        s.factors, s.series_of_device, s.base_factors, s.base_series_of_device,
    )  # fmt: skip
    return out


def run_pipeline(r: Readings, s: Setup) -> tuple[RegisterBuckets, dict[str, int], dict[str, float]]:
    """The engine's three-step pipeline (what the stream called before :mod:`engine.fused`): counters, the
    15-minute spread, emissions twice. Its answer, its interval counts and its stage times."""
    t0 = time.perf_counter()
    iv, _ = register_intervals(r.device_idx, r.ts_us, r.register_kwh, s.params)
    t1 = time.perf_counter()
    energy = spread_intervals(iv, s.edges_us, r.n_devices)
    t2 = time.perf_counter()
    kg = bucket_emissions(iv, s.edges_us, r.n_devices, s.factors, s.series_of_device).kgco2e
    kg_base = bucket_emissions(iv, s.edges_us, r.n_devices, s.base_factors, s.base_series_of_device).kgco2e
    t3 = time.perf_counter()
    counts = {
        "rollovers": int(np.count_nonzero(iv.reasons & Reason.ROLLOVER)),
        "flagged_otherwise": int(np.count_nonzero(iv.reasons & ~(Reason.ROLLOVER | Reason.NO_PREVIOUS))),
        "not_measured": int(np.count_nonzero(iv.quality != Quality.MEASURED)),
    }
    stages = {"counters": t1 - t0, "rollup_15min": t2 - t1, "emissions_x2": t3 - t2}
    return RegisterBuckets(energy, kg, kg_base), counts, stages


def same_buckets(a: RegisterBuckets, b: RegisterBuckets) -> bool:
    """Every field of every (bucket, device) cell equal, bit for bit."""
    pairs = [(getattr(a.energy, f), getattr(b.energy, f)) for f in ("amount", "amount_estimated", "covered_us",
                                                                    "quality", "count")]  # fmt: skip
    pairs += [(a.kgco2e, b.kgco2e), (a.kgco2e_base, b.kgco2e_base)]
    return all(np.array_equal(x, y) for x, y in pairs)


def _alloc_and_touch(specs: Sequence[tuple[tuple[int, ...], np.dtype[Any]]]) -> None:
    """Allocate arrays of these (shape, dtype) and write every page once (what a fresh output pays in page faults)."""
    for shape, dtype in specs:
        np.full(shape, 0, dtype)


def profile_ours(r: Readings, s: Setup) -> dict[str, float]:
    """Where our time goes, one run each: the order check, regrouping the readings by block of devices (when
    :mod:`engine.fused` does), allocating and first-touching the outputs, and the rest of a call, which is the fused
    kernel (plus argument checks and packing the per-device rows, both O(devices))."""
    out: dict[str, float] = {}
    out["check_time_order (one pass)"], _ = timed(lambda: check_time_order(r.device_idx, r.ts_us))
    shift, chunk = fused_module.BLOCK_SHIFT, fused_module.CHUNK_READINGS
    if ours_regroups(r.n_devices):
        counts = np.zeros(((r.n_devices - 1) >> shift) + 2, np.int64)
        m = min(r.n, chunk)
        scratch = np.empty(m, np.int32), np.empty(m, np.int64), np.empty(m, np.float64)

        def partition() -> None:
            for lo in range(0, r.n, chunk):
                hi = min(r.n, lo + chunk)
                k.KERNELS["numba"]["partition"](
                    r.device_idx[lo:hi], r.ts_us[lo:hi], r.register_kwh[lo:hi], shift, counts, *scratch
                )

        partition()
        out["regroup by block of devices (partition kernel)"], _ = timed(partition)
    nb = s.edges_us.shape[0] - 1
    cells: list[tuple[tuple[int, ...], np.dtype[Any]]] = [
        ((nb, r.n_devices, k.CELL_BYTES // 8), np.dtype(np.int64)),
        ((nb, r.n_devices), np.dtype(np.int8)),
    ]
    out["allocate + first-touch the outputs"], _ = timed(lambda: _alloc_and_touch(cells))
    gc.collect()
    whole, _ = timed(lambda: run_ours(r, s))
    out["the rest: the fused kernel (+ checks, packing)"] = whole - sum(out.values())
    return out


def single_pass(r: Readings) -> float:
    """One pass over the three input columns (numpy sums, one thread): the memory-bandwidth bound."""
    return float(r.device_idx.sum(dtype=np.int64)) + float(r.ts_us.sum()) + float(r.register_kwh.sum())


# ------------------------------------------------------------------------------------------------- scatter bound


def scatter_kernel(
    device_idx: Any,
    ts_us: Any,
    register: Any,
    rows: Any,
    rows_float: Any,
    edge0_us: int,
    step_us: int,
    n_buckets: int,
    cells_float: Any,
) -> None:
    """Only the memory traffic of :func:`engine.kernels.fused_kernel_of`: per reading, read and write the device's
    64-byte row (last timestamp, last register; the modulus is in the same line) and add the interval's energy,
    pro rata by time, into the 64-byte (bucket, device) cells it covers (``CELL_AMOUNT`` only). No quality rules, no
    factors, no coverage or count; a negative delta is a rollover (``+ modulus``), nothing else. Prefetched as ours
    is (the row two strides ahead, the cells of the end bucket and, if the interval straddles, of the one before it,
    one stride ahead) and the end bucket found by one integer division per reading, kept in a ring as ours keeps it.
    The pieces are cut and divided exactly as ours cuts them, so on clean data the amounts are ours bit for bit."""
    n = device_idx.shape[0]
    ahead = k.PREFETCH_AHEAD
    ring = np.empty(k.RING_MASK + 1, np.int64)
    for j in range(min(ahead, n)):
        ring[j & k.RING_MASK] = (ts_us[j] - 1 - edge0_us) // step_us
    for i in range(n):
        j = i + 2 * ahead
        if j < n:
            k.prefetch(rows, (device_idx[j], 0))
        j = i + ahead
        if j < n:
            dj = np.uint32(device_idx[j])
            bj = (ts_us[j] - 1 - edge0_us) // step_us
            ring[j & k.RING_MASK] = bj
            if 0 <= bj < n_buckets:
                k.prefetch(cells_float, (bj, dj, 0))
                if bj > 0 and rows[dj, k.DEV_LAST_TS] < edge0_us + bj * step_us:
                    k.prefetch(cells_float, (bj - 1, dj, 0))
        d = np.uint32(device_idx[i])
        t1 = ts_us[i]
        r1 = register[i]
        t0 = rows[d, k.DEV_LAST_TS]
        r0 = rows_float[d, k.DEV_LAST_REGISTER]
        rows[d, k.DEV_LAST_TS] = t1
        rows_float[d, k.DEV_LAST_REGISTER] = r1
        if t0 == k.NO_TS:
            continue
        a = r1 - r0
        if a < 0.0:
            a = (r1 + rows_float[d, k.DEV_MODULUS]) - r0  # ours' arithmetic for the wrap, so the sums match bit for bit
        dur = t1 - t0
        b = max(0, min(ring[i & k.RING_MASK], n_buckets - 1))  # the end's bucket, then back to the start's
        while b > 0 and edge0_us + b * step_us > t0:
            b -= 1
        while b < n_buckets:
            e = edge0_us + b * step_us
            if e >= t1:
                break
            p = max(t0, e)
            pe = min(t1, e + step_us)
            cells_float[b, d, k.CELL_AMOUNT] += a if pe - p == dur else a * ((pe - p) / dur)
            b += 1


SCATTER_KERNEL = njit(scatter_kernel)  # compiled on its first call (a tiny warm-up, not timed)


def ours_regroups(n_devices: int) -> bool:
    """Whether :mod:`engine.fused` regroups the readings by block of devices before its kernel, at this many."""
    shift, chunk = fused_module.BLOCK_SHIFT, fused_module.CHUNK_READINGS
    return n_devices >> shift >= fused_module.BLOCKS_FROM and n_devices * fused_module.READINGS_PER_DEVICE <= chunk


def run_scatter(r: Readings, s: Setup, regroup: bool) -> np.ndarray:
    """The scatter bound, paying what ours pays around its kernel: the per-device rows, the output cells allocated
    and zeroed (64-byte aligned, as :mod:`engine.fused` lays them; the pages are first touched by the kernel, as in
    ours) and, if ``regroup``, ours' regrouping by block of 1,024 devices (:func:`engine.kernels.partition_kernel`, a
    chunk of 1 M readings at a time). Returns the kWh per (bucket, device)."""
    edges = s.edges_us
    nb = edges.shape[0] - 1
    step = int(edges[1] - edges[0])
    if not np.all(np.diff(edges) == step):
        raise ValueError("the scatter bound takes evenly spaced edges")
    rows = _aligned_zeros((r.n_devices, 8))
    rows[:, k.DEV_LAST_TS] = k.NO_TS
    rows.view(np.float64)[:, k.DEV_MODULUS] = MODULUS_KWH
    cells = _aligned_zeros((nb, r.n_devices, k.CELL_BYTES // 8)).view(np.float64)
    rest = (rows, rows.view(np.float64), int(edges[0]), step, nb, cells)
    if not regroup:
        SCATTER_KERNEL(r.device_idx, r.ts_us, r.register_kwh, *rest)
        return cells[:, :, k.CELL_AMOUNT]
    shift, chunk = fused_module.BLOCK_SHIFT, fused_module.CHUNK_READINGS
    partition = k.kernel("numba", "partition")
    counts = np.zeros(((r.n_devices - 1) >> shift) + 2, np.int64)
    m = min(r.n, chunk)
    s_dev, s_ts, s_reg = np.empty(m, np.int32), np.empty(m, np.int64), np.empty(m, np.float64)
    for lo in range(0, r.n, chunk):
        hi = min(r.n, lo + chunk)
        partition(r.device_idx[lo:hi], r.ts_us[lo:hi], r.register_kwh[lo:hi], shift, counts, s_dev, s_ts, s_reg)
        SCATTER_KERNEL(s_dev[: hi - lo], s_ts[: hi - lo], s_reg[: hi - lo], *rest)
    return cells[:, :, k.CELL_AMOUNT]


def measure_scatter(r: Readings, s: Setup, ours: RegisterBuckets, repeat: int) -> dict[str, Any]:
    """The scatter bound in the order the readings come and, where ours regroups them, regrouped as ours does: each
    variant's first run is checked against ours (kWh per (bucket, device) within RTOL relative), then ``repeat``
    timed runs; the faster variant (by best time) is the bound."""
    tiny = make_readings(100, 50, 0)
    run_scatter(tiny, engine_setup(tiny), regroup=False)  # compile the kernel (not timed)
    variants: dict[str, dict[str, Any]] = {}
    for regroup in (False, True) if ours_regroups(r.n_devices) else (False,):
        gc.collect()
        reset_peak_rss()
        kwh = run_scatter(r, s, regroup)
        cells_ok = bool(np.allclose(ours.energy.amount, kwh, rtol=RTOL, atol=1e-12))
        rel = max_rel_diff(ours.energy.amount, kwh)
        identical = bool(np.array_equal(ours.energy.amount, kwh))
        del kwh
        if not cells_ok or rel > RTOL:
            raise AssertionError(f"the scatter bound (regroup={regroup}) disagrees with ours: max rel diff {rel:.3g}")
        times = []
        for _ in range(repeat):
            gc.collect()
            times.append(timed(lambda: run_scatter(r, s, regroup))[0])  # noqa: B023 (called at once)
        t = Timing(times, peak_rss_gb())
        variants["regrouped" if regroup else "in time order"] = {
            "best_s": t.best_s, "median_s": t.median_s, "times_s": times, "peak_rss_gb": t.peak_rss_gb,
            "cell_max_rel_diff": rel, "identical_to_ours": identical,
        }  # fmt: skip
    best = min(variants, key=lambda v: variants[v]["best_s"])
    return variants[best] | {"variant": best, "variants": variants}


def _aligned_zeros(shape: tuple[int, ...], align: int = 64) -> np.ndarray:
    """Zeroed int64 array starting on an ``align``-byte boundary, as :mod:`engine.fused` allocates its cells."""
    n = int(np.prod(shape))
    raw = np.zeros(n + align // 8, np.int64)
    skip = (-raw.ctypes.data % align) // 8
    return raw[skip : skip + n].reshape(shape)


# ------------------------------------------------------------------------------------------------- peers


@dataclass
class Long:
    """A peer's answer: one row per (device, bucket), bucket = ts // WIDTH_US."""

    device: np.ndarray
    bucket: np.ndarray
    kwh: np.ndarray
    kgco2e: np.ndarray


def _factor_of_bucket(bucket: Any) -> Any:
    return np.where(bucket * WIDTH_US >= CHANGE_US, FACTOR_AFTER, FACTOR_BEFORE)


def pandas_frame(r: Readings) -> pd.DataFrame:
    return pd.DataFrame({"device": r.device_idx, "ts": r.ts_us, "reg": r.register_kwh}, copy=False)


def run_pandas(df: pd.DataFrame) -> Long:
    g = df.groupby("device", sort=False)
    dreg = g["reg"].diff()
    prev = g["ts"].shift()
    iv = pd.DataFrame(
        {"device": df["device"], "ts": df["ts"], "prev": prev, "amount": dreg.where(dreg >= 0, dreg + MODULUS_KWH)}
    )[prev.notna()]
    bucket = iv["ts"] // WIDTH_US
    edge = bucket * WIDTH_US
    dur = iv["ts"] - iv["prev"]
    late = iv["amount"] * ((iv["ts"] - np.maximum(iv["prev"], edge)) / dur)  # part in the reading's bucket
    early = iv["amount"] * ((edge - iv["prev"]).clip(lower=0) / dur)  # part in the bucket before
    straddles = iv["prev"] < edge
    pieces = pd.concat(
        [
            pd.DataFrame({"device": iv["device"], "bucket": bucket, "kwh": late}),
            pd.DataFrame({"device": iv["device"], "bucket": bucket - 1, "kwh": early})[straddles],
        ],
        ignore_index=True,
    )
    out = pieces.groupby(["device", "bucket"], sort=False)["kwh"].sum().reset_index()
    out["kgco2e"] = out["kwh"] * _factor_of_bucket(out["bucket"].to_numpy())
    return Long(*(out[c].to_numpy() for c in ("device", "bucket", "kwh", "kgco2e")))


def polars_frame(r: Readings) -> Any:
    import polars as pl

    return pl.DataFrame({"device": r.device_idx, "ts": r.ts_us, "reg": r.register_kwh})


def run_polars(df: Any) -> Long:
    import polars as pl

    iv = (
        df.lazy()
        .with_columns(dreg=pl.col("reg").diff().over("device"), prev=pl.col("ts").shift(1).over("device"))
        .filter(pl.col("prev").is_not_null())
        .with_columns(
            amount=pl.when(pl.col("dreg") < 0).then(pl.col("dreg") + MODULUS_KWH).otherwise(pl.col("dreg")),
            bucket=pl.col("ts") // WIDTH_US,
            dur=(pl.col("ts") - pl.col("prev")).cast(pl.Float64),
        )
        .with_columns(edge=pl.col("bucket") * WIDTH_US)
    )
    late = iv.select(
        "device", "bucket", kwh=pl.col("amount") * ((pl.col("ts") - pl.max_horizontal("prev", "edge")) / pl.col("dur"))
    )
    early = iv.filter(pl.col("prev") < pl.col("edge")).select(
        "device",
        bucket=pl.col("bucket") - 1,
        kwh=pl.col("amount") * ((pl.col("edge") - pl.col("prev")) / pl.col("dur")),
    )
    out = (
        pl.concat([late, early])
        .group_by("device", "bucket")
        .agg(pl.col("kwh").sum())
        .with_columns(
            kgco2e=pl.col("kwh")
            * pl.when(pl.col("bucket") * WIDTH_US >= CHANGE_US).then(FACTOR_AFTER).otherwise(FACTOR_BEFORE)
        )
        .collect()
    )
    return Long(*(out[c].to_numpy() for c in ("device", "bucket", "kwh", "kgco2e")))


DUCKDB_SQL = """
WITH d AS (
    SELECT device, ts, reg - lag(reg) OVER w AS dreg, lag(ts) OVER w AS prev
    FROM readings
    WINDOW w AS (PARTITION BY device ORDER BY ts)
), iv AS (
    SELECT device, ts, prev,
           CASE WHEN dreg < 0 THEN dreg + $modulus ELSE dreg END AS amount,
           ts // $width AS bucket,
           (ts // $width) * $width AS edge,
           CAST(ts - prev AS DOUBLE) AS dur
    FROM d
    WHERE prev IS NOT NULL
), pieces AS (
    SELECT device, bucket, amount * ((ts - greatest(prev, edge)) / dur) AS kwh FROM iv
    UNION ALL
    SELECT device, bucket - 1 AS bucket, amount * ((edge - prev) / dur) AS kwh FROM iv WHERE prev < edge
)
SELECT device, bucket, sum(kwh) AS kwh,
       sum(kwh) * CASE WHEN bucket * $width >= $change THEN $after ELSE $before END AS kgco2e
FROM pieces
GROUP BY device, bucket
"""


def duckdb_connection(r: Readings) -> Any:
    import duckdb

    con = duckdb.connect()
    con.register("readings", pandas_frame(r))  # scanned in place: numpy-backed columns, no copy
    return con


def run_duckdb(con: Any) -> Long:
    params = {
        "modulus": MODULUS_KWH,
        "width": WIDTH_US,
        "change": CHANGE_US,
        "before": FACTOR_BEFORE,
        "after": FACTOR_AFTER,
    }
    out = con.execute(DUCKDB_SQL, params).fetchnumpy()
    return Long(*(np.ma.getdata(out[c]) for c in ("device", "bucket", "kwh", "kgco2e")))


@dataclass(frozen=True)
class Peer:
    name: str
    module: str  # what must be importable
    prepare: Callable[[Readings], Any]  # not timed: wrap the arrays (no copy where the library allows)
    run: Callable[[Any], Long]


PEERS = (
    Peer("pandas", "pandas", pandas_frame, run_pandas),
    Peer("polars", "polars", polars_frame, run_polars),
    Peer("duckdb", "duckdb", duckdb_connection, run_duckdb),
)


# ------------------------------------------------------------------------------------------------- agreement


def dense(long: Long, edges_us: np.ndarray, n_devices: int) -> tuple[np.ndarray, np.ndarray]:
    """A peer's rows as [bucket, device] arrays like ours."""
    nb = edges_us.shape[0] - 1
    b = np.asarray(long.bucket, np.int64) - int(edges_us[0]) // WIDTH_US
    if b.size and (b.min() < 0 or b.max() >= nb):
        raise AssertionError("a peer put energy outside the edges")
    idx = b * n_devices + np.asarray(long.device, np.int64)
    kwh = np.bincount(idx, weights=long.kwh, minlength=nb * n_devices).reshape(nb, n_devices)
    kg = np.bincount(idx, weights=long.kgco2e, minlength=nb * n_devices).reshape(nb, n_devices)
    return kwh, kg


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    scale = np.maximum(np.abs(a), np.abs(b))
    diff = np.abs(a - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(scale > 0, diff / scale, 0.0)
    return float(rel.max()) if rel.size else 0.0


def agreement(ours: RegisterBuckets, kwh: np.ndarray, kg: np.ndarray) -> dict[str, Any]:
    """Per-bucket totals (over devices) within RTOL relative, and every (device, bucket) cell."""
    our_kwh, our_kg = ours.energy.amount, ours.kgco2e
    bucket = max(max_rel_diff(our_kwh.sum(axis=1), kwh.sum(axis=1)), max_rel_diff(our_kg.sum(axis=1), kg.sum(axis=1)))
    cells_ok = bool(np.allclose(our_kwh, kwh, rtol=RTOL, atol=1e-12) and np.allclose(our_kg, kg, rtol=RTOL, atol=1e-12))
    cell = max(max_rel_diff(our_kwh, kwh), max_rel_diff(our_kg, kg))
    return {
        "agreed": bool(bucket <= RTOL and cells_ok),
        "bucket_total_max_rel_diff": bucket,
        "cell_max_rel_diff": cell,
        "total_kwh": float(kwh.sum()),
        "total_kgco2e": float(kg.sum()),
    }


# ------------------------------------------------------------------------------------------------- start-up

STARTUP_CHILD = r"""
import time
t0 = time.perf_counter()
import json
import numpy as np
from lccm.engine.counters import MeterParams
from lccm.engine.emissions import factor_series
from lccm.engine.factors import SOURCE_CLASS_BY_KEY, TGO_REGISTRY
from lccm.engine.fused import register_buckets
from lccm.engine.rollups import sample_rollup
from lccm.engine.timebase import US_PER_MIN, bucket_edges_us, bkk_us
t_import = time.perf_counter()
n_dev = 3
ts = bkk_us(2025, 12, 31, 23) + np.arange(12, dtype=np.int64) * 5 * US_PER_MIN
dev = np.tile(np.arange(n_dev, dtype=np.int32), 4)
reg = np.repeat(np.arange(4, dtype=np.float64), n_dev) * 0.25 + 99_999.5
params = MeterParams.uniform(n_dev, modulus=100_000.0, rated_per_h=10.0, cadence_us=5 * US_PER_MIN)
classes = [SOURCE_CLASS_BY_KEY["building_electricity"]] * n_dev
base_year = (bkk_us(2025), bkk_us(2026))
tables = (*factor_series(TGO_REGISTRY, classes), *factor_series(TGO_REGISTRY, classes, base_year_us=base_year))
edges = bucket_edges_us("15min", int(ts.min()), int(ts.max()))
first = {}
t = time.perf_counter(); register_buckets(dev, ts, reg, params, edges, *tables)
first["register_buckets"] = time.perf_counter() - t
t = time.perf_counter(); sample_rollup(dev, ts, reg, edges, n_dev); first["sample_rollup"] = time.perf_counter() - t
print(json.dumps({"import_s": t_import - t0, "first_call_s": first, "in_process_s": time.perf_counter() - t0}))
"""
PIPELINE_CALLS = ("register_buckets",)


def startup_child(cache_dir: Path) -> dict[str, Any]:
    """A fresh interpreter: import the engine, first call of each kernel on a few readings; its wall time too."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP_CHILD], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"start-up child failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    out["pipeline_first_calls_s"] = sum(out["first_call_s"][c] for c in PIPELINE_CALLS)
    return out


def measure_startup(cold_runs: int, warm_runs: int) -> dict[str, Any]:
    """Cold: each in a new empty NUMBA_CACHE_DIR (compiles). Warm: the first cold run's cache directory."""
    base = Path(tempfile.mkdtemp(prefix="lccm-bench-numba-"))
    try:
        cold = [startup_child(base / f"cold{i}") for i in range(cold_runs)]
        warm = [startup_child(base / "cold0") for _ in range(warm_runs)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "jit_compile_s": statistics.median(c["pipeline_first_calls_s"] for c in cold),
        "warm_start_s": statistics.median(w["process_wall_s"] for w in warm),
        "cold": cold,
        "warm": warm,
    }


# ------------------------------------------------------------------------------------------------- the run


def measure_ours(r: Readings, s: Setup, repeat: int) -> tuple[Timing, RegisterBuckets]:
    """The check run (its answer is what the peers are compared with), then ``repeat - 1`` more timed runs."""
    tiny = make_readings(2 * min(r.n_devices, 50), min(r.n_devices, 50), 0)
    run_ours(tiny, engine_setup(tiny))  # load the kernels (compiled or from the cache): see start-up for that cost
    reset_peak_rss()
    t_first, ours = timed(lambda: run_ours(r, s))
    e = ours.energy
    if np.any(e.quality[e.count > 0] != Quality.MEASURED) or np.any(e.amount_estimated != 0.0):
        raise AssertionError("the synthetic data should be clean: every bucket with an interval measured")
    times = [t_first]
    for _ in range(repeat - 1):
        gc.collect()
        times.append(timed(lambda: run_ours(r, s))[0])
    return Timing(times, peak_rss_gb()), ours


def measure_pipeline(r: Readings, s: Setup, ours: RegisterBuckets) -> tuple[dict[str, Any], dict[str, int]]:
    """The three-step pipeline once: its answer must be ours bit for bit, its intervals clean (only first readings
    not measured, rollovers the only flag); its time is for information."""
    gc.collect()
    reset_peak_rss()
    t, (theirs, counts, stages) = timed(lambda: run_pipeline(r, s))
    if counts["flagged_otherwise"] or counts["not_measured"] != r.n_devices:
        raise AssertionError(f"the synthetic data should be clean (only first readings not measured): {counts}")
    if not same_buckets(ours, theirs):
        raise AssertionError("engine.fused.register_buckets disagrees with the three-step pipeline")
    return {"best_s": t, "median_s": t, "times_s": [t], "stages_s": stages, "peak_rss_gb": peak_rss_gb(),
            "identical_to_ours": True}, counts  # fmt: skip


def _import_error(module: str) -> str | None:
    """Why ``module`` cannot be imported, or None if it can."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"cannot import {module} ({exc})"
    return None


def measure_peer(peer: Peer, r: Readings, s: Setup, ours: RegisterBuckets, repeat: int) -> dict[str, Any]:
    """The first run is checked against ours; every run is timed."""
    reset_peak_rss()
    frame = peer.prepare(r)
    t_first, long = timed(lambda: peer.run(frame))
    kwh, kg = dense(long, s.edges_us, r.n_devices)
    del long
    check = agreement(ours, kwh, kg)
    del kwh, kg
    if not check["agreed"]:
        raise AssertionError(f"{peer.name} disagrees with ours: {check}")
    times = [t_first]
    for _ in range(repeat - 1):
        gc.collect()
        times.append(timed(lambda: peer.run(frame))[0])
    peak = peak_rss_gb()
    t = Timing(times, peak)
    return {"best_s": t.best_s, "median_s": t.median_s, "times_s": times, "peak_rss_gb": peak,
            "readings_per_s": r.n / t.best_s, **check}  # fmt: skip


def render(r: Readings, res: dict[str, Any]) -> str:
    """The human-readable report (everything in it is also in the JSON line)."""
    ours, single, peers, st = res["ours"], res["single_pass"], res["peers"], res["startup"]
    pipe = res["pipeline"]
    rollovers = "?" if res["data"].get("rollovers") is None else f"{res['data']['rollovers']:,}"
    lines = [
        f"engine benchmark: {r.n:,} readings, {r.n_devices:,} meters, one reading per 5 min each, time-ordered; "
        f"{res['data']['buckets']} buckets of 15 min; grid factor change inside the window",
        f"  input {r.nbytes / 2**30:.2f} GiB (int32 device, int64 ts, float64 register), generated in "
        f"{res['data']['generate_s']:.1f} s; {rollovers} register rollovers; RSS {res['data']['rss_gb']:.1f} GiB with "
        "the input",
        "",
        f"  {'implementation':<38}{'best s':>9}{'median s':>10}{'readings/s':>14}{'peer/ours':>11}{'peak RSS GiB':>14}",
    ]
    scatter = res["scatter_bound"]
    table = [
        ("single pass (numpy, 1 thread)", single, ""),
        ("scatter bound (numba, 1 thread, info)", scatter, f"{scatter['best_s'] / ours['best_s']:.2f}x"),
        ("ours (engine.fused, numba, 1 thread)", ours, ""),
    ]
    if pipe:
        table.append(("3-step pipeline (info: before fused)", pipe, f"{pipe['best_s'] / ours['best_s']:.2f}x"))
    for n, p in peers.items():
        table.append((f"{n} ({'1 thread' if n == 'pandas' else 'all threads'})", p, f"{p['speedup']:.2f}x"))
    for label, t, vs in table:
        lines.append(f"  {label:<38}{t['best_s']:>9.3f}{t['median_s']:>10.3f}{r.n / t['best_s']:>14,.0f}{vs:>11}"
                     f"{t['peak_rss_gb']:>14.1f}")  # fmt: skip
    if res["sample_rollup"]:
        t = res["sample_rollup"]
        lines.append(f"  {'sample_rollup (info, not in ours)':<38}{t['best_s']:>9.3f}{t['median_s']:>10.3f}"
                     f"{r.n / t['best_s']:>14,.0f}")  # fmt: skip
    lines.append("")
    if pipe:
        stages = ", ".join(f"{k_} {v:.3f} s" for k_, v in pipe["stages_s"].items())
        lines.append(f"  3-step pipeline (one run): {stages}; its buckets are ours bit for bit")
    lines.append(
        f"  scatter bound (the fused kernel's memory traffic only; its kWh are ours within {RTOL:g}): "
        + ", ".join(f"{v} {x['best_s']:.3f} s ({x['best_s'] / r.n * 1e9:.1f} ns/reading"
                    f"{', bit for bit' if x['identical_to_ours'] else ''})" for v, x in scatter["variants"].items())
        + f"; the bound is {scatter['variant']}"
    )  # fmt: skip
    if ours["profile_s"]:
        lines.append("  profile of ours (one run each):")
        lines += [f"    {k_:<46}{v:>8.3f} s{v / r.n * 1e9:>9.1f} ns/reading" for k_, v in ours["profile_s"].items()]
    if peers:
        lines.append(f"  agreement with ours (per-bucket totals within {RTOL:g} relative, and every cell): "
                     + "; ".join(f"{n} {p['bucket_total_max_rel_diff']:.1e} (cells {p['cell_max_rel_diff']:.1e})"
                                 for n, p in peers.items()))  # fmt: skip
    for label, runs in (("cold cache (empty NUMBA_CACHE_DIR)", st["cold"]), ("warm cache", st["warm"])):
        c = runs[0]
        lines.append(f"  start-up, {label}: imports {c['import_s']:.2f} s, first calls "
                     + ", ".join(f"{k_} {v:.3f} s" for k_, v in c["first_call_s"].items())
                     + f"; whole process {c['process_wall_s']:.2f} s (runs: "
                     + ", ".join(f"{x['process_wall_s']:.2f}" for x in runs) + ")")  # fmt: skip
    h = res["summary"]
    lines += [
        "",
        f"  readings/s {h['readings_per_s']:,.0f}; vs pandas {fmt_ratio(h['speedup_vs_pandas'])} (goal >= "
        f"{GOAL_VS_PANDAS:g}x), vs polars {fmt_ratio(h['speedup_vs_polars'])} (goal >= {GOAL_VS_POLARS:g}x), vs duckdb "
        f"{fmt_ratio(h['speedup_vs_duckdb'])}; {h['x_single_pass']:.1f}x the single pass (goal <= "
        f"{GOAL_X_SINGLE_PASS:g}x); {h['x_scatter_bound']:.2f}x the scatter bound (info); JIT compile "
        f"{h['jit_compile_s']:.2f} s; warm start {h['warm_start_s']:.2f} s (goal < {GOAL_WARM_START_S:g} s)",
    ]
    missed = [g for g, ok in h["goals_met"].items() if ok is False]
    lines.append("  goals: " + ("all met" if not missed else "missed " + ", ".join(missed)))
    lines += [f"  note: {n}" for n in res["notes"]]
    return "\n".join(lines)


def fmt_ratio(x: float | None) -> str:
    return "skipped" if x is None else f"{x:.2f}x"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--readings", type=int, default=50_000_000, help="readings in total (default 50,000,000)")
    ap.add_argument("--devices", type=int, default=100_000, help="meters (default 100,000)")
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of ours and of the single pass (best is used)")
    ap.add_argument("--peer-repeat", type=int, default=2, help="timed runs of each peer (best is used)")
    ap.add_argument("--peers", default="pandas,polars,duckdb", help="comma-separated peers to run ('' for none)")
    ap.add_argument("--cold-runs", type=int, default=2, help="fresh processes with an empty JIT cache")
    ap.add_argument("--warm-runs", type=int, default=3, help="fresh processes with the JIT cache warm")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                    help="time the engine's parts and kernels alone (default on)")  # fmt: skip
    ap.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True,
                    help="run the 3-step pipeline once: its answer must be ours bit for bit (default on)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.devices < 1 or args.readings < 2 * args.devices:
        ap.error("need at least one device and two readings per device")
    if min(args.repeat, args.peer_repeat, args.cold_runs, args.warm_runs) < 1:
        ap.error("every repeat count must be at least 1")
    unknown = {p for p in args.peers.split(",") if p} - {p.name for p in PEERS}
    if unknown:
        ap.error(f"unknown peers: {sorted(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = {p for p in args.peers.split(",") if p}
    notes: list[str] = []

    progress("start-up: fresh processes, JIT cache cold, then warm ...")
    startup = measure_startup(args.cold_runs, args.warm_runs)

    progress(f"data: {args.readings:,} readings of {args.devices:,} meters ...")
    t_gen, r = timed(lambda: make_readings(args.readings, args.devices, args.seed))
    s = engine_setup(r)
    data = {"bytes": r.nbytes, "buckets": int(s.edges_us.shape[0] - 1), "generate_s": t_gen, "rss_gb": rss_gb(),
            "time_ordered": True, "cadence_s": CADENCE_US // US_PER_S, "seed": args.seed}  # fmt: skip

    progress("single pass ...")
    reset_peak_rss()
    single = Timing([timed(lambda: single_pass(r))[0] for _ in range(args.repeat)], peak_rss_gb())

    progress("ours ...")
    ours_t, ours = measure_ours(r, s, args.repeat)
    progress("scatter bound (its kWh must be ours) ...")
    scatter = measure_scatter(r, s, ours, args.repeat)
    pipe: dict[str, Any] = {}
    data["rollovers"] = None
    if args.pipeline:
        progress("3-step pipeline (the answer must be ours, bit for bit) ...")
        pipe, counts = measure_pipeline(r, s, ours)
        data.update(counts)
    prof: dict[str, float] = {}
    sample: dict[str, float] = {}
    if args.profile:
        progress("ours: profile ...")
        gc.collect()
        prof = profile_ours(r, s)
        gc.collect()
        st = [timed(lambda: sample_rollup(r.device_idx, r.ts_us, r.register_kwh, s.edges_us, r.n_devices))[0]
              for _ in range(2)]  # fmt: skip
        sample = {"best_s": min(st), "median_s": statistics.median(st)}
        gc.collect()

    peers: dict[str, dict[str, Any]] = {}
    for peer in PEERS:
        if peer.name not in wanted:
            continue
        missing = _import_error(peer.module)
        if missing:
            notes.append(f"{peer.name} skipped: {missing} (install the extra: pip install -e '.[bench]')")
            continue
        progress(f"{peer.name} ...")
        peers[peer.name] = measure_peer(peer, r, s, ours, args.peer_repeat)
        peers[peer.name]["speedup"] = peers[peer.name]["best_s"] / ours_t.best_s

    def speedup(name: str) -> float | None:
        return peers[name]["speedup"] if name in peers else None

    def at_least(x: float | None, goal: float) -> bool | None:
        return None if x is None else x >= goal

    x_single = ours_t.best_s / single.best_s
    x_scatter = ours_t.best_s / scatter["best_s"]
    summary = {
        "readings": r.n,
        "devices": r.n_devices,
        "readings_per_s": r.n / ours_t.best_s,
        "speedup_vs_pandas": speedup("pandas"),
        "speedup_vs_polars": speedup("polars"),
        "speedup_vs_duckdb": speedup("duckdb"),
        "x_single_pass": x_single,
        "x_scatter_bound": x_scatter,
        "jit_compile_s": startup["jit_compile_s"],
        "warm_start_s": startup["warm_start_s"],
        "agreed": all(p["agreed"] for p in peers.values()),
        "implementations_checked": ["ours", *peers],
        "goals_met": {
            "speedup_vs_pandas": at_least(speedup("pandas"), GOAL_VS_PANDAS),
            "speedup_vs_polars": at_least(speedup("polars"), GOAL_VS_POLARS),
            "x_single_pass": x_single <= GOAL_X_SINGLE_PASS,
            "warm_start_s": startup["warm_start_s"] < GOAL_WARM_START_S,
        },
    }
    detail = {
        "ours": {"best_s": ours_t.best_s, "median_s": ours_t.median_s, "times_s": ours_t.times_s,
                 "profile_s": prof, "peak_rss_gb": ours_t.peak_rss_gb},
        "pipeline": pipe,
        "single_pass": {"best_s": single.best_s, "median_s": single.median_s, "times_s": single.times_s,
                        "peak_rss_gb": single.peak_rss_gb},
        "scatter_bound": scatter,
        "sample_rollup": sample,
        "peers": peers,
        "startup": startup,
        "data": data,
        "notes": notes,
    }  # fmt: skip
    print(render(r, detail | {"summary": summary}))
    print(json.dumps(summary | {"detail": detail}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
