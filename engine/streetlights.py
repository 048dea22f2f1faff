"""Streetlights: burning time, day burning and night outages from lamp on/off state, per bucket and device.

Input: ``lamp_on`` readings (metric 6; >= 0.5 is on, NaN is "state unknown"), each holding from its timestamp until
the device's next reading, but for at most ``max_hold_us`` (0 = for ever); past that the state is unknown. Sun
times come from the caller as day spans (sun up) and night spans (sun down), sorted and disjoint; build them from
sunrise/sunset instants with :func:`day_night_spans` (sunrise/sunset from astral, or from :func:`noaa_sun_times`).
A grace period around sunrise and sunset (photocells switch near civil twilight) belongs to neither.

Per bucket and device, in microseconds:

- ``on_us``: lamp on (burning hours = on_us / 3.6e9);
- ``day_on_us``: on while the sun is up (day burning);
- ``night_off_us``: off while the sun is down (outage);
- ``night_known_us``: night time with a known state, the denominator of an outage ratio;
- ``unknown_us``: time with no known state (before that: nothing is counted before a device's first reading).

Carry state (:class:`LampState`) per device: last reading time and state, and how far time has been accounted
(``emitted_us``). ``until_us`` accounts the last known state up to an instant (e.g. the watermark) so a live bucket
shows burning time up to now; the next batch continues from there. A reading older than ``emitted_us`` applies
from ``emitted_us`` on (time already accounted is not rewritten) and one older than the last reading is ignored;
both are counted in the returned ``late`` figure. Splitting a series into batches gives the same totals (exact
integers) as one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lccm.engine import kernels as k
from lccm.engine.counters import Impl, check_time_order
from lccm.engine.timebase import US_PER_MIN, check_edges


@dataclass(frozen=True, slots=True)
class LampState:
    """Per-device carry state; ``NO_TS`` = no reading yet; state 1 on, 0 off, -1 unknown."""

    last_ts_us: np.ndarray  # int64
    state: np.ndarray  # int8
    emitted_us: np.ndarray  # int64, time accounted up to here

    @classmethod
    def empty(cls, n_devices: int) -> LampState:
        return cls(
            np.full(n_devices, k.NO_TS, np.int64),
            np.full(n_devices, -1, np.int8),
            np.full(n_devices, k.NO_TS, np.int64),
        )

    def copy(self) -> LampState:
        return LampState(
            np.array(self.last_ts_us, np.int64), np.array(self.state, np.int8), np.array(self.emitted_us, np.int64)
        )


@dataclass(frozen=True, slots=True)
class LampBuckets:
    """Lamp time accounting per bucket (rows) and device (columns), int64 microseconds."""

    OPS: ClassVar[dict[str, str]] = {
        "on_us": "sum",
        "day_on_us": "sum",
        "night_off_us": "sum",
        "night_known_us": "sum",
        "unknown_us": "sum",
    }
    edges_us: np.ndarray
    on_us: np.ndarray
    day_on_us: np.ndarray
    night_off_us: np.ndarray
    night_known_us: np.ndarray
    unknown_us: np.ndarray


@dataclass(frozen=True, slots=True)
class DayNight:
    """Sorted, disjoint spans [start, end) of day (sun up) and of night (sun down), UTC epoch microseconds."""

    day_start_us: np.ndarray
    day_end_us: np.ndarray
    night_start_us: np.ndarray
    night_end_us: np.ndarray


def day_night_spans(sunrise_us: np.ndarray, sunset_us: np.ndarray, grace_us: int = 15 * US_PER_MIN) -> DayNight:
    """Day = [sunrise + grace, sunset - grace) of each day; night = [sunset + grace, next sunrise - grace).

    ``sunrise_us[i]`` and ``sunset_us[i]`` are of consecutive days, in order. Time before the first sunrise and
    after the last sunset is in neither: pass a day more on each side of the period of interest.
    """
    rise = np.ascontiguousarray(sunrise_us, dtype=np.int64)
    sets = np.ascontiguousarray(sunset_us, dtype=np.int64)
    if rise.shape != sets.shape or rise.ndim != 1 or np.any(sets <= rise) or np.any(rise[1:] <= sets[:-1]):
        raise ValueError("sunrise/sunset must alternate: rise[i] < set[i] < rise[i + 1]")
    if grace_us < 0:
        raise ValueError("grace must be >= 0")
    day_s, day_e = rise + grace_us, sets - grace_us
    keep = day_e > day_s
    night_s, night_e = sets[:-1] + grace_us, rise[1:] - grace_us
    keep_n = night_e > night_s
    return DayNight(day_s[keep], day_e[keep], night_s[keep_n], night_e[keep_n])


def lamp_hours(
    device_idx: np.ndarray,
    ts_us: np.ndarray,
    lamp_on: np.ndarray,
    edges_us: np.ndarray,
    sun: DayNight,
    max_hold_us: np.ndarray,
    state: LampState | None = None,
    *,
    until_us: int | None = None,
    impl: Impl = "numba",
) -> tuple[LampBuckets, LampState, int]:
    """Account lamp time per bucket ``[edges_us[b], edges_us[b + 1])``; returns (buckets, state out, late readings).

    ``max_hold_us`` has one entry per device (e.g. 2 x its cadence, or 0 for report-on-change devices whose state
    holds until the next report). ``state`` is the carry-in; it is not modified. Each device's rows in time order.
    """
    edges = check_edges(edges_us)
    hold = np.ascontiguousarray(max_hold_us, dtype=np.int64)
    n_dev = hold.shape[0]
    dev = np.ascontiguousarray(device_idx, dtype=np.int32)
    ts = np.ascontiguousarray(ts_us, dtype=np.int64)
    on = np.ascontiguousarray(lamp_on, dtype=np.float64)
    if not (dev.shape == ts.shape == on.shape) or dev.ndim != 1:
        raise ValueError("device_idx, ts_us and lamp_on must be 1-D arrays of one length")
    if dev.size and (dev.min() < 0 or dev.max() >= n_dev):
        raise ValueError(f"device index outside 0..{n_dev - 1}")
    check_time_order(dev, ts, impl)
    st = (state or LampState.empty(n_dev)).copy()
    if st.last_ts_us.shape[0] != n_dev:
        raise ValueError("state and max_hold_us disagree on the number of devices")
    shape = (edges.shape[0] - 1, n_dev)
    out = LampBuckets(edges, *(np.zeros(shape, np.int64) for _ in range(5)))
    spans = [np.ascontiguousarray(a, dtype=np.int64) for a in
             (sun.day_start_us, sun.day_end_us, sun.night_start_us, sun.night_end_us)]  # fmt: skip
    late = k.kernel(impl, "lamp")(
        dev, ts, on, hold, k.NO_TS if until_us is None else int(until_us), edges, *spans,
        st.last_ts_us, st.state, st.emitted_us,
        out.on_us, out.day_on_us, out.night_off_us, out.night_known_us, out.unknown_us,
    )  # fmt: skip
    return out, st, int(late)


def noaa_sun_times(
    dates: np.ndarray, lat_deg: float, lon_deg: float, *, utc_offset_h: float = 7.0, zenith_deg: float = 90.833
) -> tuple[np.ndarray, np.ndarray]:
    """Sunrise and sunset (UTC epoch microseconds) of local calendar dates, NOAA Solar Calculator method.

    The equations of NOAA's Global Monitoring Laboratory solar calculator spreadsheet (after Meeus, "Astronomical
    Algorithms"), evaluated at local solar noon of each date; zenith 90.833 deg = the upper limb touching the horizon
    with standard refraction. ``dates``: ``datetime64[D]`` local dates; ``lon_deg`` east positive. Where the sun
    does not rise or set (polar day/night) the result is NO_TS. Rounded to the second; within 30 s of astral 3.2
    in Thailand (the spreadsheet itself claims about a minute).
    """
    day = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)  # days since 1970-01-01
    lat = np.radians(lat_deg)
    # Julian day at local noon, then twice: evaluate at the solar noon found in the first pass
    jd = day + 2440587.5 + (12.0 - utc_offset_h) / 24.0
    noon_min = np.zeros(day.shape)
    ha_deg = np.zeros(day.shape)
    for _ in range(2):
        jc = (jd - 2451545.0) / 36525.0
        l0 = np.radians((280.46646 + jc * (36000.76983 + jc * 0.0003032)) % 360.0)
        m = np.radians(357.52911 + jc * (35999.05029 - 0.0001537 * jc))
        e = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
        c = (
            np.sin(m) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
            + np.sin(2 * m) * (0.019993 - 0.000101 * jc)
            + np.sin(3 * m) * 0.000289
        )
        omega = np.radians(125.04 - 1934.136 * jc)
        app_long = np.radians(np.degrees(l0) + c - 0.00569 - 0.00478 * np.sin(omega))
        obliq0 = 23.0 + (26.0 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60.0) / 60.0
        obliq = np.radians(obliq0 + 0.00256 * np.cos(omega))
        decl = np.arcsin(np.sin(obliq) * np.sin(app_long))
        y = np.tan(obliq / 2) ** 2
        eot_min = 4 * np.degrees(
            y * np.sin(2 * l0)
            - 2 * e * np.sin(m)
            + 4 * e * y * np.sin(m) * np.cos(2 * l0)
            - 0.5 * y * y * np.sin(4 * l0)
            - 1.25 * e * e * np.sin(2 * m)
        )
        cos_ha = np.cos(np.radians(zenith_deg)) / (np.cos(lat) * np.cos(decl)) - np.tan(lat) * np.tan(decl)
        with np.errstate(invalid="ignore"):
            ha_deg = np.degrees(np.arccos(cos_ha))
        noon_min = 720.0 - 4.0 * lon_deg - eot_min  # UTC minutes after the UTC midnight of the local date
        jd = day + 2440587.5 + noon_min / 1440.0
    midnight_us = day * 86_400_000_000
    rise = midnight_us + np.round((noon_min - 4.0 * ha_deg) * 60.0) * 1e6  # to the whole second
    sets = midnight_us + np.round((noon_min + 4.0 * ha_deg) * 60.0) * 1e6
    bad = ~np.isfinite(ha_deg)
    return (
        np.where(bad, k.NO_TS, np.nan_to_num(rise)).astype(np.int64),
        np.where(bad, k.NO_TS, np.nan_to_num(sets)).astype(np.int64),
    )
