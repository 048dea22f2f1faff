"""Registers straight to buckets (engine.fused) against the three-step pipeline it replaces, on the numba and the
Python build: counters -> spread_intervals -> bucket_emissions (factor in force, then base-year factor)."""

from __future__ import annotations

import itertools
import math
from dataclasses import fields
from typing import cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lccm.engine import fused as fused_module
from lccm.engine.buckets import IntervalBuckets, WeightTable, spread_intervals
from lccm.engine.counters import (
    CounterState,
    Impl,
    MeterParams,
    MultiplierChanges,
    Quality,
    Reason,
    RegisterEvents,
    register_intervals,
)
from lccm.engine.emissions import bucket_emissions, factor_series
from lccm.engine.factors import SOURCE_CLASS_BY_KEY, TGO_REGISTRY, constant_table
from lccm.engine.fused import CellSeed, RegisterBuckets, register_buckets
from lccm.engine.kernels import IMPLS, NO_TS
from lccm.engine.timebase import US_PER_H, US_PER_MIN, Resolution, bkk_us, bucket_edges_us, utc_us
from tests.test_engine_counters import T0, Fleet, fleets
from tests.test_engine_counters_faults import Meters, meters

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUILDING = SOURCE_CLASS_BY_KEY["building_electricity"]
CHANGE_US = utc_us(2025, 12, 31, 17)  # TGO grid factor 0.4999 -> 0.4750 (2026-01-01 00:00 Asia/Bangkok)
BASE_2025 = (bkk_us(2025), bkk_us(2026))


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


Tables = tuple[WeightTable, np.ndarray, WeightTable, np.ndarray]


def pipeline(
    f: Fleet, edges: np.ndarray, tables: Tables, impl: Impl, state: CounterState | None = None
) -> tuple[RegisterBuckets, CounterState]:
    """What the stream computed before engine.fused: the three steps, emissions twice."""
    factors, series, base, base_series = tables
    n = f.params.n_devices
    iv, out = register_intervals(
        f.device_idx, f.ts_us, f.register, f.params, state, multipliers=f.multipliers, events=f.events, impl=impl
    )
    energy = spread_intervals(iv, edges, n, impl=impl)
    kg = bucket_emissions(iv, edges, n, factors, series, impl=impl).kgco2e
    kg_base = bucket_emissions(iv, edges, n, base, base_series, impl=impl).kgco2e
    return RegisterBuckets(energy, kg, kg_base), out


def fused(
    f: Fleet, edges: np.ndarray, tables: Tables, impl: Impl, state: CounterState | None = None
) -> tuple[RegisterBuckets, CounterState]:
    return register_buckets(
        f.device_idx, f.ts_us, f.register, f.params, edges, *tables, state,
        multipliers=f.multipliers, events=f.events, impl=impl,
    )  # fmt: skip


def assert_same(a: RegisterBuckets, b: RegisterBuckets) -> None:
    """Bit for bit: the fused kernel does the pipeline's operations in the pipeline's order."""
    for field in fields(IntervalBuckets):
        x, y = getattr(a.energy, field.name), getattr(b.energy, field.name)
        assert x.dtype == y.dtype, field.name
        np.testing.assert_array_equal(x, y, err_msg=field.name)
    np.testing.assert_array_equal(a.kgco2e, b.kgco2e, err_msg="kgco2e")
    np.testing.assert_array_equal(a.kgco2e_base, b.kgco2e_base, err_msg="kgco2e_base")


def assert_same_state(a: CounterState, b: CounterState) -> None:
    for field in fields(CounterState):
        np.testing.assert_array_equal(getattr(a, field.name), getattr(b, field.name), err_msg=field.name)


@st.composite
def factor_tables(draw: st.DrawFn, lo_us: int, hi_us: int, n_devices: int) -> Tables:
    """Two step tables with random steps over [lo, hi] (inside buckets too, some NaN = no factor in force) and a
    random series per device (-1 = no emissions)."""

    def table(n_series: int) -> WeightTable:
        series = []
        for _ in range(n_series):
            n = draw(st.integers(0, 4))
            at = sorted(set(draw(st.lists(st.integers(lo_us - US_PER_H, hi_us + US_PER_H), min_size=n, max_size=n))))
            if draw(st.booleans()):
                at = [-(2**63), *at]  # in force since always
            series.append([(t, draw(st.one_of(st.floats(0.0, 5.0), st.just(math.nan)))) for t in at])
        ptr = np.concatenate([[0], np.cumsum([len(s) for s in series])]).astype(np.int64)
        steps = [x for s in series for x in s]
        return WeightTable(ptr, np.array([t for t, _ in steps], np.int64), np.array([v for _, v in steps]))

    n_a, n_b = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    pick = st.lists(st.integers(-1, n_a - 1), min_size=n_devices, max_size=n_devices)
    pick_b = st.lists(st.integers(-1, n_b - 1), min_size=n_devices, max_size=n_devices)
    return table(n_a), np.array(draw(pick), np.int32), table(n_b), np.array(draw(pick_b), np.int32)


@st.composite
def edges_for(draw: st.DrawFn, f: Fleet) -> np.ndarray:
    """Calendar edges over the readings (evenly spaced or months), a part of them (readings outside are left out),
    or irregular edges."""
    lo, hi = int(f.ts_us.min()), int(f.ts_us.max())
    kind = draw(st.sampled_from(["15min", "1h", "1d", "1mo", "part", "irregular"]))
    if kind == "irregular":
        cuts = draw(st.lists(st.integers(lo - 2 * US_PER_H, hi + 2 * US_PER_H), min_size=2, max_size=30, unique=True))
        return np.array(sorted(cuts), np.int64)
    if kind == "part":
        a = draw(st.integers(lo, hi))
        return bucket_edges_us("15min", a, draw(st.integers(a, hi + US_PER_H)))
    return bucket_edges_us(cast(Resolution, kind), lo, hi)


# ----------------------------------------------------------------------------------------------- the same answer
@SETTINGS
@given(st.data(), fleets(spikes=True))
def test_fused_equals_the_pipeline_with_spikes_rollovers_and_flat_runs(
    impl: Impl, data: st.DataObject, f: Fleet
) -> None:
    edges = data.draw(edges_for(f))
    tables = data.draw(factor_tables(int(f.ts_us.min()), int(f.ts_us.max()), f.params.n_devices))
    want, want_state = pipeline(f, edges, tables, impl)
    got, got_state = fused(f, edges, tables, impl)
    assert_same(got, want)
    assert_same_state(got_state, want_state)


@SETTINGS
@given(st.data(), fleets(unknown_finals=True))
def test_fused_equals_the_pipeline_with_multipliers_and_reset_events(impl: Impl, data: st.DataObject, f: Fleet) -> None:
    edges = data.draw(edges_for(f))
    tables = data.draw(factor_tables(int(f.ts_us.min()), int(f.ts_us.max()), f.params.n_devices))
    want, want_state = pipeline(f, edges, tables, impl)
    got, got_state = fused(f, edges, tables, impl)
    assert_same(got, want)
    assert_same_state(got_state, want_state)


@SETTINGS
@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf)), min_size=1, max_size=30),
    st.lists(st.integers(0, 4 * 3600), min_size=30, max_size=30),
    st.sampled_from([0.0, 1e3, 1e5]),
    st.sampled_from([0.0, 1.0, 100.0]),
    st.sampled_from(["15min", "1h"]),
)
def test_fused_equals_the_pipeline_on_garbage(
    impl: Impl, regs: list[float], gaps_s: list[int], mod: float, rated: float, res: Resolution
) -> None:
    """NaN and infinite registers, repeated timestamps, backward steps, gaps: every rule's row."""
    ts = T0 + np.cumsum(np.array(gaps_s[: len(regs)], np.int64)) * 1_000_000
    f = Fleet(
        np.zeros(len(regs), np.int32), ts, np.array(regs),
        MeterParams.uniform(1, modulus=mod, rated_per_h=rated, cadence_us=15 * US_PER_MIN), MultiplierChanges.none(),
        RegisterEvents.none(), np.zeros(len(regs)), 0,
    )  # fmt: skip
    edges = bucket_edges_us(res, int(ts.min()), int(ts.max()))
    tables: Tables = (*factor_series(TGO_REGISTRY, [BUILDING]), constant_table([0.5]), np.zeros(1, np.int32))
    want, want_state = pipeline(f, edges, tables, impl)
    got, got_state = fused(f, edges, tables, impl)
    assert_same(got, want)
    assert_same_state(got_state, want_state)


@SETTINGS
@given(fleets(spikes=True), st.data())
def test_batches_chained_by_state_equal_the_pipeline_batch_by_batch(impl: Impl, f: Fleet, data: st.DataObject) -> None:
    """The carry state out of one batch is the pipeline's, so the next batch (older readings than the state are
    OUT_OF_ORDER rows there) gives the pipeline's buckets too."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(f.ts_us)), max_size=4)))
    edges = bucket_edges_us("15min", int(f.ts_us.min()), int(f.ts_us.max()))
    tables = data.draw(factor_tables(int(f.ts_us.min()), int(f.ts_us.max()), f.params.n_devices))
    s_want = s_got = CounterState.empty(f.params.n_devices)
    for a, b in itertools.pairwise([0, *cuts, len(f.ts_us)]):
        part = Fleet(f.device_idx[a:b], f.ts_us[a:b], f.register[a:b], f.params, f.multipliers, f.events,
                     f.truth[a:b], 0)  # fmt: skip
        want, s_want = pipeline(part, edges, tables, impl, s_want)
        got, s_got = fused(part, edges, tables, impl, s_got)
        assert_same(got, want)
        assert_same_state(s_got, s_want)


@SETTINGS
@given(st.data(), fleets(spikes=True))
def test_a_seeded_cell_continued_with_the_carried_state_ends_as_one_pass(
    impl: Impl, data: st.DataObject, f: Fleet
) -> None:
    """The energy updater continues the bucket of a series' last reading (stream/energy.py): the cell as the first
    batch left it, the state it carried, and the later readings only give the one pass's bits in that bucket and
    after it, whatever the readings (spikes, catch-ups, flat runs, rollovers, learned bounds, events)."""
    cut = data.draw(st.integers(0, len(f.ts_us)))
    edges = data.draw(edges_for(f))
    tables = data.draw(factor_tables(int(f.ts_us.min()), int(f.ts_us.max()), f.params.n_devices))
    whole, whole_state = fused(f, edges, tables, impl)
    head = Fleet(f.device_idx[:cut], f.ts_us[:cut], f.register[:cut], f.params, f.multipliers, f.events,
                 f.truth[:cut], 0)  # fmt: skip
    tail = Fleet(f.device_idx[cut:], f.ts_us[cut:], f.register[cut:], f.params, f.multipliers, f.events,
                 f.truth[cut:], 0)  # fmt: skip
    first, state = fused(head, edges, tables, impl)
    n_dev = f.params.n_devices
    # the bucket of each device's last reading (-1: none, or before the edges; len: after them)
    at = np.where(state.last_ts_us == NO_TS, -1, np.searchsorted(edges, state.last_ts_us, side="right") - 1)
    dev = np.flatnonzero((at >= 0) & (at < len(edges) - 1))
    cell = (at[dev], dev)
    seed = CellSeed(
        bucket_start_us=edges[at[dev]], device=dev, amount=first.energy.amount[cell],
        amount_estimated=first.energy.amount_estimated[cell], kgco2e=first.kgco2e[cell],
        kgco2e_base=first.kgco2e_base[cell], covered_us=first.energy.covered_us[cell],
        count=first.energy.count[cell], quality=first.energy.quality[cell],
    )  # fmt: skip
    got, got_state = register_buckets(
        tail.device_idx, tail.ts_us, tail.register, f.params, edges, *tables, state,
        multipliers=f.multipliers, events=f.events, impl=impl, seed=seed,
    )  # fmt: skip
    assert_same_state(got_state, whole_state)
    for d in range(n_dev):
        rows = slice(max(int(at[d]), 0), None)  # from the seeded bucket on (a catch-up may reach further back)
        for name in ("amount", "amount_estimated", "covered_us", "quality", "count"):
            np.testing.assert_array_equal(
                getattr(got.energy, name)[rows, d], getattr(whole.energy, name)[rows, d], err_msg=name
            )
        np.testing.assert_array_equal(got.kgco2e[rows, d], whole.kgco2e[rows, d])
        np.testing.assert_array_equal(got.kgco2e_base[rows, d], whole.kgco2e_base[rows, d])


@SETTINGS
@given(st.data(), fleets(spikes=True), st.integers(1, 9))
def test_readings_regrouped_by_block_of_devices_give_the_same_buckets(
    impl: Impl, data: st.DataObject, f: Fleet, chunk: int
) -> None:
    """With many devices the readings are regrouped, a chunk at a time, by block of devices before the kernel runs;
    here every device is its own block and chunks are a few readings, so the order changes the most it can."""
    edges = data.draw(edges_for(f))
    tables = data.draw(factor_tables(int(f.ts_us.min()), int(f.ts_us.max()), f.params.n_devices))
    want, want_state = pipeline(f, edges, tables, impl)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused_module, "BLOCK_SHIFT", 0)
        mp.setattr(fused_module, "BLOCKS_FROM", 1)
        mp.setattr(fused_module, "CHUNK_READINGS", chunk)
        mp.setattr(fused_module, "READINGS_PER_DEVICE", 0)
        got, got_state = fused(f, edges, tables, impl)
    assert_same(got, want)
    assert_same_state(got_state, want_state)


@SETTINGS
@given(st.data(), meters(), st.integers(1, 5), st.booleans())
def test_fused_equals_the_pipeline_under_faults_and_learned_bounds(
    impl: Impl, data: st.DataObject, m: Meters, left: int, regroup: bool
) -> None:
    """Spikes, dips, stale and stuck readings, long gaps with rollovers, rated, learned and no bounds: the readings
    of devices in a suspect run go through the kernel's full pass after its fast pass. Here that happens a few
    readings at a time (the buffer of readings left holds 1 to 5, so the fast pass stops and resumes often), with
    the readings regrouped or not, and the sums are still the pipeline's bit for bit."""
    f = Fleet(m.device_idx, m.ts_us, m.register, m.params, m.multipliers, RegisterEvents.none(),
              np.zeros(len(m.ts_us)), 0)  # fmt: skip
    edges = data.draw(edges_for(f))
    tables = data.draw(factor_tables(int(f.ts_us.min()), int(f.ts_us.max()), f.params.n_devices))
    want, want_state = pipeline(f, edges, tables, impl)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused_module, "DEFERRED_READINGS", left)
        if regroup:
            mp.setattr(fused_module, "BLOCK_SHIFT", 0)
            mp.setattr(fused_module, "BLOCKS_FROM", 1)
            mp.setattr(fused_module, "CHUNK_READINGS", 7)
            mp.setattr(fused_module, "READINGS_PER_DEVICE", 0)
        got, got_state = fused(f, edges, tables, impl)
    assert_same(got, want)
    assert_same_state(got_state, want_state)


@SETTINGS
@given(fleets(spikes=True))
def test_numba_and_python_agree_exactly(f: Fleet) -> None:
    edges = bucket_edges_us("15min", int(f.ts_us.min()), int(f.ts_us.max()))
    classes = [BUILDING] * f.params.n_devices
    tables: Tables = (
        *factor_series(TGO_REGISTRY, classes),
        *factor_series(TGO_REGISTRY, classes, base_year_us=BASE_2025),
    )
    a, sa = fused(f, edges, tables, "numba")
    b, sb = fused(f, edges, tables, "python")
    assert_same(a, b)
    assert_same_state(sa, sb)


def test_many_devices_in_time_order_equal_the_pipeline(impl: Impl) -> None:
    """More readings than the kernel's prefetch distance, devices interleaved (as a stream batch or the benchmark
    delivers them), a rollover and a spike among them."""
    rng = np.random.default_rng(7)
    n_dev, per = 40, 30
    ts = (T0 + rng.integers(0, 300, n_dev)[:, None] * 1_000_000 + np.arange(per) * 5 * US_PER_MIN).ravel()
    power = rng.uniform(0.5, 5.0, (n_dev, per))
    reg = np.cumsum(power * 5 / 60, axis=1) + np.where(np.arange(n_dev) % 7 == 0, 99_990.0, 100.0)[:, None]
    reg = np.mod(reg, 100_000.0)
    reg[3, 10] = 5e4  # a spike: suspect, then bridged
    dev = np.repeat(np.arange(n_dev, dtype=np.int32), per)
    order = np.argsort(ts, kind="stable")
    f = Fleet(dev[order], ts[order], reg.ravel()[order],
              MeterParams.uniform(n_dev, modulus=100_000.0, rated_per_h=20.0, cadence_us=5 * US_PER_MIN),
              MultiplierChanges.none(), RegisterEvents.none(), np.zeros(n_dev * per), 0)  # fmt: skip
    edges = bucket_edges_us("15min", int(ts.min()), int(ts.max()))
    classes = [BUILDING] * n_dev
    tables: Tables = (
        *factor_series(TGO_REGISTRY, classes),
        *factor_series(TGO_REGISTRY, classes, base_year_us=BASE_2025),
    )
    want, want_state = pipeline(f, edges, tables, impl)
    got, got_state = fused(f, edges, tables, impl)
    assert_same(got, want)
    assert_same_state(got_state, want_state)
    assert got.energy.amount.sum() == pytest.approx(want.energy.amount.sum()) and want.energy.amount.sum() > 0


# ----------------------------------------------------------------------------------------------- hand-computed
def test_a_rollover_across_the_factor_change_splits_energy_and_both_emissions(impl: Impl) -> None:
    """A 5-digit register reads 99,999.5 kWh at 16:50 UTC and 0.5 at 17:10 UTC on 2025-12-31: 1 kWh through the
    rollover, spread evenly, so 0.5 kWh before and 0.5 kWh after 17:00 UTC (Bangkok midnight, when TGO's grid factor
    goes from 0.4999 to 0.4750 kgCO2e/kWh). 15-minute buckets from 16:45 UTC:

    - [16:45, 17:00): 0.5 kWh, covered 10 min, x 0.4999 = 0.24995 kgCO2e; base year 2025 (0.4999): 0.24995
    - [17:00, 17:15): 0.5 kWh, covered 10 min, x 0.4750 = 0.23750 kgCO2e; base year: 0.24995
    """
    ts = np.array([utc_us(2025, 12, 31, 16, 50), utc_us(2025, 12, 31, 17, 10)])
    params = MeterParams.uniform(1, modulus=100_000.0, rated_per_h=10.0, cadence_us=20 * US_PER_MIN)
    edges = bucket_edges_us("15min", utc_us(2025, 12, 31, 16, 45), utc_us(2025, 12, 31, 17, 14))
    tables: Tables = (
        *factor_series(TGO_REGISTRY, [BUILDING]),
        *factor_series(TGO_REGISTRY, [BUILDING], base_year_us=BASE_2025),
    )
    out, state = register_buckets(np.zeros(2, np.int32), ts, np.array([99_999.5, 0.5]), params, edges, *tables,
                                  impl=impl)  # fmt: skip
    np.testing.assert_allclose(out.energy.amount[:, 0], [0.5, 0.5], rtol=1e-12)
    np.testing.assert_allclose(out.kgco2e[:, 0], [0.24995, 0.23750], rtol=1e-12)
    np.testing.assert_allclose(out.kgco2e_base[:, 0], [0.24995, 0.24995], rtol=1e-12)
    assert list(out.energy.covered_us[:, 0]) == [10 * US_PER_MIN, 10 * US_PER_MIN]
    assert list(out.energy.count[:, 0]) == [1, 1] and list(out.energy.quality[:, 0]) == [Quality.MEASURED] * 2
    assert not out.energy.amount_estimated.any()
    assert state.last_ts_us[0] == ts[1] and state.last_register[0] == 0.5


def test_a_spike_is_caught_up_over_the_intervals_it_spoiled(impl: Impl) -> None:
    """Rated 10 kW, 15-minute readings 100, 100.5, 1e6 (a spike), 101.5, 102: the spike's interval is suspect and so
    is the next (it goes back: the spike or 101.5 is wrong). 102 carries on from 101.5, so the catch-up from 100.5
    (1.5 kWh, within 10 kW x 45 min x 1.5) is emitted over the three quarters it covers, estimated: 0.5 kWh in each.
    Buckets holding a suspect row stay suspect; coverage counts each instant once."""
    t = [T0 + k * 15 * US_PER_MIN for k in range(5)]
    regs = np.array([100.0, 100.5, 1e6, 101.5, 102.0])
    params = MeterParams.uniform(1, rated_per_h=10.0, cadence_us=15 * US_PER_MIN)
    edges = np.array([*t, t[-1] + 15 * US_PER_MIN])
    tables = (constant_table([0.5]), np.zeros(1, np.int32), constant_table([0.25]), np.zeros(1, np.int32))
    out, _ = register_buckets(np.zeros(5, np.int32), np.array(t), regs, params, edges, *tables, impl=impl)
    # interval k covers (t[k-1], t[k]], i.e. bucket k - 1; the catch-up ending at t[4] covers buckets 1 to 3
    np.testing.assert_allclose(out.energy.amount[:, 0], [0.5, 0.5, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(out.energy.amount_estimated[:, 0], [0.0, 0.5, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(out.kgco2e[:, 0], [0.25, 0.25, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(out.kgco2e_base[:, 0], [0.125, 0.125, 0.125, 0.125, 0.0])
    s, m, e, x = Quality.SUSPECT, Quality.MEASURED, Quality.ESTIMATED, Quality.MISSING
    assert list(out.energy.quality[:, 0]) == [m, s, s, e, x]
    assert list(out.energy.count[:, 0]) == [1, 2, 2, 1, 0]
    assert list(out.energy.covered_us[:, 0]) == [15 * US_PER_MIN] * 4 + [0]
    iv, _ = register_intervals(np.zeros(5, np.int32), np.array(t), regs, params)
    assert iv.reasons[4] == Reason.BRIDGED and iv.start_us[4] == t[1]  # the same verdict the counter gives


def test_input_checks() -> None:
    params = MeterParams.uniform(2)
    edges = np.array([T0, T0 + US_PER_H])
    table, series = constant_table([0.5]), np.zeros(2, np.int32)
    dev, ts, reg = np.array([0, 0], np.int32), np.array([T0 + 2, T0 + 1]), np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="time order"):
        register_buckets(dev, ts, reg, params, edges, table, series, table, series)
    ok_ts = np.array([T0 + 1, T0 + 2])
    with pytest.raises(ValueError, match="series_of_device"):
        register_buckets(dev, ok_ts, reg, params, edges, table, np.zeros(3, np.int32), table, series)
    with pytest.raises(ValueError, match="series_of_device"):
        register_buckets(dev, ok_ts, reg, params, edges, table, series, table, np.array([0, 1], np.int32))
    with pytest.raises(ValueError, match="edges"):
        register_buckets(dev, ok_ts, reg, params, edges[::-1], table, series, table, series)
    with pytest.raises(ValueError, match="device index"):
        register_buckets(np.array([0, 2], np.int32), ok_ts, reg, params, edges, table, series, table, series)
