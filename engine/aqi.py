"""Air-quality indices per hour: the Thai AQI (PCD, 2023) as primary, the US EPA AQI (2024) and the EPA AQI of
current conditions (NowCast for PM and O3, as AirNow reports it) as secondary.

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
   (PCD's Thai AQI table of 2023); complete when at least ``completeness`` of the window's hours are valid (default
   75 %, a setting: PCD's own rule is not published; docs/reference.md#averaging-and-completeness). Below it the
   Thai sub-index is withheld, or with ``thai_incomplete="partial"`` computed from the hours present and marked
   incomplete; the EPA index follows EPA's 75 % rule (withheld below it). The EPA index of current conditions uses
   the NowCast for PM (12 h, weight floor 0.5) and O3 (8 h, no floor), valid with 2 of the 3 latest hours;
2. the average is brought to the table's precision (EPA truncates, EPA-454/B-24-002; PCD: ``thai_precision``,
   UNCONFIRMED) and looked up: I = (I_hi - I_lo) / (C_hi - C_lo) x (C - C_lo) + I_lo (EPA-454/B-24-002; the same
   formula in Thai AQI implementations), rounded half up to an integer;
3. the AQI is the highest sub-index, with the pollutant responsible (a tie goes to the first in :data:`POLLUTANTS`)
   and its category (PCD, "reading PM2.5 in Air4Thai": one AQI for six pollutants).

**Coverage and status.** Every sub-index carries its coverage (:class:`Coverage`: hours with data in its window,
the window, the hours its rule needs) and a status: ``complete``, ``incomplete`` (computed from fewer hours than
the rule needs) or ``withheld`` (not computed). A pollutant counts as *measured* at a station while it has data
within ``measured_within_h`` hours; a measured pollutant without a sub-index is *missing*. The overall status is
``complete`` when every measured pollutant's sub-index is complete, ``withheld`` when no sub-index could be
computed, else ``incomplete``: the AQI is then the highest of the sub-indices there are, a lower bound, and
:func:`describe` names what is missing. Nothing drops out silently.

Values marked UNCONFIRMED in the reference are settings (:class:`AqiSettings`, :class:`RedBandRule`), never constants.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from lccm.engine.aqi_kernels import kernel
from lccm.engine.aqi_tables import (
    EPA_CATEGORIES,
    EPA_TABLES,
    POLLUTANT_NAMES,
    POLLUTANTS,
    THAI_ABOVE_200_DEFAULT,
    THAI_COLOURS_HEX_DEFAULT,
    THAI_TABLES,
    BreakpointTable,
    Category,
    IncompletePolicy,
    Precision,
    RedBandRule,
    check_red_band_rules,
    thai_categories,
)
from lccm.engine.aqi_units import ppm_from_ppb
from lccm.engine.counters import Impl
from lccm.engine.timebase import US_PER_H

__all__ = [
    "COMPLETE",
    "DEFAULT_SETTINGS",
    "EPA_AVERAGING_H",
    "INCOMPLETE",
    "LOOKBACK_H",
    "NOT_MEASURED",
    "O3_NOWCAST",
    "PM_NOWCAST",
    "STATUSES",
    "THAI_ABOVE_200_DEFAULT",
    "THAI_AVERAGING_H",
    "WITHHELD",
    "AqiResult",
    "AqiSettings",
    "Coverage",
    "HourStatus",
    "HourlyMeans",
    "NowcastRule",
    "RedBandRule",
    "category_of",
    "describe",
    "epa_aqi",
    "epa_nowcast_aqi",
    "epa_o3_sub_index",
    "epa_so2_sub_index",
    "epa_sub_index",
    "hourly_means",
    "measured_hours",
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

_STEP_EPS: Final = 1e-6  # of one precision step: 0.054 ppm x 1000 = 53.99999999999999 must count as 54
_AQI_EPS: Final = 1e-9  # 25/15 x 0.3 = 0.49999999999999994 must round half up to 1


# ------------------------------------------------------------------------------------------------------ statuses
STATUSES: Final = ("complete", "incomplete", "withheld")
"""Status names; the int8 codes below index this tuple (:data:`NOT_MEASURED` = -1: the pollutant is not measured)."""
NOT_MEASURED: Final = -1
COMPLETE: Final = 0
INCOMPLETE: Final = 1
WITHHELD: Final = 2


@dataclass(frozen=True, slots=True)
class NowcastRule:
    """One NowCast variant (docs/reference.md#nowcast): the hours it weighs, the weight floor, and how many of the
    latest hours must have data."""

    hours: int
    min_weight: float
    recent_hours: int = 3
    recent_min_valid: int = 2


PM_NOWCAST: Final = NowcastRule(hours=12, min_weight=0.5)  # EPA/AirNow PM NowCast
O3_NOWCAST: Final = NowcastRule(hours=8, min_weight=0.0)  # AirNow ozone NowCast of 21 April 2016: no weight floor


# ------------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class AqiSettings:
    """Settings of the indices; each default is documented with its source or marked UNCONFIRMED.

    - ``completeness``: least fraction of a window's hours that must be valid, default 0.75 (US EPA/AirNow take 18
      of 24 hours for a daily PM average). PCD's own rule is UNCONFIRMED (docs/reference.md#averaging-and-completeness).
      A 1-h window needs its hour.
    - ``thai_incomplete``: below ``completeness`` a Thai sub-index is ``"withhold"``-en (default) or computed from
      the hours present, ``"partial"``, and marked incomplete. PCD publishes no rule: UNCONFIRMED.
    - ``measured_within_h``: a pollutant with data at a station within this many hours counts as measured there;
      while its sub-index is withheld the overall index names it as missing (default 168, a week; at least 24).
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
    thai_incomplete: IncompletePolicy = "withhold"
    measured_within_h: int = 168
    thai_precision: Precision = "round_half_up"
    thai_above_200: Mapping[str, RedBandRule] = field(default_factory=lambda: dict(THAI_ABOVE_200_DEFAULT))
    thai_colours_hex: tuple[str, ...] = THAI_COLOURS_HEX_DEFAULT
    epa_o3_1h_always: bool = False
    epa_above_500: Literal["extend", "cap"] = "extend"

    def __post_init__(self) -> None:
        if not (0.0 < self.completeness <= 1.0):
            raise ValueError(f"completeness must be in (0, 1], got {self.completeness}")
        if self.thai_incomplete not in ("withhold", "partial"):
            raise ValueError(f"thai_incomplete must be withhold or partial, got {self.thai_incomplete!r}")
        if not self.measured_within_h >= LOOKBACK_H + 1:
            raise ValueError(f"measured_within_h must be at least {LOOKBACK_H + 1} (the longest window), got "
                             f"{self.measured_within_h}")  # fmt: skip
        if self.thai_precision not in ("round_half_up", "truncate"):
            raise ValueError(f"thai_precision must be round_half_up or truncate, got {self.thai_precision!r}")
        if self.epa_above_500 not in ("extend", "cap"):
            raise ValueError(f"epa_above_500 must be extend or cap, got {self.epa_above_500!r}")
        check_red_band_rules(self.thai_above_200)
        thai_categories(self.thai_colours_hex)  # validates the colour codes

    def red_band_rule(self, pollutant: str) -> RedBandRule:
        """The red-band rule of a pollutant (the default where the settings do not name it)."""
        return self.thai_above_200.get(pollutant, THAI_ABOVE_200_DEFAULT[pollutant])


DEFAULT_SETTINGS: Final = AqiSettings()


# ------------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class Coverage:
    """How one sub-index's window is covered at each hour, against the rule that makes it complete.

    The rule: at least ``needed`` of the latest ``of_latest_h`` hours have data - an average needs
    ceil(completeness x window) of its ``window_h`` hours (``of_latest_h == window_h``), a NowCast 2 of the 3 latest.
    ``hours_with_data`` counts the window's hours with data, ``latest_with_data`` those among the latest
    ``of_latest_h``; ``status`` is :data:`COMPLETE`, :data:`INCOMPLETE` (computed from fewer hours than the rule
    needs), :data:`WITHHELD` (not computed) or :data:`NOT_MEASURED` (int8). Arrays shaped like the result's.
    """

    series: str  # the series the sub-index is looked up from: "pm25_24h", "o3_8h", "pm25_nowcast" ...
    window_h: int
    needed: int
    of_latest_h: int
    hours_with_data: np.ndarray
    latest_with_data: np.ndarray
    status: np.ndarray


@dataclass(frozen=True, slots=True)
class AqiResult:
    """Per hour (and station): window averages, sub-indices with their coverage, the AQI, the pollutant responsible,
    the category and the status.

    Arrays are ``[hour]`` for one station, ``[hour, station]`` for several. ``average`` and ``valid_hours`` are keyed
    by series (``"pm25_24h"``, ``"o3_1h"``, ``"pm25_nowcast"``); ``sub_index`` and ``coverage`` by pollutant, in
    ``pollutants`` order. Sub-indices and ``aqi`` are whole numbers held as float64, NaN for none; ``responsible``
    indexes ``pollutants`` and ``category`` indexes ``categories`` (int8, -1 for none). ``status`` (int8) is the
    overall status: :data:`COMPLETE` when every measured pollutant's sub-index is complete, :data:`WITHHELD` when
    no sub-index could be computed, :data:`INCOMPLETE` otherwise (``aqi`` is then a lower bound), and
    :data:`NOT_MEASURED` where no pollutant is measured. :func:`describe` turns one hour into words.
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
    coverage: dict[str, Coverage]
    status: np.ndarray

    def responsible_names(self) -> np.ndarray:
        """The responsible pollutant's key per hour ("" where there is no AQI)."""
        names = np.array([*self.pollutants, ""], dtype=object)
        return names[np.where(self.responsible >= 0, self.responsible, len(self.pollutants))]


@dataclass(frozen=True, slots=True)
class HourStatus:
    """One hour of one station in words and numbers: what the stored row and the API carry beside the AQI.

    ``coverage`` has an entry per measured pollutant: ``series``, ``status`` (a name of :data:`STATUSES`),
    ``window_h``, ``hours_with_data``, ``needed``, ``of_latest_h``, ``latest_with_data`` (see :class:`Coverage`).
    ``missing`` lists the measured pollutants whose sub-index is withheld; ``reason`` says in words what is
    incomplete or withheld and why (None when complete)."""

    status: str
    missing: tuple[str, ...]
    coverage: dict[str, dict[str, int | str]]
    reason: str | None


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


def _moving(series: np.ndarray, window_h: int, min_count: int, impl: Impl) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean (NaN below ``min_count`` valid hours) and the count of valid hours, ``[hour, station]``."""
    mean = np.empty(series.shape)
    count = np.empty(series.shape, np.int64)
    kernel(impl, "moving_mean")(series, window_h, min_count, mean, count)
    return mean, count


def moving_average(
    hourly: np.ndarray, window_h: int, *, completeness: float = 0.75, impl: Impl = "numba"
) -> tuple[np.ndarray, np.ndarray]:
    """Trailing ``window_h``-hour mean of an hourly series and the count of valid hours in each window.

    The mean is NaN where fewer than :func:`min_valid_hours` hours are valid. Shape as the input.
    """
    arr = np.asarray(hourly)
    series = _check_series("hourly", arr, arr.shape[0] if arr.ndim else 0)
    mean, count = _moving(series, window_h, min_valid_hours(window_h, completeness), impl)
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


# --------------------------------------------------------------------------------------------- coverage and status
def measured_hours(
    grid: np.ndarray,
    series: np.ndarray,
    within_h: int,
    seen_before_us: ArrayLike | None = None,
    *,
    impl: Impl = "numba",
) -> np.ndarray:
    """Where a pollutant counts as measured: a valid hour within the ``within_h`` hours ending at each hour, or
    (``seen_before_us``: the start of its latest hour with data before the grid, per station, NaN for none) one
    before the grid that recent. ``series`` is ``[hour, station]``; so is the result (bool)."""
    mean = np.empty(series.shape)
    count = np.empty(series.shape, np.int64)
    kernel(impl, "moving_mean")(series, within_h, 1, mean, count)
    out = count > 0
    if seen_before_us is not None:
        seen = np.broadcast_to(np.asarray(seen_before_us, dtype=np.float64), series.shape[1:])
        with np.errstate(invalid="ignore"):
            out |= (grid[:, None].astype(np.float64) - seen[None, :]) < within_h * US_PER_H
    return out


def _coverage(
    series: str,
    window_h: int,
    needed: int,
    of_latest_h: int,
    valid: np.ndarray,
    latest: np.ndarray,
    sub: np.ndarray,
    measured: np.ndarray,
) -> Coverage:
    computed = ~np.isnan(sub)
    status = np.where(
        computed,
        np.where(latest >= needed, COMPLETE, INCOMPLETE),
        np.where(measured, WITHHELD, NOT_MEASURED),
    ).astype(np.int8)
    return Coverage(series, window_h, needed, of_latest_h, valid, latest, status)


def _overall_status(coverage: dict[str, Coverage]) -> np.ndarray:
    st = np.stack([c.status for c in coverage.values()])
    measured = (st != NOT_MEASURED).any(axis=0)
    complete = ((st == NOT_MEASURED) | (st == COMPLETE)).all(axis=0)
    computed = ((st == COMPLETE) | (st == INCOMPLETE)).any(axis=0)
    status = np.where(complete, COMPLETE, np.where(computed, INCOMPLETE, WITHHELD))
    return np.where(measured, status, NOT_MEASURED).astype(np.int8)


def _shaped(c: Coverage, one: bool) -> Coverage:
    hours, latest, status = (_out(a, one) for a in (c.hours_with_data, c.latest_with_data, c.status))
    return Coverage(c.series, c.window_h, c.needed, c.of_latest_h, hours, latest, status)


def _result(
    index: str,
    grid: np.ndarray,
    one: bool,
    average: dict[str, np.ndarray],
    valid: dict[str, np.ndarray],
    sub: dict[str, np.ndarray],
    coverage: dict[str, Coverage],
    categories: tuple[Category, ...],
) -> AqiResult:
    pollutants = tuple(p for p in POLLUTANTS if p in sub)
    aqi, responsible = _overall(sub, pollutants)
    cov = {p: _shaped(c, one) for p, c in coverage.items()}
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
        coverage={p: cov[p] for p in pollutants},
        status=_out(_overall_status(coverage), one),
    )


def _series_label(series: str, window_h: int) -> str:
    if series.endswith("_nowcast"):
        return "NowCast"
    return f"{window_h}-h average" if window_h > 1 else "1-h value"


def _phrase(pollutant: str, c: Mapping[str, int | str], withheld: bool) -> str:
    what = f"{POLLUTANT_NAMES[pollutant]} {_series_label(str(c['series']), int(c['window_h']))}"
    if not withheld:
        return (
            f"{what} from {c['hours_with_data']} of {c['window_h']} hours with data"
            f" ({c['needed']} needed for a complete average)"
        )
    if c["of_latest_h"] != c["window_h"]:  # a NowCast: its rule is about the latest hours
        cover = f"{c['latest_with_data']} of the {c['of_latest_h']} latest hours with data, {c['needed']} needed"
    elif c["window_h"] == 1:
        cover = "no data in this hour"
    else:
        cover = f"{c['hours_with_data']} of {c['window_h']} hours with data, {c['needed']} needed"
    return f"{what} withheld: {cover}"


def _names(pollutants: Sequence[str]) -> str:
    names = [POLLUTANT_NAMES[p] for p in pollutants]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def describe(result: AqiResult, h: int, station: int | None = None) -> HourStatus | None:
    """Hour ``h`` (of ``station`` for a several-station result) as status, missing pollutants, coverage per
    measured pollutant and the reason in words; None where no pollutant is measured (no row to show)."""

    def at(a: np.ndarray) -> int:
        return int(a[h] if station is None else a[h, station])

    code = at(result.status)
    if code == NOT_MEASURED:
        return None
    coverage: dict[str, dict[str, int | str]] = {}
    missing: list[str] = []
    phrases: list[str] = []
    for p in result.pollutants:
        c = result.coverage[p]
        st = at(c.status)
        if st == NOT_MEASURED:
            continue
        entry: dict[str, int | str] = {
            "series": c.series, "status": STATUSES[st], "window_h": c.window_h,
            "hours_with_data": at(c.hours_with_data), "needed": c.needed, "of_latest_h": c.of_latest_h,
            "latest_with_data": at(c.latest_with_data),
        }  # fmt: skip
        coverage[p] = entry
        if st != COMPLETE:
            phrases.append(_phrase(p, entry, withheld=st == WITHHELD))
            if st == WITHHELD:
                missing.append(p)
    reason = None
    if code == WITHHELD:
        reason = "No index: " + "; ".join(phrases) + "."
    elif code == INCOMPLETE:
        reason = "; ".join(phrases) + "."
        if missing:
            reason += f" The AQI shown is the highest sub-index available; with {_names(missing)} it may be higher."
    return HourStatus(STATUSES[code], tuple(missing), coverage, reason)


# ------------------------------------------------------------------------------------------------------- indices
SeenBefore = Mapping[str, ArrayLike]
"""Per pollutant, the start (UTC epoch µs) of its latest hour with data before the grid, per station (NaN: none)."""


def _measured(
    grid: np.ndarray,
    series: dict[str, np.ndarray],
    settings: AqiSettings,
    seen_before_us: SeenBefore | None,
    impl: Impl,
) -> dict[str, np.ndarray]:
    seen = seen_before_us or {}
    return {p: measured_hours(grid, v, settings.measured_within_h, seen.get(p), impl=impl) for p, v in series.items()}


def thai_aqi(
    hour_start_us: np.ndarray,
    hourly: Mapping[str, ArrayLike],
    settings: AqiSettings = DEFAULT_SETTINGS,
    *,
    seen_before_us: SeenBefore | None = None,
    impl: Impl = "numba",
) -> AqiResult:
    """Thai AQI (PCD table of 1 June 2023) per hour from hourly means of any of ``pm25 pm10 o3 co no2 so2``.

    Window averages per :data:`THAI_AVERAGING_H` with ``settings.completeness`` (below it, per
    ``settings.thai_incomplete``: withheld, or from the hours present and incomplete); sub-indices by
    :func:`thai_sub_index`; AQI = highest sub-index (PCD); categories :func:`engine.aqi_tables.thai_categories`.
    ``seen_before_us``: see :data:`SeenBefore` (for the measured rule, ``settings.measured_within_h``).
    """
    grid, series, one = _check_hourly(hour_start_us, hourly, POLLUTANTS)
    measured = _measured(grid, series, settings, seen_before_us, impl)
    partial = settings.thai_incomplete == "partial"
    average: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    sub: dict[str, np.ndarray] = {}
    coverage: dict[str, Coverage] = {}
    for p, values in series.items():
        key, window = THAI_TABLES[p].key, THAI_AVERAGING_H[p]
        needed = min_valid_hours(window, settings.completeness)
        average[key], valid[key] = _moving(values, window, 1 if partial else needed, impl)
        sub[p] = thai_sub_index(p, average[key], settings)
        coverage[p] = _coverage(key, window, needed, window, valid[key], valid[key], sub[p], measured[p])
    categories = thai_categories(settings.thai_colours_hex)
    return _result("thai_pcd_2023", grid, one, average, valid, sub, coverage, categories)


_EPA_PRIMARY: Final = MappingProxyType(
    {"pm25": "pm25_24h", "pm10": "pm10_24h", "o3": "o3_8h", "co": "co_8h", "no2": "no2_1h", "so2": "so2_1h"}
)  # the series whose coverage decides a pollutant's EPA sub-index (1-h O3 and 24-h SO2 only add to it)


def _epa_windowed(
    p: str,
    values: np.ndarray,
    measured: np.ndarray,
    settings: AqiSettings,
    impl: Impl,
    average: dict[str, np.ndarray],
    valid: dict[str, np.ndarray],
) -> tuple[np.ndarray, Coverage]:
    """A pollutant's EPA sub-index on its trailing windows (EPA's 75 % rule: withheld below completeness)."""
    for key, window in EPA_AVERAGING_H.items():
        if key.startswith(p + "_"):
            average[key], valid[key] = _moving(values, window, min_valid_hours(window, settings.completeness), impl)
    if p == "o3":
        sub = epa_o3_sub_index(average["o3_8h"], average["o3_1h"], settings)
    elif p == "so2":
        sub = epa_so2_sub_index(average["so2_1h"], average["so2_24h"], settings)
    else:
        sub = epa_sub_index(_EPA_PRIMARY[p], average[_EPA_PRIMARY[p]], settings)
    key = _EPA_PRIMARY[p]
    window = EPA_AVERAGING_H[key]
    needed = min_valid_hours(window, settings.completeness)
    return sub, _coverage(key, window, needed, window, valid[key], valid[key], sub, measured)


def epa_aqi(
    hour_start_us: np.ndarray,
    hourly: Mapping[str, ArrayLike],
    settings: AqiSettings = DEFAULT_SETTINGS,
    *,
    seen_before_us: SeenBefore | None = None,
    impl: Impl = "numba",
) -> AqiResult:
    """US EPA AQI (2024 table) per hour on trailing windows: PM 24 h, O3 8 h (+1 h), CO 8 h, NO2 1 h, SO2 1 h (+24 h).

    Concentrations truncated to the table's precision (EPA-454/B-24-002); O3 per :func:`epa_o3_sub_index`, SO2 per
    :func:`epa_so2_sub_index`. For the hourly figure AirNow reports, see :func:`epa_nowcast_aqi`.
    """
    grid, series, one = _check_hourly(hour_start_us, hourly, POLLUTANTS)
    measured = _measured(grid, series, settings, seen_before_us, impl)
    average: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    sub: dict[str, np.ndarray] = {}
    coverage: dict[str, Coverage] = {}
    for p, values in series.items():
        sub[p], coverage[p] = _epa_windowed(p, values, measured[p], settings, impl, average, valid)
    return _result("us_epa_2024", grid, one, average, valid, sub, coverage, EPA_CATEGORIES)


def _latest_count(values: np.ndarray, hours: int, impl: Impl) -> np.ndarray:
    _, count = _moving(values, hours, 1, impl)
    return count


def epa_nowcast_aqi(
    hour_start_us: np.ndarray,
    hourly: Mapping[str, ArrayLike],
    settings: AqiSettings = DEFAULT_SETTINGS,
    *,
    hours: int = PM_NOWCAST.hours,
    min_weight: float = PM_NOWCAST.min_weight,
    seen_before_us: SeenBefore | None = None,
    impl: Impl = "numba",
) -> AqiResult:
    """US EPA AQI of current conditions, as AirNow reports it (docs/reference.md#nowcast): the NowCast of PM2.5 and
    PM10 (``hours``, ``min_weight``: EPA's 12 h and 0.5 by default) on the 24-h tables, the NowCast of O3
    (:data:`O3_NOWCAST`) on the 8-h table (and 1-h O3 as :func:`epa_o3_sub_index` allows), and CO, NO2 and SO2 on
    their own windows as in :func:`epa_aqi`. A NowCast needs 2 of the 3 latest hours.

    PCD publishes 24-h moving averages, not NowCast (docs/reference.md#nowcast): label this as the US figure of
    current conditions (an early warning), never as the Thai AQI.
    """
    grid, series, one = _check_hourly(hour_start_us, hourly, POLLUTANTS)
    measured = _measured(grid, series, settings, seen_before_us, impl)
    pm_rule = NowcastRule(hours=hours, min_weight=min_weight)
    average: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    sub: dict[str, np.ndarray] = {}
    coverage: dict[str, Coverage] = {}
    for p, values in series.items():
        if p not in ("pm25", "pm10", "o3"):
            sub[p], coverage[p] = _epa_windowed(p, values, measured[p], settings, impl, average, valid)
            continue
        rule = O3_NOWCAST if p == "o3" else pm_rule
        key = f"{p}_nowcast"
        average[key], valid[key] = nowcast(
            values, hours=rule.hours, min_weight=rule.min_weight, recent_hours=rule.recent_hours,
            recent_min_valid=rule.recent_min_valid, impl=impl,
        )  # fmt: skip
        if p == "o3":
            average["o3_1h"], valid["o3_1h"] = _moving(values, 1, 1, impl)
            sub[p] = epa_o3_sub_index(average[key], average["o3_1h"], settings)
        else:
            sub[p] = epa_sub_index(f"{p}_24h", average[key], settings)
        latest = _latest_count(values, rule.recent_hours, impl)
        coverage[p] = _coverage(
            key, rule.hours, rule.recent_min_valid, rule.recent_hours, valid[key], latest, sub[p], measured[p]
        )
    return _result("us_epa_2024_nowcast", grid, one, average, valid, sub, coverage, EPA_CATEGORIES)
