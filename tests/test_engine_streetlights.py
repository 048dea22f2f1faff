"""Streetlight burning hours, day burning and night outages; NOAA sunrise/sunset pinned to the reference."""

from __future__ import annotations

from dataclasses import fields
from typing import cast

import numpy as np
import pytest
from astral import Observer
from astral.sun import sunrise, sunset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lccm.engine.combine import merge
from lccm.engine.counters import Impl
from lccm.engine.kernels import IMPLS, NO_TS
from lccm.engine.streetlights import DayNight, LampBuckets, LampState, day_night_spans, lamp_hours, noaa_sun_times
from lccm.engine.timebase import (
    BANGKOK,
    BKK_OFFSET_US,
    US_PER_DAY,
    US_PER_H,
    US_PER_MIN,
    bkk_us,
    bucket_edges_us,
    us_from_datetime,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LAMPANG = (18.29, 99.49)  # docs/reference.md#streetlight-operating-hours
D0 = bkk_us(2026, 3, 1)


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> Impl:
    return cast(Impl, request.param)


def sun_6_to_18(days: int = 4) -> DayNight:
    """Sunrise 06:00, sunset 18:00 Bangkok time every day from 2026-02-28, no grace."""
    base = D0 - US_PER_DAY
    rise = base + 6 * US_PER_H + np.arange(days) * US_PER_DAY
    return day_night_spans(rise, rise + 12 * US_PER_H, grace_us=0)


def h(day: int, hour: float) -> int:
    return D0 + day * US_PER_DAY + int(hour * US_PER_H)


def hours(a: np.ndarray) -> list[float]:
    return [float(x) / US_PER_H for x in a]


# ----------------------------------------------------------------------------------------------- hand-computed
def test_a_night_with_day_burning_and_an_outage(impl: Impl) -> None:
    # on at 17:30 (half an hour before sunset), off 19:00-20:00 (outage), on until 06:30 (half an hour after sunrise)
    ts = np.array([h(0, 17.5), h(0, 19), h(0, 20), h(1, 6.5)])
    out, state, late = lamp_hours(
        np.zeros(4), ts, np.array([1.0, 0.0, 1.0, 0.0]), bucket_edges_us("1d", h(0, 0), h(1, 12)), sun_6_to_18(),
        np.zeros(1), until_us=h(1, 12), impl=impl,
    )  # fmt: skip
    assert late == 0
    assert hours(out.on_us[:, 0]) == [5.5, 6.5]  # 17:30-19:00, 20:00-24:00 | 00:00-06:30
    assert hours(out.day_on_us[:, 0]) == [0.5, 0.5]
    assert hours(out.night_off_us[:, 0]) == [1.0, 0.0]
    assert hours(out.night_known_us[:, 0]) == [6.0, 6.0]  # 18:00-24:00 (known since 17:30) | 00:00-06:00
    assert hours(out.unknown_us[:, 0]) == [0.0, 0.0]
    assert state.emitted_us[0] == h(1, 12) and state.state[0] == 0 and state.last_ts_us[0] == h(1, 6.5)


def test_state_older_than_max_hold_is_unknown(impl: Impl) -> None:
    ts = np.array([h(0, 20), h(0, 23)])
    out, _, _ = lamp_hours(
        np.zeros(2), ts, np.array([1.0, 1.0]), np.array([h(0, 18), h(1, 0)]), sun_6_to_18(), np.array([US_PER_H]),
        impl=impl,
    )  # fmt: skip
    assert hours(out.on_us[:, 0]) == [1.0] and hours(out.unknown_us[:, 0]) == [2.0]
    assert hours(out.night_known_us[:, 0]) == [1.0]


def test_not_finite_state_is_unknown_and_grace_is_neither_day_nor_night(impl: Impl) -> None:
    rise = np.array([h(0, 6), h(1, 6)])
    sun = day_night_spans(rise, rise + 12 * US_PER_H, grace_us=15 * US_PER_MIN)
    ts = np.array([h(0, 17), h(0, 19), h(0, 20)])
    out, _, _ = lamp_hours(
        np.zeros(3), ts, np.array([1.0, np.nan, 0.0]), np.array([h(0, 12), h(0, 21)]), sun, np.zeros(1),
        until_us=h(0, 21), impl=impl,
    )  # fmt: skip
    assert hours(out.on_us[:, 0]) == [2.0] and hours(out.unknown_us[:, 0]) == [1.0]
    assert hours(out.day_on_us[:, 0]) == [0.75]  # 17:00-17:45; 17:45-18:15 is the grace period
    assert hours(out.night_known_us[:, 0]) == [0.75 + 1.0]  # 18:15-19:00 on, 20:00-21:00 off
    assert hours(out.night_off_us[:, 0]) == [1.0]


def test_late_readings_are_counted_and_do_not_rewrite_time(impl: Impl) -> None:
    edges = np.array([h(0, 18), h(1, 6)])
    first, state, _ = lamp_hours(np.zeros(1), np.array([h(0, 18)]), np.array([1.0]), edges, sun_6_to_18(),
                                 np.zeros(1), until_us=h(0, 22), impl=impl)  # fmt: skip
    second, state, late = lamp_hours(np.zeros(2), np.array([h(0, 17), h(0, 21)]), np.array([0.0, 0.0]), edges,
                                     sun_6_to_18(), np.zeros(1), state, until_us=h(1, 0), impl=impl)  # fmt: skip
    assert late == 2
    assert hours(first.on_us[:, 0]) == [4.0] and hours(second.night_off_us[:, 0]) == [2.0]
    assert state.last_ts_us[0] == h(0, 21)


# ----------------------------------------------------------------------------------------------- properties
@st.composite
def lamp_series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    n_dev = draw(st.integers(1, 3))
    rows = []
    for d in range(n_dev):
        n = draw(st.integers(1, 30))
        t = D0 + np.cumsum(draw(st.lists(st.integers(0, 6 * 3600), min_size=n, max_size=n))) * 1_000_000
        v = draw(st.lists(st.sampled_from([0.0, 1.0, 1.0, np.nan]), min_size=n, max_size=n))
        rows += [(int(a), d, b) for a, b in zip(t, v, strict=True)]
    rows.sort(key=lambda r: (r[0], r[1]))
    hold = np.array(draw(st.lists(st.sampled_from([0, 900, 7200]), min_size=n_dev, max_size=n_dev))) * 1_000_000
    return (np.array([r[1] for r in rows], np.int32), np.array([r[0] for r in rows], np.int64),
            np.array([r[2] for r in rows]), hold, n_dev)  # fmt: skip


SUN = sun_6_to_18(days=12)


@SETTINGS
@given(lamp_series(), st.data())
def test_time_cut_batches_equal_one_pass_and_invariants_hold(impl: Impl, data: tuple, more: st.DataObject) -> None:
    dev, ts, on, hold, n_dev = data
    until = int(ts.max()) + 3 * US_PER_H
    edges = bucket_edges_us("1h", D0, until)
    one, s1, late1 = lamp_hours(dev, ts, on, edges, SUN, hold, until_us=until, impl=impl)
    assert late1 == 0
    # batches cut at instants, each accounted up to its cut (as a live system would with its watermark)
    cuts = sorted(more.draw(st.lists(st.integers(D0, until), max_size=4)))
    state, total = None, None
    for lo, hi in zip([NO_TS, *cuts], [*cuts, until + 1], strict=True):
        keep = (ts >= lo) & (ts < hi)
        part, state, late = lamp_hours(dev[keep], ts[keep], on[keep], edges, SUN, hold, state,
                                       until_us=min(hi, until), impl=impl)  # fmt: skip
        assert late == 0
        total = part if total is None else merge(total, part)
    assert total is not None and state is not None
    for f in fields(LampBuckets):
        np.testing.assert_array_equal(getattr(total, f.name), getattr(one, f.name))
    for f in fields(LampState):
        np.testing.assert_array_equal(getattr(state, f.name), getattr(s1, f.name))
    # accounting: every microsecond from a device's first reading to `until` is on, off or unknown, exactly once
    for d in range(n_dev):
        first = ts[dev == d].min()
        assert (one.on_us[:, d].sum() + one.unknown_us[:, d].sum() + off_us(dev, ts, on, hold, d, until)
                == until - first)  # fmt: skip
    assert np.all(one.day_on_us <= one.on_us) and np.all(one.night_off_us <= one.night_known_us)
    assert np.all(one.on_us + one.unknown_us <= np.diff(edges)[:, None])
    other = lamp_hours(dev, ts, on, edges, SUN, hold, until_us=until, impl="numba" if impl == "python" else "python")
    for f in fields(LampBuckets):
        np.testing.assert_array_equal(getattr(other[0], f.name), getattr(one, f.name))


def off_us(dev: np.ndarray, ts: np.ndarray, on: np.ndarray, hold: np.ndarray, d: int, until: int) -> int:
    """Known-off time of device d, computed directly from its series."""
    t = np.append(ts[dev == d], until)
    v = on[dev == d]
    span = np.minimum(np.diff(t), hold[d] if hold[d] > 0 else np.iinfo(np.int64).max)
    return int(span[v == 0.0].sum())


# ----------------------------------------------------------------------------------------------- NOAA sun times
def test_noaa_sun_times_agree_with_astral_and_the_reference_for_lampang() -> None:
    days = np.arange(np.datetime64("2025-01-01"), np.datetime64("2026-01-01"))
    rise, sets = noaa_sun_times(days, *LAMPANG)
    obs = Observer(*LAMPANG)
    for i in range(0, len(days), 7):
        d = days[i].astype(object)
        assert abs(rise[i] - us_from_datetime(sunrise(obs, d, tzinfo=BANGKOK))) < 30e6
        assert abs(sets[i] - us_from_datetime(sunset(obs, d, tzinfo=BANGKOK))) < 30e6
    # NOAA solar-position equations (docs/reference.md#streetlight-operating-hours): sunset 17:44-19:02 ICT, sunrise
    # 05:45-06:56 ICT, sunset->sunrise ~4,330 h/yr
    local_min = lambda a: ((a + BKK_OFFSET_US) % US_PER_DAY) / US_PER_MIN  # noqa: E731
    assert local_min(sets).min() == pytest.approx(17 * 60 + 44, abs=1.5)
    assert local_min(sets).max() == pytest.approx(19 * 60 + 2, abs=1.5)
    assert local_min(rise).min() == pytest.approx(5 * 60 + 45, abs=1.5)
    assert local_min(rise).max() == pytest.approx(6 * 60 + 56, abs=1.5)
    nights_h = (rise[1:] - sets[:-1]).sum() / US_PER_H * 365 / 364
    assert nights_h == pytest.approx(4330, abs=10)


def test_day_night_spans_checks() -> None:
    with pytest.raises(ValueError, match="alternate"):
        day_night_spans(np.array([h(0, 18)]), np.array([h(0, 6)]))
