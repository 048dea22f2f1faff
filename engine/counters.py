"""Cumulative registers (energy kWh, fuel litres) to interval amounts with a quality flag on every interval.

Model of one meter (per device index d; every array below is indexed by d):

- ``modulus``: the register counts in [0, modulus) and wraps to 0; 0 = never wraps.
- the plausibility bound, in register units x multiplier per hour (kW for a kWh register, L/h for a fuel
  register): ``rated_per_h`` when > 0 (the meter's rated power: fixed), else the learned bound ``learned_per_h``
  (what the caller learned from the meter's own recent power or its site's,
  docs/reference.md#plausibility-bound-of-a-register), which the counter raises when consistent readings confirm a
  higher load. Both 0 = no bound known yet. The cap of an interval is ``bound x hours x cap_tolerance``.
- ``cadence_us``: the nominal time between readings; an interval longer than ``gap_factor x cadence`` is a gap.
  0 = no gap detection.
- multiplier changes (:class:`MultiplierChanges`): from ``effective_from_us`` on, register deltas are multiplied
  by ``multiplier`` (a CT ratio 200/5 is 40). Before a device's first change the multiplier is 1.
- reset / meter-swap events (:class:`RegisterEvents`): at ``at_us`` the register in service ends at ``old_final``
  (the last value read off it by the technician; NaN = not known) and a register starting at ``new_start`` takes
  over (a reset is ``new_start = 0`` on the same meter). Readings at or after ``at_us`` are of the new register.

One output row per input reading: the interval (start_us, end_us] ending at it, and the bound it was judged by.

Rules, in order (reason bits in :class:`Reason`, quality in :class:`Quality`):

1. The amount of an interval is the sum over its register segments (split at reset/swap events) of
   ``delta / mean(1/multiplier)``, the time-weighted mean over the segment. That is exact when the multiplier does
   not change inside the segment, and exact for constant primary power when it does (``MULTIPLIER_SPLIT``, estimated).
2. Reading a register with a modulus: a step back of at most ``wrap_max_fraction x modulus`` is a backward step
   (``NEGATIVE``), also when it crosses the wrap point (the register jumped up by nearly the modulus, as a stale
   reading from before a rollover does). Otherwise a negative delta is a rollover (``ROLLOVER``, still measured) when
   the wrapped amount ``r1 + modulus - r0`` is within ``consistency x`` the cap of the interval or within
   ``wrap_max_fraction x modulus`` (and then judged against the cap itself, rule 3): a gap with a rollover in it is
   accepted when the bound and the elapsed time allow it. When the cap allows a whole extra turn, the number of
   wraps is not known: ``WRAP_AMBIGUOUS``, quality missing, and the amount is the smallest reading of the registers
   (a lower bound).
3. Plausibility: an amount over the cap (``OVER_CAP``), a positive amount while no bound is known
   (``UNCONFIRMED``) or a moving register between two readings with the same timestamp (``ZERO_DT``) makes the
   interval suspect.
4. A suspect interval emits amount 0; the value computed is kept in ``raw`` for audit. Energy is never negative and
   no amount exceeds the cap of the span it is emitted over.
5. Catch-up: after a suspect interval the device remembers its last trusted reading (the anchor: the first
   reading of that value, since the register may have been stuck on it). Each later interval whose own step does
   not go backward first tries the amount from the anchor to the new reading, judged against the cap of that whole
   span; if it passes, it is emitted over (anchor, now] (``BRIDGED``, estimated): an isolated spike, dip or stale
   reading costs nothing in total, and its energy is spread over the time it was used. (A reading that went back is
   no end for a catch-up: it, or the one before, is wrong, and the next reading tells which.) Otherwise the ordinary
   amount is used: if it passes with an amount > 0 the run ends (what the suspect intervals held is lost); a step of
   zero keeps it open.
5b. Flat runs (``FLAT_SPREAD``, still suspect): a jump over the cap of its own interval that is within the cap
   since the register last changed value is what a stuck display (or a device that buffered its register) looks
   like when it catches up, and what a spike after an idle spell looks like too. It is held, anchored where the
   register stuck; when the next reading carries on from it, the catch-up (5) spreads it over the flat run.
5c. Learned bounds (no rated power): consecutive forward steps over the bound whose powers agree (within a factor
   ``consistency``) are a real load, not a fault. After ``confirm_steps`` of them the bound is raised to
   ``learned_headroom x`` their greatest power and the run is caught up as in 5 (``LOAD_CONFIRMED``, estimated). So
   too when a trusted step forward would end the run and the amount since the anchor is within ``consistency x``
   the cap of that span (the register came back under the bound without going back). A load that grows, or a meter
   with no bound yet, is never locked out; one reading never raises the bound (kernels.learn_from_run).
   A row emitted over a span that reaches back (5, 5c) overlaps the rows of that span, which stay as they were;
   ``cover_from_us`` says where its own time starts, so that coverage counts each instant once.
6. ``GAP``: the interval is longer than ``gap_factor x cadence``; the amount is exact, its spread over time (evenly,
   by :mod:`engine.buckets`) is estimated.
7. ``RESET_FINAL_UNKNOWN``: the old register's final value was not recorded, its part of the interval is lost:
   quality missing, amount is the measurable part only (a lower bound).
8. ``NO_PREVIOUS``: the first reading a device ever has: a zero-length row, quality missing, amount 0.
9. ``OUT_OF_ORDER`` (older than the carried state) and ``NOT_FINITE``: a zero-length suspect row; the reading is
   ignored and the state is not advanced.

Quality is the worst applicable: suspect > missing > estimated > measured.

Incremental use: :class:`CounterState` holds, per device, the last reading, the anchor, the start of the current
flat run, the learned bound and the run of consistent steps (5c). Feeding a series in batches, each with the state
the previous batch returned, gives exactly (bit for bit) the rows of one pass. Rows of a device must be in time
order within a batch; the batch may interleave devices (time order across devices is fastest). Late data (older
than the state) cannot be folded in: re-run from a state saved before it.
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
    UNCONFIRMED = k.R_UNCONFIRMED
    LOAD_CONFIRMED = k.R_LOAD_CONFIRMED
    WRAP_AMBIGUOUS = k.R_WRAP_AMBIGUOUS


def _csr(device_idx: np.ndarray, n_devices: int) -> np.ndarray:
    """Row pointer of a table sorted by device: rows of device d are ptr[d]:ptr[d + 1]."""
    return np.searchsorted(device_idx, np.arange(n_devices + 1), side="left").astype(np.int64)


def _devices(device_idx: np.ndarray, n_devices: int) -> np.ndarray:
    dev = np.ascontiguousarray(device_idx, dtype=np.int32)
    if dev.size and (dev.min() < 0 or dev.max() >= n_devices):
        raise ValueError(f"device index outside 0..{n_devices - 1}")
    return dev


# How much room a learned bound leaves above the power it was learned from, how many consecutive steps over the
# bound confirm a higher load, and how far apart their powers may be: values no public source gives, so parameters
# with these defaults (docs/reference.md#plausibility-bound-of-a-register).
LEARNED_HEADROOM = 3.0
CAP_TOLERANCE = 1.5  # the cap of an interval: bound x elapsed hours x this
CONFIRM_STEPS = 3
CONSISTENCY = 4.0


@dataclass(frozen=True, slots=True)
class MeterParams:
    """Per-device register model; every array has one entry per device index."""

    modulus: np.ndarray  # float64, register units; 0 = no rollover
    rated_per_h: np.ndarray  # float64, (register units x multiplier) per hour: kW or L/h; > 0 = the fixed bound
    cadence_us: np.ndarray  # int64, nominal reading interval; 0 = no gap detection
    # float64, kW or L/h: the bound to start from where rated_per_h is 0, learned from history by the caller (the
    # counter may raise it, rule 5c); None or 0 = none known yet. A higher carried CounterState.bound_per_h wins.
    learned_per_h: np.ndarray | None = None
    gap_factor: float = 2.0  # an interval longer than gap_factor x cadence is a gap (estimated)
    cap_tolerance: float = CAP_TOLERANCE  # suspect above bound x elapsed hours x cap_tolerance
    wrap_max_fraction: float = 0.1  # rule 2 of the module docstring
    learned_headroom: float = LEARNED_HEADROOM  # a confirmed load raises the bound to this x its power
    confirm_steps: int = CONFIRM_STEPS  # consecutive consistent steps over the bound that confirm a load
    consistency: float = CONSISTENCY  # ... whose greatest power is at most this x their least

    @classmethod
    def uniform(
        cls,
        n_devices: int,
        *,
        modulus: float = 0.0,
        rated_per_h: float = 0.0,
        cadence_us: int = 0,
        learned_per_h: float = 0.0,
    ) -> MeterParams:
        """The same model for every device."""
        return cls(
            modulus=np.full(n_devices, modulus, dtype=np.float64),
            rated_per_h=np.full(n_devices, rated_per_h, dtype=np.float64),
            cadence_us=np.full(n_devices, cadence_us, dtype=np.int64),
            learned_per_h=np.full(n_devices, learned_per_h, dtype=np.float64),
        )

    @property
    def n_devices(self) -> int:
        return int(self.modulus.shape[0])

    def checked(self) -> MeterParams:
        mod = np.ascontiguousarray(self.modulus, dtype=np.float64)
        rated = np.ascontiguousarray(self.rated_per_h, dtype=np.float64)
        cad = np.ascontiguousarray(self.cadence_us, dtype=np.int64)
        learned = np.ascontiguousarray(
            np.zeros(mod.shape) if self.learned_per_h is None else self.learned_per_h, dtype=np.float64
        )
        if not (mod.shape == rated.shape == cad.shape == learned.shape) or mod.ndim != 1:
            raise ValueError("modulus, rated_per_h, cadence_us and learned_per_h must be 1-D arrays of one length")
        if any(np.any(~np.isfinite(x) | (x < 0)) for x in (mod, rated, learned)) or np.any(cad < 0):
            raise ValueError("modulus, rated_per_h, learned_per_h and cadence_us must be finite and >= 0")
        if not (self.gap_factor > 0 and self.cap_tolerance > 0 and 0 < self.wrap_max_fraction < 0.5):
            raise ValueError("gap_factor and cap_tolerance must be > 0, wrap_max_fraction in (0, 0.5)")
        if not (self.learned_headroom >= 1 and self.consistency >= 1 and int(self.confirm_steps) >= 2):
            raise ValueError("learned_headroom and consistency must be >= 1, confirm_steps >= 2")
        return MeterParams(mod, rated, cad, learned, float(self.gap_factor), float(self.cap_tolerance),
                           float(self.wrap_max_fraction), float(self.learned_headroom), int(self.confirm_steps),
                           float(self.consistency))  # fmt: skip


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
    """Carry-in / carry-out per device: the last reading, the anchor (last trusted reading before a suspect
    interval), the start of the current flat run, the learned bound and the run of consistent steps over it (rule
    5c). ``NO_TS`` = none. Registers are raw register units (before the multiplier)."""

    last_ts_us: np.ndarray  # int64
    last_register: np.ndarray  # float64
    anchor_ts_us: np.ndarray  # int64
    anchor_register: np.ndarray  # float64
    flat_ts_us: np.ndarray  # int64: the first reading of the current run of one register value
    bound_per_h: np.ndarray  # float64: the learned bound (kW or L/h), 0 = none; unused where rated_per_h > 0
    tail_ts_us: np.ndarray  # int64: where the run of consistent steps over the bound began
    tail_register: np.ndarray  # float64: ... the register there
    tail_n: np.ndarray  # int64: ... its length; -1: the next step leaves a backward step and is not counted
    tail_lo_per_h: np.ndarray  # float64: ... the least power its steps may have had (kernels.learn_from_run)
    tail_hi_per_h: np.ndarray  # float64: ... the greatest power its steps surely reached
    run_hi_per_h: np.ndarray  # float64: the greatest power of this suspect run's steps that agreed with another

    @classmethod
    def empty(cls, n_devices: int) -> CounterState:
        return cls(
            last_ts_us=np.full(n_devices, NO_TS, dtype=np.int64),
            last_register=np.full(n_devices, np.nan),
            anchor_ts_us=np.full(n_devices, NO_TS, dtype=np.int64),
            anchor_register=np.full(n_devices, np.nan),
            flat_ts_us=np.full(n_devices, NO_TS, dtype=np.int64),
            bound_per_h=np.zeros(n_devices),
            tail_ts_us=np.full(n_devices, NO_TS, dtype=np.int64),
            tail_register=np.full(n_devices, np.nan),
            tail_n=np.zeros(n_devices, dtype=np.int64),
            tail_lo_per_h=np.zeros(n_devices),
            tail_hi_per_h=np.zeros(n_devices),
            run_hi_per_h=np.zeros(n_devices),
        )

    @property
    def n_devices(self) -> int:
        return int(self.last_ts_us.shape[0])

    def copy(self) -> CounterState:
        """Contiguous copies of the right dtypes (the kernel updates them in place)."""
        return CounterState(*(np.array(getattr(self, f), dtype=_STATE_DTYPES[f]) for f in _STATE_DTYPES))


_STATE_DTYPES = {
    "last_ts_us": np.int64,
    "last_register": np.float64,
    "anchor_ts_us": np.int64,
    "anchor_register": np.float64,
    "flat_ts_us": np.int64,
    "bound_per_h": np.float64,
    "tail_ts_us": np.int64,
    "tail_register": np.float64,
    "tail_n": np.int64,
    "tail_lo_per_h": np.float64,
    "tail_hi_per_h": np.float64,
    "run_hi_per_h": np.float64,
}


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
    bound_per_h: np.ndarray  # float64, the bound the row was judged by (kW or L/h); 0 = none known
    # int64: where the row's own time starts: start_us, but for a row reaching back over earlier ones (rules 5, 5c)
    # the previous reading's time; coverage counts (cover_from_us, end_us] (engine.buckets)
    cover_from_us: np.ndarray

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
    assert p.learned_per_h is not None  # checked() fills it
    np.maximum(st.bound_per_h, p.learned_per_h, out=st.bound_per_h)  # the carried bound may have been raised (5c)
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
        bound_per_h=np.empty(n, np.float64),
        cover_from_us=np.empty(n, np.int64),
    )
    k.kernel(impl, "counter")(
        dev, ts, reg, p.modulus, p.rated_per_h, p.cadence_us, p.gap_factor, p.cap_tolerance, p.wrap_max_fraction,
        p.learned_headroom, p.consistency, p.confirm_steps, ev_ptr, ev_at, ev_fin, ev_new, m_ptr, m_from, m_val,
        *(getattr(st, f) for f in CounterState.__dataclass_fields__),
        out.start_us, out.end_us, out.amount, out.raw, out.quality, out.reasons, out.bound_per_h, out.cover_from_us,
    )  # fmt: skip
    return out, st


def concat_intervals(parts: list[Intervals]) -> Intervals:
    """Rows of several batches, in order."""
    return Intervals(*(np.concatenate([getattr(p, f) for p in parts]) for f in Intervals.__dataclass_fields__))
