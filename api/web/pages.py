"""The web pages' routes: the login form, logout, the city overview and its CSV.

Routes are thin sync functions like the API's; their policies are in api/policy.py (``Access.PAGE``: without a
session the guard sends the browser to /login). They are left out of the OpenAPI document: they answer HTML for
people, not JSON for programs. The overview's figures come from the same function as ``GET /sites/{code}/live``
(api/routes/energy.py ``live_summary``), in the caller's scope. It refreshes itself with a plain
``<meta http-equiv="refresh">`` every 30 s (htmx is a later step).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lccm.api.auth import sessions
from lccm.api.auth.guard import SESSION_COOKIE, AuthConfig
from lccm.api.deps import Conn
from lccm.api.principal import CurrentPrincipal, Scope
from lccm.api.routes.energy import live_summary
from lccm.api.web.i18n import Lang, when
from lccm.api.web.render import Form, asset_response, csv_response, lang, render
from lccm.store import queries

router = APIRouter(include_in_schema=False)
REFRESH_S = 30
CSV_COLUMNS = ("rank", "site_code", "site_name", "power_kw", "energy_today_kwh", "kgco2e_today")


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


def overview_rows(conn: Conn, scope: Scope, as_of: datetime, lang: Lang) -> list[OverviewRow]:
    """Every site of the scope, highest live power first (sites without live power last, by code)."""
    found = []
    for site in queries.list_sites(conn, scope=scope):
        live = live_summary(conn, site.site_code, scope, as_of)
        name = (site.name_th or site.name) if lang == "th" else site.name
        kw = None if live.power_w is None else live.power_w / 1000
        found.append((site.site_code, name, kw, live.energy_today_kwh, live.kgco2e_today))
    found.sort(key=lambda r: (r[2] is None, -(r[2] or 0.0), r[0]))
    return [OverviewRow(i, *r) for i, r in enumerate(found, start=1)]


@router.get("/")
def overview(request: Request, conn: Conn, principal: CurrentPrincipal) -> HTMLResponse:
    as_of = datetime.now(UTC)
    chosen = lang(request)
    rows = overview_rows(conn, principal.scope, as_of, chosen)
    return render(
        request, "overview.html", rows=rows, as_of=when(as_of, chosen), refresh_s=REFRESH_S,
        user=principal.display_name,
    )  # fmt: skip


@router.get("/overview.csv")
def overview_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    rows = overview_rows(conn, principal.scope, datetime.now(UTC), lang(request))
    return csv_response(
        "overview.csv", CSV_COLUMNS,
        ((r.rank, r.site_code, r.site_name, r.power_kw, r.energy_today_kwh, r.kgco2e_today) for r in rows),
    )  # fmt: skip
