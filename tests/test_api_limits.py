"""Request limits through the API: JSON bodies and uploads refused with 413 before they are parsed, an XLSX whose
unpacked size or cell grid is over its limit refused (422) and kept in the import log, and row-error answers
bounded. The limits are the settings' (api_max_json_bytes, api_max_upload_bytes, import_max_*)."""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Iterator
from importlib import resources

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.imports.registry import parse_registry_csv
from lccm.settings import Settings
from lccm.store.devices import import_registry
from tests._auth import admin_headers
from tests._db import fresh_database, registry_csv

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # see tests/test_api.py
    from starlette.testclient import TestClient

EXAMPLE_XLSX = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025-th.xlsx").read_bytes()
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LIMITS = Settings(
    database_url="unused", api_max_json_bytes=2_000, api_max_upload_bytes=40_000, import_max_unpacked_bytes=100_000,
    import_max_cells=5_000, import_max_errors_listed=5,
)  # fmt: skip


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            import_registry(conn, parse_registry_csv(registry_csv()))
        with (
            ConnectionPool(url, min_size=1, max_size=2, open=True) as pool,
            TestClient(
                create_app(LIMITS.model_copy(update={"database_url": url}), pool), headers=admin_headers(url)
            ) as c,
        ):
            # city_key keeps the registry's Lampang sites the organisation's (and so the caller's).
            org = {"name_en": "Lampang", "province_en": "Lampang", "municipality_type": "city", "city_key": "lampang"}
            assert c.put("/organisations/lampang", json=org).status_code == 200
            yield c


def _mappings(n: int) -> dict[str, list[dict[str, str]]]:
    return {"mappings": [{"device_id": f"D{i:05d}", "item_code": "S2-ELEC"} for i in range(n)]}


def test_a_json_body_over_the_limit_is_refused_before_it_is_parsed(client: TestClient) -> None:
    r = client.put("/organisations/lampang/mappings", params={"year": 2025}, json=_mappings(100))  # ~5 KB
    assert r.status_code == 413
    assert r.json() == {
        "error": "payload_too_large",
        "detail": "the request body is larger than 2,000 bytes (setting api_max_json_bytes)",
    }


def test_a_body_without_a_length_is_cut_off_at_the_limit(client: TestClient) -> None:
    chunks = (b'{"mappings": [' + b'{"device_id": "D", "item_code": "S2-ELEC"},' * 40 for _ in range(10))
    r = client.put("/organisations/lampang/mappings", params={"year": 2025}, content=chunks,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413 and "api_max_json_bytes" in r.json()["detail"]


def test_a_json_body_under_the_limit_is_answered(client: TestClient) -> None:
    r = client.put("/organisations/lampang/mappings", params={"year": 2025}, json=_mappings(3))
    assert r.status_code in (404, 422), r.text  # read and judged: lampang has no inventory for 2025


def test_an_upload_over_its_limit_is_refused(client: TestClient) -> None:
    body = registry_csv() + b"\n" * 50_000
    r = client.post("/devices/import", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 413
    assert r.json()["detail"] == "the request body is larger than 40,000 bytes (setting api_max_upload_bytes)"
    small = client.post("/devices/import", content=registry_csv(), headers={"content-type": "text/csv"})
    assert small.status_code == 200, small.text  # a CSV is judged by the upload limit, not the JSON one


def test_an_xlsx_unpacking_past_its_limit_is_refused_and_logged(client: TestClient) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(EXAMPLE_XLSX)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr("xl/media/padding.bin", bytes(1_000_000))  # 1 MB of zeros, ~1 KB deflated
    r = client.post("/organisations/lampang/inventory/import", params={"year": 2025}, content=out.getvalue(),
                    headers={"content-type": XLSX})  # fmt: skip
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "inventory_invalid" and body["errors_total"] == 1
    assert "more than the limit of 100,000 (setting import_max_unpacked_bytes)" in body["errors"][0]["message"]
    logged = client.get("/organisations/lampang/imports").json()[0]
    assert logged["status"] == "rejected" and logged["errors"] == body["errors"]


def test_an_xlsx_spanning_too_many_cells_is_refused(client: TestClient) -> None:
    """The example (12 rows x 27 columns) is fine; with one cell at column 500 (SF) each row is 500 wide: 11
    rows x 500 counted before the budget of 5,000 is passed."""
    sheet = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(io.BytesIO(EXAMPLE_XLSX)) as src:
        xml = src.read(sheet).decode()
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                if info.filename != sheet:
                    dst.writestr(info, src.read(info))
            dst.writestr(sheet, xml.replace("</row>", '<c r="SF1"><v>1</v></c></row>', 1))  # SF = column 500
    r = client.post("/organisations/lampang/inventory/import", params={"year": 2025}, content=out.getvalue(),
                    headers={"content-type": XLSX})  # fmt: skip
    assert r.status_code == 422
    message = r.json()["errors"][0]["message"]
    assert "spans at least 5,500 cells" in message and "limit of 5,000 (setting import_max_cells)" in message


def test_a_refused_file_lists_at_most_the_configured_number_of_errors(client: TestClient) -> None:
    rows = [f"S{i},Site,building,Lampang,D{i},no_such_kind,Meter,60" for i in range(400)]
    data = "\n".join(["site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s", *rows])
    r = client.post("/devices/import", content=data.encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 422
    body = r.json()
    assert body["errors_total"] == 400 and [e["row"] for e in body["errors"]] == [2, 3, 4, 5, 6]
    assert body["detail"] == "400 error(s) in the device registry file; nothing was imported"
    assert len(r.content) < 2_000
