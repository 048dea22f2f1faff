"""Time in the engine: UTC epoch microseconds, with calendar buckets cut in the city's time zone (Asia/Bangkok).

The one definition of the city's time zone and calendar rules; every other stage imports them from here (this
module is a leaf: numpy and the standard library only, no I/O, so tests/test_architecture.py lets every stage but
simulators/ import it). Thailand has kept UTC+7 without daylight saving since 1 April 1920 (IANA Time Zone Database,
file ``asia``, zone Asia/Bangkok; docs/reference.md#city-time-zone), so Bangkok wall-clock time is
``utc_us + BKK_OFFSET_US`` and the fixed-offset :data:`BANGKOK` is exact for every date the product handles.
SQL that cuts days and months uses :data:`CITY_TZ_NAME`, the same zone by its IANA name, as a bound parameter.

Fixed-width buckets (1 min, 15 min, 1 h) are multiples of the width since the UTC epoch; because the offset is a
whole number of hours they are also aligned with Bangkok clock time. Days, months and years are cut at Bangkok
midnight with real calendar arithmetic (numpy ``datetime64`` months and years, never fixed lengths).

Thai government fiscal year: 1 October to 30 September, named by the calendar year it ends in (FY 2026 =
2025-10-01 00:00 to 2026-10-01 00:00 Asia/Bangkok; docs/reference.md#thai-fiscal-year). Buddhist Era year = CE
year + 543 (docs/reference.md#buddhist-era-years).

Every bucket edge array is sorted int64 UTC epoch microseconds, ``edges[b] <= t < edges[b + 1]`` for bucket b.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Final, Literal, get_args

import numpy as np

US_PER_S = 1_000_000
US_PER_MIN = 60 * US_PER_S
US_PER_H = 3_600 * US_PER_S
US_PER_DAY = 86_400 * US_PER_S
UTC_OFFSET_H: Final = 7  # Thailand: UTC+7 all year, no daylight saving (docs/reference.md#city-time-zone)
BKK_OFFSET_US: Final = UTC_OFFSET_H * US_PER_H
BANGKOK: Final = timezone(timedelta(hours=UTC_OFFSET_H), "ICT")
"""The city's time zone as a fixed offset: exact, and needs no tz database at run time."""
CITY_TZ_NAME: Final = "Asia/Bangkok"
"""The same zone by its IANA name, for PostgreSQL (``AT TIME ZONE %s``, ``set_config('TimeZone', %s, true)``) and
Grafana; migrations that need it in a view name this constant in a comment."""
FISCAL_YEAR_FIRST_MONTH: Final = 10  # the Thai government fiscal year starts on 1 October
BE_OFFSET_YEARS: Final = 543

Resolution = Literal["1min", "15min", "1h", "1d", "1mo", "1y", "fy"]
RESOLUTIONS: tuple[str, ...] = get_args(Resolution)
FIXED_WIDTH_US: dict[str, int] = {"1min": US_PER_MIN, "15min": 15 * US_PER_MIN, "1h": US_PER_H}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us_from_datetime(dt: datetime) -> int:
    """UTC epoch microseconds of an aware datetime (a naive one is refused: its zone would be a guess)."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give it a time zone")
    return (dt - _EPOCH) // timedelta(microseconds=1)


def datetime_from_us(ts_us: int, tz: timezone = BANGKOK) -> datetime:
    """Aware datetime (Bangkok time by default) of UTC epoch microseconds."""
    return (_EPOCH + timedelta(microseconds=int(ts_us))).astimezone(tz)


def bkk_us(year: int, month: int = 1, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """UTC epoch microseconds of a Bangkok wall-clock time."""
    return us_from_datetime(datetime(year, month, day, hour, minute, second, tzinfo=BANGKOK))


def utc_us(year: int, month: int = 1, day: int = 1, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """UTC epoch microseconds of a UTC wall-clock time."""
    return us_from_datetime(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


def buddhist_era(year_ce: int) -> int:
    """Buddhist Era year of a CE year (2026 -> 2569)."""
    return year_ce + BE_OFFSET_YEARS


def ce_from_buddhist_era(year_be: int) -> int:
    """CE year of a Buddhist Era year (2569 -> 2026)."""
    return year_be - BE_OFFSET_YEARS


def _local(ts_us: np.ndarray | int) -> np.ndarray:
    return (np.asarray(ts_us, dtype=np.int64) + BKK_OFFSET_US).astype("datetime64[us]")


def _utc_of_local(local: np.ndarray) -> np.ndarray:
    return local.astype("datetime64[us]").astype(np.int64) - BKK_OFFSET_US


def local_date(ts_us: np.ndarray | int) -> np.ndarray:
    """Bangkok calendar date (``datetime64[D]``) of each instant."""
    return _local(ts_us).astype("datetime64[D]")


def local_day(ts_us: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """The Bangkok calendar day of each instant: (days since 1970-01-01 as int64, UTC microseconds of its midnight)."""
    date = local_date(ts_us)
    return date.astype(np.int64), _utc_of_local(date)


def fiscal_year_of(ts_us: np.ndarray | int) -> np.ndarray:
    """Thai fiscal year (CE, named by the year it ends in) of each instant, cut at Bangkok midnight 1 October."""
    months = _local(ts_us).astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    return (months + 13 - FISCAL_YEAR_FIRST_MONTH) // 12 + 1970


def fiscal_year_bounds_us(fiscal_year: int) -> tuple[int, int]:
    """[start, end) of a Thai fiscal year: Bangkok 1 October of the previous year to 1 October of ``fiscal_year``."""
    return bkk_us(fiscal_year - 1, FISCAL_YEAR_FIRST_MONTH, 1), bkk_us(fiscal_year, FISCAL_YEAR_FIRST_MONTH, 1)


def fixed_edges_us(start_us: int, end_us: int, width_us: int) -> np.ndarray:
    """Edges of the width-aligned buckets containing every instant of [start_us, end_us]."""
    if width_us <= 0 or (US_PER_H % width_us and width_us % US_PER_H):
        raise ValueError("width must divide an hour or be a multiple of it, to stay aligned with Bangkok time")
    if end_us < start_us:
        raise ValueError("end before start")
    first = (start_us // width_us) * width_us
    last = (end_us // width_us + 1) * width_us
    return np.arange(first, last + 1, width_us, dtype=np.int64)


def calendar_edges_us(start_us: int, end_us: int, unit: Literal["D", "M", "Y", "FY"]) -> np.ndarray:
    """Edges of the Bangkok days, months, calendar years or fiscal years containing every instant of [start, end]."""
    if end_us < start_us:
        raise ValueError("end before start")
    if unit == "FY":
        fy0, fy1 = (int(y) for y in fiscal_year_of(np.array([start_us, end_us])))
        # the first month (1 October) opening each fiscal year, in months since 1970-01
        months = (np.arange(fy0, fy1 + 2, dtype=np.int64) - 1971) * 12 + FISCAL_YEAR_FIRST_MONTH - 1
        return _utc_of_local(months.astype("datetime64[M]"))
    lo, hi = _local(np.array([start_us, end_us])).astype(f"datetime64[{unit}]")
    return _utc_of_local(np.arange(lo, hi + np.timedelta64(2, unit), dtype=f"datetime64[{unit}]"))


def bucket_edges_us(resolution: Resolution, start_us: int, end_us: int) -> np.ndarray:
    """Edges of the buckets of ``resolution`` containing every instant of [start_us, end_us]."""
    if resolution in FIXED_WIDTH_US:
        return fixed_edges_us(start_us, end_us, FIXED_WIDTH_US[resolution])
    unit = {"1d": "D", "1mo": "M", "1y": "Y", "fy": "FY"}.get(resolution)
    if unit is None:
        raise ValueError(f"unknown resolution {resolution!r}; one of {RESOLUTIONS}")
    return calendar_edges_us(start_us, end_us, unit)  # type: ignore[arg-type]


def check_edges(edges_us: np.ndarray) -> np.ndarray:
    """Edges as a contiguous int64 array, checked: at least one bucket, strictly increasing."""
    edges = np.ascontiguousarray(edges_us, dtype=np.int64)
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError("edges must be a 1-D array of at least two instants")
    if np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be strictly increasing")
    return edges
