"""/docs works offline: the page references only the API's own URLs, each of them answers with its asset and the
right media type, and the assets are the vendored swagger-ui-dist files recorded in VENDORED.json."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.api.docs import ASSETS
from lccm.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

FOLDER = resources.files("lccm.api").joinpath("static", "swagger-ui")
VENDORED = json.loads(FOLDER.joinpath("VENDORED.json").read_text())
MEDIA = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # The page and its assets need no database: the app is never given one.
    with TestClient(create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))) as c:
        yield c


def _references(html: str) -> list[str]:
    """Every URL the page loads or points at: src and href attributes, and Swagger UI's url / oauth2RedirectUrl."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    found += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", html)
    found += re.findall(r"""oauth2RedirectUrl:\s*window\.location\.origin\s*\+\s*['"]([^'"]+)['"]""", html)
    return found


def test_the_docs_page_references_only_local_urls_and_each_is_served(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = _references(page.text)
    assert len(urls) == 5, urls  # style sheet, icon, script, the OpenAPI document, the OAuth2 redirect page
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{url} is not on this server"
        r = client.get(url)
        assert r.status_code == 200, url
        path = url.split("?", 1)[0]
        suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ".html"
        expected = MEDIA.get(suffix, "text/html")
        assert r.headers["content-type"].startswith(expected), (url, r.headers["content-type"])
    assert not re.search(r"https?://", page.text), "the page names an outside address"
    assert f"?v={VENDORED['version']}" in page.text


def test_the_assets_are_the_vendored_files(client: TestClient) -> None:
    assert VENDORED["package"] == "swagger-ui-dist" and VENDORED["license"] == "Apache-2.0"
    for name in (*ASSETS, "LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
        data = FOLDER.joinpath(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == VENDORED["files"][name], name
    for name in ASSETS:
        assert client.get(f"/docs/assets/{name}").content == FOLDER.joinpath(name).read_bytes()
    assert "Apache License" in FOLDER.joinpath("LICENSE").read_text()


def test_only_the_listed_assets_are_served(client: TestClient) -> None:
    assert client.get("/docs/assets/VENDORED.json").status_code == 404
    assert client.get("/docs/assets/..%2F..%2Fapp.py").status_code == 404
    assert client.get("/redoc").status_code == 404  # not offered: it would need a CDN or a bundle of its own


# --- the document ---------------------------------------------------------------------------------------------------

DOCUMENT = create_app(Settings(database_url="unused")).openapi()
OPERATIONS = [(m.upper(), path, op) for path, item in DOCUMENT["paths"].items() for m, op in item.items()]


def _vacuous(schema: dict[str, Any]) -> bool:
    """A schema that says nothing: {} or an object of anything (what a route returning dict[str, Any] gets)."""
    return not schema or (schema.get("type") == "object" and not schema.get("properties") and "$ref" not in schema)


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_every_operation_declares_its_answers(method: str, path: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    ok = {status: r for status, r in responses.items() if status.startswith("2")}
    assert ok, f"{method} {path} declares no success"
    for status, response in ok.items():
        if status == "204":
            assert "content" not in response
            continue
        for media_type, content in response["content"].items():
            # A stream (text/event-stream) is described item by item: OpenAPI 3.2's itemSchema.
            schema = content.get("itemSchema", {}) if media_type == "text/event-stream" else content.get("schema", {})
            assert not _vacuous(schema), f"{method} {path} {status} {media_type}"
    assert {"500", "503"} <= set(responses)  # the database's errors, on every operation
    if operation.get("parameters") or "requestBody" in operation:
        assert "422" in responses
    if "requestBody" in operation:
        assert {"400", "413"} <= set(responses)
    for status in set(responses) - set(ok):
        (schema,) = (c["schema"] for c in responses[status]["content"].values())
        assert not _vacuous(schema), f"{method} {path} {status}"


def test_the_reports_declare_their_three_media_types() -> None:
    content = DOCUMENT["paths"]["/organisations/{code}/reports/cfo"]["get"]["responses"]["200"]["content"]
    assert content["text/csv"]["schema"] == content["text/html"]["schema"] == {"type": "string"}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/CfoReport"}
