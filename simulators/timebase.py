"""Local calendar facts as vectorised functions of epoch seconds: Bangkok clock, working days, sun times.

Thailand has kept UTC+7 without daylight saving since 1920, so local time is a fixed offset: no tz database needed
in the hot path. Holidays come from the `holidays` package, sun times from astral, both cached per day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache

import holidays
import numpy as np
from astral import Observer
from astral.sun import sunrise, sunset
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# The simulator's own copy of the city's zone, on purpose: it stands in for third-party devices, speaks only the
# message contract (docs/contract.md) and imports nothing of the project, so it cannot share
# lccm.engine.timebase.BANGKOK. Same fact, same source: docs/reference.md#city-time-zone.
UTC_OFFSET_S = 7 * 3600
BANGKOK = dt.timezone(dt.timedelta(seconds=UTC_OFFSET_S), "ICT")
DAY_S = 86400
# 1970-01-01 was a Thursday: weekday index 3 with Monday = 0.
_EPOCH_WEEKDAY = 3


def as_array(t_s: ArrayLike) -> FloatArray:
    return np.atleast_1d(np.asarray(t_s, dtype=np.float64))


def local_day(t_s: ArrayLike) -> IntArray:
    """Days since 1970-01-01 on the Bangkok calendar."""
    return np.floor((as_array(t_s) + UTC_OFFSET_S) / DAY_S).astype(np.int64)


def local_hour(t_s: ArrayLike) -> FloatArray:
    """Hour of the Bangkok day as a fraction, 0 <= h < 24."""
    return np.mod(as_array(t_s) + UTC_OFFSET_S, DAY_S) / 3600.0


def weekday(t_s: ArrayLike) -> IntArray:
    return (local_day(t_s) + _EPOCH_WEEKDAY) % 7


def day_of_year(t_s: ArrayLike) -> FloatArray:
    """Fractional day of the year (0 = 1 January 00:00 Bangkok); leap days stretch the year by one day."""
    days = local_day(t_s)
    dates = days.astype("datetime64[D]")
    year_start = dates.astype("datetime64[Y]").astype("datetime64[D]")
    return (days - year_start.astype(np.int64)).astype(np.float64) + local_hour(t_s) / 24.0


def month(t_s: ArrayLike) -> IntArray:
    """Calendar month 1..12 on the Bangkok calendar."""
    dates = local_day(t_s).astype("datetime64[D]")
    return (dates.astype("datetime64[M]").astype(np.int64) % 12 + 1).astype(np.int64)


@lru_cache(maxsize=64)
def _holiday_days(year: int) -> frozenset[int]:
    epoch = dt.date(1970, 1, 1)
    return frozenset((d - epoch).days for d in holidays.Thailand(years=[year]))


def is_holiday(t_s: ArrayLike) -> BoolArray:
    days = local_day(t_s)
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    known: set[int] = set()
    for year in np.unique(years):
        known |= _holiday_days(int(year))
    return np.isin(days, np.fromiter(known, dtype=np.int64, count=len(known)))


def is_working_day(t_s: ArrayLike) -> BoolArray:
    """Monday to Friday and not a Thai public holiday (holidays.Thailand)."""
    return (weekday(t_s) < 5) & ~is_holiday(t_s)


@dataclass
class SunTable:
    """Sunrise and sunset (epoch seconds) per Bangkok day at one place, computed on demand and kept."""

    lat: float
    lon: float
    _first_day: int = 0
    _rise: FloatArray = field(default_factory=lambda: np.zeros(0))
    _set: FloatArray = field(default_factory=lambda: np.zeros(0))

    def _compute(self, day: int) -> tuple[float, float]:
        date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
        observer = Observer(latitude=self.lat, longitude=self.lon)
        return (
            sunrise(observer, date, tzinfo=BANGKOK).timestamp(),
            sunset(observer, date, tzinfo=BANGKOK).timestamp(),
        )

    def _ensure(self, lo: int, hi: int) -> None:
        if self._rise.size and self._first_day <= lo and hi < self._first_day + self._rise.size:
            return
        if self._rise.size:
            lo = min(lo, self._first_day)
            hi = max(hi, self._first_day + self._rise.size - 1)
        rows = [self._compute(d) for d in range(lo, hi + 1)]
        self._first_day = lo
        self._rise = np.array([r[0] for r in rows])
        self._set = np.array([r[1] for r in rows])

    def times(self, t_s: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(sunrise, sunset) of the Bangkok day each time falls on."""
        days = local_day(t_s)
        self._ensure(int(days.min()), int(days.max()))
        idx = days - self._first_day
        return self._rise[idx], self._set[idx]

    def is_dark(self, t_s: ArrayLike, on_offset_s: float = 0.0, off_offset_s: float = 0.0) -> BoolArray:
        """True between sunset + on_offset and the next sunrise + off_offset (a photocell or astronomical timer)."""
        t = as_array(t_s)
        rise, set_ = self.times(t)
        return (t >= set_ + on_offset_s) | (t < rise + off_offset_s)


@lru_cache(maxsize=16)
def sun_table(lat: float, lon: float) -> SunTable:
    return SunTable(lat, lon)
