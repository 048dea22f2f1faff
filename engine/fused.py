"""Register readings straight to 15-minute (or any) buckets of energy and emissions, in one pass.

:func:`register_buckets` gives what the three-step pipeline gives,

1. :func:`engine.counters.register_intervals` (one interval per reading, every quality and reason rule),
2. :func:`engine.buckets.spread_intervals` (energy per bucket: amount, estimated part, coverage, count, quality),
3. :func:`engine.emissions.bucket_emissions` twice (kgCO2e at the factor in force and at the base-year factor),

bit for bit, without materialising the intervals: one kernel (:func:`engine.kernels.fused_kernel_of`) computes each
reading's interval with the counter's rules and spreads it at once into energy and both emissions. The per-device
state sits in one 64-byte row so a reading touches one cache line of it, and a device with no register events and
no multiplier changes (nearly all of them) takes the rollover rule in line. Devices with events or multiplier
changes take the counter's general helpers inside the same kernel, so there is no second path to keep in step. The
kernel has two builds from one source: a fast pass that takes clean readings only, and a full pass with every rule
of a suspect run (catch-ups, a learned bound's confirmation), through which the readings the fast pass left go
right after it, each device in order.

Use the pipeline when the intervals themselves are wanted (audit rows with raw amounts and reason bits, per-interval
emissions); use this for buckets (the stream's energy updater and ``lccm recompute``).

Memory: 65 bytes per (bucket, device), about half of what the pipeline's three spreads allocate. Speed
(benchmarks/engine.py, 100,000 meters): bound by two or three random cache lines per reading (the device's row, the
cells of its one or two buckets), which the kernel prefetches a few readings ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from lccm.engine import kernels as k
from lccm.engine.buckets import IntervalBuckets, WeightTable
from lccm.engine.counters import CounterState, Impl, MeterParams, MultiplierChanges, Quality, RegisterEvents
from lccm.engine.counters import checked_readings as _checked_readings
from lccm.engine.timebase import check_edges


@dataclass(frozen=True, slots=True)
class RegisterBuckets:
    """Energy and emissions per bucket (rows) and device (columns), as the pipeline gives them."""

    energy: IntervalBuckets  # = spread_intervals(register_intervals(...))
    kgco2e: np.ndarray  # float64: = bucket_emissions(..., factors, series_of_device).kgco2e
    kgco2e_base: np.ndarray  # float64: = bucket_emissions(..., base_factors, base_series_of_device).kgco2e
    # Every array but energy.quality is a strided view into one buffer of 64-byte (bucket, device) cells: index it
    # (or copy a field) freely; holding any one field keeps the whole buffer alive.


@dataclass(frozen=True, slots=True)
class CellSeed:
    """What some (bucket, device) cells already hold: the sums of the intervals up to a device's carried state
    (``state.last_ts_us``). Given with that state and only the readings after it, a seeded cell receives the later
    intervals' pieces on top, in the same order as one pass over all the readings adds them, so it ends with the
    same bits (the stream's energy updater continues its live-edge bucket with it: stream/energy.py)."""

    bucket_start_us: np.ndarray  # int64, one of the edges
    device: np.ndarray  # int64, column (device index)
    amount: np.ndarray  # float64
    amount_estimated: np.ndarray  # float64
    kgco2e: np.ndarray  # float64
    kgco2e_base: np.ndarray  # float64
    covered_us: np.ndarray  # int64
    count: np.ndarray  # int32; 0 = the cell holds no interval (its quality is then not set either)
    quality: np.ndarray  # int8, Quality (ignored where count is 0)


def register_buckets(
    device_idx: np.ndarray,
    ts_us: np.ndarray,
    register: np.ndarray,
    params: MeterParams,
    edges_us: np.ndarray,
    factors: WeightTable,
    series_of_device: np.ndarray,
    base_factors: WeightTable,
    base_series_of_device: np.ndarray,
    state: CounterState | None = None,
    *,
    multipliers: MultiplierChanges | None = None,
    events: RegisterEvents | None = None,
    impl: Impl = "numba",
    seed: CellSeed | None = None,
) -> tuple[RegisterBuckets, CounterState]:
    """Cumulative register readings to energy and emissions per bucket ``[edges_us[b], edges_us[b + 1])``, and the
    counter state to carry on.

    Inputs as :func:`engine.counters.register_intervals` (columns of equal length, each device's rows in time order;
    ``state`` is not modified) and :func:`engine.emissions.bucket_emissions` (a factor table and ``series_of_device``,
    -1 = no emissions, for the factor in force and for the base-year factor). Parts of intervals outside the edges
    are left out, as in :func:`engine.buckets.spread_intervals`. Evenly spaced edges are fastest. With ``seed``, its
    cells start from what it holds instead of empty (pass ``state`` and only the readings after it for its devices).
    """
    dev, ts, reg, p, st = _checked_readings(device_idx, ts_us, register, params, state, impl)
    n_dev = p.n_devices
    edges = check_edges(edges_us)
    m_ptr, m_from, m_val = (multipliers or MultiplierChanges.none()).table(n_dev)
    ev_ptr, ev_at, ev_fin, ev_new = (events or RegisterEvents.none()).table(n_dev)
    table, series = _weights(n_dev, (factors, series_of_device), (base_factors, base_series_of_device))
    general = (np.diff(ev_ptr) > 0) | (np.diff(m_ptr) > 0)
    row, anchor_register = _pack(st, p, general, series)
    tails = (st.tail_ts_us, st.tail_register, st.tail_n, st.tail_lo_per_h, st.tail_hi_per_h, st.run_hi_per_h)
    nb = edges.shape[0] - 1
    steps = np.diff(edges)
    step_us = int(steps[0]) if np.all(steps == steps[0]) else 0
    bucket_w, bucket_split = _bucket_weights(table, edges)
    cells = _aligned_zeros((nb, n_dev, k.CELL_BYTES // 8))
    quality = np.full((nb, n_dev), -1, np.int8)
    cells_float = cells.view(np.float64)
    cells_count = cells.view(np.int32)
    if seed is not None:
        _seed_cells(seed, edges, cells_float, cells, cells_count, quality)
    _run(
        impl, dev, ts, reg, n_dev,
        (row, row.view(np.float64), anchor_register, p.cadence_us, *tails, p.cap_tolerance, p.wrap_max_fraction,
         p.learned_headroom, p.consistency, p.confirm_steps, ev_ptr, ev_at, ev_fin, ev_new, m_ptr, m_from, m_val,
         edges, step_us, table.ptr, table.from_us, table.value, bucket_w, bucket_split, cells_float, cells,
         cells_count, quality),
    )  # fmt: skip
    quality[quality < 0] = Quality.MISSING
    energy = IntervalBuckets(
        edges_us=edges,
        amount=cells_float[:, :, k.CELL_AMOUNT],
        amount_estimated=cells_float[:, :, k.CELL_ESTIMATED],
        covered_us=cells[:, :, k.CELL_COVERED_US],
        quality=quality,
        count=cells_count[:, :, k.CELL_COUNT],
    )
    out = RegisterBuckets(energy, cells_float[:, :, k.CELL_WEIGHTED_0], cells_float[:, :, k.CELL_WEIGHTED_1])
    return out, _unpack(row, anchor_register, st, p)


def _seed_cells(
    seed: CellSeed, edges: np.ndarray, cells_float: np.ndarray, cells: np.ndarray, cells_count: np.ndarray,
    quality: np.ndarray,
) -> None:  # fmt: skip
    """Write the seeded cells as the kernel left them: quality -1 (none yet) where no interval was counted."""
    b = np.searchsorted(edges, seed.bucket_start_us)
    if np.any((b >= edges.shape[0] - 1) | (edges[np.minimum(b, edges.shape[0] - 1)] != seed.bucket_start_us)):
        raise ValueError("a seeded cell's bucket_start_us must be one of the edges (not the last)")
    d = np.asarray(seed.device, np.int64)
    cells_float[b, d, k.CELL_AMOUNT] = seed.amount
    cells_float[b, d, k.CELL_ESTIMATED] = seed.amount_estimated
    cells_float[b, d, k.CELL_WEIGHTED_0] = seed.kgco2e
    cells_float[b, d, k.CELL_WEIGHTED_1] = seed.kgco2e_base
    cells[b, d, k.CELL_COVERED_US] = seed.covered_us
    cells_count[b, d, k.CELL_COUNT] = seed.count
    quality[b, d] = np.where(np.asarray(seed.count) > 0, seed.quality, -1)


BLOCK_SHIFT = 10  # devices per block: 1,024, whose rows and cells of the current buckets fit in a core's L2 cache
BLOCKS_FROM = 16  # regroup by block from this many blocks of devices (16,384 devices) ...
CHUNK_READINGS = 1 << 20  # ... a chunk of this many readings at a time (a scratch of 20 MB) ...
READINGS_PER_DEVICE = 4  # ... if a chunk holds at least this many readings per device (regrouping costs ~7 ns each)


def _run(impl: Impl, dev: np.ndarray, ts: np.ndarray, reg: np.ndarray, n_dev: int, rest: tuple[object, ...]) -> None:
    """The fused kernel over the readings. With many devices, chunk by chunk, each chunk's rows regrouped by block of
    devices first: a device's row and cells are then touched about ten times in a row rather than once per 100,000
    readings (benchmarks/engine.py, 100,000 meters: ~17 % faster). The sums are the same bit for bit: a cell only
    ever receives its own device's intervals, and each device's rows keep their order."""
    block_shift, chunk = BLOCK_SHIFT, CHUNK_READINGS
    fused = _Passes(k.kernel(impl, "fused"), k.kernel(impl, "fused_full"), rest)
    if n_dev >> block_shift < BLOCKS_FROM or n_dev * READINGS_PER_DEVICE > chunk:
        fused(dev, ts, reg)
        return
    partition = k.kernel(impl, "partition")
    counts = np.zeros(((n_dev - 1) >> block_shift) + 2, np.int64)
    m = min(dev.shape[0], chunk)
    s_dev, s_ts, s_reg = np.empty(m, np.int32), np.empty(m, np.int64), np.empty(m, np.float64)
    for lo in range(0, dev.shape[0], chunk):
        hi = min(dev.shape[0], lo + chunk)
        partition(dev[lo:hi], ts[lo:hi], reg[lo:hi], block_shift, counts, s_dev, s_ts, s_reg)
        fused(s_dev[: hi - lo], s_ts[: hi - lo], s_reg[: hi - lo])


DEFERRED_READINGS = 1 << 16  # readings the fused kernel's fast pass leaves for its full pass before it stops


class _Passes:
    """The fused kernel over readings in two passes (kernels.fused_kernel_of): the fast pass, then the readings it left
    (devices in a suspect run, in their order) through the full pass, and the fast pass again from where it stopped
    if its buffer of left readings filled up."""

    def __init__(self, fused: Callable[..., int], full: Callable[..., int], rest: tuple[object, ...]) -> None:
        self._fused = fused
        self._full = full
        self._rest = rest
        self._row = cast(np.ndarray, rest[0])
        self._left = np.empty(DEFERRED_READINGS, np.int64)
        self._n_left = np.zeros(1, np.int64)

    def __call__(self, dev: np.ndarray, ts: np.ndarray, reg: np.ndarray) -> None:
        lo, n = 0, dev.shape[0]
        while lo < n:
            stop = self._fused(dev[lo:], ts[lo:], reg[lo:], *self._rest, self._left, self._n_left)
            left = self._left[: self._n_left[0]] + lo
            if left.size:
                self._row[dev[left], k.DEV_META] &= ~k.META_DEFERRED
                self._full(dev[left], ts[left], reg[left], *self._rest, self._left, self._n_left)
            lo += stop


def _weights(n_dev: int, *sets: tuple[WeightTable, np.ndarray]) -> tuple[WeightTable, np.ndarray]:
    """The weight tables as one table (series of later tables renumbered after the earlier ones) and the series of
    each device in each, shape (n_devices, len(sets)); checked as :func:`engine.buckets.run_spread` checks them."""
    ptrs: list[np.ndarray] = []
    froms: list[np.ndarray] = []
    values: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    offset_series = offset_rows = 0
    for table, series_of_device in sets:
        series = np.ascontiguousarray(series_of_device, dtype=np.int64)
        if series.shape != (n_dev,) or (series.size and series.max() >= table.n_series):
            raise ValueError("series_of_device must give each device a series index (or -1)")
        ptr = np.ascontiguousarray(table.ptr, dtype=np.int64)
        ptrs.append(ptr[(1 if ptrs else 0) :] + offset_rows)
        froms.append(np.ascontiguousarray(table.from_us, dtype=np.int64))
        values.append(np.ascontiguousarray(table.value, dtype=np.float64))
        columns.append(np.where(series >= 0, series + offset_series, -1))
        offset_series += table.n_series
        offset_rows += int(ptr[-1])
    merged = WeightTable(np.concatenate(ptrs), np.concatenate(froms), np.concatenate(values))
    return merged, np.stack(columns, axis=1)


def _bucket_weights(table: WeightTable, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bucket and series: the weight in force over the whole bucket (NaN if none, or if a step falls strictly
    inside the bucket), and whether a step falls inside (then the kernel splits the piece at it, as the spread kernel
    does)."""
    n_series = table.n_series
    w = np.full((edges.shape[0] - 1, n_series), np.nan)
    split = np.zeros((edges.shape[0] - 1, n_series), np.uint8)
    for sr in range(n_series):
        steps = table.from_us[table.ptr[sr] : table.ptr[sr + 1]]
        values = table.value[table.ptr[sr] : table.ptr[sr + 1]]
        if not steps.size:
            continue
        j = np.searchsorted(steps, edges[:-1], side="right") - 1  # the step in force at the bucket's start
        w[:, sr] = np.where(j >= 0, values[np.maximum(j, 0)], np.nan)
        following = np.minimum(j + 1, steps.size - 1)  # the next step falls inside if it comes before the end
        split[:, sr] = (j + 1 < steps.size) & (steps[following] < edges[1:])
    w[split.astype(bool)] = np.nan  # the kernel looks at the split flag only where the weight is NaN
    return w, split


def _pack(st: CounterState, p: MeterParams, general: np.ndarray, series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's per-device DEV_* rows (int64 buffer; columns 4-7 are float64 through a view) and the anchors'
    registers."""
    if series.size and series.max() + 1 > k.META_SERIES_MASK:
        raise ValueError("too many factor series for the fused kernel's row")
    row = _aligned_zeros((p.n_devices, 8))
    real = row.view(np.float64)
    row[:, k.DEV_LAST_TS] = st.last_ts_us
    row[:, k.DEV_ANCHOR_TS] = st.anchor_ts_us
    row[:, k.DEV_FLAT_TS] = st.flat_ts_us
    fixed = p.rated_per_h > 0
    meta = general.astype(np.int64) * k.META_GENERAL | fixed.astype(np.int64) * k.META_FIXED_BOUND
    for c, shift in enumerate((k.META_SHIFT_0, k.META_SHIFT_1)):
        meta |= (series[:, c] + 1) << shift
    row[:, k.DEV_META] = meta
    real[:, k.DEV_LAST_REGISTER] = st.last_register
    real[:, k.DEV_MODULUS] = p.modulus
    real[:, k.DEV_BOUND_PER_H] = np.where(fixed, p.rated_per_h, st.bound_per_h)
    real[:, k.DEV_GAP_US] = p.gap_factor * p.cadence_us.astype(np.float64)
    # the kernel clears an anchor's register only when there is an anchor: make "no anchor" read NaN from the start
    anchor_register = np.where(st.anchor_ts_us == k.NO_TS, np.nan, st.anchor_register)
    return row, anchor_register


def _aligned_zeros(shape: tuple[int, ...], align: int = 64) -> np.ndarray:
    """Zeroed int64 array whose first element sits on an ``align``-byte boundary (a large numpy array starts 16 bytes
    into a page), so that the kernel's 64-byte rows and cells are each one cache line."""
    n = int(np.prod(shape))
    raw = np.zeros(n + align // 8, np.int64)
    skip = (-raw.ctypes.data % align) // 8
    return raw[skip : skip + n].reshape(shape)


def _unpack(row: np.ndarray, anchor_register: np.ndarray, st: CounterState, p: MeterParams) -> CounterState:
    """The carry state out of the kernel's rows; ``st`` is the state the kernel was given (its tails updated in
    place, its learned bound kept where the bound is fixed)."""
    real = row.view(np.float64)
    return CounterState(
        last_ts_us=row[:, k.DEV_LAST_TS].copy(),
        last_register=real[:, k.DEV_LAST_REGISTER].copy(),
        anchor_ts_us=row[:, k.DEV_ANCHOR_TS].copy(),
        anchor_register=anchor_register,
        flat_ts_us=row[:, k.DEV_FLAT_TS].copy(),
        bound_per_h=np.where(p.rated_per_h > 0, st.bound_per_h, real[:, k.DEV_BOUND_PER_H]),
        tail_ts_us=st.tail_ts_us,
        tail_register=st.tail_register,
        tail_n=st.tail_n,
        tail_lo_per_h=st.tail_lo_per_h,
        tail_hi_per_h=st.tail_hi_per_h,
        run_hi_per_h=st.run_hi_per_h,
    )
