"""Reporting periods in Bangkok time: Thai fiscal years, Buddhist Era labels, ISO weeks, month slices, work days."""

from __future__ import annotations

import calendar as stdlib_calendar
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lccm.engine.calendar import (
    Period,
    custom_period,
    day_period,
    day_range,
    month_period,
    month_slices,
    rest_of_year_period,
    week_of,
    week_period,
    workdays,
    year_label,
    year_months,
    year_of,
    year_period,
    ytd_period,
)
from lccm.engine.timebase import BANGKOK, bkk_us, fiscal_year_bounds_us

ZONE = ZoneInfo("Asia/Bangkok")  # independent of engine.timebase's fixed-offset zone


def bkk(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZONE)


def test_fiscal_year_2026_is_october_2025_to_september_2026_and_labelled_in_both_eras() -> None:
    fy = year_period(2026, "fiscal")
    assert fy.kind == "fiscal_year"
    assert fy.start == bkk(2025, 10, 1) and fy.end == bkk(2026, 10, 1)
    assert (fy.start_us, fy.end_us) == fiscal_year_bounds_us(2026)  # same convention as engine.timebase
    assert fy.start.astimezone(UTC) == datetime(2025, 9, 30, 17, tzinfo=UTC)
    assert fy.days == 365  # Oct 2025 .. Sep 2026, no 29 February inside
    assert fy.label == "FY2026"
    assert year_label(2026, "fiscal", "BE") == "FY B.E. 2569"  # 2026 + 543
    assert year_label(2026, "fiscal", "BE", "th") == "ปีงบประมาณ พ.ศ. 2569"
    assert year_label(2026, "calendar", "BE") == "B.E. 2569" and year_label(2011, "calendar", "BE", "th") == "พ.ศ. 2554"
    assert year_period(2024, "fiscal").days == 366  # FY2024 holds 29 February 2024


def test_year_of_cuts_at_bangkok_midnight_1_october() -> None:
    assert year_of(bkk(2025, 9, 30, 23, 59), "fiscal") == 2025
    assert year_of(bkk(2025, 10, 1), "fiscal") == 2026
    assert year_of(datetime(2025, 9, 30, 17, tzinfo=UTC), "fiscal") == 2026  # = 1 Oct 00:00 in Bangkok
    assert year_of(datetime(2025, 9, 30, 16, 59, tzinfo=UTC), "fiscal") == 2025
    assert year_of(date(2025, 12, 31), "fiscal") == 2026 and year_of(date(2026, 1, 1), "fiscal") == 2026
    assert year_of(datetime(2025, 12, 31, 17, tzinfo=UTC), "calendar") == 2026  # New Year in Bangkok
    with pytest.raises(ValueError, match="naive"):
        year_of(datetime(2026, 1, 1), "fiscal")
    with pytest.raises(ValueError, match="kind"):
        year_of(date(2026, 1, 1), "budget")  # type: ignore[arg-type]


def test_year_months_in_reporting_order() -> None:
    fiscal = year_months(2026, "fiscal")
    assert fiscal[:4] == [(2025, 10), (2025, 11), (2025, 12), (2026, 1)] and fiscal[-1] == (2026, 9)
    assert year_months(2026, "calendar") == [(2026, m) for m in range(1, 13)]


def test_iso_weeks_start_on_monday_and_cross_the_year() -> None:
    w1 = week_period(2026, 1)
    assert w1.start == bkk(2025, 12, 29) and w1.end == bkk(2026, 1, 5) and w1.label == "2026-W01"
    assert w1.start.weekday() == 0
    assert week_of(date(2026, 1, 1)) == w1 and week_of(date(2025, 12, 29)) == w1
    assert week_period(2026, 53).start == bkk(2026, 12, 28)  # 1 Jan 2026 is a Thursday: 53 ISO weeks
    with pytest.raises(ValueError, match="no ISO week 53 in 2025"):
        week_period(2025, 53)


def test_day_and_month_periods() -> None:
    d = day_period(date(2024, 2, 29))
    assert (d.start, d.end, d.label, d.days) == (bkk(2024, 2, 29), bkk(2024, 3, 1), "2024-02-29", 1.0)
    m = month_period(2025, 12)
    assert (m.start, m.end, m.label, m.days) == (bkk(2025, 12, 1), bkk(2026, 1, 1), "2025-12", 31.0)
    with pytest.raises(ValueError, match="month"):
        month_period(2025, 13)


def test_month_slices_of_a_period_across_december_january_with_partial_months() -> None:
    # 20 Dec 2025 00:00 to 10 Feb 2026 12:00: 12 of Dec's 31 days (20..31), all of January, 9.5 of Feb's 28 days.
    p = custom_period(bkk(2025, 12, 20), bkk(2026, 2, 10, 12))
    got = [(s.year, s.month, s.days, s.days_in_month) for s in month_slices(p)]
    assert got == [(2025, 12, 12.0, 31), (2026, 1, 31.0, 31), (2026, 2, 9.5, 28)]
    assert [s.fraction for s in month_slices(p)] == [12 / 31, 1.0, 9.5 / 28]
    assert p.days == 12 + 31 + 9.5
    assert month_slices(p)[0].start == bkk(2025, 12, 20) and month_slices(p)[-1].end == bkk(2026, 2, 10, 12)


def test_fiscal_year_to_date_and_rest_of_year_partition_the_year() -> None:
    as_of = bkk(2026, 1, 15)  # FYTD through 14 January
    ytd, rest = ytd_period(as_of, "fiscal"), rest_of_year_period(as_of, "fiscal")
    assert ytd.kind == "fytd" and ytd.start == bkk(2025, 10, 1) and ytd.end == as_of == rest.start
    assert rest.end == bkk(2026, 10, 1)
    assert [(s.month, s.days) for s in month_slices(ytd)] == [(10, 31.0), (11, 30.0), (12, 31.0), (1, 14.0)]
    assert ytd.days == 31 + 30 + 31 + 14 and ytd.days + rest.days == 365
    cal = ytd_period(as_of)  # calendar YTD
    assert cal.kind == "ytd" and cal.start == bkk(2026, 1, 1) and cal.days == 14
    empty = ytd_period(bkk(2025, 10, 1), "fiscal")  # the fiscal year's first instant
    assert empty.days == 0 and month_slices(empty) == ()
    assert ytd_period(datetime(2025, 9, 30, 17, tzinfo=UTC), "fiscal").start == bkk(2025, 10, 1)


def test_periods_refuse_naive_reversed_or_non_bangkok_edges() -> None:
    with pytest.raises(ValueError, match="naive"):
        custom_period(datetime(2026, 1, 1), bkk(2026, 2, 1))
    with pytest.raises(ValueError, match="ends before it starts"):
        custom_period(bkk(2026, 2, 1), bkk(2026, 1, 1))
    with pytest.raises(ValueError, match="Bangkok"):
        Period("custom", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "utc")
    p = custom_period(datetime(2025, 12, 31, 17, tzinfo=UTC), datetime(2026, 1, 1, 17, tzinfo=UTC))
    assert p.start == bkk(2026, 1, 1) and p.start.tzinfo is BANGKOK  # converted, same instant


def test_work_days_are_monday_to_friday_minus_holidays() -> None:
    # Songkran 2026: 13-15 April (Mon-Wed); 10 April is a Friday.
    days = day_range(custom_period(bkk(2026, 4, 10), bkk(2026, 4, 20)))
    assert days[0] == np.datetime64("2026-04-10") and days.size == 10
    songkran: list[date | np.datetime64] = [date(2026, 4, 13), date(2026, 4, 14), np.datetime64("2026-04-15")]
    got = workdays(days, songkran)
    expected = [d.weekday() < 5 and d not in (date(2026, 4, 13), date(2026, 4, 14), date(2026, 4, 15))
                for d in (date(2026, 4, 10) + timedelta(days=i) for i in range(10))]  # fmt: skip
    assert got.tolist() == expected == [True, False, False, False, False, False, True, True, False, False]
    with pytest.raises(ValueError, match="midnight"):
        day_range(custom_period(bkk(2026, 4, 10, 6), bkk(2026, 4, 20)))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(bkk_us(2000, 1, 1) // 60_000_000, bkk_us(2040, 1, 1) // 60_000_000),
    st.integers(0, 900 * 24 * 60),
)
def test_month_slices_against_a_day_by_day_count(start_min: int, length_min: int) -> None:
    """Independent check with zoneinfo and the standard library calendar: walk the period in whole minutes."""
    start = datetime.fromtimestamp(start_min * 60, ZONE)
    end = start + timedelta(minutes=length_min)
    slices = month_slices(custom_period(start, end))
    assert sum(s.days for s in slices) == pytest.approx(length_min / 1440, abs=1e-9)
    expected: list[tuple[int, int, float, int]] = []
    cursor = start
    while cursor < end:
        nxt_month = datetime(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1, tzinfo=ZONE)
        hi = min(end, nxt_month)
        days_in = stdlib_calendar.monthrange(cursor.year, cursor.month)[1]
        expected.append((cursor.year, cursor.month, (hi - cursor) / timedelta(days=1), days_in))
        cursor = hi
    assert [(s.year, s.month, s.days_in_month) for s in slices] == [(y, m, d) for y, m, _, d in expected]
    assert [s.days for s in slices] == pytest.approx([x for _, _, x, _ in expected], abs=1e-9)
    assert all(0 < s.fraction <= 1 for s in slices)
