"""What every page module shares: the template environment, the language of a request, rendering a page or a
fragment, reading an HTML form, a CSV download, and the static assets (the pages' own and the vendored npm files,
deploy/vendor_npm.py). Page modules (api/web/*.py) stay thin: domain figures come from the functions the JSON API
uses, and these helpers turn them into HTML."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response

from lccm.api.auth import sessions
from lccm.api.errors import NotFound
from lccm.api.web.i18n import LANG_COOKIE, Lang, lang_of, texts, when

MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
}


@cache
def env() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("lccm.api.web", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    environment.filters["num"] = number_text
    environment.filters["tojson_attr"] = lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return environment


def number_text(value: float | None, places: int = 2) -> str:
    """A figure as shown on a page: thousands separated; None is shown as an en dash (templates say why beside it)."""
    return "–" if value is None else f"{value:,.{places}f}"


def lang(request: Request) -> Lang:
    return lang_of(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page (or an htmx fragment) in the request's language, with what base.html needs: the texts, the other
    language, the CSRF token for htmx's writes and the current path for the navigation."""
    chosen = lang(request)
    html = (
        env()
        .get_template(template)
        .render(
            t=texts(chosen), lang=chosen, other="en" if chosen == "th" else "th",
            csrf=request.cookies.get(sessions.CSRF_COOKIE, ""), path=request.url.path,
            when=lambda moment: when(moment, chosen), **context,
        )
    )  # fmt: skip
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") == chosen:  # an explicit choice is remembered for the next pages
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, samesite="lax", path="/")
    return response


async def _form(request: Request) -> dict[str, str]:
    """An HTML form's fields (urlencoded), first value of each."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


Form = Annotated[dict[str, str], Depends(_form)]


def csv_response(filename: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """A table as a CSV download: None as an empty cell, floats as they are stored (no thousands separators)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    headers = {"content-disposition": f'attachment; filename="{filename}"'}
    # A BOM so that Excel opens the Thai names as UTF-8.
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


class WebAssetNotFound(NotFound):
    code = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no web asset {name!r}")


@cache
def assets() -> dict[str, str]:
    """Every file under api/web/static/ the pages may load, by its path there, with its media type (VENDORED.json
    and licence texts are records, not assets)."""
    found: dict[str, str] = {}
    root = resources.files("lccm.api.web").joinpath("static")

    def walk(folder: Any, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif (kind := MEDIA_TYPES.get("." + entry.name.rpartition(".")[2])) and entry.name != "VENDORED.json":
                found[prefix + entry.name] = kind

    walk(root, "")
    return found


def asset_response(name: str) -> Response:
    if name not in assets():
        raise WebAssetNotFound(name)
    data = resources.files("lccm.api.web").joinpath("static", *name.split("/")).read_bytes()
    # Vendored files change only with their version (in the path of the page's <script>), ours with a release.
    return Response(data, media_type=assets()[name], headers={"cache-control": "public, max-age=3600"})
