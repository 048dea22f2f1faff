"""The AQI loops (hourly means, moving means, NowCast): numba build == Python twin == a naive loop written here."""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lccm.engine import aqi
from lccm.engine.counters import Impl
from lccm.engine.kernels import IMPLS
from lccm.engine.timebase import US_PER_H, US_PER_MIN, bkk_us

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = bkk_us(2026, 3, 1)

hour_value = st.one_of(st.just(math.nan), st.floats(0.0, 1000.0, allow_nan=False, width=64))
series_2d = st.integers(1, 3).flatmap(
    lambda n_st: st.lists(st.lists(hour_value, min_size=n_st, max_size=n_st), min_size=1, max_size=60)
)


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


def naive_moving_mean(col: list[float], window: int, need: int) -> list[float]:
    out = []
    for i in range(len(col)):
        acc, c = 0.0, 0
        for v in col[max(0, i - window + 1) : i + 1]:
            if not math.isnan(v):
                acc += v
                c += 1
        out.append(acc / c if c >= need else math.nan)
    return out


def naive_nowcast(col: list[float], hours: int = 12, min_weight: float = 0.5) -> list[float]:
    """EPA NowCast as MazamaScience air-monitor-algorithms writes it (nowcast.js): latest first,
    w = 1 - (max - min) / max, floored."""
    out = []
    for i in range(len(col)):
        window = list(reversed(col[max(0, i - hours + 1) : i + 1]))
        valid = [v for v in window if not math.isnan(v)]
        if sum(not math.isnan(v) for v in window[:3]) < 2:
            out.append(math.nan)
            continue
        hi, lo = max(valid), min(valid)
        if hi == lo:
            out.append(hi)
            continue
        w = max(1 - (hi - lo) / hi, min_weight)
        num = sum(v * w**k for k, v in enumerate(window) if not math.isnan(v))
        den = sum(w**k for k, v in enumerate(window) if not math.isnan(v))
        out.append(num / den)
    return out


# ------------------------------------------------------------------------------------------------ moving means
@SETTINGS
@given(rows=series_2d, window=st.integers(1, 30), completeness=st.sampled_from([0.5, 0.75, 0.9, 1.0]))
def test_moving_mean_twin_and_naive_loop(rows: list[list[float]], window: int, completeness: float) -> None:
    values = np.array(rows)
    means = {}
    for impl in ("numba", "python"):
        means[impl], _ = aqi.moving_average(values, window, completeness=completeness, impl=impl)
    np.testing.assert_array_equal(means["numba"], means["python"])  # bit for bit (NaN == NaN here)
    need = aqi.min_valid_hours(window, completeness)
    for s in range(values.shape[1]):
        col = [float(v) for v in values[:, s]]
        np.testing.assert_array_equal(means["numba"][:, s], naive_moving_mean(col, window, need))


def test_moving_mean_one_station_keeps_its_shape(impl: Impl) -> None:
    # window 3, need ceil(0.75 x 3) = 3: [1, 2, 3, NaN, 5] -> NaN, NaN, (1 + 2 + 3) / 3 = 2, NaN, NaN
    mean, count = aqi.moving_average(np.array([1.0, 2.0, 3.0, np.nan, 5.0]), 3, impl=impl)
    assert mean.shape == (5,)
    np.testing.assert_array_equal(mean, [np.nan, np.nan, 2.0, np.nan, np.nan])
    assert list(count) == [1, 2, 3, 2, 2]


def test_moving_mean_long_series_is_exact(impl: Impl) -> None:
    # a year of hours with one huge value: each window is summed afresh, so no drift after the spike leaves it
    values = np.full(24 * 365, 1.0)
    values[100] = 1e12
    mean, _ = aqi.moving_average(values, 24, impl=impl)
    assert mean[99] == 1.0 and mean[100] > 1e10 and mean[124] == 1.0 and mean[-1] == 1.0


# ---------------------------------------------------------------------------------------------- hourly means
readings = st.lists(
    st.tuples(
        st.integers(-2 * 60, 6 * 60 + 30),  # minutes from T0: some before and after the 6-hour grid
        st.one_of(st.floats(0.0, 500.0, allow_nan=False), st.just(math.nan), st.just(math.inf)),
        st.integers(0, 2),
    ),
    max_size=80,
)


@SETTINGS
@given(rows=readings, min_count=st.integers(1, 3))
def test_hourly_means_twin_and_naive_grouping(rows: list[tuple[int, float, int]], min_count: int) -> None:
    ts = np.array([T0 + m * US_PER_MIN for m, _, _ in rows], dtype=np.int64)
    val = np.array([v for _, v, _ in rows], dtype=np.float64)
    sta = np.array([s for _, _, s in rows], dtype=np.int32)
    got = {
        impl: aqi.hourly_means(ts, val, T0, 6, station_idx=sta, n_stations=3, min_count=min_count, impl=impl)
        for impl in ("numba", "python")
    }
    for field in ("mean", "sum", "count"):
        np.testing.assert_array_equal(getattr(got["numba"], field), getattr(got["python"], field))
    groups: dict[tuple[int, int], list[float]] = {}
    outside = not_finite = 0
    for m, v, s in rows:
        if not math.isfinite(v):
            not_finite += 1
        elif not 0 <= m < 360:
            outside += 1
        else:
            groups.setdefault((m // 60, s), []).append(v)
    res = got["numba"]
    assert (res.outside, res.not_finite) == (outside, not_finite)
    for h in range(6):
        for s in range(3):
            vals = groups.get((h, s), [])
            assert res.count[h, s] == len(vals)
            if len(vals) >= min_count:
                assert res.mean[h, s] == pytest.approx(sum(vals) / len(vals), rel=1e-12)
            else:
                assert math.isnan(res.mean[h, s])


def test_hourly_means_by_hand(impl: Impl) -> None:
    # hour 0: 10 + 20 + 30 -> 20.0; hour 1: one reading 7.5; hour 2 (min_count 2): one reading -> NaN
    # the reading at exactly T0 + 1 h belongs to hour 1 (hours are half-open)
    ts = np.array([T0, T0 + 20 * US_PER_MIN, T0 + 59 * US_PER_MIN, T0 + US_PER_H, T0 + 2 * US_PER_H + 1])
    res = aqi.hourly_means(ts, np.array([10.0, 20.0, 30.0, 7.5, 9.0]), T0, 3, min_count=1, impl=impl)
    np.testing.assert_array_equal(res.mean, [20.0, 7.5, 9.0])
    assert list(res.hour_start_us) == [T0, T0 + US_PER_H, T0 + 2 * US_PER_H]
    res = aqi.hourly_means(ts, np.array([10.0, 20.0, 30.0, 7.5, 9.0]), T0, 3, min_count=2, impl=impl)
    np.testing.assert_array_equal(res.mean, [20.0, np.nan, np.nan])
    assert list(res.count) == [3, 1, 1]
    with pytest.raises(ValueError, match="whole UTC hour"):
        aqi.hourly_means(ts, ts * 0.0, T0 + 1, 3)
    with pytest.raises(ValueError, match="n_stations"):
        aqi.hourly_means(ts, ts * 0.0, T0, 3, station_idx=np.zeros(5, np.int32))


# ---------------------------------------------------------------------------------------------------- NowCast
@SETTINGS
@given(rows=series_2d)
def test_nowcast_twin_and_the_published_algorithm(rows: list[list[float]]) -> None:
    values = np.array(rows)
    got = {impl: aqi.nowcast(values, impl=impl)[0] for impl in ("numba", "python")}
    np.testing.assert_array_equal(got["numba"], got["python"])
    for s in range(values.shape[1]):
        expected = naive_nowcast([float(v) for v in values[:, s]])
        np.testing.assert_allclose(got["numba"][:, s], expected, rtol=1e-12, atol=1e-12)


def test_nowcast_published_example(impl: Impl) -> None:
    # MazamaScience air-monitor-algorithms, pm_nowcast docs: [null, null, 10, 12, 15, 14, 11]
    # -> [null, null, null, 11.1, 13.0, 13.4, 12.5] to one decimal
    got, count = aqi.nowcast(np.array([np.nan, np.nan, 10, 12, 15, 14, 11]), impl=impl)
    np.testing.assert_array_equal(np.round(got, 1), [np.nan, np.nan, np.nan, 11.1, 13.0, 13.4, 12.5])
    assert list(count) == [0, 0, 1, 2, 3, 4, 5]
    # hour 3 by hand: latest first 12, 10; w = 10 / 12; (12 + 10 x 10/12) / (1 + 10/12) = 20.333 / 1.8333 = 11.09
    assert got[3] == pytest.approx((12 + 10 * 10 / 12) / (1 + 10 / 12), rel=1e-12)


def test_nowcast_worked_example_with_the_weight_floor(impl: Impl) -> None:
    # 12 hours, latest first: 64, 32, then ten hours of 16.
    # w = min / max = 16 / 64 = 0.25 < 0.5 -> w = 0.5 (the PM floor, docs/reference.md#nowcast)
    # numerator   = 64 + 32 x 0.5 + 16 x (0.5^2 + ... + 0.5^11) = 64 + 16 + 16 x 0.49951171875 = 87.9921875
    # denominator = 1 + 0.5 + ... + 0.5^11 = 2 x (1 - 0.5^12) = 1.99951171875
    # NowCast = 87.9921875 / 1.99951171875 = 44.00684...
    oldest_first = [16.0] * 10 + [32.0, 64.0]
    got, _ = aqi.nowcast(np.array(oldest_first), impl=impl)
    assert got[-1] == pytest.approx(87.9921875 / 1.99951171875, rel=1e-12)
    assert got[-1] == pytest.approx(44.0068, abs=1e-4)
    # without the floor (the AirMonitor R package's pmAsian-style min weight 0.1) w = 0.25:
    # (64 + 32 x 0.25 + 16 x sum 0.25^2..0.25^11) / sum 0.25^0..0.25^11
    num = 64 + 32 * 0.25 + 16 * sum(0.25**k for k in range(2, 12))
    den = sum(0.25**k for k in range(12))
    got, _ = aqi.nowcast(np.array(oldest_first), min_weight=0.1, impl=impl)
    assert got[-1] == pytest.approx(num / den, rel=1e-12)  # = 72.0 / 1.3333 = 54.0000...
    # a 13th, older hour does not count: the window is 12 hours
    got, _ = aqi.nowcast(np.array([1000.0, *oldest_first]), impl=impl)
    assert got[-1] == pytest.approx(87.9921875 / 1.99951171875, rel=1e-12)


def test_nowcast_completeness_and_flat_series(impl: Impl) -> None:
    # 2 of the 3 latest hours needed: [x, x, NaN] ok, [x, NaN, NaN] not; all equal (zeros too): that value
    got, _ = aqi.nowcast(np.array([20.0, 10.0, np.nan, np.nan, 5.0, 5.0]), impl=impl)
    # hour 1: latest first 10, 20: w = 0.5; (10 + 0.5 x 20) / 1.5 = 13.333; hour 2: 10, 20 still 2 of 3
    assert got[1] == pytest.approx(20 / 1.5) and got[2] == pytest.approx(20 / 1.5)
    assert np.isnan(got[3]) and np.isnan(got[4])  # only one valid value among the 3 latest
    # hour 5: latest first 5, 5, NaN, NaN, 10, 20: w = 5 / 20 = 0.25 -> 0.5;
    # (5 + 5 x 0.5 + 10 x 0.5^4 + 20 x 0.5^5) / (1 + 0.5 + 0.5^4 + 0.5^5) = 8.75 / 1.59375 = 5.4902
    assert got[5] == pytest.approx(8.75 / 1.59375)
    zeros, _ = aqi.nowcast(np.zeros(4), impl=impl)
    assert list(zeros[1:]) == [0.0, 0.0, 0.0] and np.isnan(zeros[0])
    with pytest.raises(ValueError, match="recent_min_valid"):
        aqi.nowcast(np.zeros(4), recent_min_valid=4)
