"""Counters under every fault the data allows (issue 11, point 4), on the numba and the Python build.

Random meters, with rated power, with a bound learned from history (that the load may outgrow) and with no bound at
all, read a register that rolls over, across long gaps, with backward glitches, spikes, stale readings and stuck
registers written over the true readings. The expectation does not come from the engine: each meter's physics is a
power per interval, integrated here in plain Python (:func:`true_consumption`); the readings are that register
with the faults written over it.

Wherever the readings determine it (the faults are isolated, not at the ends of the series and not next to a long
gap, and no span the engine must bridge holds more than a third of a turn of the register) the total equals the true
consumption within 0.1 %. Everywhere: amounts are never negative and never above the bound over the span they are
emitted over; the bound is the rated power where there is one, and a learned bound is never raised by a faulty
reading (it stays within the learned headroom of the largest true power so far).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from lccm.engine.buckets import spread_intervals
from lccm.engine.counters import (
    LEARNED_HEADROOM,
    CounterState,
    Impl,
    Intervals,
    MeterParams,
    MultiplierChanges,
    Quality,
    concat_intervals,
    register_intervals,
)
from lccm.engine.kernels import IMPLS
from lccm.engine.timebase import US_PER_H, bkk_us, bucket_edges_us

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = bkk_us(2026, 3, 2, 0, 0)
KINDS = ("rated", "learned", "none")
FAULTS = ("spike", "dip", "stale", "stuck")
SPAN_OF_MODULUS = 0.3  # at most this share of a turn of the register between two readings the engine bridges


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


@dataclass
class Meters:
    """Readings of faulty meters in global time order, and what the reference model knows about them."""

    device_idx: np.ndarray
    ts_us: np.ndarray
    register: np.ndarray
    params: MeterParams
    multipliers: MultiplierChanges
    kinds: list[str]
    truth_kwh: list[float]  # true consumption between each meter's first and last reading
    power_kw: list[list[float]]  # true power of each interval, per meter
    times_us: list[list[int]]  # each meter's reading instants
    faults: list[list[tuple[int, str]]]  # (reading index, fault) per meter

    def __repr__(self) -> str:
        """Every value in full, so that a failing example can be rebuilt exactly from the report."""
        p = self.params
        mult = self.multipliers
        return (
            f"Meters(np.array({self.device_idx.tolist()}, np.int32), np.array({self.ts_us.tolist()}, np.int64), "
            f"np.array({self.register.tolist()}), MeterParams(np.array({p.modulus.tolist()}), "
            f"np.array({p.rated_per_h.tolist()}), np.array({p.cadence_us.tolist()}, np.int64), "
            f"np.array({np.asarray(p.learned_per_h).tolist()})), MultiplierChanges(np.array("
            f"{mult.device_idx.tolist()}, np.int32), np.array({mult.effective_from_us.tolist()}, np.int64), "
            f"np.array({mult.multiplier.tolist()})), {self.kinds}, {self.truth_kwh}, {self.power_kw}, "
            f"{self.times_us}, {self.faults})"
        )


def true_consumption(times_us: list[int], power_kw: list[float]) -> float:
    """The reference model: the integral of a power that is constant between readings, in plain Python."""
    return math.fsum(p * (b - a) / US_PER_H for p, a, b in zip(power_kw, times_us, times_us[1:], strict=False))


@st.composite
def meters(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> Meters:
    n_dev = draw(st.integers(1, 3))
    rows: list[tuple[int, int, float]] = []
    mult_rows: list[tuple[int, int, float]] = []
    modulus, rated, learned = np.zeros(n_dev), np.zeros(n_dev), np.zeros(n_dev)
    cadence = np.zeros(n_dev, np.int64)
    out_kinds, truths, powers, times, faults_of = [], [], [], [], []
    for d in range(n_dev):
        kind = draw(st.sampled_from(kinds))
        cad = draw(st.sampled_from([60, 300, 900, 3600])) * 1_000_000
        mod = draw(st.sampled_from([0.0, 1e4, 1e5]))
        ratio = draw(st.sampled_from([1.0, 40.0]))  # a CT ratio in force throughout: the register counts 1/40
        n = draw(st.integers(16, 40))
        # steps of one cadence, sometimes two or three (a lost reading), now and then a long gap of days
        steps = [
            draw(st.sampled_from([1, 1, 1, 1, 1, 2, 3])) if draw(st.integers(0, 11)) else draw(st.integers(20, 200))
            for _ in range(n - 1)
        ]
        ts = [T0 + draw(st.integers(0, 3600)) * 1_000_000]
        for s in steps:
            ts.append(ts[-1] + s * cad)
        # power: a random walk; the meter switches off now and then (not in its first 5 intervals nor its last 7),
        # and its last 4 intervals are steady: a series that ends while a new load is still unconfirmed is not
        # determined by its readings (the next reading would tell)
        p = draw(st.floats(0.5, 50.0))
        power = []
        for k in range(n - 1):
            if k < n - 5:
                p *= draw(st.floats(0.7, 1.4))
            off = 5 <= k < n - 8 and draw(st.integers(0, 7)) == 0
            power.append(0.0 if off else p)
        rated_kw = learned_kw = 0.0
        if kind == "rated":
            rated_kw = draw(st.sampled_from([1.0, 2.0, 4.0])) * max(power)
        elif kind == "learned":
            learned_kw = draw(st.floats(0.3, 5.0)) * power[0]  # from history: the load may outgrow it
        use = [q * (b - a) / US_PER_H for q, a, b in zip(power, ts, ts[1:], strict=False)]
        if mod:  # no three intervals in a row hold more than SPAN_OF_MODULUS of a turn: wraps are readable
            most = max(sum(use[k : k + 3]) for k in range(len(use))) / ratio
            scale = min(1.0, SPAN_OF_MODULUS * mod / most) if most > 0 else 1.0
            power, use = [q * scale for q in power], [u * scale for u in use]
            rated_kw, learned_kw = rated_kw * scale, learned_kw * scale
        start = mod - draw(st.floats(0.0, 0.2 * mod)) if mod and draw(st.booleans()) else draw(st.floats(0, 5e4))
        true_reg = [start + t / ratio for t in itertools.accumulate([0.0, *use])]
        if mod:
            true_reg = [r % mod for r in true_reg]
        regs, placed = _faults(draw, true_reg, steps, mod)
        rows += [(t, d, r) for t, r in zip(ts, regs, strict=True)]
        mult_rows.append((d, ts[0] - US_PER_H, ratio))
        modulus[d], rated[d], learned[d], cadence[d] = mod, rated_kw, learned_kw, cad
        out_kinds.append(kind)
        truths.append(true_consumption(ts, power))
        powers.append(power)
        times.append(ts)
        faults_of.append(placed)
    rows.sort(key=lambda r: (r[0], r[1]))
    return Meters(
        device_idx=np.array([r[1] for r in rows], np.int32),
        ts_us=np.array([r[0] for r in rows], np.int64),
        register=np.array([r[2] for r in rows]),
        params=MeterParams(modulus, rated, cadence, learned),
        multipliers=MultiplierChanges(
            np.array([r[0] for r in mult_rows], np.int32),
            np.array([r[1] for r in mult_rows], np.int64),
            np.array([r[2] for r in mult_rows]),
        ),
        kinds=out_kinds,
        truth_kwh=truths,
        power_kw=powers,
        times_us=times,
        faults=faults_of,
    )


def _faults(
    draw: st.DrawFn, true_reg: list[float], steps: list[int], mod: float
) -> tuple[list[float], list[tuple[int, str]]]:
    """The true registers with isolated faults written over them: none in the first 5 readings nor the last 7,
    none on a reading next to a long gap, at least 7 readings apart."""
    n = len(true_reg)
    regs = list(true_reg)
    placed: list[tuple[int, str]] = []
    k = 5
    while k < n - 7:
        if draw(st.integers(0, 3)) or any(steps[j] > 3 for j in range(k - 1, min(k + 5, n - 1))):
            k += 1
            continue
        fault = draw(st.sampled_from(FAULTS))
        r = true_reg[k]
        if fault == "spike":  # far above anything the meter can count in an interval
            regs[k] = (r + 0.5 * mod) % mod if mod else r + draw(st.floats(1e6, 1e9))
        elif fault == "dip":  # a backward glitch: lower than the reading before
            drop = draw(st.floats(0.0, 1.0))
            regs[k] = (true_reg[k - 1] - drop * 0.3 * mod) % mod if mod else true_reg[k - 1] * (1 - drop)
        elif fault == "stale":  # a reading from one to three readings back (maybe from before a rollover)
            regs[k] = true_reg[k - draw(st.integers(2, 4))]
        else:  # a stuck register: one to three readings repeat the one before
            for j in range(k, k + draw(st.integers(1, 3))):
                regs[j] = true_reg[k - 1]
        placed.append((k, fault))
        k += 7
    return regs, placed


def run(m: Meters, impl: Impl, cuts: list[int] | None = None) -> tuple[Intervals, CounterState]:
    bounds = [0, *sorted(cuts or []), len(m.ts_us)]
    state = CounterState.empty(m.params.n_devices)
    parts = []
    for a, b in itertools.pairwise(bounds):
        iv, state = register_intervals(
            m.device_idx[a:b], m.ts_us[a:b], m.register[a:b], m.params, state, multipliers=m.multipliers,
            impl=impl,
        )  # fmt: skip
        parts.append(iv)
    return concat_intervals(parts), state


def largest_power_so_far(m: Meters, d: int, end_us: np.ndarray) -> np.ndarray:
    """The greatest true power of the meter's intervals that ended by each instant."""
    ends = np.array(m.times_us[d][1:], np.int64)
    running = np.maximum.accumulate(np.array(m.power_kw[d]))
    k = np.searchsorted(ends, end_us, side="right") - 1
    return np.where(k >= 0, running[np.maximum(k, 0)], 0.0)


def check_bounds(iv: Intervals, m: Meters) -> None:
    """Never negative, never above the bound over the emitted span, and the bound never raised by a fault."""
    note(repr(m))  # the failing example in full, to rebuild it
    assert np.all(np.isfinite(iv.amount)) and np.all(iv.amount >= 0.0)
    assert np.all(iv.amount[iv.quality == Quality.SUSPECT] == 0.0)
    cap = iv.bound_per_h * ((iv.end_us - iv.start_us) / US_PER_H) * m.params.cap_tolerance
    assert np.all(iv.amount <= cap * (1 + 1e-12)), "an amount above the bound of its span"
    for d, kind in enumerate(m.kinds):
        mine = iv.device_idx == d
        if kind == "rated":
            assert np.all(iv.bound_per_h[mine] == m.params.rated_per_h[d])
            continue
        assert m.params.learned_per_h is not None
        most = np.maximum(m.params.learned_per_h[d], LEARNED_HEADROOM * largest_power_so_far(m, d, iv.end_us[mine]))
        # (1e-6: an amount is a difference of two registers, exact to their float precision only)
        assert np.all(iv.bound_per_h[mine] <= most * (1 + 1e-6)), "the learned bound was raised by a fault"


@SETTINGS
@given(meters())
def test_totals_equal_the_true_consumption_within_a_tenth_of_a_percent(impl: Impl, m: Meters) -> None:
    iv, _ = run(m, impl)
    check_bounds(iv, m)
    for d, truth in enumerate(m.truth_kwh):
        got = float(iv.amount[iv.device_idx == d].sum())
        assert got == pytest.approx(truth, rel=1e-3, abs=1e-9), (m.kinds[d], m.faults[d])


@SETTINGS
@given(meters(kinds=("rated",)))
def test_with_rated_power_every_spike_is_suspect(impl: Impl, m: Meters) -> None:
    iv, _ = run(m, impl)
    check_bounds(iv, m)
    for d, placed in enumerate(m.faults):
        rows = np.flatnonzero(iv.device_idx == d)
        for k, fault in placed:
            if fault == "spike":
                assert iv.quality[rows[k]] == Quality.SUSPECT


@SETTINGS
@given(meters(), st.data())
def test_batches_chained_by_state_equal_one_pass(impl: Impl, m: Meters, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(m.ts_us)), max_size=5))
    one, _ = run(m, impl)
    many, _ = run(m, impl, cuts)
    for name in Intervals.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name), err_msg=name)


@SETTINGS
@given(meters())
def test_numba_and_python_agree_exactly(m: Meters) -> None:
    a, sa = run(m, "numba")
    b, sb = run(m, "python")
    for name in Intervals.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in CounterState.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name), err_msg=name)


@SETTINGS
@given(meters())
def test_buckets_conserve_the_energy_and_cover_each_instant_once(impl: Impl, m: Meters) -> None:
    iv, _ = run(m, impl)
    edges = bucket_edges_us("15min", int(iv.start_us.min()), int(iv.end_us.max()))
    b = spread_intervals(iv, edges, m.params.n_devices, impl=impl)
    for d, ts in enumerate(m.times_us):
        assert b.amount[:, d].sum() == pytest.approx(iv.amount[iv.device_idx == d].sum(), rel=1e-9, abs=1e-9)
        assert b.covered_us[:, d].sum() == ts[-1] - ts[0]
        assert np.all(b.covered_us[:, d] <= np.diff(edges))


def test_the_generator_makes_every_fault() -> None:
    """The faults the tests above claim to cover do occur in what they are fed (a test that cannot fail is a
    defect): over a fixed set of draws, each fault, each kind of bound and a rollover inside a long gap appear."""
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(meters())
    def collect(m: Meters) -> None:
        for d, placed in enumerate(m.faults):
            seen.update(f for _, f in placed)
            seen.add(m.kinds[d])
            mod = float(m.params.modulus[d])
            steps = np.diff(m.times_us[d]) // int(m.params.cadence_us[d])
            regs = m.register[m.device_idx == d]
            if mod and np.any((steps > 3) & (np.diff(regs) < 0)):
                seen.add("rollover in a long gap")

    collect()
    assert seen >= {*FAULTS, *KINDS, "rollover in a long gap"}, seen


KNOWN_AMBIGUOUS = Path(__file__).parent / "golden" / "counter_ambiguous_spikes.txt"


@pytest.mark.xfail(strict=True, reason="known defect: a spike of half the modulus after a long flat run is counted")
@pytest.mark.parametrize("impl", IMPLS)
def test_known_ambiguous_spikes(impl: Impl) -> None:
    """Cases a randomized search found that the counter gets wrong: a register with a modulus whose spikes are half
    the modulus (so the step back out of one reads as a forward wrap) after hours without consumption, where the
    meter's bound allows the spike's amount over the whole flat run. Kept here, failing, until the counter tells a
    spike from a catch-up in that case; strict, so that the fix shows."""
    scope = {"np": np, "Meters": Meters, "MeterParams": MeterParams, "MultiplierChanges": MultiplierChanges}
    for line in KNOWN_AMBIGUOUS.read_text(encoding="utf-8").splitlines():
        if line.startswith("Meters("):
            m = eval(line, scope)  # the test's own data file: hypothesis's repr of a Meters
            iv, _ = run(m, impl)
            for d, truth in enumerate(m.truth_kwh):
                assert float(iv.amount[iv.device_idx == d].sum()) == pytest.approx(truth, rel=1e-3, abs=1e-9)
