"""City-wide physics shared by all devices: weather, air pollution, grid outages.

Every quantity is a pure, vectorised function of epoch seconds and the seed, so any device can ask for any time in
any order and get the same answer (that is what makes runs reproducible and registers consistent across runs).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from lccm.simulators import noise
from lccm.simulators.city import City
from lccm.simulators.noise import stable_key
from lccm.simulators.timebase import (
    BANGKOK,
    DAY_S,
    UTC_OFFSET_S,
    FloatArray,
    as_array,
    day_of_year,
    is_working_day,
    local_day,
    local_hour,
    month,
    sun_table,
)

_MONTH_DAYS = 365.25 / 12.0


def monthly(t_s: FloatArray, table: Sequence[float]) -> FloatArray:
    """Interpolate a 12-value monthly climatology (values at mid-month) periodically over the year."""
    pos = day_of_year(t_s) / _MONTH_DAYS - 0.5
    lo = np.floor(pos)
    frac = pos - lo
    values = np.asarray(table, dtype=np.float64)
    i = lo.astype(np.int64) % 12
    return values[i] * (1.0 - frac) + values[(i + 1) % 12] * frac


def diurnal_temperature_shape(hour: FloatArray) -> FloatArray:
    """-1 at the 06:00 minimum, +1 at the 15:00 maximum; slow cosine cooling through the night."""
    rising = (hour >= 6.0) & (hour < 15.0)
    since_max = np.mod(hour - 15.0, 24.0)
    return np.where(rising, -np.cos(np.pi * (hour - 6.0) / 9.0), np.cos(np.pi * since_max / 15.0))


def gauss(x: FloatArray, centre: float, width: float) -> FloatArray:
    return np.exp(-0.5 * ((x - centre) / width) ** 2)


def window(
    hour: FloatArray, start_h: float, end_h: float, ramp_in_h: float = 0.0, ramp_out_h: float = 0.0
) -> FloatArray:
    """1 inside [start, end), linear ramps of the given length before start and after end, 0 elsewhere."""
    inside = ((hour >= start_h) & (hour < end_h)).astype(np.float64)
    if ramp_in_h > 0:
        inside = np.maximum(inside, np.clip((hour - (start_h - ramp_in_h)) / ramp_in_h, 0.0, 1.0) * (hour < start_h))
    if ramp_out_h > 0:
        inside = np.maximum(inside, np.clip(1.0 - (hour - end_h) / ramp_out_h, 0.0, 1.0) * (hour >= end_h))
    return inside


def traffic(t_s: FloatArray) -> FloatArray:
    """Road traffic index 0..~1.3: morning and evening rush hours, quieter on weekends and holidays."""
    h = local_hour(t_s)
    rush = 0.25 + 0.8 * gauss(h, 7.8, 1.1) + 0.7 * gauss(h, 17.3, 1.4) + 0.3 * gauss(h, 12.0, 2.5)
    night = np.where((h < 5.0) | (h >= 22.0), 0.4, 1.0)
    return rush * night * np.where(is_working_day(t_s), 1.0, 0.7)


class Environment:
    """Weather, air quality and grid state of one city for one seed."""

    def __init__(self, city: City, seed: int) -> None:
        self.city = city
        self.seed = seed
        self.sun = sun_table(city.lat, city.lon)
        self._k = {
            name: stable_key(seed, city.slug, name)
            for name in ("t_slow", "t_fast", "rh", "pm_slow", "pm_fast", "episodes", "plume", "outage")
        }
        self._memo: OrderedDict[tuple[str, int], tuple[FloatArray, Any]] = OrderedDict()

    def memo(self, name: str, t: FloatArray, compute: Callable[[FloatArray], Any]) -> Any:
        """Reuse a city-wide quantity for the very same time array (all registers share one knot grid)."""
        key = (name, id(t))
        hit = self._memo.get(key)
        if hit is not None and hit[0] is t:
            self._memo.move_to_end(key)
            return hit[1]
        value = compute(t)
        self._memo[key] = (t, value)
        if len(self._memo) > 64:
            self._memo.popitem(last=False)
        return value

    def hour(self, t_s: FloatArray) -> FloatArray:
        return self.memo("hour", as_array(t_s), local_hour)

    def working_day(self, t_s: FloatArray) -> np.ndarray:
        return self.memo("working_day", as_array(t_s), is_working_day)

    # Weather ----------------------------------------------------------------------------------------------------
    def temperature_c(self, t_s: FloatArray) -> FloatArray:
        return self.memo("temperature", as_array(t_s), self._temperature_c)

    def _temperature_c(self, t: FloatArray) -> FloatArray:
        c = self.city.climate
        shape = diurnal_temperature_shape(local_hour(t))
        mean = monthly(t, c["mean_c"])
        half_range = monthly(t, c["diurnal_range_c"]) / 2.0
        # Multi-day weather systems (±2 °C) and hourly wander (±0.7 °C).
        anomaly = 2.0 * noise.smooth(self._k["t_slow"], t, 3 * DAY_S) + 0.7 * noise.smooth(
            self._k["t_fast"], t, 3 * 3600
        )
        return mean + half_range * shape + anomaly

    def humidity_pct(self, t_s: FloatArray) -> FloatArray:
        c = self.city.climate
        t = as_array(t_s)
        shape = diurnal_temperature_shape(local_hour(t))
        rh = monthly(t, c["humidity_pct"]) - monthly(t, c["humidity_swing_pct"]) * shape
        rh += 6.0 * noise.smooth(self._k["rh"], t, 2 * DAY_S)
        return np.clip(rh, 12.0, 99.0)

    # Particulate matter -----------------------------------------------------------------------------------------
    def pm25_ugm3(self, t_s: FloatArray) -> FloatArray:
        """Regional PM2.5 (µg/m3) before station effects: seasonal base, smoke episodes, night-time inversions."""
        return self.memo("pm25", as_array(t_s), self._pm25_ugm3)

    def _pm25_ugm3(self, t: FloatArray) -> FloatArray:
        h = local_hour(t)
        base = monthly(t, self.city.air["pm25_monthly_ugm3"])
        # Inversions trap smoke overnight and in the morning; afternoon mixing clears it.
        inversion = 1.0 + 0.28 * np.cos(2 * np.pi * (h - 6.5) / 24.0) + 0.08 * gauss(h, 20.0, 1.5)
        wander = (
            1.0
            + 0.2 * noise.smooth(self._k["pm_slow"], t, 2 * DAY_S)
            + 0.08 * noise.smooth(self._k["pm_fast"], t, 3 * 3600)
        )
        return np.maximum(0.5, (base + self.smoke_episodes_ugm3(t)) * inversion * wander)

    def smoke_episodes_ugm3(self, t_s: FloatArray) -> FloatArray:
        t = as_array(t_s)
        out = np.zeros_like(t)
        years = np.unique(local_day(t).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970)
        for year in years:
            for start_s, length_s, amplitude in self._episodes(int(year)):
                x = (t - start_s) / length_s
                inside = (x >= 0.0) & (x <= 1.0)
                out += np.where(inside, amplitude * np.sin(np.pi * np.clip(x, 0.0, 1.0)) ** 2, 0.0)
        return out

    def _episodes(self, year: int) -> list[tuple[float, float, float]]:
        return _episodes_for(self.seed, self.city.slug, year, _freeze(self.city.air))

    # Gases ------------------------------------------------------------------------------------------------------
    def so2_plume_ppb(self, t_s: FloatArray, station_key: int, distance_km: float) -> FloatArray:
        """SO2 from the lignite plant's plume: at most one plume a day, reaching a station when the wind says so."""
        cfg = self.city.air["so2_plumes"]
        t = as_array(t_s)
        days = local_day(t)
        uniq = np.unique(days)
        key = self._k["plume"]
        prob = np.asarray(cfg["daily_probability_by_month"], dtype=np.float64)[
            month(uniq.astype(np.float64) * DAY_S - UTC_OFFSET_S + 43200) - 1
        ]
        happens = noise.uniform(key, uniq * 8) < prob
        hits = noise.uniform(station_key, uniq) < float(cfg["station_hit_share"])
        h0, h1 = cfg["start_hour"]
        d0, d1 = cfg["duration_h"]
        p0, p1 = cfg["peak_ppb"]
        x0, x1 = cfg["extreme_ppb"]
        start_h = h0 + (h1 - h0) * noise.uniform(key, uniq * 8 + 1)
        dur_h = d0 + (d1 - d0) * noise.uniform(key, uniq * 8 + 2)
        extreme = noise.uniform(key, uniq * 8 + 3) < float(cfg["extreme_share"])
        u = noise.uniform(key, uniq * 8 + 4)
        peak = np.where(extreme, x0 + (x1 - x0) * u, p0 + (p1 - p0) * u**2)
        idx = np.searchsorted(uniq, days)
        active = happens[idx] & hits[idx]
        centre = start_h[idx] + dur_h[idx] / 2.0
        sigma = dur_h[idx] / 4.0
        near_km = self.city.power_plant.near_km
        fade = 1.0 if distance_km <= near_km else math.exp(-(distance_km - near_km) / 6.0)
        plume = peak[idx] * np.exp(-0.5 * ((local_hour(t) - centre) / sigma) ** 2)
        return np.where(active, plume * fade, 0.0)

    # Grid -------------------------------------------------------------------------------------------------------
    def outage(self, site_code: str, t_s: FloatArray) -> FloatArray:
        """1.0 while the site's feeder is out, else 0.0."""
        t = as_array(t_s)
        out = np.zeros_like(t)
        if not self.city.grid:
            return out
        share = float(self.city.grid.get("site_share", 0.0))
        months = np.unique(_month_index(t))
        for m in range(int(months.min()) - 1, int(months.max()) + 1):
            for k, (start_s, end_s) in enumerate(self._outages(m)):
                if noise.uniform(stable_key(self._k["outage"], m, k, site_code), 0)[0] < share:
                    out = np.maximum(out, ((t >= start_s) & (t < end_s)).astype(np.float64))
        return out

    def _outages(self, month_index: int) -> list[tuple[float, float]]:
        return _outages_for(self._k["outage"], month_index, _freeze(self.city.grid))


def _month_index(t: FloatArray) -> np.ndarray:
    return local_day(t).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _freeze(cfg: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable copy of a small config dict (for the caches below)."""
    return tuple(
        sorted(
            (k, _freeze(v) if isinstance(v, dict) else tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()
        )
    )


@lru_cache(maxsize=256)
def _episodes_for(
    seed: int, slug: str, year: int, air: tuple[tuple[str, Any], ...]
) -> list[tuple[float, float, float]]:
    """Burning-season smoke episodes of one year: (start epoch s, length s, amplitude µg/m3)."""
    cfg = dict(dict(air)["burning_season"])
    monthly_base = dict(air)["pm25_monthly_ugm3"]
    key = stable_key(seed, slug, "episodes", year)
    u = noise.uniform(key, np.arange(64))
    n_lo, n_hi = cfg["episodes_per_year"]
    count = int(n_lo + min(n_hi - n_lo, math.floor(u[0] * (n_hi - n_lo + 1))))
    season_start = (dt.date(year, int(cfg["first_month"]), 1) - dt.date(year, 1, 1)).days
    last = int(cfg["last_month"])
    season_end = (dt.date(year + (last == 12), last % 12 + 1, 1) - dt.date(year, 1, 1)).days
    mode = min(max(season_start + 0.55 * (season_end - season_start), season_start), season_end)  # ~early March
    year_start = dt.datetime(year, 1, 1, tzinfo=BANGKOK).timestamp()
    out = []
    for i in range(count):
        centre_day = _triangular(float(u[1 + 5 * i]), season_start, mode, season_end)
        d_lo, d_hi = cfg["duration_days"]
        length_days = d_lo + (d_hi - d_lo) * float(u[2 + 5 * i])
        p_lo, p_hi = cfg["peak_ugm3"]
        peak = p_lo + (p_hi - p_lo) * float(u[3 + 5 * i])
        base = float(monthly_base[min(11, int(centre_day / _MONTH_DAYS))])
        start_s = year_start + (centre_day - length_days / 2.0) * DAY_S
        out.append((start_s, length_days * DAY_S, max(20.0, peak - base)))
    return out


def _triangular(u: float, lo: float, mode: float, hi: float) -> float:
    cut = (mode - lo) / (hi - lo)
    if u < cut:
        return lo + math.sqrt(u * (hi - lo) * (mode - lo))
    return hi - math.sqrt((1.0 - u) * (hi - lo) * (hi - mode))


@lru_cache(maxsize=1024)
def _outages_for(key: int, month_index: int, grid: tuple[tuple[str, Any], ...]) -> list[tuple[float, float]]:
    cfg = dict(grid)
    rate = float(cfg.get("outages_per_month", 0.0))
    u = noise.uniform(stable_key(key, month_index), np.arange(32))
    # Poisson count by inverting the CDF with one uniform.
    count, p, cdf = 0, math.exp(-rate), math.exp(-rate)
    while u[0] > cdf and count < 10:
        count += 1
        p *= rate / count
        cdf += p
    year, mon = divmod(month_index, 12)
    first = dt.datetime(1970 + year, mon + 1, 1, tzinfo=BANGKOK)
    nxt = dt.datetime(1970 + year + (mon == 11), (mon + 1) % 12 + 1, 1, tzinfo=BANGKOK)
    span = (nxt - first).total_seconds()
    lo_min, hi_min = cfg.get("duration_min", [10, 240])
    out: list[tuple[float, float]] = []
    for i in range(count):
        start = first.timestamp() + float(u[1 + 2 * i]) * span
        length = 60.0 * (lo_min + (hi_min - lo_min) * float(u[2 + 2 * i]) ** 2)
        out.append((float(round(start)), float(round(start + length))))
    return out
