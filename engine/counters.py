"""Cumulative registers (energy kWh, fuel litres) to interval amounts with a quality flag on every interval.

Model of one meter (per device index d; every array below is indexed by d):

- ``modulus``: the register counts in [0, modulus) and wraps to 0; 0 = never wraps.
- ``rated_per_h``: rated throughput in register units x multiplier per hour (kW for a kWh register, L/h for a fuel
  register); 0 = no plausibility cap. An interval whose amount exceeds ``rated_per_h x hours x cap_tolerance`` is
  suspect.
- ``cadence_us``: the nominal time between readings; an interval longer than ``gap_factor x cadence`` is a gap.
  0 = no gap detection.
- multiplier changes (:class:`MultiplierChanges`): from ``effective_from_us`` on, register deltas are multiplied
  by ``multiplier`` (a CT ratio 200/5 is 40). Before a device's first change the multiplier is 1.
- reset / meter-swap events (:class:`RegisterEvents`): at ``at_us`` the register in service ends at ``old_final``
  (the last value read off it by the technician; NaN = not known) and a register starting at ``new_start`` takes
  over (a reset is ``new_start = 0`` on the same meter). Readings at or after ``at_us`` are of the new register.

One output row per input reading: the interval (start_us, end_us] from the device's previous reading to this one.

Rules, in order (reason bits in :class:`Reason`, quality in :class:`Quality`):

1. The amount of an interval is the sum over its register segments (split at reset/swap events) of
   ``delta / mean(1/multiplier)``, the time-weighted mean over the segment. That is exact when the multiplier does
   not change inside the segment, and exact for constant primary power when it does (``MULTIPLIER_SPLIT``, estimated).
2. A negative segment delta is a rollover when the register has a modulus and the wrapped delta
   ``r1 + modulus - r0`` is at most ``wrap_max_fraction x modulus`` (``ROLLOVER``, still measured); otherwise the
   interval is suspect (``NEGATIVE``).
3. Plausibility: an amount over the cap (``OVER_CAP``) or a moving register between two readings with the same
   timestamp (``ZERO_DT``) makes the interval suspect.
4. A suspect interval emits amount 0; the value computed is kept in ``raw`` for audit. Energy is never negative and
   never above the cap of the interval it is emitted in.
5. Bridging: after a suspect interval the device remembers its last trusted reading (the anchor). The next interval
   first tries the amount from the anchor to the new reading; if that passes every check against the cap of the
   emitted interval, it is emitted instead (``BRIDGED``, estimated): an isolated spike or dip in the register costs
   nothing in total, its energy only moves one interval later. Otherwise the ordinary amount is used.
5b. Flat runs (``FLAT_SPREAD``, estimated): a jump over the cap of its own interval that is within the cap since the
   register last changed value is what a stuck display (or a device that buffered its register) looks like when it
   catches up: the amount is emitted over (start of the flat run, now], so it is spread over the time it was
   really used; that row overlaps the zero rows of the flat run, which stay as they were. No amount exceeds the cap
   of the interval it is emitted over.
6. ``GAP``: the interval is longer than ``gap_factor x cadence``; the amount is exact, its spread over time (evenly,
   by :mod:`engine.buckets`) is estimated.
7. ``RESET_FINAL_UNKNOWN``: the old register's final value was not recorded, its part of the interval is lost:
   quality missing, amount is the measurable part only (a lower bound).
8. ``NO_PREVIOUS``: the first reading a device ever has: a zero-length row, quality missing, amount 0.
9. ``OUT_OF_ORDER`` (older than the carried state) and ``NOT_FINITE``: a zero-length suspect row; the reading is
   ignored and the state is not advanced.

Quality is the worst applicable: suspect > missing > estimated > measured.

Incremental use: :class:`CounterState` holds, per device, the last reading, the anchor and the start of the current
flat run. Feeding a series in
batches, each with the state the previous batch returned, gives exactly (bit for bit) the rows of one pass. Rows of
a device must be in time order within a batch; the batch may interleave devices (time order across devices is
fastest). Late data (older than the state) cannot be folded in: re-run from a state saved before it.
The event and multiplier tables are looked up by time, so pass the whole tables (or at least every row at or after
the state's ``last_ts_us``) to every batch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lccm.engine import kernels as k

Impl = Literal["numba", "python"]
NO_TS = k.NO_TS


class Quality(enum.IntEnum):
    """Quality flag of an interval or bucket (int8 in arrays); a higher value is worse."""

    MEASURED = k.Q_MEASURED
    ESTIMATED = k.Q_ESTIMATED
    SUSPECT = k.Q_SUSPECT
    MISSING = k.Q_MISSING


class Reason(enum.IntFlag):
    """Why an interval has its quality (int32 bit set in arrays); see the module docstring."""

    NO_PREVIOUS = k.R_NO_PREVIOUS
    ROLLOVER = k.R_ROLLOVER
    RESET = k.R_RESET
    RESET_FINAL_UNKNOWN = k.R_RESET_FINAL_UNKNOWN
    MULTIPLIER_SPLIT = k.R_MULTIPLIER_SPLIT
    GAP = k.R_GAP
    NEGATIVE = k.R_NEGATIVE
    OVER_CAP = k.R_OVER_CAP
    BRIDGED = k.R_BRIDGED
    ZERO_DT = k.R_ZERO_DT
    OUT_OF_ORDER = k.R_OUT_OF_ORDER
    NOT_FINITE = k.R_NOT_FINITE
    FLAT_SPREAD = k.R_FLAT_SPREAD


def _csr(device_idx: np.ndarray, n_devices: int) -> np.ndarray:
    """Row pointer of a table sorted by device: rows of device d are ptr[d]:ptr[d + 1]."""
    return np.searchsorted(device_idx, np.arange(n_devices + 1), side="left").astype(np.int64)


def _devices(device_idx: np.ndarray, n_devices: int) -> np.ndarray:
    dev = np.ascontiguousarray(device_idx, dtype=np.int32)
    if dev.size and (dev.min() < 0 or dev.max() >= n_devices):
        raise ValueError(f"device index outside 0..{n_devices - 1}")
    return dev


@dataclass(frozen=True, slots=True)
class MeterParams:
    """Per-device register model; every array has one entry per device index."""

    modulus: np.ndarray  # float64, register units; 0 = no rollover
    rated_per_h: np.ndarray  # float64, (register units x multiplier) per hour: kW or L/h; 0 = no cap
    cadence_us: np.ndarray  # int64, nominal reading interval; 0 = no gap detection
    gap_factor: float = 2.0  # an interval longer than gap_factor x cadence is a gap (estimated)
    cap_tolerance: float = 1.5  # suspect above rated_per_h x elapsed hours x cap_tolerance
    wrap_max_fraction: float = 0.1  # a backward step is a rollover if the wrapped delta <= this x modulus

    @classmethod
    def uniform(
        cls, n_devices: int, *, modulus: float = 0.0, rated_per_h: float = 0.0, cadence_us: int = 0
    ) -> MeterParams:
        """The same model for every device."""
        return cls(
            modulus=np.full(n_devices, modulus, dtype=np.float64),
            rated_per_h=np.full(n_devices, rated_per_h, dtype=np.float64),
            cadence_us=np.full(n_devices, cadence_us, dtype=np.int64),
        )

    @property
    def n_devices(self) -> int:
        return int(self.modulus.shape[0])

    def checked(self) -> MeterParams:
        mod = np.ascontiguousarray(self.modulus, dtype=np.float64)
        rated = np.ascontiguousarray(self.rated_per_h, dtype=np.float64)
        cad = np.ascontiguousarray(self.cadence_us, dtype=np.int64)
        if not (mod.shape == rated.shape == cad.shape) or mod.ndim != 1:
            raise ValueError("modulus, rated_per_h and cadence_us must be 1-D arrays of one length")
        if np.any(~np.isfinite(mod) | (mod < 0)) or np.any(~np.isfinite(rated) | (rated < 0)) or np.any(cad < 0):
            raise ValueError("modulus, rated_per_h and cadence_us must be finite and >= 0")
        if not (self.gap_factor > 0 and self.cap_tolerance > 0 and 0 < self.wrap_max_fraction < 1):
            raise ValueError("gap_factor and cap_tolerance must be > 0, wrap_max_fraction in (0, 1)")
        return MeterParams(mod, rated, cad, float(self.gap_factor), float(self.cap_tolerance),
                           float(self.wrap_max_fraction))  # fmt: skip


@dataclass(frozen=True, slots=True)
class MultiplierChanges:
    """Multiplier (CT/VT ratio) changes: from ``effective_from_us`` on, the device's deltas are x ``multiplier``."""

    device_idx: np.ndarray  # int32
    effective_from_us: np.ndarray  # int64
    multiplier: np.ndarray  # float64, > 0

    @classmethod
    def none(cls) -> MultiplierChanges:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64))

    def table(self, n_devices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, from_us, multiplier) sorted by (device, from), checked."""
        dev = _devices(self.device_idx, n_devices)
        t = np.ascontiguousarray(self.effective_from_us, dtype=np.int64)
        m = np.ascontiguousarray(self.multiplier, dtype=np.float64)
        if not (dev.shape == t.shape == m.shape):
            raise ValueError("multiplier table columns differ in length")
        if np.any(~np.isfinite(m) | (m <= 0)):
            raise ValueError("multipliers must be finite and > 0")
        order = np.lexsort((t, dev))
        dev, t, m = dev[order], t[order], m[order]
        if np.any((np.diff(dev) == 0) & (np.diff(t) == 0)):
            raise ValueError("two multiplier changes for one device at the same instant")
        return _csr(dev, n_devices), np.ascontiguousarray(t), np.ascontiguousarray(m)


@dataclass(frozen=True, slots=True)
class RegisterEvents:
    """Reset and meter-swap events: at ``at_us`` the old register ends at ``old_final`` (NaN = unknown) and a
    register starting at ``new_start`` takes over. A reset is ``new_start = 0``."""

    device_idx: np.ndarray  # int32
    at_us: np.ndarray  # int64
    old_final: np.ndarray  # float64, register units; NaN = not recorded
    new_start: np.ndarray  # float64, register units

    @classmethod
    def none(cls) -> RegisterEvents:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.float64))

    def table(self, n_devices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ptr, at_us, old_final, new_start) sorted by (device, at), checked."""
        dev = _devices(self.device_idx, n_devices)
        t = np.ascontiguousarray(self.at_us, dtype=np.int64)
        fin = np.ascontiguousarray(self.old_final, dtype=np.float64)
        new = np.ascontiguousarray(self.new_start, dtype=np.float64)
        if not (dev.shape == t.shape == fin.shape == new.shape):
            raise ValueError("event table columns differ in length")
        if np.any(~np.isfinite(new)) or np.any(np.isinf(fin)):
            raise ValueError("new_start must be finite; old_final finite or NaN")
        order = np.lexsort((t, dev))
        return _csr(dev[order], n_devices), t[order], fin[order], new[order]


@dataclass(frozen=True, slots=True)
class CounterState:
    """Carry-in / carry-out per device: the last reading and the anchor (last trusted reading before a suspect
    interval). ``NO_TS`` = none. Registers are raw register units (before the multiplier)."""

    last_ts_us: np.ndarray  # int64
    last_register: np.ndarray  # float64
    anchor_ts_us: np.ndarray  # int64
    anchor_register: np.ndarray  # float64
    flat_ts_us: np.ndarray  # int64: the first reading of the current run of one register value

    @classmethod
    def empty(cls, n_devices: int) -> CounterState:
        return cls(
            last_ts_us=np.full(n_devices, NO_TS, dtype=np.int64),
            last_register=np.full(n_devices, np.nan),
            anchor_ts_us=np.full(n_devices, NO_TS, dtype=np.int64),
            anchor_register=np.full(n_devices, np.nan),
            flat_ts_us=np.full(n_devices, NO_TS, dtype=np.int64),
        )

    @property
    def n_devices(self) -> int:
        return int(self.last_ts_us.shape[0])

    def copy(self) -> CounterState:
        """Contiguous copies of the right dtypes (the kernel updates them in place)."""
        return CounterState(
            np.array(self.last_ts_us, dtype=np.int64),
            np.array(self.last_register, dtype=np.float64),
            np.array(self.anchor_ts_us, dtype=np.int64),
            np.array(self.anchor_register, dtype=np.float64),
            np.array(self.flat_ts_us, dtype=np.int64),
        )


@dataclass(frozen=True, slots=True)
class Intervals:
    """One row per input reading: the interval (start_us, end_us] ending at it."""

    device_idx: np.ndarray  # int32
    start_us: np.ndarray  # int64; == end_us for a zero-length row
    end_us: np.ndarray  # int64, the reading's timestamp
    amount: np.ndarray  # float64, register units x multiplier (kWh or L); >= 0; 0 when suspect
    raw: np.ndarray  # float64, the amount as computed before the verdict (may be < 0 or over cap); NaN if none
    quality: np.ndarray  # int8, Quality
    reasons: np.ndarray  # int32, Reason bits

    def __len__(self) -> int:
        return int(self.device_idx.shape[0])


def check_time_order(device_idx: np.ndarray, ts_us: np.ndarray, impl: Impl = "numba") -> None:
    """Raise unless the timestamps of each device are non-decreasing in row order (one pass; a sort of 50 M rows
    took 40 % of the whole engine in benchmarks/engine.py)."""
    if device_idx.shape[0] < 2:
        return
    dev = np.ascontiguousarray(device_idx, dtype=np.int32)
    last = np.full(int(dev.max()) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    bad = k.kernel(impl, "order")(dev, np.ascontiguousarray(ts_us, dtype=np.int64), last)
    if bad >= 0:
        raise ValueError(f"readings of a device must be in time order (row {bad} of device {dev[bad]} is older)")


def checked_readings(
    device_idx: np.ndarray,
    ts_us: np.ndarray,
    register: np.ndarray,
    params: MeterParams,
    state: CounterState | None,
    impl: Impl = "numba",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, MeterParams, CounterState]:
    """The checks of :func:`register_intervals` (shared with :func:`engine.fused.register_buckets`): contiguous
    (device_idx, ts_us, register), checked params, and a copy of the carry-in state (empty if None)."""
    p = params.checked()
    n_dev = p.n_devices
    dev = _devices(device_idx, n_dev)
    ts = np.ascontiguousarray(ts_us, dtype=np.int64)
    reg = np.ascontiguousarray(register, dtype=np.float64)
    if not (dev.shape == ts.shape == reg.shape) or dev.ndim != 1:
        raise ValueError("device_idx, ts_us and register must be 1-D arrays of one length")
    check_time_order(dev, ts, impl)
    st = (state or CounterState.empty(n_dev)).copy()
    if st.n_devices != n_dev:
        raise ValueError("state and params disagree on the number of devices")
    return dev, ts, reg, p, st


def register_intervals(
    device_idx: np.ndarray,
    ts_us: np.ndarray,
    register: np.ndarray,
    params: MeterParams,
    state: CounterState | None = None,
    *,
    multipliers: MultiplierChanges | None = None,
    events: RegisterEvents | None = None,
    impl: Impl = "numba",
) -> tuple[Intervals, CounterState]:
    """Cumulative register readings (kWh or litres) to one interval per reading, plus the state to carry on.

    ``device_idx`` (int32, dense 0..n_devices-1), ``ts_us`` (int64 UTC epoch microseconds) and ``register``
    (float64, register units before the multiplier) are columns of equal length, each device's rows in time order.
    ``state`` is the carry-in (default: nothing known); it is not modified. See the module docstring for the rules.
    """
    dev, ts, reg, p, st = checked_readings(device_idx, ts_us, register, params, state, impl)
    n_dev = p.n_devices
    m_ptr, m_from, m_val = (multipliers or MultiplierChanges.none()).table(n_dev)
    ev_ptr, ev_at, ev_fin, ev_new = (events or RegisterEvents.none()).table(n_dev)
    n = dev.shape[0]
    out = Intervals(
        device_idx=dev,
        start_us=np.empty(n, np.int64),
        end_us=np.empty(n, np.int64),
        amount=np.empty(n, np.float64),
        raw=np.empty(n, np.float64),
        quality=np.empty(n, np.int8),
        reasons=np.empty(n, np.int32),
    )
    k.kernel(impl, "counter")(
        dev, ts, reg, p.modulus, p.rated_per_h, p.cadence_us, p.gap_factor, p.cap_tolerance, p.wrap_max_fraction,
        ev_ptr, ev_at, ev_fin, ev_new, m_ptr, m_from, m_val,
        st.last_ts_us, st.last_register, st.anchor_ts_us, st.anchor_register, st.flat_ts_us,
        out.start_us, out.end_us, out.amount, out.raw, out.quality, out.reasons,
    )  # fmt: skip
    return out, st


def concat_intervals(parts: list[Intervals]) -> Intervals:
    """Rows of several batches, in order."""
    return Intervals(*(np.concatenate([getattr(p, f) for p in parts]) for f in Intervals.__dataclass_fields__))
