"""The interactive API documentation at ``/docs``, served whole from the package: no CDN, so it works offline.

FastAPI's own page loads Swagger UI from a CDN and its icon from FastAPI's web site; without internet it is blank.
Here the page is FastAPI's (``get_swagger_ui_html``) with every asset served from ``/docs/assets/``: Swagger UI's
script, style sheet and icon, vendored from the npm package swagger-ui-dist into api/static/swagger-ui/ with its
version, licence and hashes in VENDORED.json (deploy/vendor_npm.py), and shipped as package data. Swagger
UI's spec validator badge, which calls an outside service, is off. ReDoc (``/redoc``) is not offered: one page is
enough, and it would need its own bundle.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from lccm.api.errors import NotFound

DOCS_URL = "/docs"
ASSET_URL = "/docs/assets"
# The files the page loads, with the media type each is served as.
ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_FOLDER = ("static", "swagger-ui")


class AssetNotFound(NotFound):
    code = "asset_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no documentation asset {name!r}")


@cache
def _asset(name: str) -> bytes:
    return resources.files("lccm.api").joinpath(*_FOLDER, name).read_bytes()


def swagger_ui_version() -> str:
    record: dict[str, Any] = json.loads(_asset("VENDORED.json"))
    return str(record["version"])


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, its OAuth2 redirect page and its assets to ``app`` (built with ``docs_url=None``)."""
    version = swagger_ui_version()

    def page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            # ?v= names the vendored version, so a browser's cache never mixes two of them.
            swagger_js_url=f"{ASSET_URL}/swagger-ui-bundle.js?v={version}",
            swagger_css_url=f"{ASSET_URL}/swagger-ui.css?v={version}",
            swagger_favicon_url=f"{ASSET_URL}/favicon-32x32.png?v={version}",
            oauth2_redirect_url=f"{DOCS_URL}/oauth2-redirect",
            swagger_ui_parameters={"validatorUrl": None},
        )

    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise AssetNotFound(name)
        headers = {"cache-control": "public, max-age=86400"}
        return Response(_asset(name), media_type=ASSETS[name], headers=headers)

    app.add_api_route(DOCS_URL, page, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{DOCS_URL}/oauth2-redirect", oauth2_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{ASSET_URL}/{{name}}", asset, methods=["GET"], include_in_schema=False)
