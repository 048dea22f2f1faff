"""Interval spreading, reading rollups and their combination (sites, city, coarser buckets, batches)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lccm.engine.buckets import IntervalBuckets, mark_incomplete, spread_intervals
from lccm.engine.combine import coarsen_buckets, merge, regroup_devices
from lccm.engine.counters import Impl, Intervals, MeterParams, Quality, register_intervals
from lccm.engine.kernels import IMPLS, NO_TS
from lccm.engine.rollups import SamplePrefix, SampleStats, sample_rollup
from lccm.engine.timebase import US_PER_H, US_PER_MIN, Resolution, bkk_us, bucket_edges_us, utc_us

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
M, E, S, X = Quality.MEASURED, Quality.ESTIMATED, Quality.SUSPECT, Quality.MISSING


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


def intervals(rows: Sequence[tuple[int, int, int, float, int]]) -> Intervals:
    """(device, start_us, end_us, amount, quality) rows."""
    n = len(rows)
    return Intervals(
        device_idx=np.array([r[0] for r in rows], np.int32),
        start_us=np.array([r[1] for r in rows], np.int64),
        end_us=np.array([r[2] for r in rows], np.int64),
        amount=np.array([r[3] for r in rows], np.float64),
        raw=np.array([r[3] for r in rows], np.float64),
        quality=np.array([r[4] for r in rows], np.int8),
        reasons=np.zeros(n, np.int32),
        bound_per_h=np.zeros(n, np.float64),
        cover_from_us=np.array([r[1] for r in rows], np.int64),
    )


# ----------------------------------------------------------------------------------------------- hand-computed
def test_gap_of_three_hours_is_apportioned_over_three_hourly_buckets(impl: Impl) -> None:
    t0 = utc_us(2026, 3, 2, 0)
    params = MeterParams.uniform(1, cadence_us=15 * US_PER_MIN, learned_per_h=10.0)
    iv, _ = register_intervals(
        np.zeros(3, np.int32), np.array([t0 - 15 * US_PER_MIN, t0, t0 + 3 * US_PER_H]), np.array([99.0, 100.0, 106.0]),
        params, impl=impl,
    )  # fmt: skip
    b = spread_intervals(iv, bucket_edges_us("1h", t0, t0 + 3 * US_PER_H - 1), 1, impl=impl)
    np.testing.assert_allclose(b.amount[:, 0], [2.0, 2.0, 2.0])
    np.testing.assert_allclose(b.amount_estimated[:, 0], [2.0, 2.0, 2.0])
    assert list(b.quality[:, 0]) == [E, E, E]
    assert list(b.covered_us[:, 0]) == [US_PER_H] * 3 and list(b.count[:, 0]) == [1, 1, 1]


def test_interval_across_bangkok_midnight_splits_between_days(impl: Impl) -> None:
    # 16:50-17:10 UTC is 23:50-00:10 in Bangkok: half of the 2 kWh on each Bangkok day
    start, end = utc_us(2026, 3, 1, 16, 50), utc_us(2026, 3, 1, 17, 10)
    edges = bucket_edges_us("1d", start, end)
    assert list(edges) == [bkk_us(2026, 3, 1), bkk_us(2026, 3, 2), bkk_us(2026, 3, 3)]
    b = spread_intervals(intervals([(0, start, end, 2.0, M)]), edges, 1, impl=impl)
    np.testing.assert_allclose(b.amount[:, 0], [1.0, 1.0])
    assert list(b.covered_us[:, 0]) == [10 * US_PER_MIN, 10 * US_PER_MIN]


def test_quality_is_the_worst_touching_and_untouched_is_missing(impl: Impl) -> None:
    h = utc_us(2026, 3, 2)
    rows = [(0, h, h + 30 * US_PER_MIN, 1.0, M), (0, h + 30 * US_PER_MIN, h + 90 * US_PER_MIN, 0.0, S)]
    b = spread_intervals(intervals(rows), bucket_edges_us("1h", h, h + 150 * US_PER_MIN), 2, impl=impl)
    assert list(b.quality[:, 0]) == [S, S, X] and list(b.quality[:, 1]) == [X, X, X]
    assert list(b.count[:, 0]) == [2, 1, 0]
    marked = mark_incomplete(b, complete_before_us=h + 2 * US_PER_H)
    assert list(marked.quality[:, 0]) == [S, X, X]  # bucket 2 is closed and only half covered
    assert list(mark_incomplete(b, h).quality[:, 0]) == [S, S, X]  # nothing closed yet


def test_zero_length_suspect_row_marks_its_bucket(impl: Impl) -> None:
    h = utc_us(2026, 3, 2)
    rows = [(0, h + 5, h + 5, 0.0, S), (0, h + US_PER_H + 5, h + US_PER_H + 5, 0.0, X)]
    b = spread_intervals(intervals(rows), bucket_edges_us("1h", h, h + US_PER_H), 1, impl=impl)
    assert list(b.quality[:, 0]) == [S, X] and list(b.count[:, 0]) == [1, 0]


def test_parts_outside_the_edges_are_left_out(impl: Impl) -> None:
    h = utc_us(2026, 3, 2)
    b = spread_intervals(
        intervals([(0, h - US_PER_H, h + US_PER_H, 4.0, M)]), np.array([h, h + US_PER_H]), 1, impl=impl
    )
    assert b.amount[0, 0] == pytest.approx(2.0)


def test_sample_rollup_cuts_days_at_bangkok_midnight(impl: Impl) -> None:
    ts = np.array([utc_us(2026, 3, 1, 16, 59, 59), utc_us(2026, 3, 1, 17, 0, 0), utc_us(2026, 3, 2, 2)])
    stats = sample_rollup(
        np.zeros(3), ts, np.array([1.0, 5.0, 3.0]), bucket_edges_us("1d", ts[0], ts[-1]), 1, impl=impl
    )
    assert list(stats.count[:, 0]) == [1, 2]
    np.testing.assert_allclose(stats.mean[:, 0], [1.0, 4.0])
    assert list(stats.last[:, 0]) == [1.0, 3.0] and list(stats.min[:, 0]) == [1.0, 3.0]


def test_sample_rollup_empty_bucket_and_skips(impl: Impl) -> None:
    edges = np.array([0, 10, 20, 30], np.int64)
    stats = sample_rollup(
        np.array([0, 0, 0, 0]), np.array([5, 25, 26, 40]), np.array([1.0, np.nan, 2.0, 9.0]), edges, 1, impl=impl,
    )  # fmt: skip
    assert list(stats.count[:, 0]) == [1, 0, 1]
    assert np.isnan(stats.mean[1, 0]) and np.isnan(stats.last[1, 0]) and stats.last_ts_us[1, 0] == NO_TS
    assert stats.min[1, 0] == np.inf and stats.max[1, 0] == -np.inf


# ----------------------------------------------------------------------------------------------- properties
@st.composite
def random_intervals(draw: st.DrawFn) -> tuple[Intervals, int]:
    n_dev = draw(st.integers(1, 4))
    n = draw(st.integers(0, 40))
    base = utc_us(2026, 1, 30, 12)
    rows = []
    for _ in range(n):
        start = base + draw(st.integers(0, 4 * 86_400)) * 1_000_000
        dur = draw(st.sampled_from([0, 1, 60, 900, 3600, 3 * 3600, 40 * 3600])) * 1_000_000
        dur += draw(st.integers(0, 1000)) if dur else 0
        rows.append(
            (draw(st.integers(0, n_dev - 1)), start, start + dur, draw(st.floats(0, 1e4)), draw(st.integers(0, 3)))
        )
    return intervals(rows), n_dev


def oracle_spread(iv: Intervals, edges: np.ndarray, n_dev: int) -> np.ndarray:
    """Amount per bucket from the overlap matrix, computed independently of the kernel."""
    lo = np.maximum(iv.start_us[:, None], edges[None, :-1])
    hi = np.minimum(iv.end_us[:, None], edges[None, 1:])
    dur = (iv.end_us - iv.start_us).astype(float)
    frac = np.clip(hi - lo, 0, None) / np.where(dur > 0, dur, 1)[:, None]
    point = (dur == 0)[:, None] & (edges[None, :-1] <= iv.start_us[:, None]) & (iv.start_us[:, None] < edges[None, 1:])
    frac = np.where(point, 1.0, frac)
    out = np.zeros((edges.shape[0] - 1, n_dev))
    np.add.at(out.T, iv.device_idx, frac * iv.amount[:, None])
    return out


@SETTINGS
@given(random_intervals(), st.sampled_from(["15min", "1h", "1d", "1mo"]))
def test_spread_matches_the_overlap_oracle_and_conserves(
    impl: Impl, data: tuple[Intervals, int], res: Resolution
) -> None:
    iv, n_dev = data
    lo, hi = (int(iv.start_us.min()), int(iv.end_us.max())) if len(iv) else (utc_us(2026, 2, 1), utc_us(2026, 2, 1))
    edges = bucket_edges_us(res, lo, hi)
    b = spread_intervals(iv, edges, n_dev, impl=impl)
    np.testing.assert_allclose(b.amount, oracle_spread(iv, edges, n_dev), rtol=1e-12, atol=1e-9)
    assert b.amount.sum() == pytest.approx(iv.amount.sum(), rel=1e-12, abs=1e-9)
    assert np.all(b.amount_estimated <= b.amount + 1e-9)
    covered = np.where(iv.end_us > iv.start_us, iv.end_us - iv.start_us, 0).sum()
    assert b.covered_us.sum() == covered
    other = spread_intervals(iv, edges, n_dev, impl="python" if impl == "numba" else "numba")
    for f in fields(IntervalBuckets):
        np.testing.assert_array_equal(getattr(b, f.name), getattr(other, f.name))


@st.composite
def random_samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n_dev = draw(st.integers(1, 4))
    n = draw(st.integers(0, 60))
    base = bkk_us(2026, 1, 28)
    dev = np.array(draw(st.lists(st.integers(0, n_dev - 1), min_size=n, max_size=n)), np.int32)
    ts = base + np.array(draw(st.lists(st.integers(0, 10 * 86_400), min_size=n, max_size=n)), np.int64) * 1_000_000
    val = np.array(draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)), np.float64)
    return dev, ts, val, n_dev


@SETTINGS
@given(st.data())
def test_sample_rollup_continued_from_a_stored_prefix_is_one_pass_bit_for_bit(impl: Impl, data: st.DataObject) -> None:
    """The sample updater continues a bucket's stored row with the readings after its last one: the same bits as one
    pass over all of them, checked against a plain Python running sum in time order."""
    n_dev = data.draw(st.integers(1, 3))
    edges = np.array([0, 900, 1800], np.int64) * 1_000_000
    per_dev = [
        data.draw(
            st.lists(st.tuples(st.integers(0, 1799), st.floats(-1e9, 1e9)), unique_by=lambda r: r[0], max_size=40)
        )
        for _ in range(n_dev)
    ]
    cut_s = data.draw(st.integers(0, 899))  # the stored row holds the first bucket's readings up to here
    cells, after = [], []
    for d, rows in enumerate(per_dev):
        rows.sort()
        head = [(t, v) for t, v in rows if t <= cut_s]
        if head:
            total = 0.0
            for _, v in head:
                total += v
            vals = [v for _, v in head]
            cells.append((d, total, min(vals), max(vals), len(head), head[-1][1], head[-1][0] * 1_000_000))
            after += [(d, t, v) for t, v in rows if t > cut_s]
        else:
            after += [(d, t, v) for t, v in rows]
    prefix = SamplePrefix(
        bucket_start_us=np.zeros(len(cells), np.int64), device=np.array([c[0] for c in cells], np.int64),
        sum=np.array([c[1] for c in cells]), min=np.array([c[2] for c in cells]), max=np.array([c[3] for c in cells]),
        count=np.array([c[4] for c in cells], np.int64), last=np.array([c[5] for c in cells]),
        last_ts_us=np.array([c[6] for c in cells], np.int64),
    )  # fmt: skip
    got = sample_rollup(
        np.array([a[0] for a in after], np.int32), np.array([a[1] * 1_000_000 for a in after], np.int64),
        np.array([a[2] for a in after], np.float64), edges, n_dev, impl=impl, prefix=prefix,
    )  # fmt: skip
    for d, rows in enumerate(per_dev):
        for b in (0, 1):
            inside = [(t, v) for t, v in rows if 900 * b <= t < 900 * (b + 1)]
            assert got.count[b, d] == len(inside)
            if not inside:
                continue
            total = 0.0
            for _, v in inside:
                total += v
            assert got.sum[b, d] == total  # the same bits: added one at a time, in time order
            assert (got.min[b, d], got.max[b, d]) == (min(v for _, v in inside), max(v for _, v in inside))
            assert (got.last[b, d], got.last_ts_us[b, d]) == (inside[-1][1], inside[-1][0] * 1_000_000)


@SETTINGS
@given(random_samples(), st.sampled_from(["1min", "15min", "1h", "1d", "1mo", "fy"]))
def test_sample_rollup_matches_pandas(
    impl: Impl, data: tuple[np.ndarray, np.ndarray, np.ndarray, int], res: Resolution
) -> None:
    dev, ts, val, n_dev = data
    edges = bucket_edges_us(res, bkk_us(2026, 1, 28), bkk_us(2026, 2, 8))
    stats = sample_rollup(dev, ts, val, edges, n_dev, impl=impl)
    df = pd.DataFrame({"b": np.searchsorted(edges, ts, side="right") - 1, "d": dev, "v": val, "t": ts})
    df = df.sort_values("t", kind="stable")
    expect = df.groupby(["b", "d"])["v"].agg(["sum", "min", "max", "count", "last"])
    got = pd.DataFrame({
        "sum": stats.sum.ravel(), "min": stats.min.ravel(), "max": stats.max.ravel(),
        "count": stats.count.ravel(), "last": stats.last.ravel(),
    }, index=pd.MultiIndex.from_product([range(len(edges) - 1), range(n_dev)], names=["b", "d"]))  # fmt: skip
    got = got[got["count"] > 0]
    assert len(got) == len(expect)
    np.testing.assert_array_equal(got["count"].to_numpy(), expect["count"].to_numpy())
    for col in ("sum", "min", "max", "last"):
        np.testing.assert_allclose(got[col].to_numpy(), expect[col].to_numpy(), rtol=1e-12, atol=1e-6)


@SETTINGS
@given(random_samples(), st.data())
def test_days_coarsened_to_months_equal_months_directly(
    impl: Impl, data: tuple[np.ndarray, np.ndarray, np.ndarray, int], more: st.DataObject
) -> None:
    dev, ts, val, n_dev = data
    lo, hi = bkk_us(2026, 1, 28), bkk_us(2026, 2, 8)
    months = sample_rollup(dev, ts, val, bucket_edges_us("1mo", lo, hi), n_dev, impl=impl)
    day_edges = bucket_edges_us("1d", int(months.edges_us[0]), int(months.edges_us[-1]) - 1)
    days = sample_rollup(dev, ts, val, day_edges, n_dev, impl=impl)
    assert_stats_close(coarsen_buckets(days, months.edges_us), months)
    # two batches merged equal one
    cut = more.draw(st.integers(0, len(ts)))
    a = sample_rollup(dev[:cut], ts[:cut], val[:cut], months.edges_us, n_dev, impl=impl)
    b = sample_rollup(dev[cut:], ts[cut:], val[cut:], months.edges_us, n_dev, impl=impl)
    assert_stats_close(merge(a, b), months)
    # devices into sites and the city
    site = more.draw(st.lists(st.integers(-1, 1), min_size=n_dev, max_size=n_dev))
    sites = regroup_devices(months, np.array(site), 2)
    for g in range(2):
        members = np.flatnonzero(np.array(site) == g)
        keep = np.isin(dev, members)
        direct = sample_rollup(np.zeros(keep.sum()), ts[keep], val[keep], months.edges_us, 1, impl=impl)
        np.testing.assert_allclose(sites.sum[:, g], direct.sum[:, 0], atol=1e-6)
        np.testing.assert_array_equal(sites.count[:, g], direct.count[:, 0])
        np.testing.assert_array_equal(sites.min[:, g], direct.min[:, 0])
        np.testing.assert_array_equal(sites.max[:, g], direct.max[:, 0])
        np.testing.assert_array_equal(sites.last_ts_us[:, g], direct.last_ts_us[:, 0])


def assert_stats_close(a: SampleStats, b: SampleStats) -> None:
    np.testing.assert_array_equal(a.edges_us, b.edges_us)
    np.testing.assert_allclose(a.sum, b.sum, rtol=1e-12, atol=1e-6)
    for name in ("min", "max", "count", "last_ts_us"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # last: same value unless two readings share the latest timestamp (then either is right)
    np.testing.assert_array_equal(np.isnan(a.last), np.isnan(b.last))


@SETTINGS
@given(random_intervals(), st.data())
def test_interval_buckets_combine_exactly(impl: Impl, data: tuple[Intervals, int], more: st.DataObject) -> None:
    iv, n_dev = data
    lo, hi = bkk_us(2026, 1, 30), bkk_us(2026, 2, 6)
    hours = spread_intervals(iv, bucket_edges_us("1h", lo, hi), n_dev, impl=impl)
    days = spread_intervals(iv, bucket_edges_us("1d", lo, hi), n_dev, impl=impl)
    coarse = coarsen_buckets(hours, days.edges_us[:-1])  # the hourly edges end one day earlier than the daily ones
    np.testing.assert_allclose(coarse.amount, days.amount[:-1], rtol=1e-12, atol=1e-6)
    np.testing.assert_array_equal(coarse.covered_us, days.covered_us[:-1])
    np.testing.assert_array_equal(coarse.quality, days.quality[:-1])
    cut = more.draw(st.integers(0, len(iv)))
    halves = [
        Intervals(*(getattr(iv, f.name)[s] for f in fields(Intervals))) for s in (slice(0, cut), slice(cut, None))
    ]
    merged = merge(*(spread_intervals(h, days.edges_us, n_dev, impl=impl) for h in halves))
    np.testing.assert_allclose(merged.amount, days.amount, rtol=1e-12, atol=1e-6)
    for name in ("covered_us", "quality", "count"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(days, name))
    city = regroup_devices(days, np.zeros(n_dev, np.int64), 1)
    np.testing.assert_allclose(city.amount[:, 0], days.amount.sum(axis=1), rtol=1e-12, atol=1e-6)
    np.testing.assert_array_equal(city.covered_us[:, 0], days.covered_us.min(axis=1))
    touched = np.where(days.count > 0, days.quality, -1).max(axis=1)
    np.testing.assert_array_equal(city.quality[:, 0], np.where(touched < 0, X, touched))


def test_combine_checks() -> None:
    b = spread_intervals(intervals([]), np.array([0, 10, 20, 30]), 2)
    with pytest.raises(ValueError, match="coarse edges"):
        coarsen_buckets(b, np.array([0, 15]))
    with pytest.raises(ValueError, match="one entry per device"):
        regroup_devices(b, np.zeros(3), 1)
    with pytest.raises(ValueError, match="same edges"):
        merge(b, spread_intervals(intervals([]), np.array([0, 10]), 2))
    with pytest.raises(ValueError, match="strictly increasing"):
        spread_intervals(intervals([]), np.array([0, 10, 10]), 1)
