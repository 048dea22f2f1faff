"""Air-quality indices per hour: the Thai AQI (PCD, 2023) as primary, the US EPA AQI (2024) and NowCast as secondary.

Figures and rules, with their public sources: docs/reference.md#air-quality. Tables and categories:
:mod:`engine.aqi_tables`; unit conversions: :mod:`engine.aqi_units`; loops: :mod:`engine.aqi_kernels`.

Input is one or more hourly-mean series on a regular hourly grid: ``hour_start_us`` (int64 UTC epoch µs of each
hour's start, consecutive whole hours) and per pollutant an array ``[hour]`` (one station) or ``[hour, station]``,
NaN for a missing hour, in the store's canonical units (``pm25``/``pm10`` µg/m³, ``o3``/``no2``/``so2`` ppb,
``co`` ppm). Raw readings become hourly means with :func:`hourly_means`. A window ending at the first hours reaches
back before the series; those hours count as missing, so pass :data:`LOOKBACK_H` hours of history before the first
hour you want.

Per hour:

1. window average (trailing: the window ending with this hour): PM2.5 and PM10 24 h, O3 and CO 8 h, NO2 and SO2 1 h
   (PCD's Thai AQI table of 2023); NaN unless at least ``completeness`` of the window's hours are valid (default
   75 %, a setting: PCD's own rule is not published; docs/reference.md#averaging-and-completeness);
2. the average is brought to the table's precision (EPA truncates, EPA-454/B-24-002; PCD: ``thai_precision``,
   UNCONFIRMED) and looked up: I = (I_hi - I_lo) / (C_hi - C_lo) x (C - C_lo) + I_lo (EPA-454/B-24-002; the same
   formula in Thai AQI implementations), rounded half up to an integer;
3. the AQI is the highest sub-index, with the pollutant responsible (a tie goes to the first in :data:`POLLUTANTS`)
   and its category (PCD, "reading PM2.5 in Air4Thai": one AQI for six pollutants).

Values marked UNCONFIRMED in the reference are settings (:class:`AqiSettings`, :class:`RedBandRule`), never constants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from lccm.engine.aqi_kernels import kernel
from lccm.engine.aqi_tables import (
    EPA_CATEGORIES,
    EPA_TABLES,
    POLLUTANTS,
    THAI_COLOURS_HEX_DEFAULT,
    THAI_TABLES,
    BreakpointTable,
    Category,
    thai_categories,
)
from lccm.engine.aqi_units import ppm_from_ppb
from lccm.engine.counters import Impl
from lccm.engine.timebase import US_PER_H

__all__ = [
    "DEFAULT_SETTINGS",
    "EPA_AVERAGING_H",
    "LOOKBACK_H",
    "THAI_ABOVE_200_DEFAULT",
    "THAI_AVERAGING_H",
    "AqiResult",
    "AqiSettings",
    "HourlyMeans",
    "RedBandRule",
    "category_of",
    "epa_aqi",
    "epa_nowcast_aqi",
    "epa_o3_sub_index",
    "epa_so2_sub_index",
    "epa_sub_index",
    "hourly_means",
    "min_valid_hours",
    "moving_average",
    "nowcast",
    "thai_aqi",
    "thai_sub_index",
]

# PCD Thai AQI table of 2023 (docs/reference.md#averaging-and-completeness)
THAI_AVERAGING_H: Final = MappingProxyType({"pm25": 24, "pm10": 24, "o3": 8, "co": 8, "no2": 1, "so2": 1})
# EPA-454/B-24-002 (May 2024) and 40 CFR 58 Appendix G (docs/reference.md#us-epa-aqi)
EPA_AVERAGING_H: Final = MappingProxyType(
    {"pm25_24h": 24, "pm10_24h": 24, "o3_8h": 8, "o3_1h": 1, "co_8h": 8, "so2_1h": 1, "so2_24h": 24, "no2_1h": 1}
)
LOOKBACK_H: Final = 23
"""Hours of history a caller passes before the first hour it wants (the longest window, 24 h, minus one)."""

Precision = Literal["round_half_up", "truncate"]
_STEP_EPS: Final = 1e-6  # of one precision step: 0.054 ppm x 1000 = 53.99999999999999 must count as 54
_AQI_EPS: Final = 1e-9  # 25/15 x 0.3 = 0.49999999999999994 must round half up to 1


# ------------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True, slots=True)
class RedBandRule:
    """How a concentration in the Thai red band (AQI > 200, no upper breakpoint published) becomes a number.

    UNCONFIRMED for the 2023 table (docs/reference.md#thai-aqi). Kinds, all starting at 201 on the band's lower
    edge C_red:

    - ``"to_top"``: linear up to ``top_aqi`` at ``top_concentration``, the same line beyond it. Open-source Thai AQI
      code maps PM2.5 75.1-500 to 201-500; PCD's pre-2023 bulletins (as reported by Pattaya Today) fit 1 AQI per
      µg/m³ (106 -> 216, 136 -> 246 over a red edge of 91), i.e. ``top_concentration = C_red + (top_aqi - 201)``.
    - ``"extend"``: the slope of the 101-200 band carried on (no number invented).
    - ``"cap"``: 201 ("above 200"): the category is right, the number carries no more information.
    """

    kind: Literal["to_top", "extend", "cap"] = "extend"
    top_concentration: float = math.nan
    top_aqi: float = 500.0

    def __post_init__(self) -> None:
        if self.kind not in ("to_top", "extend", "cap"):
            raise ValueError(f"unknown red-band rule {self.kind!r}: expected to_top, extend or cap")
        if self.kind == "to_top" and not (math.isfinite(self.top_concentration) and self.top_aqi > 201):
            raise ValueError("a to_top red-band rule needs a finite top_concentration and top_aqi > 201")


THAI_ABOVE_200_DEFAULT: Final[Mapping[str, RedBandRule]] = MappingProxyType(
    {
        "pm25": RedBandRule("to_top", top_concentration=500.0, top_aqi=500.0),  # 75.1-500 -> 201-500, as open code
        "pm10": RedBandRule("extend"),  # no source gives a top for the other pollutants
        "o3": RedBandRule("extend"),
        "co": RedBandRule("extend"),
        "no2": RedBandRule("extend"),
        "so2": RedBandRule("extend"),
    }
)


@dataclass(frozen=True)
class AqiSettings:
    """Settings of the indices; each default is documented with its source or marked UNCONFIRMED.

    - ``completeness``: least fraction of a window's hours that must be valid, default 0.75 (US EPA/AirNow take 18
      of 24 hours for a daily PM average). PCD's own rule is UNCONFIRMED (docs/reference.md#averaging-and-completeness).
      A 1-h window needs its hour.
    - ``thai_precision``: how a Thai average is brought to the table's precision before the lookup (PM2.5 and CO to
      0.1, the others to 1: the band gaps 15.0/15.1 show it) - ``"round_half_up"`` (default) or ``"truncate"``
      (EPA's way). UNCONFIRMED: no source states PCD's rule.
    - ``thai_above_200``: a :class:`RedBandRule` per pollutant (missing ones take the default). UNCONFIRMED.
    - ``thai_colours_hex``: colour codes of the five Thai categories. UNCONFIRMED (docs/reference.md#thai-aqi).
    - ``epa_o3_1h_always``: also compute the 1-h O3 index where 1-h O3 >= 0.125 ppm and report the higher of the two
      (EPA allows this where 1-h is more precautionary, 40 CFR 58 Appendix G); default False, EPA's general rule:
      8-h O3, and 1-h only where the 8-h average is above the 8-h table (AQI > 300).
    - ``epa_above_500``: above the top of an EPA table ("beyond the AQI"): ``"extend"`` the last band's line
      (default; the number keeps rising for alerts) or ``"cap"`` at 500. The category stays Hazardous.
    """

    completeness: float = 0.75
    thai_precision: Precision = "round_half_up"
    thai_above_200: Mapping[str, RedBandRule] = field(default_factory=lambda: dict(THAI_ABOVE_200_DEFAULT))
    thai_colours_hex: tuple[str, ...] = THAI_COLOURS_HEX_DEFAULT
    epa_o3_1h_always: bool = False
    epa_above_500: Literal["extend", "cap"] = "extend"

    def __post_init__(self) -> None:
        if not (0.0 < self.completeness <= 1.0):
            raise ValueError(f"completeness must be in (0, 1], got {self.completeness}")
        if self.thai_precision not in ("round_half_up", "truncate"):
            raise ValueError(f"thai_precision must be round_half_up or truncate, got {self.thai_precision!r}")
        if self.epa_above_500 not in ("extend", "cap"):
            raise ValueError(f"epa_above_500 must be extend or cap, got {self.epa_above_500!r}")
        unknown = set(self.thai_above_200) - set(POLLUTANTS)
        if unknown:
            raise ValueError(f"thai_above_200 has unknown pollutants {sorted(unknown)}")
        for p, rule in self.thai_above_200.items():
            edge = THAI_TABLES[p].c_lo[-1]
            if rule.kind == "to_top" and not rule.top_concentration > edge:
                raise ValueError(f"thai_above_200[{p!r}]: top_concentration must be above the red edge {edge}")
        thai_categories(self.thai_colours_hex)  # validates the colour codes

    def red_band_rule(self, pollutant: str) -> RedBandRule:
        """The red-band rule of a pollutant (the default where the settings do not name it)."""
        return self.thai_above_200.get(pollutant, THAI_ABOVE_200_DEFAULT[pollutant])


DEFAULT_SETTINGS: Final = AqiSettings()


# ------------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class AqiResult:
    """Per hour (and station): window averages, sub-indices, the AQI, the pollutant responsible, the category.

    Arrays are ``[hour]`` for one station, ``[hour, station]`` for several. ``average`` and ``valid_hours`` are keyed
    by series (``"pm25_24h"``, ``"o3_1h"``, ``"pm25_nowcast"``); ``sub_index`` by pollutant, in ``pollutants`` order.
    Sub-indices and ``aqi`` are whole numbers held as float64, NaN for none; ``responsible`` indexes ``pollutants``
    and ``category`` indexes ``categories`` (int8, -1 for none).
    """

    index: str  # "thai_pcd_2023", "us_epa_2024", "us_epa_2024_nowcast"
    hour_start_us: np.ndarray
    pollutants: tuple[str, ...]
    average: dict[str, np.ndarray]
    valid_hours: dict[str, np.ndarray]
    sub_index: dict[str, np.ndarray]
    aqi: np.ndarray
    responsible: np.ndarray
    category: np.ndarray
    categories: tuple[Category, ...]

    def responsible_names(self) -> np.ndarray:
        """The responsible pollutant's key per hour ("" where there is no AQI)."""
        names = np.array([*self.pollutants, ""], dtype=object)
        return names[np.where(self.responsible >= 0, self.responsible, len(self.pollutants))]


@dataclass(frozen=True, slots=True)
class HourlyMeans:
    """Hourly means of raw readings: ``[hour]`` (one station) or ``[hour, station]``."""

    hour_start_us: np.ndarray  # int64 [n_hours]
    mean: np.ndarray  # float64, NaN where count < min_count
    sum: np.ndarray  # float64
    count: np.ndarray  # int64
    outside: int  # readings outside the grid: not in any of these hours
    not_finite: int  # NaN / inf readings: refused, counted here so the caller can report them


# ------------------------------------------------------------------------------------------------ input checking
def _check_grid(hour_start_us: np.ndarray) -> np.ndarray:
    grid = np.ascontiguousarray(hour_start_us, dtype=np.int64)
    if grid.ndim != 1 or grid.shape[0] == 0:
        raise ValueError("hour_start_us must be a non-empty 1-D array")
    if np.any(grid % US_PER_H != 0):
        raise ValueError("hour_start_us must be whole UTC hours (epoch µs divisible by 3,600,000,000)")
    if np.any(np.diff(grid) != US_PER_H):
        raise ValueError("hour_start_us must be consecutive hours (a regular hourly grid; missing hours are NaN)")
    return grid


def _check_series(name: str, values: ArrayLike, n_hours: int) -> np.ndarray:
    """A series as a contiguous float64 ``[hour, station]`` array; NaN allowed, negative and infinite refused."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n_hours:
        raise ValueError(f"{name}: expected shape ({n_hours},) or ({n_hours}, n_stations), got {np.shape(values)}")
    bad = np.isinf(arr) | (arr < 0)  # NaN compares False: kept as missing
    if bad.any():
        h, s = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}: value {arr[h, s]} at hour {h}, station {s} is not a concentration (negative or infinite)"
        )
    return np.ascontiguousarray(arr)


def _check_hourly(
    hour_start_us: np.ndarray, hourly: Mapping[str, ArrayLike], allowed: tuple[str, ...]
) -> tuple[np.ndarray, dict[str, np.ndarray], bool]:
    grid = _check_grid(hour_start_us)
    unknown = set(hourly) - set(allowed)
    if unknown:
        raise ValueError(f"unknown pollutants {sorted(unknown)}: expected some of {list(allowed)}")
    if not hourly:
        raise ValueError("no pollutant series given")
    series = {p: _check_series(p, hourly[p], grid.shape[0]) for p in allowed if p in hourly}
    shapes = {a.shape for a in series.values()}
    if len(shapes) != 1:
        raise ValueError(f"pollutant series differ in shape: {sorted(shapes)}")
    one_station = all(np.ndim(hourly[p]) == 1 for p in series)
    return grid, series, one_station


def _out(a: np.ndarray, one_station: bool) -> np.ndarray:
    return a[:, 0] if one_station else a


# ----------------------------------------------------------------------------------------- averaging and NowCast
def min_valid_hours(window_h: int, completeness: float) -> int:
    """Valid hours a window needs: ceil(completeness x window), at least 1 (0.75 x 24 = 18, x 8 = 6, x 1 = 1)."""
    if window_h < 1:
        raise ValueError(f"window must be at least 1 hour, got {window_h}")
    if not (0.0 < completeness <= 1.0):
        raise ValueError(f"completeness must be in (0, 1], got {completeness}")
    return max(1, math.ceil(completeness * window_h - 1e-9))


def _moving(series: np.ndarray, window_h: int, completeness: float, impl: Impl) -> tuple[np.ndarray, np.ndarray]:
    mean = np.empty(series.shape)
    count = np.empty(series.shape, np.int64)
    kernel(impl, "moving_mean")(series, window_h, min_valid_hours(window_h, completeness), mean, count)
    return mean, count


def moving_average(
    hourly: np.ndarray, window_h: int, *, completeness: float = 0.75, impl: Impl = "numba"
) -> tuple[np.ndarray, np.ndarray]:
    """Trailing ``window_h``-hour mean of an hourly series and the count of valid hours in each window.

    The mean is NaN where fewer than :func:`min_valid_hours` hours are valid. Shape as the input.
    """
    arr = np.asarray(hourly)
    series = _check_series("hourly", arr, arr.shape[0] if arr.ndim else 0)
    mean, count = _moving(series, window_h, completeness, impl)
    one = arr.ndim == 1
    return _out(mean, one), _out(count, one)


def nowcast(
    hourly: np.ndarray,
    *,
    hours: int = 12,
    min_weight: float = 0.5,
    recent_hours: int = 3,
    recent_min_valid: int = 2,
    impl: Impl = "numba",
) -> tuple[np.ndarray, np.ndarray]:
    """EPA NowCast of an hourly PM series (µg/m³) and the count of valid hours in each window.

    Defaults are EPA's PM NowCast (docs/reference.md#nowcast; as in MazamaScience air-monitor-algorithms,
    nowcast.js): the 12 latest hours, weight factor min/max floored at 0.5, at least 2 valid values among the 3
    latest hours. The AirMonitor R package's other variants ("pmAsian": 3 h, weight 0.1) are the same computation
    with other parameters. Unrounded; the EPA lookup truncates it to the table's precision.
    """
    if hours < 1 or recent_hours < 1 or not (1 <= recent_min_valid <= recent_hours):
        raise ValueError("NowCast needs hours >= 1 and 1 <= recent_min_valid <= recent_hours")
    if not (0.0 <= min_weight <= 1.0):
        raise ValueError(f"min_weight must be in [0, 1], got {min_weight}")
    arr = np.asarray(hourly)
    series = _check_series("hourly", arr, arr.shape[0] if arr.ndim else 0)
    out = np.empty(series.shape)
    count = np.empty(series.shape, np.int64)
    kernel(impl, "nowcast")(series, hours, float(min_weight), recent_hours, recent_min_valid, out, count)
    one = arr.ndim == 1
    return _out(out, one), _out(count, one)


def hourly_means(
    ts_us: np.ndarray,
    value: np.ndarray,
    start_us: int,
    n_hours: int,
    *,
    station_idx: np.ndarray | None = None,
    n_stations: int | None = None,
    min_count: int = 1,
    impl: Impl = "numba",
) -> HourlyMeans:
    """Raw readings (any order) to hourly means on the grid ``start_us + h x 1 h``, h = 0 .. n_hours - 1.

    ``min_count``: readings an hour needs for a mean (a setting; default 1 - set it from the device's cadence, e.g.
    45 for 1-minute data at 75 %). With ``station_idx`` (int, 0 .. n_stations - 1 per reading) the outputs are
    ``[hour, station]``; without, ``[hour]``. Readings outside the grid and non-finite values are counted, not used.
    """
    if start_us % US_PER_H != 0:
        raise ValueError("start_us must be a whole UTC hour")
    if n_hours < 1 or min_count < 1:
        raise ValueError("n_hours and min_count must be at least 1")
    ts = np.ascontiguousarray(ts_us, dtype=np.int64)
    val = np.ascontiguousarray(value, dtype=np.float64)
    one = station_idx is None
    if one:
        st = np.zeros(ts.shape, np.int32)
        n_st = 1
    else:
        st = np.ascontiguousarray(station_idx, dtype=np.int32)
        if n_stations is None:
            raise ValueError("n_stations is required with station_idx")
        n_st = n_stations
    if not (ts.ndim == 1 and ts.shape == val.shape == st.shape):
        raise ValueError("ts_us, value (and station_idx) must be 1-D arrays of one length")
    if st.size and (st.min() < 0 or st.max() >= n_st):
        raise ValueError(f"station index outside 0..{n_st - 1}")
    total = np.zeros((n_hours, n_st))
    count = np.zeros((n_hours, n_st), np.int64)
    outside, not_finite = kernel(impl, "hourly")(ts, val, st, int(start_us), int(n_hours), total, count)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count >= min_count, total / np.maximum(count, 1), np.nan)
    grid = int(start_us) + US_PER_H * np.arange(n_hours, dtype=np.int64)
    return HourlyMeans(grid, _out(mean, one), _out(total, one), _out(count, one), int(outside), int(not_finite))


# ------------------------------------------------------------------------------------------------------- lookups
def _steps(x: np.ndarray, decimals: int, how: Precision) -> np.ndarray:
    """x as a whole number of the table's precision steps (truncated or rounded half up); NaN stays NaN."""
    y = x * 10.0**decimals
    return np.floor(y + (_STEP_EPS if how == "truncate" else 0.5 + _STEP_EPS))


def _interpolate(
    steps: np.ndarray, table: BreakpointTable, *, above: Literal["extend", "cap"], red: RedBandRule | None = None
) -> np.ndarray:
    """Unrounded index of concentrations given in precision steps; NaN for NaN and below the first band."""
    scale = 10.0**table.decimals
    x = steps / scale
    lo_steps = np.array([round(c * scale) for c in table.c_lo], dtype=np.float64)
    out = np.full(steps.shape, np.nan)
    known = ~np.isnan(steps)
    band = np.full(steps.shape, -1)
    band[known] = np.searchsorted(lo_steps, steps[known], side="right") - 1
    last = len(table.c_lo) - 1
    for k in range(last + 1):
        m = band == k
        if not m.any():
            continue
        c_lo, c_hi, i_lo, i_hi = table.c_lo[k], table.c_hi[k], table.i_lo[k], table.i_hi[k]
        if math.isinf(c_hi):  # the Thai red band: no upper breakpoint, a rule decides
            out[m] = _red_band(x[m], table, red or RedBandRule())
            continue
        out[m] = (i_hi - i_lo) / (c_hi - c_lo) * (x[m] - c_lo) + i_lo
        if k == last and above == "cap":
            out[m] = np.minimum(out[m], i_hi)
    return out


def _red_band(x: np.ndarray, table: BreakpointTable, rule: RedBandRule) -> np.ndarray:
    c_red, i_red = table.c_lo[-1], table.i_lo[-1]
    if rule.kind == "cap":
        return np.full(x.shape, float(i_red))
    if rule.kind == "to_top":
        slope = (rule.top_aqi - i_red) / (rule.top_concentration - c_red)
    else:  # extend: the 101-200 band's slope
        slope = (table.i_hi[-2] - table.i_lo[-2]) / (table.c_hi[-2] - table.c_lo[-2])
    return i_red + slope * (x - c_red)


def _round_aqi(index: np.ndarray) -> np.ndarray:
    """Round half up to a whole number (EPA-454/B-24-002: 'rounded to the nearest whole number')."""
    return np.floor(index + 0.5 + _AQI_EPS)


def _concentration(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.array(values, dtype=np.float64, ndmin=1)
    if np.any(np.isinf(arr) | (arr < 0)):
        raise ValueError(f"{name}: concentrations must be >= 0 (NaN = missing)")
    return arr


def thai_sub_index(pollutant: str, concentration: ArrayLike, settings: AqiSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """Thai AQI sub-index of window averages (the table's unit: µg/m³ PM, ppb O3/NO2/SO2, ppm CO); NaN for NaN."""
    try:
        table = THAI_TABLES[pollutant]
    except KeyError:
        raise ValueError(f"unknown pollutant {pollutant!r}: expected one of {list(POLLUTANTS)}") from None
    c = _concentration(concentration, pollutant)
    steps = _steps(c, table.decimals, settings.thai_precision)
    return _round_aqi(_interpolate(steps, table, above="extend", red=settings.red_band_rule(pollutant)))


def _epa_table(key: str) -> BreakpointTable:
    try:
        return EPA_TABLES[key]
    except KeyError:
        raise ValueError(f"unknown EPA series {key!r}: expected one of {sorted(EPA_TABLES)}") from None


def _epa_steps(key: str, concentration: ArrayLike) -> np.ndarray:
    """Store units (O3 in ppb) -> the table's unit, truncated to its precision (EPA-454/B-24-002)."""
    table = _epa_table(key)
    c = _concentration(concentration, key)
    if table.unit == "ppm" and table.pollutant == "o3":
        c = ppm_from_ppb(c)
    return _steps(c, table.decimals, "truncate")


def epa_sub_index(key: str, concentration: ArrayLike, settings: AqiSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """EPA sub-index of one table (``"pm25_24h"``, ``"o3_8h"``, ``"so2_24h"`` ...) in store units (O3 in ppb).

    Concentrations are truncated to the table's precision (EPA-454/B-24-002); below the table's first band (1-h O3 under
    0.125 ppm, 24-h SO2 under 305 ppb) the result is NaN; above its top, ``settings.epa_above_500`` (the 8-h O3 and
    1-h SO2 tables stop at 300 and 200: see :func:`epa_o3_sub_index`, :func:`epa_so2_sub_index`).
    """
    table = _epa_table(key)
    above = "cap" if key in ("o3_8h", "so2_1h") else settings.epa_above_500
    return _round_aqi(_interpolate(_epa_steps(key, concentration), table, above=above))


def epa_o3_sub_index(
    o3_8h_ppb: ArrayLike, o3_1h_ppb: ArrayLike, settings: AqiSettings = DEFAULT_SETTINGS
) -> np.ndarray:
    """EPA ozone sub-index from the 8-h and the 1-h average (ppb) (40 CFR 58 Appendix G; docs/reference.md#us-epa-aqi).

    8-h O3 does not define AQI above 300: above the 8-h table (> 0.200 ppm) the 8-h index is held at 300 and the
    1-h index, where higher, gives the value. With ``epa_o3_1h_always`` the higher of the two is reported at every
    hour where 1-h O3 reaches the 1-h table (>= 0.125 ppm).
    """
    i8 = epa_sub_index("o3_8h", o3_8h_ppb, settings)
    i1 = epa_sub_index("o3_1h", o3_1h_ppb, settings)
    i8, i1 = np.broadcast_arrays(i8, i1)
    over_8h = _epa_steps("o3_8h", o3_8h_ppb) > round(EPA_TABLES["o3_8h"].c_hi[-1] * 1000)
    over_8h = np.broadcast_to(over_8h, i8.shape)
    use_1h = over_8h | settings.epa_o3_1h_always
    return np.where(use_1h, np.fmax(i8, i1), i8)


def epa_so2_sub_index(
    so2_1h_ppb: ArrayLike, so2_24h_ppb: ArrayLike, settings: AqiSettings = DEFAULT_SETTINGS
) -> np.ndarray:
    """EPA SO2 sub-index from the 1-h and the 24-h average (ppb) (40 CFR 58 Appendix G; docs/reference.md#us-epa-aqi).

    1-h SO2 does not define AQI of 200 or more: where the 1-h value is above the 1-h table (>= 305 ppb) the index is
    200 or, where the 24-h average reaches its table (>= 305 ppb), the 24-h index if higher. A missing 24-h
    average there leaves 200: the 1-h value alone proves at least that.
    """
    i1 = epa_sub_index("so2_1h", so2_1h_ppb, settings)
    i24 = epa_sub_index("so2_24h", so2_24h_ppb, settings)
    i1, i24 = np.broadcast_arrays(i1, i24)
    over_1h = np.broadcast_to(_epa_steps("so2_1h", so2_1h_ppb) > EPA_TABLES["so2_1h"].c_hi[-1], i1.shape)
    return np.where(over_1h, np.fmax(i1, i24), i1)


def category_of(aqi: np.ndarray, categories: tuple[Category, ...]) -> np.ndarray:
    """Index (int8) of the category of each whole-number AQI; -1 where the AQI is NaN."""
    a = np.asarray(aqi, dtype=np.float64)
    upper = np.array([c.aqi_hi for c in categories[:-1]], dtype=np.float64)
    cat = np.searchsorted(upper, np.where(np.isnan(a), 0.0, a), side="left").astype(np.int8)
    return np.where(np.isnan(a), np.int8(-1), cat).astype(np.int8)


def _overall(sub: dict[str, np.ndarray], pollutants: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Highest sub-index and the first pollutant reaching it (-1 where all are NaN)."""
    stack = np.stack([sub[p] for p in pollutants])
    filled = np.where(np.isnan(stack), -np.inf, stack)
    responsible = np.argmax(filled, axis=0).astype(np.int8)
    best = np.max(filled, axis=0)
    none = np.isneginf(best)
    return np.where(none, np.nan, best), np.where(none, np.int8(-1), responsible).astype(np.int8)


def _result(
    index: str,
    grid: np.ndarray,
    one: bool,
    average: dict[str, np.ndarray],
    valid: dict[str, np.ndarray],
    sub: dict[str, np.ndarray],
    categories: tuple[Category, ...],
) -> AqiResult:
    pollutants = tuple(p for p in POLLUTANTS if p in sub)
    aqi, responsible = _overall(sub, pollutants)
    return AqiResult(
        index=index,
        hour_start_us=grid,
        pollutants=pollutants,
        average={k: _out(v, one) for k, v in average.items()},
        valid_hours={k: _out(v, one) for k, v in valid.items()},
        sub_index={p: _out(sub[p], one) for p in pollutants},
        aqi=_out(aqi, one),
        responsible=_out(responsible, one),
        category=_out(category_of(aqi, categories), one),
        categories=categories,
    )


# ------------------------------------------------------------------------------------------------------- indices
def thai_aqi(
    hour_start_us: np.ndarray,
    hourly: Mapping[str, ArrayLike],
    settings: AqiSettings = DEFAULT_SETTINGS,
    *,
    impl: Impl = "numba",
) -> AqiResult:
    """Thai AQI (PCD table of 1 June 2023) per hour from hourly means of any of ``pm25 pm10 o3 co no2 so2``.

    Window averages per :data:`THAI_AVERAGING_H` with ``settings.completeness``; sub-indices by
    :func:`thai_sub_index`; AQI = highest sub-index (PCD); categories :func:`engine.aqi_tables.thai_categories`.
    """
    grid, series, one = _check_hourly(hour_start_us, hourly, POLLUTANTS)
    average: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    sub: dict[str, np.ndarray] = {}
    for p, values in series.items():
        key = THAI_TABLES[p].key
        average[key], valid[key] = _moving(values, THAI_AVERAGING_H[p], settings.completeness, impl)
        sub[p] = thai_sub_index(p, average[key], settings)
    return _result("thai_pcd_2023", grid, one, average, valid, sub, thai_categories(settings.thai_colours_hex))


def epa_aqi(
    hour_start_us: np.ndarray,
    hourly: Mapping[str, ArrayLike],
    settings: AqiSettings = DEFAULT_SETTINGS,
    *,
    impl: Impl = "numba",
) -> AqiResult:
    """US EPA AQI (2024 table) per hour on trailing windows: PM 24 h, O3 8 h (+1 h), CO 8 h, NO2 1 h, SO2 1 h (+24 h).

    Concentrations truncated to the table's precision (EPA-454/B-24-002); O3 per :func:`epa_o3_sub_index`, SO2 per
    :func:`epa_so2_sub_index`. For the hourly PM figure EPA reports, see :func:`epa_nowcast_aqi`.
    """
    grid, series, one = _check_hourly(hour_start_us, hourly, POLLUTANTS)
    average: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    for p, values in series.items():
        for key, window in EPA_AVERAGING_H.items():
            if key.startswith(p + "_"):
                average[key], valid[key] = _moving(values, window, settings.completeness, impl)
    sub: dict[str, np.ndarray] = {}
    for p in series:
        if p == "o3":
            sub[p] = epa_o3_sub_index(average["o3_8h"], average["o3_1h"], settings)
        elif p == "so2":
            sub[p] = epa_so2_sub_index(average["so2_1h"], average["so2_24h"], settings)
        else:
            key = next(k for k in EPA_AVERAGING_H if k.startswith(p + "_"))
            sub[p] = epa_sub_index(key, average[key], settings)
    return _result("us_epa_2024", grid, one, average, valid, sub, EPA_CATEGORIES)


def epa_nowcast_aqi(
    hour_start_us: np.ndarray,
    hourly: Mapping[str, ArrayLike],
    settings: AqiSettings = DEFAULT_SETTINGS,
    *,
    hours: int = 12,
    min_weight: float = 0.5,
    impl: Impl = "numba",
) -> AqiResult:
    """EPA AQI of the NowCast of ``pm25`` and/or ``pm10`` (the 24-h tables): an early-warning overlay.

    PCD publishes 24-h moving averages, not NowCast (docs/reference.md#nowcast): label this as an overlay, never as
    the Thai AQI.
    """
    grid, series, one = _check_hourly(hour_start_us, hourly, ("pm25", "pm10"))
    average: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    sub: dict[str, np.ndarray] = {}
    for p, values in series.items():
        key = f"{p}_nowcast"
        average[key], valid[key] = nowcast(values, hours=hours, min_weight=min_weight, impl=impl)
        sub[p] = epa_sub_index(f"{p}_24h", average[key], settings)
    return _result("us_epa_2024_nowcast", grid, one, average, valid, sub, EPA_CATEGORIES)
