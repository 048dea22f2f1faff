"""The web pages' routes: the login form, logout, the city overview and its CSV.

Routes are thin sync functions like the API's; their policies are in api/policy.py (``Access.PAGE``: without a
session the guard sends the browser to /login). They are left out of the OpenAPI document: they answer HTML for
people, not JSON for programs. The overview's figures come from the same function as ``GET /sites/{code}/live``
(api/routes/energy.py ``live_summary``), in the caller's scope. It refreshes itself with a plain
``<meta http-equiv="refresh">`` every 30 s (htmx is a later step).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lccm.api.auth import sessions
from lccm.api.auth.guard import SESSION_COOKIE, AuthConfig
from lccm.api.deps import Conn
from lccm.api.errors import NotFound
from lccm.api.principal import CurrentPrincipal, Scope
from lccm.api.routes.energy import live_summary
from lccm.api.web.i18n import LANG_COOKIE, Lang, lang_of, texts, when
from lccm.store import queries

router = APIRouter(include_in_schema=False)
REFRESH_S = 30
ASSETS = {"web.css": "text/css; charset=utf-8"}
CSV_COLUMNS = ("rank", "site_code", "site_name", "power_kw", "energy_today_kwh", "kgco2e_today")


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lccm.api.web", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _lang(request: Request) -> Lang:
    return lang_of(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def _render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    lang = _lang(request)
    html = (
        _env().get_template(template).render(t=texts(lang), lang=lang, other="en" if lang == "th" else "th", **context)
    )
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") == lang:  # an explicit choice is remembered for the next pages
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return response


async def _form(request: Request) -> dict[str, str]:
    """An HTML form's fields (urlencoded), first value of each."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


Form = Annotated[dict[str, str], Depends(_form)]


class WebAssetNotFound(NotFound):
    code = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no web asset {name!r}")


@router.get("/web/assets/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise WebAssetNotFound(name)
    data = resources.files("lccm.api.web").joinpath("static", name).read_bytes()
    return Response(data, media_type=ASSETS[name], headers={"cache-control": "public, max-age=3600"})


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _render(request, "login.html", failed=False, username="")


@router.post("/login", response_model=None)
def login(request: Request, conn: Conn, form: Form) -> Response:
    config: AuthConfig = request.app.state.auth
    username, password = form.get("username", "")[:64], form.get("password", "")[:1024]
    session = sessions.log_in(conn, config, username, password) if username and password else None
    if session is None:  # returned, not raised: a failure count must commit
        return _render(request, "login.html", status_code=401, failed=True, username=username)
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
    lang = _lang(request)
    rows = overview_rows(conn, principal.scope, as_of, lang)
    csrf = request.cookies.get(sessions.CSRF_COOKIE, "")
    return _render(
        request, "overview.html", rows=rows, as_of=when(as_of, lang), refresh_s=REFRESH_S, csrf=csrf,
        user=principal.display_name,
    )  # fmt: skip


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


@router.get("/overview.csv")
def overview_csv(request: Request, conn: Conn, principal: CurrentPrincipal) -> Response:
    rows = overview_rows(conn, principal.scope, datetime.now(UTC), _lang(request))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [r.rank, r.site_code, r.site_name, _number(r.power_kw), _number(r.energy_today_kwh),
             _number(r.kgco2e_today)]
        )  # fmt: skip
    headers = {"content-disposition": 'attachment; filename="overview.csv"'}
    # A BOM so that Excel opens the Thai names as UTF-8.
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
