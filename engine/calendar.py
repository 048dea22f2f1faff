"""Reporting periods in Asia/Bangkok time: days, ISO weeks, months, calendar and Thai fiscal years, year to date,
custom spans; Buddhist Era labels; the month slices of a period (for pro-rating monthly baselines); working days.

Every period is a half-open span ``[start, end)`` of aware datetimes in Bangkok time (UTC+7 all year, no daylight
saving, so :data:`engine.timebase.BANGKOK` is exact; docs/reference.md#city-time-zone). Day, month and year edges
are Bangkok midnights.

Conventions (with their sources):

- Reporting years are calendar years (January-December, the layout of TGO's CFO calculation form 1.5(1)) or Thai
  government fiscal years (October-September, Budget Procedure Act B.E. 2561 section 4), as in
  docs/reference.md#reporting-years and docs/reference.md#thai-fiscal-year. A fiscal year is named by
  the calendar year it ends in, as the Thai budget year is (ปีงบประมาณ): FY 2026 = 2025-10-01 00:00 to
  2026-10-01 00:00 Bangkok time. This is the convention of :mod:`engine.timebase` (``fiscal_year_bounds_us``),
  reused here.
- Buddhist Era year = CE year + 543 (FY 2026 = ปีงบประมาณ พ.ศ. 2569) (:func:`engine.timebase.buddhist_era`).
- Weeks are ISO 8601 weeks, Monday to Monday, numbered by ISO year (2026-W01 starts Monday 2025-12-29).
- Year to date is ``[start of the reporting year containing as_of, as_of)``: pass the next midnight as ``as_of``
  to include a whole day.
- A month slice's ``fraction`` is the share of the calendar month's duration that the period covers; for whole days
  that is ``days / days_in_month``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, get_args

import numpy as np

from lccm.engine.timebase import BANGKOK, FISCAL_YEAR_FIRST_MONTH, US_PER_DAY, buddhist_era, us_from_datetime

YearKind = Literal["calendar", "fiscal"]
YEAR_KINDS: tuple[str, ...] = get_args(YearKind)
PeriodKind = Literal["day", "week", "month", "year", "fiscal_year", "ytd", "fytd", "rest_of_year", "custom"]
Era = Literal["CE", "BE"]


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open span ``[start, end)`` in Bangkok time, with what it is and a label for people."""

    kind: PeriodKind
    start: datetime
    end: datetime
    label: str

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() != BANGKOK.utcoffset(None):
                raise ValueError(f"period {name} must be an aware datetime in Bangkok time: {value!r}")
        if self.end < self.start:
            raise ValueError(f"period ends before it starts: {self.start.isoformat()} > {self.end.isoformat()}")

    @property
    def start_us(self) -> int:
        return us_from_datetime(self.start)

    @property
    def end_us(self) -> int:
        return us_from_datetime(self.end)

    @property
    def days(self) -> float:
        """Length in days (fractional for periods that do not end at midnight)."""
        return (self.end_us - self.start_us) / US_PER_DAY


@dataclass(frozen=True, slots=True)
class MonthSlice:
    """The part ``[start, end)`` of one calendar month (Bangkok) covered by a period."""

    year: int
    month: int
    start: datetime
    end: datetime
    days_in_month: int  # 28, 29, 30 or 31
    days: float  # covered, fractional if the period does not end at midnight

    @property
    def fraction(self) -> float:
        """Covered share of the month, 0 < fraction <= 1."""
        return self.days / self.days_in_month


# ------------------------------------------------------------------------------------------------------ helpers
def bangkok(instant: datetime) -> datetime:
    """The same instant in Bangkok time; a naive datetime is refused (its zone would be a guess)."""
    if instant.tzinfo is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: give it a time zone")
    return instant.astimezone(BANGKOK)


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=BANGKOK)


def _month_start(year: int, month: int) -> datetime:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1  # normalise month 13 -> January next year
    return datetime(year, month, 1, tzinfo=BANGKOK)


def _check_kind(kind: str) -> None:
    if kind not in YEAR_KINDS:
        raise ValueError(f"unknown reporting-year kind {kind!r}; one of {YEAR_KINDS}")


# ------------------------------------------------------------------------------------------------------- labels
def year_label(year: int, kind: YearKind = "calendar", era: Era = "CE", lang: Literal["en", "th"] = "en") -> str:
    """A reporting year for people: ``2026``, ``B.E. 2569``, ``FY2026``, ``FY B.E. 2569``, ``พ.ศ. 2569``,
    ``ปีงบประมาณ พ.ศ. 2569``. ``year`` is CE; a fiscal year is named by the year it ends in."""
    _check_kind(kind)
    if era not in ("CE", "BE"):
        raise ValueError(f"unknown era {era!r}; 'CE' or 'BE'")
    if lang == "th":
        number = f"พ.ศ. {buddhist_era(year)}" if era == "BE" else f"ค.ศ. {year}"
        return f"ปีงบประมาณ {number}" if kind == "fiscal" else number
    if lang != "en":
        raise ValueError(f"unknown language {lang!r}; 'en' or 'th'")
    number = f"B.E. {buddhist_era(year)}" if era == "BE" else str(year)
    if kind == "fiscal":
        return f"FY {number}" if era == "BE" else f"FY{number}"
    return number


# ------------------------------------------------------------------------------------------------------ periods
def day_period(d: date) -> Period:
    """One Bangkok day."""
    return Period("day", _midnight(d), _midnight(d + timedelta(days=1)), d.isoformat())


def week_period(iso_year: int, iso_week: int) -> Period:
    """ISO 8601 week ``iso_week`` of ``iso_year``, Monday 00:00 to the next Monday 00:00 Bangkok time."""
    try:
        monday = date.fromisocalendar(iso_year, iso_week, 1)
    except ValueError as exc:
        raise ValueError(f"no ISO week {iso_week} in {iso_year}: {exc}") from None
    return Period("week", _midnight(monday), _midnight(monday + timedelta(days=7)), f"{iso_year}-W{iso_week:02d}")


def week_of(d: date) -> Period:
    """The ISO week containing a Bangkok date."""
    iso = d.isocalendar()
    return week_period(iso.year, iso.week)


def month_period(year: int, month: int) -> Period:
    """One calendar month in Bangkok time."""
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    return Period("month", _month_start(year, month), _month_start(year, month + 1), f"{year}-{month:02d}")


def year_start_month(year: int, kind: YearKind) -> tuple[int, int]:
    """(CE year, month) of the first month of reporting year ``year``: January, or October of the year before."""
    _check_kind(kind)
    return (year - 1, FISCAL_YEAR_FIRST_MONTH) if kind == "fiscal" else (year, 1)


def year_period(year: int, kind: YearKind = "calendar") -> Period:
    """A calendar year, or Thai fiscal year ``year`` (1 October of ``year - 1`` to 1 October of ``year``)."""
    y, m = year_start_month(year, kind)
    start = _month_start(y, m)
    return Period("fiscal_year" if kind == "fiscal" else "year", start, _month_start(y, m + 12), year_label(year, kind))


def year_of(instant: datetime | date, kind: YearKind = "calendar") -> int:
    """Reporting year (CE) of a Bangkok instant or date; a fiscal year is named by the year it ends in."""
    _check_kind(kind)
    d = bangkok(instant).date() if isinstance(instant, datetime) else instant
    return d.year + 1 if kind == "fiscal" and d.month >= FISCAL_YEAR_FIRST_MONTH else d.year


def year_months(year: int, kind: YearKind = "calendar") -> list[tuple[int, int]]:
    """The 12 (CE year, month) of a reporting year in order: Jan..Dec, or Oct..Sep for a fiscal year."""
    y, m = year_start_month(year, kind)
    return [(y + (m - 1 + i) // 12, (m - 1 + i) % 12 + 1) for i in range(12)]


def ytd_period(as_of: datetime, kind: YearKind = "calendar") -> Period:
    """Year to date: ``[start of the reporting year containing as_of, as_of)`` (empty at the year's first instant)."""
    as_of = bangkok(as_of)
    year = year_of(as_of, kind)
    start = year_period(year, kind).start
    label = f"{year_label(year, kind)} to {as_of.isoformat()}"
    return Period("fytd" if kind == "fiscal" else "ytd", start, as_of, label)


def rest_of_year_period(as_of: datetime, kind: YearKind = "calendar") -> Period:
    """``[as_of, end of the reporting year containing as_of)``: the complement of :func:`ytd_period`."""
    as_of = bangkok(as_of)
    year = year_of(as_of, kind)
    end = year_period(year, kind).end
    return Period("rest_of_year", as_of, end, f"{year_label(year, kind)} from {as_of.isoformat()}")


def custom_period(start: datetime, end: datetime, label: str | None = None) -> Period:
    """Any span ``[start, end)`` of aware datetimes (converted to Bangkok time); ``end`` must not precede ``start``."""
    start, end = bangkok(start), bangkok(end)
    return Period("custom", start, end, label or f"{start.isoformat()} to {end.isoformat()}")


def month_slices(period: Period) -> tuple[MonthSlice, ...]:
    """The calendar months (Bangkok) a period touches, each with the part covered, in time order."""
    out: list[MonthSlice] = []
    if period.end == period.start:
        return ()
    end_us = period.end_us
    month = _month_start(period.start.year, period.start.month)
    while us_from_datetime(month) < end_us:
        nxt = _month_start(month.year, month.month + 1)
        lo, hi = max(period.start, month), min(period.end, nxt)
        covered_days = (us_from_datetime(hi) - us_from_datetime(lo)) / US_PER_DAY
        out.append(MonthSlice(month.year, month.month, lo, hi, (nxt - month).days, covered_days))
        month = nxt
    return tuple(out)


# ---------------------------------------------------------------------------------------------------- work days
def day_range(period: Period) -> np.ndarray:
    """The Bangkok dates (``datetime64[D]``) of the whole days in a period that starts and ends at midnight."""
    for edge in (period.start, period.end):
        if (edge.hour, edge.minute, edge.second, edge.microsecond) != (0, 0, 0, 0):
            raise ValueError(f"period edge {edge.isoformat()} is not a Bangkok midnight")
    return np.arange(np.datetime64(period.start.date(), "D"), np.datetime64(period.end.date(), "D"))


def workdays(days: np.ndarray, holidays: Iterable[date | np.datetime64]) -> np.ndarray:
    """Working-day indicator (bool) of Bangkok dates: Monday to Friday and not a listed holiday.

    Holidays are an input, not a constant: Thai public holidays move (lunar dates, substitution days, cabinet
    decisions), so the caller supplies them (e.g. from the ``holidays`` package or the municipality's own list).
    """
    days = np.asarray(days, dtype="datetime64[D]")
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    off = np.array(list(holidays), dtype="datetime64[D]").reshape(-1)
    return (weekday < 5) & ~np.isin(days, off)
