"""The facility manager's pages (issue 13, item 1): a site (live power, power over 24 h and 7 days, energy by day
and by fiscal-year month, each meter's data quality) and the streetlight cabinets (burning hours, day burning,
night outages), each table with its CSV.

Every figure comes from the function that answers the JSON API for it, called with the caller's principal, so a
page and the API agree for the same period and scope: ``live_summary`` (GET /sites/{code}/live), ``energy_rows``
(the rows of GET /energy), ``rollups`` (GET /rollups), ``completeness`` (GET /completeness), ``conflict_counts``
(the rows of GET /conflicts, counted for every meter in one query), ``late_data`` (GET /late-data) and
``streetlights`` (GET /streetlights). A site outside the caller's scope is a 404 page, as the API answers 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from lccm.api.deps import Conn
from lccm.api.errors import SiteNotFound
from lccm.api.principal import CurrentPrincipal, Principal
from lccm.api.routes.energy import completeness, energy_rows, live_summary
from lccm.api.routes.rollups import LampRowOut, late_data, rollups, streetlights
from lccm.api.schemas import EnergyRowOut, SiteLiveOut
from lccm.api.web import charts
from lccm.api.web.i18n import Lang, day_text, fiscal_year_text, month_text, texts, when
from lccm.api.web.render import csv_response, lang, render
from lccm.engine.calendar import year_months, year_of, year_period
from lccm.engine.timebase import BANGKOK
from lccm.store import queries
from lccm.store.conflicts import conflict_counts

router = APIRouter(include_in_schema=False)

DAYS_SHOWN = 31
FLAG_DAYS = 7  # each meter's flags cover this many days to now
COMPLETE_ENOUGH_PCT = 95.0
CONFLICTS_COUNTED = 1000  # the API's page size: more are shown as "1000+"
QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
NOT_METERS = frozenset({"lamp"})  # a street's lamps report a state, not a register: the cabinet is its meter

Fy = Annotated[int | None, Query(ge=2000, le=2600, description="Thai fiscal year, CE, named by the year it ends in")]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=BANGKOK)


def _today() -> date:
    return datetime.now(UTC).astimezone(BANGKOK).date()


def _site(conn: Conn, site_code: str, principal: Principal) -> queries.Site:
    """The site, or the 404 page (api/web/errors.py): one answer for a wrong code and a site outside the scope."""
    site = queries.get_site(conn, site_code, scope=principal.scope)
    if site is None:
        raise SiteNotFound(site_code)
    return site


def site_name(site: queries.Site, chosen: Lang) -> str:
    return (site.name_th or site.name) if chosen == "th" else site.name


# --- power ---------------------------------------------------------------------------------------------------------


def power_series(
    conn: Conn, principal: Principal, site_code: str, end: datetime, span: timedelta, step: timedelta
) -> list[charts.Point]:
    """The site's power in kW (each meter's mean in the bucket, added up: GET /rollups' sum_of_device_means) for
    every bucket of [end - span, end); a bucket without readings is None (a gap on the chart)."""
    start = end - span
    interval: Literal["15min", "1h"] = "15min" if step == QUARTER else "1h"
    answer = rollups(
        conn=conn, principal=principal, metric="power", start=start, end=end, interval=interval, group_by="site",
        site_code=site_code, device_id=None, kind=None,
    )  # fmt: skip
    by_start = {r.bucket_start: r.sum_of_device_means / 1000 for r in answer.rows}
    steps = int(span / step)
    return [(start + k * step, by_start.get(start + k * step)) for k in range(steps)]


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


# --- energy by day and by month -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnergyLine:
    """One row of an energy table: a day or month, and the site's energy in it (None: no data)."""

    start: datetime
    label: str
    energy_kwh: float | None
    kgco2e: float | None
    kgco2e_base_year: float | None
    quality: str | None
    covered_fraction: float | None

    @property
    def covered_pct(self) -> float | None:
        return None if self.covered_fraction is None else 100 * self.covered_fraction


def _lines(starts: Sequence[tuple[datetime, str]], rows: Iterable[EnergyRowOut]) -> list[EnergyLine]:
    by_start = {r.bucket_start: r for r in rows}
    lines = []
    for start, label in starts:
        r = by_start.get(start)
        lines.append(
            EnergyLine(start, label, None, None, None, None, None)
            if r is None
            else EnergyLine(start, label, r.amount, r.kgco2e, r.kgco2e_base_year, r.quality_label, r.covered_fraction)
        )
    return lines


def energy_by_day(conn: Conn, principal: Principal, site_code: str, today: date, chosen: Lang) -> list[EnergyLine]:
    """The site's electricity of each of the last 31 Bangkok days, today included (GET /energy interval=1d)."""
    days = [today - timedelta(days=DAYS_SHOWN - 1 - k) for k in range(DAYS_SHOWN)]
    rows = energy_rows(
        conn, principal.scope, _midnight(days[0]), _midnight(today + timedelta(days=1)), "1d", "site", site_code,
        "energy",
    )  # fmt: skip
    return _lines([(_midnight(d), day_text(d, chosen)) for d in days], rows)


def energy_by_month(conn: Conn, principal: Principal, site_code: str, fy: int, chosen: Lang) -> list[EnergyLine]:
    """The site's electricity of each month of Thai fiscal year ``fy``, October to September (GET /energy 1mo)."""
    period = year_period(fy, "fiscal")
    rows = energy_rows(conn, principal.scope, period.start, period.end, "1mo", "site", site_code, "energy")
    months = [(datetime(y, m, 1, tzinfo=BANGKOK), month_text(y, m, chosen)) for y, m in year_months(fy, "fiscal")]
    return _lines(months, rows)


ENERGY_CSV_COLUMNS = (
    "bucket_start", "energy_kwh", "kgco2e", "kgco2e_base_year", "quality", "covered_fraction",
)  # fmt: skip


# --- each meter's flags -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterFlags:
    device_id: str
    name: str
    kind: str
    complete_yesterday_pct: float | None
    complete_today_pct: float | None
    messages_lost_yesterday: int | None
    estimated_15min: int
    suspect_15min: int
    missing_15min: int
    conflicts: int
    conflicts_more: bool  # more than CONFLICTS_COUNTED
    late_spans: int
    power_stale: bool | None

    @property
    def status(self) -> Literal["ok", "estimates", "check"]:
        incomplete = self.complete_yesterday_pct is not None and self.complete_yesterday_pct < COMPLETE_ENOUGH_PCT
        if incomplete or self.suspect_15min or self.missing_15min or self.conflicts or self.late_spans:
            return "check"
        if self.estimated_15min or self.messages_lost_yesterday:
            return "estimates"
        return "ok"


METER_CSV_COLUMNS = (
    "device_id", "name", "kind", "complete_yesterday_pct", "complete_today_pct", "messages_lost_yesterday",
    "estimated_15min", "suspect_15min", "missing_15min", "conflicts", "late_spans", "status",
)  # fmt: skip


def meter_flags(
    conn: Conn, principal: Principal, site_code: str, now: datetime, live: SiteLiveOut | None = None
) -> list[MeterFlags]:
    """What the product records about each meter's data: completeness yesterday and today (GET /completeness), the
    quality of its 15-minute energy over the last 7 days (GET /energy group_by=device), conflicting values offered
    again (GET /conflicts) and open late-data spans (GET /late-data)."""
    meters = [d for d in queries.list_devices(conn, scope=principal.scope, site_code=site_code)
              if d.kind not in NOT_METERS]  # fmt: skip
    if not meters:
        return []
    today = now.astimezone(BANGKOK).date()
    complete = {
        day: {
            r.device_id: r for r in completeness(conn=conn, principal=principal, day=day, site_code=site_code).devices
        }
        for day in (today - timedelta(days=1), today)
    }
    start = _floor(now, QUARTER) - timedelta(days=FLAG_DAYS)
    quarters = energy_rows(
        conn, principal.scope, start, _floor(now, QUARTER) + QUARTER, "15min", "device", site_code, None
    )
    qualities: dict[str, dict[str, int]] = {}
    for r in quarters:
        counts = qualities.setdefault(r.group or "", {})
        counts[r.quality_label] = counts.get(r.quality_label, 0) + 1
    late = late_data(conn=conn, principal=principal, include_resolved=False, limit=10_000)
    # GET /conflicts?device_id=...&from=start&limit=1000 for every meter at once: its rows, counted
    conflicts = conflict_counts(conn, device_pks=[m.id for m in meters], start=start, scope=principal.scope)
    live = live if live is not None else live_summary(conn, site_code, principal.scope, now)  # the page has it
    stale = {d.device_id: d.power_stale for d in live.devices}
    found = []
    for m in meters:
        yesterday, now_day = complete[today - timedelta(days=1)].get(m.device_id), complete[today].get(m.device_id)
        offered_again = conflicts.get(m.id, 0)
        q = qualities.get(m.device_id, {})
        found.append(
            MeterFlags(
                device_id=m.device_id, name=m.name, kind=m.kind,
                complete_yesterday_pct=None if yesterday is None else yesterday.completeness_pct,
                complete_today_pct=None if now_day is None else now_day.completeness_pct,
                messages_lost_yesterday=None if yesterday is None else yesterday.messages_lost,
                estimated_15min=q.get("estimated", 0), suspect_15min=q.get("suspect", 0),
                missing_15min=q.get("missing", 0), conflicts=min(offered_again, CONFLICTS_COUNTED),
                conflicts_more=offered_again > CONFLICTS_COUNTED,
                late_spans=sum(1 for s in late if s.device_id == m.device_id), power_stale=stale.get(m.device_id),
            )
        )  # fmt: skip
    return found


# --- the site page and its downloads -------------------------------------------------------------------------------


@router.get("/app/sites/{site_code}")
def site_page(site_code: str, request: Request, conn: Conn, principal: CurrentPrincipal, fy: Fy = None) -> HTMLResponse:
    site = _site(conn, site_code, principal)
    chosen, now = lang(request), datetime.now(UTC)
    t = texts(chosen)
    current_fy = year_of(now, "fiscal")
    year = fy or current_fy
    live: SiteLiveOut = live_summary(conn, site_code, principal.scope, now)
    day_end, hour_end = _floor(now, QUARTER) + QUARTER, _floor(now, HOUR) + HOUR
    days = energy_by_day(conn, principal, site_code, now.astimezone(BANGKOK).date(), chosen)
    months = energy_by_month(conn, principal, site_code, year, chosen)
    return render(
        request, "site.html", site=site, name=site_name(site, chosen), live=live,
        power_kw=None if live.power_w is None else live.power_w / 1000, as_of=when(now, chosen),
        chart_24h=charts.time_series(t["fac_power_24h"], "kW", [(t["fac_power_title"], power_series(
            conn, principal, site_code, day_end, timedelta(hours=24), QUARTER))]),
        chart_7d=charts.time_series(t["fac_power_7d"], "kW", [(t["fac_power_title"], power_series(
            conn, principal, site_code, hour_end, timedelta(days=7), HOUR))]),
        days=days, months=months,
        chart_days=charts.categories(t["fac_energy_day_title"], "kWh", [d.label for d in days],
                                     [(t["fac_energy_kwh"], [d.energy_kwh for d in days])]),
        chart_months=charts.categories(fiscal_year_text(year, chosen), "kWh", [m.label for m in months],
                                       [(t["fac_energy_kwh"], [m.energy_kwh for m in months])]),
        fy=year, fy_label=fiscal_year_text(year, chosen),
        fy_choices=[(y, fiscal_year_text(y, chosen)) for y in range(current_fy, current_fy - 4, -1)],
        meters=meter_flags(conn, principal, site_code, now, live), user=principal.display_name,
    )  # fmt: skip


@router.get("/app/sites/{site_code}/energy.csv")
def site_energy_csv(
    site_code: str, request: Request, conn: Conn, principal: CurrentPrincipal,
    by: Literal["day", "month"] = "day", fy: Fy = None,
) -> Response:  # fmt: skip
    """The energy table of the site page as CSV: by day (the last 31 days) or by month (a fiscal year)."""
    _site(conn, site_code, principal)
    chosen, now = lang(request), datetime.now(UTC)
    if by == "day":
        lines = energy_by_day(conn, principal, site_code, now.astimezone(BANGKOK).date(), chosen)
    else:
        lines = energy_by_month(conn, principal, site_code, fy or year_of(now, "fiscal"), chosen)
    return csv_response(
        f"{site_code}-energy-by-{by}.csv", ENERGY_CSV_COLUMNS,
        ((x.start.isoformat(), x.energy_kwh, x.kgco2e, x.kgco2e_base_year, x.quality, x.covered_fraction)
         for x in lines),
    )  # fmt: skip


@router.get("/app/sites/{site_code}/meters.csv")
def site_meters_csv(site_code: str, request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    _site(conn, site_code, principal)
    meters = meter_flags(conn, principal, site_code, datetime.now(UTC))
    return csv_response(
        f"{site_code}-meters.csv", METER_CSV_COLUMNS,
        ((m.device_id, m.name, m.kind, m.complete_yesterday_pct, m.complete_today_pct, m.messages_lost_yesterday,
          m.estimated_15min, m.suspect_15min, m.missing_15min, m.conflicts, m.late_spans, m.status) for m in meters),
    )  # fmt: skip


# --- streetlight cabinets ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CabinetLine:
    """One street (a site with a cabinet and its lamps) over a day or a period: lamp-hours summed over its days."""

    site_code: str
    name: str
    lamps: int
    burning_h: float
    day_burning_h: float
    outage_h: float
    night_known_h: float
    unknown_h: float
    cabinet_energy_kwh: float | None

    @property
    def outage_fraction(self) -> float | None:
        return self.outage_h / self.night_known_h if self.night_known_h > 0 else None


def cabinet_lines(conn: Conn, principal: Principal, first: date, last: date, chosen: Lang) -> list[CabinetLine]:
    """Each street's lamps over the Bangkok days first..last (GET /streetlights interval=1d group_by=site, its
    days added up; the outage share is of the period's known night hours)."""
    answer = streetlights(
        conn=conn, principal=principal, start=_midnight(first), end=_midnight(last + timedelta(days=1)),
        interval="1d", group_by="site", site_code=None, device_id=None,
    )  # fmt: skip
    names = {s.site_code: site_name(s, chosen) for s in queries.list_sites(conn, scope=principal.scope)}
    by_site: dict[str, list[LampRowOut]] = {}
    for r in answer.rows:
        by_site.setdefault(r.group or "", []).append(r)
    return [_cabinet_line(code, names.get(code, code), rows) for code, rows in sorted(by_site.items())]


def _cabinet_line(code: str, name: str, rows: Sequence[LampRowOut]) -> CabinetLine:
    energies = [r.cabinet_energy_kwh for r in rows if r.cabinet_energy_kwh is not None]
    return CabinetLine(
        site_code=code, name=name, lamps=max(r.lamps for r in rows),
        burning_h=sum(r.burning_h for r in rows), day_burning_h=sum(r.day_burning_h for r in rows),
        outage_h=sum(r.outage_h for r in rows), night_known_h=sum(r.night_known_h for r in rows),
        unknown_h=sum(r.unknown_h for r in rows), cabinet_energy_kwh=sum(energies) if energies else None,
    )  # fmt: skip


STREETLIGHT_CSV_COLUMNS = (
    "site_code", "name", "lamps", "burning_h", "day_burning_h", "outage_h", "night_known_h", "outage_fraction",
    "unknown_h", "cabinet_energy_kwh",
)  # fmt: skip
WEEK_DAYS = 7

Day = Annotated[date | None, Query(alias="date", description="a Bangkok day, YYYY-MM-DD; default yesterday")]


@router.get("/app/streetlights")
def streetlights_page(request: Request, conn: Conn, principal: CurrentPrincipal, day: Day = None) -> HTMLResponse:
    chosen = lang(request)
    last = day or _today() - timedelta(days=1)
    first_of_week = last - timedelta(days=WEEK_DAYS - 1)
    return render(
        request, "streetlights.html", day=last, day_label=day_text(last, chosen),
        week_label=f"{day_text(first_of_week, chosen)} – {day_text(last, chosen)}",
        day_rows=cabinet_lines(conn, principal, last, last, chosen),
        week_rows=cabinet_lines(conn, principal, first_of_week, last, chosen), user=principal.display_name,
    )  # fmt: skip


@router.get("/app/streetlights.csv")
def streetlights_csv(
    request: Request, conn: Conn, principal: CurrentPrincipal, day: Day = None,
    period: Literal["day", "week"] = "day",
) -> Response:  # fmt: skip
    last = day or _today() - timedelta(days=1)
    first = last if period == "day" else last - timedelta(days=WEEK_DAYS - 1)
    rows = cabinet_lines(conn, principal, first, last, lang(request))
    return csv_response(
        f"streetlights-{first.isoformat()}-{last.isoformat()}.csv", STREETLIGHT_CSV_COLUMNS,
        ((r.site_code, r.name, r.lamps, r.burning_h, r.day_burning_h, r.outage_h, r.night_known_h,
          r.outage_fraction, r.unknown_h, r.cabinet_energy_kwh) for r in rows),
    )  # fmt: skip
