"""Bangkok-time bucket edges, Thai fiscal years and Buddhist Era years."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccm.engine.timebase import (
    BANGKOK,
    BKK_OFFSET_US,
    CITY_TZ_NAME,
    RESOLUTIONS,
    US_PER_DAY,
    US_PER_H,
    US_PER_MIN,
    UTC_OFFSET_H,
    Resolution,
    bkk_us,
    bucket_edges_us,
    buddhist_era,
    ce_from_buddhist_era,
    datetime_from_us,
    fiscal_year_bounds_us,
    fiscal_year_of,
    local_date,
    us_from_datetime,
    utc_us,
)

ZONE = ZoneInfo("Asia/Bangkok")


def test_fiscal_year_2026_runs_october_to_october_in_bangkok_time() -> None:
    start, end = fiscal_year_bounds_us(2026)
    assert datetime_from_us(start, UTC) == datetime(2025, 9, 30, 17, tzinfo=UTC)
    assert datetime_from_us(end, UTC) == datetime(2026, 9, 30, 17, tzinfo=UTC)
    assert list(fiscal_year_of(np.array([start - 1, start, end - 1, end]))) == [2025, 2026, 2026, 2027]


def test_buddhist_era() -> None:
    assert buddhist_era(2026) == 2569 and ce_from_buddhist_era(2569) == 2026
    assert buddhist_era(2011) == 2554  # TGO's LGO programme start, "B.E. 2554 (2011)"


def test_month_edges_follow_the_calendar() -> None:
    edges = bucket_edges_us("1mo", bkk_us(2024, 1, 15), bkk_us(2024, 3, 1))
    days = np.diff(edges) // US_PER_DAY
    assert list(days) == [31, 29, 31]  # 2024 is a leap year
    assert [datetime_from_us(e).date().isoformat() for e in edges] == ["2024-01-01", "2024-02-01", "2024-03-01",
                                                                         "2024-04-01"]  # fmt: skip
    assert all(datetime_from_us(e, UTC).hour == 17 for e in edges)  # Bangkok midnight = 17:00 UTC the day before


def test_fiscal_year_and_calendar_year_edges() -> None:
    fy = bucket_edges_us("fy", bkk_us(2025, 12, 1), bkk_us(2026, 11, 1))
    assert list(fy) == [bkk_us(2025, 10, 1), bkk_us(2026, 10, 1), bkk_us(2027, 10, 1)]
    years = bucket_edges_us("1y", bkk_us(2025, 12, 1), bkk_us(2026, 1, 1))
    assert list(years) == [bkk_us(2025, 1, 1), bkk_us(2026, 1, 1), bkk_us(2027, 1, 1)]


def test_fixed_buckets_are_aligned_with_bangkok_clock() -> None:
    edges = bucket_edges_us("15min", utc_us(2026, 3, 1, 16, 52), utc_us(2026, 3, 1, 17, 10))
    assert [datetime_from_us(e).strftime("%H:%M") for e in edges] == ["23:45", "00:00", "00:15"]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(utc_us(2000, 1, 1), utc_us(2060, 1, 1)),
    st.integers(0, 400 * US_PER_DAY),
    st.sampled_from(RESOLUTIONS),
)
def test_edges_cover_the_span_and_sit_on_bangkok_boundaries(start: int, length: int, res: Resolution) -> None:
    end = start + length if res not in ("1min", "15min") else start + length // 1000
    edges = bucket_edges_us(res, start, end)
    assert edges[0] <= start and edges[-1] > end and edges[1] > start and edges[-2] <= end
    assert np.all(np.diff(edges) > 0)
    local = [datetime.fromtimestamp(int(e) / 1e6, ZONE) for e in edges[:50]]
    if res in ("1min", "15min", "1h"):
        step = {"1min": US_PER_MIN, "15min": 15 * US_PER_MIN, "1h": US_PER_H}[res]
        assert np.all(np.diff(edges) == step) and all(d.second == 0 and (d.minute * 60e6) % step == 0 for d in local)
    else:
        assert all((d.hour, d.minute, d.second) == (0, 0, 0) for d in local)
        if res in ("1mo", "1y", "fy"):
            assert all(d.day == 1 for d in local)
        if res == "1y":
            assert all(d.month == 1 for d in local)
        if res == "fy":
            assert all(d.month == 10 for d in local)


@settings(max_examples=200, deadline=None)
@given(st.integers(utc_us(1990, 1, 1), utc_us(2070, 1, 1)))
def test_local_date_and_fiscal_year_agree_with_zoneinfo(ts: int) -> None:
    local = datetime.fromtimestamp(ts // 1_000_000, ZONE)
    assert str(local_date(ts)) == local.date().isoformat()
    assert int(fiscal_year_of(ts)) == (local.year + 1 if local.month >= 10 else local.year)
    assert us_from_datetime(local) == ts // 1_000_000 * 1_000_000


def test_refusals() -> None:
    with pytest.raises(ValueError, match="naive"):
        us_from_datetime(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown resolution"):
        bucket_edges_us("2h", 0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end before start"):
        bucket_edges_us("1d", 10, 0)


def test_the_fixed_offset_is_the_tz_database_zone_since_1920() -> None:
    # The IANA tz database (independent of engine.timebase) gives Asia/Bangkok +07:00 from 1 April 1920 on, with no
    # daylight saving: the fixed offset is exact there (docs/reference.md#city-time-zone). Noon of every 5th day.
    assert str(ZoneInfo(CITY_TZ_NAME)) == "Asia/Bangkok" and BANGKOK.utcoffset(None) == timedelta(hours=UTC_OFFSET_H)
    start = datetime(1920, 4, 1, 5, tzinfo=UTC)
    for days in range(0, (datetime(2100, 1, 1, tzinfo=UTC) - start).days, 5):
        instant = start + timedelta(days=days)
        assert instant.astimezone(ZONE).utcoffset() == BANGKOK.utcoffset(None), instant
        assert instant.astimezone(ZONE).dst() in (None, timedelta(0)), instant
    # before April 1920 Bangkok mean time, +6:42:04: the check above would see a different offset
    assert datetime(1920, 3, 1, tzinfo=UTC).astimezone(ZONE).utcoffset() == timedelta(hours=6, minutes=42, seconds=4)
    assert BKK_OFFSET_US == UTC_OFFSET_H * US_PER_H
