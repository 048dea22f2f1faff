"""The periods carbon staff ask about, as the API and the CLI name them, and the month slices the store reads.

A period is whole Bangkok days: ``day``, ``week`` (ISO), ``month`` of a date; ``fytd`` / ``ytd`` from the start of
the fiscal (Oct-Sep) or calendar year to the end of the date (included); ``custom`` from a first day to a day after
the last (exclusive). The date defaults to today in Bangkok. engine/calendar.py defines the periods; this module
only maps the names to them and cuts a period into the month slices ``store.baseline.SliceSpec`` the store reads.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

from lccm.engine import calendar as cal
from lccm.engine.timebase import BANGKOK
from lccm.store.baseline import SliceSpec

PeriodName = Literal["day", "week", "month", "fytd", "ytd", "custom"]
YearKind = cal.YearKind


class RequestInvalid(ValueError):
    """A question asked wrongly: a custom period without its end, a year before the base year or not started yet, a
    period that is not whole Bangkok days. ``parameter`` names the input at fault: the API's query parameter and
    the CLI's option of the same name (api/errors.py maps it to a 422 like FastAPI's own parameter errors)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def bangkok_today(now: datetime | None = None) -> date:
    """The Bangkok date of ``now`` (default: the current instant)."""
    return (datetime.now(BANGKOK) if now is None else now.astimezone(BANGKOK)).date()


def midnight(d: date) -> datetime:
    """The Bangkok midnight starting day ``d``."""
    return datetime(d.year, d.month, d.day, tzinfo=BANGKOK)


def end_of(d: date | None) -> datetime:
    """The Bangkok midnight ending day ``d`` (default today): data "up to this day, included" stops here."""
    return midnight((d or bangkok_today()) + timedelta(days=1))


def make_period(period: PeriodName, on: date | None, start: date | None, end: date | None) -> cal.Period:
    """The period a request names (module docstring). ``start``/``end`` are a custom period's first day and the
    day after its last; ``on`` is a day in the others' period (default today, Bangkok)."""
    if period == "custom":
        if start is None or end is None:
            raise RequestInvalid("from", "a custom period needs from and to (dates; to is exclusive)")
        if end <= start:
            raise RequestInvalid("to", f"must be after from ({start.isoformat()})")
        return cal.custom_period(midnight(start), midnight(end), f"{start.isoformat()} to {end.isoformat()}")
    d = on or bangkok_today()
    if period == "day":
        return cal.day_period(d)
    if period == "week":
        return cal.week_of(d)
    if period == "month":
        return cal.month_period(d.year, d.month)
    # The year of the date itself: on its last day (30 September for fytd) the year is whole, not the next one's
    # first instant (engine.calendar.ytd_period would name the year by the end instant, an empty period).
    kind: YearKind = "fiscal" if period == "fytd" else "calendar"
    year = cal.year_of(d, kind)
    end = midnight(d + timedelta(days=1))
    return cal.Period(
        period, cal.year_period(year, kind).start, end, f"{cal.year_label(year, kind)} to {end.isoformat()}"
    )


def whole_days(start: datetime, end: datetime, *, allow_empty: bool = False) -> tuple[datetime, datetime]:
    """``[start, end)`` in Bangkok time, checked: aware, both edges Bangkok midnights, and (unless ``allow_empty``:
    a year to date at the year's first instant is empty) not empty."""
    for name, edge in (("start", start), ("end", end)):
        if edge.tzinfo is None:
            raise RequestInvalid("period", f"period {name} {edge.isoformat()} has no time zone")
    lo, hi = start.astimezone(BANGKOK), end.astimezone(BANGKOK)
    for name, edge in (("start", lo), ("end", hi)):
        if edge != midnight(edge.date()):
            raise RequestInvalid(
                "period", f"period {name} {edge.isoformat()} is not a Bangkok midnight (whole days only)"
            )
    if hi < lo or (hi == lo and not allow_empty):
        raise RequestInvalid("period", f"empty period {lo.isoformat()} .. {hi.isoformat()} (the end is exclusive)")
    return lo, hi


def slice_specs(period: cal.Period, kind: YearKind) -> list[SliceSpec]:
    """The period's Bangkok months (engine.calendar.month_slices), each with the ``kind`` reporting year it belongs
    to and its covered share: what ``store.baseline.actual_kgco2e`` and ``store.kpi.measured_kpis`` read."""
    whole_days(period.start, period.end, allow_empty=True)
    return [
        SliceSpec(cal.year_of(s.start, kind), date(s.year, s.month, 1), s.start, s.end, s.fraction)
        for s in cal.month_slices(period)
    ]


def today_end(now: datetime) -> datetime:
    """The Bangkok midnight ending the day of ``now``: data cannot reach further."""
    return midnight(now.astimezone(BANGKOK).date() + timedelta(days=1))


def up_to_today(period: cal.Period, now: datetime, parameter: str = "date") -> tuple[cal.Period, datetime | None]:
    """``period`` cut at the end of today (Bangkok): a month, week or custom span that runs on past today is
    compared over its days so far, against the base year's slice of the same days, not its whole slice. Returns the
    period and, when it was cut, the end asked for. Raises ``RequestInvalid`` (``parameter``) for a period that
    starts after today."""
    end = today_end(now)
    if period.end <= end:
        return period, None
    if period.start >= end:
        raise RequestInvalid(parameter, f"{period.label} has not started on {(end - timedelta(days=1)).date()}")
    last = (end - timedelta(days=1)).date().isoformat()
    return cal.Period(period.kind, period.start, end, f"{period.label} to {last}"), period.end


def period_out(p: cal.Period, requested_end: datetime | None = None) -> dict[str, Any]:
    """A period as the JSON answers describe it; ``partial`` when it was cut at today (``requested_end`` the end
    asked for)."""
    return {"kind": p.kind, "label": p.label, "start": p.start.isoformat(), "end": p.end.isoformat(), "days": p.days,
            "partial": requested_end is not None,
            "requested_end": None if requested_end is None else requested_end.isoformat()}  # fmt: skip
