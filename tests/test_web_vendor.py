"""The pages' vendored front-end libraries (api/web/static/vendor/, deploy/vendor_npm.py): each file is the one
its VENDORED.json records (sha256), each script is served at /web/assets/vendor/... byte for byte with a JavaScript
media type, and the records (VENDORED.json, licence and notice texts) are not served as assets. No database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import pytest

from lccm.api.app import create_app
from lccm.settings import Settings
from tests._auth import TestClient

VENDOR = resources.files("lccm.api.web").joinpath("static", "vendor")
PACKAGES = sorted(p.name for p in VENDOR.iterdir() if p.is_dir())
RECORDS = {"VENDORED.json", "LICENSE", "NOTICE"}


def _record(package: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(VENDOR.joinpath(package, "VENDORED.json").read_text())
    return found


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))) as c:
        yield c


def test_the_libraries_the_pages_need_are_vendored_with_version_and_licence() -> None:
    assert {"htmx", "htmx-ext-sse", "echarts"} <= set(PACKAGES)
    for package in PACKAGES:
        record = _record(package)
        assert record["package"] in (package, f"{package}.org") and record["registry"] == "npm", package
        assert record["version"] and record["license"] and record["integrity"].startswith("sha512-"), package
        assert "LICENSE" in record["files"], package


@pytest.mark.parametrize("package", PACKAGES)
def test_every_file_equals_its_recorded_hash_and_none_is_unrecorded(package: str) -> None:
    files = _record(package)["files"]
    present = {e.name for e in VENDOR.joinpath(package).iterdir() if e.is_file()} - {"VENDORED.json"}
    assert present == set(files), f"{package}: unrecorded {present - set(files)}, missing {set(files) - present}"
    for name, digest in files.items():
        assert hashlib.sha256(VENDOR.joinpath(package, name).read_bytes()).hexdigest() == digest, f"{package}/{name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_the_scripts_are_served_as_vendored_and_the_records_are_not(client: TestClient, package: str) -> None:
    files = _record(package)["files"]
    scripts = [n for n in files if PurePosixPath(n).suffix == ".js"]
    assert scripts, package
    for name in scripts:
        answer = client.get(f"/web/assets/vendor/{package}/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].split(";")[0] == "text/javascript", answer.headers["content-type"]
        assert answer.content == VENDOR.joinpath(package, name).read_bytes()
    for name in RECORDS & {*files, "VENDORED.json"}:
        assert client.get(f"/web/assets/vendor/{package}/{name}").status_code == 404, f"{package}/{name}"
    assert client.get(f"/web/assets/vendor/{package}/..%2F..%2F..%2Fapp.py").status_code == 404


def test_the_base_page_loads_the_vendored_scripts_from_this_server(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    for package in ("htmx", "htmx-ext-sse", "echarts"):
        assert f"/web/assets/vendor/{package}/" in page.text, package
    assert "https://" not in page.text and "http://" not in page.text.replace('xmlns="http://www.w3.org', "")
