"""The web pages' routes: the login form, logout, the city overview and its CSV.

Routes are thin sync functions like the API's; their policies are in api/policy.py (``Access.PAGE``: without a
session the guard sends the browser to /login). They are left out of the OpenAPI document: they answer HTML for
people, not JSON for programs. The overview's figures come from the same function as ``GET /sites/{code}/live``
(api/routes/energy.py ``sites_today``, the figures of ``live_summary``, and ``completeness_by_site``, the sites of
``GET /completeness``), in the caller's scope, in a fixed number of queries whatever the number of sites.

Live updates: the page opens the live feed (htmx's SSE extension, ``sse-connect="/live/events"``) and re-fetches the
table fragment (``/overview/table``) when a ``power`` event arrives (at most every few seconds), and once a minute
anyway for today's energy and completeness, which no event announces. The fragment, not the events, fills the table:
one server function renders the rows, so the live figures cannot drift from the page's or the API's, and the feed
stays the trigger that makes the page follow changes within a poll interval instead of a fixed reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lccm.api.auth import sessions
from lccm.api.auth.guard import SESSION_COOKIE, AuthConfig
from lccm.api.deps import Conn
from lccm.api.principal import CurrentPrincipal, Principal, Scope
from lccm.api.routes.energy import completeness_by_site, sites_today
from lccm.api.web.i18n import Lang, when
from lccm.api.web.render import Form, asset_response, csv_response, lang, render
from lccm.engine.timebase import BANGKOK
from lccm.store import queries

router = APIRouter(include_in_schema=False)
REFRESH_S = 60  # the table is fetched again at least this often (today's energy comes with no event)
CSV_COLUMNS = (
    "rank", "site_code", "site_name", "power_kw", "energy_today_kwh", "kgco2e_today", "energy_week_ago_kwh",
    "kgco2e_week_ago", "energy_change_pct", "completeness_pct", "complete",
)  # fmt: skip


@router.get("/web/assets/{name:path}")
def asset(name: str) -> Response:
    return asset_response(name)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", failed=False, username="")


@router.post("/login", response_model=None)
def login(request: Request, conn: Conn, form: Form) -> Response:
    config: AuthConfig = request.app.state.auth
    username, password = form.get("username", "")[:64], form.get("password", "")[:1024]
    session = sessions.log_in(conn, config, username, password) if username and password else None
    if session is None:  # returned, not raised: a failure count must commit
        return render(request, "login.html", status_code=401, failed=True, username=username)
    response = RedirectResponse("/", status_code=303)
    sessions.set_cookies(response, session, config)
    return response


@router.post("/logout")
def logout(request: Request, conn: Conn, form: Form) -> RedirectResponse:
    """Ends the session only with its CSRF token in the form (a cross-site form cannot know it)."""
    ended = sessions.log_out_with_csrf(conn, request.cookies.get(SESSION_COOKIE), form.get("csrf_token", ""))
    response = RedirectResponse("/login", status_code=303)
    if ended:
        sessions.clear_cookies(response)
    return response


@dataclass(frozen=True, slots=True)
class OverviewRow:
    rank: int
    site_code: str
    site_name: str
    power_kw: float | None
    energy_today_kwh: float
    kgco2e_today: float
    energy_week_ago_kwh: float  # the same weekday last week, 00:00 to the same clock time
    kgco2e_week_ago: float
    energy_change_pct: float | None  # today against that; None when last week had no energy
    completeness_pct: float | None  # today's readings received / expected (GET /completeness); None: no devices
    complete: bool | None  # completeness_pct at least the comparison threshold (LCCM_COMPARISON_MIN_COVERAGE)


@dataclass(frozen=True, slots=True)
class Overview:
    rows: list[OverviewRow]
    as_of: datetime
    week_start: datetime
    week_cut: datetime


def overview(conn: Conn, scope: Scope, as_of: datetime, lang: Lang, min_coverage: float) -> Overview:
    """Every site of the scope, highest live power first (sites without live power last, by code)."""
    today = sites_today(conn, scope, as_of)
    coverage = completeness_by_site(conn, scope, as_of)
    found: list[tuple[str, str, float | None, float, float, float, float, float | None, float | None]] = []
    for site in queries.list_sites(conn, scope=scope):
        name = (site.name_th or site.name) if lang == "th" else site.name
        t = today.get(site.site_code)
        c = coverage.get(site.site_code)
        pct = None if c is None else c.completeness_pct
        if t is None:  # no devices: zeros, as GET /sites/{code}/live answers
            found.append((site.site_code, name, None, 0.0, 0.0, 0.0, 0.0, None, pct))
            continue
        live = t.live
        kw = None if live.power_w is None else live.power_w / 1000
        change = 100 * (live.energy_today_kwh - t.energy_week_kwh) / t.energy_week_kwh if t.energy_week_kwh else None
        found.append((site.site_code, name, kw, live.energy_today_kwh, live.kgco2e_today, t.energy_week_kwh,
                      t.kgco2e_week, change, pct))  # fmt: skip
    found.sort(key=lambda r: (r[2] is None, -(r[2] or 0.0), r[0]))
    rows = [
        OverviewRow(i, *r, complete=None if r[-1] is None else r[-1] >= 100 * min_coverage)
        for i, r in enumerate(found, start=1)
    ]
    day_start = datetime.combine(as_of.astimezone(BANGKOK).date(), time(), tzinfo=BANGKOK)
    return Overview(rows, as_of, day_start - timedelta(days=7), as_of - timedelta(days=7))


def _overview(request: Request, conn: Conn, principal: Principal) -> Overview:
    min_coverage: float = request.app.state.comparison_min_coverage
    return overview(conn, principal.scope, datetime.now(UTC), lang(request), min_coverage)


def _context(request: Request, found: Overview, principal: Principal) -> dict[str, Any]:
    chosen = lang(request)
    return {
        "rows": found.rows, "as_of": when(found.as_of, chosen), "week_start": when(found.week_start, chosen),
        "week_cut": when(found.week_cut, chosen), "refresh_s": REFRESH_S, "user": principal.display_name,
        "min_coverage_pct": f"{100 * request.app.state.comparison_min_coverage:g}",
    }  # fmt: skip


@router.get("/")
def overview_page(request: Request, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    return render(request, "overview.html", **_context(request, _overview(request, conn, principal), principal))


@router.get("/overview/table")
def overview_table(request: Request, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    """The overview's table alone: what the page fetches when the live feed says power changed."""
    return render(request, "overview_table.html", **_context(request, _overview(request, conn, principal), principal))


@router.get("/overview.csv")
def overview_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    rows = _overview(request, conn, principal).rows
    return csv_response(
        "overview.csv", CSV_COLUMNS,
        ((r.rank, r.site_code, r.site_name, r.power_kw, r.energy_today_kwh, r.kgco2e_today, r.energy_week_ago_kwh,
          r.kgco2e_week_ago, r.energy_change_pct, r.completeness_pct, r.complete) for r in rows),
    )  # fmt: skip
