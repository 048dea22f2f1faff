"""The inventory routes over HTTP (FastAPI TestClient) against a real, migrated PostgreSQL: organisations, base-year
import (CSV, XLSX, multipart), inventory reads with BE years, manual activity (JSON and CSV), device mappings."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows
from lccm.settings import Settings
from lccm.store import inventory as inv
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from tests._db import fresh_database
from tests._principal import as_caller
from tests.test_inventory_import import ELEC_KG, LPG_KG, R32_KG, ROWS, TREES_KG, _typed, csv_bytes, xlsx_bytes
from tests.test_inventory_mapping import REGISTRY

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # as tests/test_api.py
    from starlette.testclient import TestClient

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            sync_factor_registry(conn, *factor_rows())
            import_registry(conn, parse_registry_csv(REGISTRY))
        yield url


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[TestClient]:
    with (
        ConnectionPool(db_url, min_size=1, max_size=4, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=db_url), pool))) as c,
    ):
        yield c


@pytest.fixture
def api(client: TestClient, db_url: str) -> TestClient:
    with psycopg.connect(db_url) as conn:
        conn.execute("TRUNCATE device_item_map, inventory_quantities, inventory_items, reporting_years, "
                     "inventory_imports RESTART IDENTITY CASCADE")  # fmt: skip
    return client


def _import(api: TestClient, data: bytes, content_type: str = "text/csv", **params: Any) -> Any:
    query = {"year": 2025, **params}
    return api.post("/organisations/lampang/inventory/import", params=query, content=data,
                    headers={"content-type": content_type})  # fmt: skip


def test_organisations_grouped_by_province(api: TestClient, db_url: str) -> None:
    body = {"name_en": "Khon Kaen City Municipality", "name_th": "เทศบาลนครขอนแก่น", "province_en": "Khon Kaen",
            "province_th": "ขอนแก่น", "municipality_type": "city", "city_key": "Khon Kaen"}  # fmt: skip
    created = api.put("/organisations/khonkaen", json=body)
    assert created.status_code == 200 and created.json()["created"] is True
    assert created.json()["site_count"] == 1  # the registry's KK site (city "Khon Kaen")
    again = api.put("/organisations/khonkaen", json={**body, "municipality_type": "town"})
    assert (again.json()["created"], again.json()["municipality_type"]) == (False, "town")
    # Through the API a caller sees its own organisation only (docs/security.md#organisation-scoping); the store
    # lists the deployment's, grouped by province.
    listed = api.get("/organisations").json()
    assert [(o["province_en"], o["code"], o["site_count"]) for o in listed] == [("Lampang", "lampang", 4)]
    with psycopg.connect(db_url) as conn:
        every = [(o.province_en, o.code, o.site_count) for o in inv.list_organisations(conn)]
        assert [o.code for o in inv.list_organisations(conn, "ขอนแก่น")] == ["khonkaen"]
    assert every == [("Khon Kaen", "khonkaen", 1), ("Lampang", "lampang", 4)]  # HALL, RD1, FL, AQ1
    assert api.get("/organisations", params={"province": "ขอนแก่น"}).json() == []
    bad = api.put("/organisations/bad code", json=body)
    assert bad.status_code == 422
    assert api.put("/organisations/x", json={**body, "municipality_type": "village"}).status_code == 422


def test_import_csv_xlsx_and_multipart_all_land_on_the_same_inventory(api: TestClient) -> None:
    first = _import(api, csv_bytes(), file_name="lampang-2025.csv")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "applied" and first.json()["year_be"] == 2568
    xlsx = xlsx_bytes(TEMPLATE_HEADER_EN, [_typed(r) for r in ROWS])
    assert _import(api, xlsx, XLSX).json()["status"] == "unchanged"
    multipart = api.post("/organisations/lampang/inventory/import", params={"year": 2025},
                         files={"file": ("f.csv", csv_bytes(), "text/csv")})  # fmt: skip
    assert multipart.status_code == 200 and multipart.json()["status"] == "unchanged"
    log = api.get("/organisations/lampang/imports").json()
    assert [(e["status"], e["file_format"]) for e in log] == [("unchanged", "csv"), ("unchanged", "xlsx"),
                                                              ("applied", "csv")]  # fmt: skip
    assert log[-1]["file_name"] == "lampang-2025.csv"


def test_invalid_file_is_a_422_with_rows_and_columns_and_stays_in_the_log(api: TestClient) -> None:
    bad = [ROWS[0].replace(",1200,", ',"1,2x",'), ROWS[1].replace(",kg,", ",gallon,")]
    response = _import(api, csv_bytes(rows=bad))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "inventory_invalid" and "nothing was written" in body["detail"]
    assert [(e["row"], e["column"], e["value"]) for e in body["errors"]] == [(2, "Mar", "1,2x"), (3, "unit", "gallon")]
    assert api.get("/organisations/lampang/years").json() == []
    log = api.get("/organisations/lampang/imports").json()
    assert log[0]["status"] == "rejected" and log[0]["errors"][0]["message"] == "not a number: '1,2x'"
    unknown = api.post("/organisations/nobody/inventory/import", params={"year": 2025}, content=csv_bytes(),
                       headers={"content-type": "text/csv"})  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["error"] == "organisation_not_found"
    wrong_type = _import(api, csv_bytes(), "image/png")
    assert wrong_type.status_code == 422


def test_inventory_read_with_months_totals_and_buddhist_era(api: TestClient) -> None:
    _import(api, csv_bytes(), year=2025, kind="fiscal")
    inventory = api.get("/organisations/lampang/inventory").json()  # the base year
    year = inventory["year"]
    assert (year["kind"], year["year_ce"], year["year_be"], year["is_base_year"]) == ("fiscal", 2025, 2568, True)
    assert (year["first_month"], year["label"]) == ("2024-10-01", "FY2025 (ปีงบประมาณ พ.ศ. 2568)")
    elec = inventory["items"][0]
    assert [m["month_start"] for m in elec["months"]][:4] == ["2024-10-01", "2024-11-01", "2024-12-01", "2025-01-01"]
    assert elec["months"][0]["quantity"] == 1900 and elec["months"][0]["origin"] == "import"
    assert elec["quantity"] == 18600 and elec["kgco2e"] == pytest.approx(ELEC_KG)
    assert inventory["kgco2e_scope1"] == pytest.approx(LPG_KG + R32_KG)
    assert inventory["removals_kgco2e"] == pytest.approx(TREES_KG)
    assert inventory["net_kgco2e"] == pytest.approx(ELEC_KG + LPG_KG + R32_KG + TREES_KG)
    assert api.get("/organisations/lampang/inventory", params={"year": 2025, "kind": "fiscal"}).json() == inventory
    missing = api.get("/organisations/lampang/inventory", params={"year": 2019})
    assert missing.status_code == 404 and missing.json()["error"] == "reporting_year_not_found"


def test_activity_json_and_csv(api: TestClient) -> None:
    _import(api, csv_bytes())
    entries = [{"item_code": "S1-LPG", "month": "2026-01", "quantity": 0.5, "unit": "t", "note": "receipt 9"},
               {"item_code": "S1-R32", "month": "2569-02", "quantity": 1.5, "unit": "kg"}]  # fmt: skip
    response = api.post("/organisations/lampang/activity", json={"entries": entries})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["inserted"], report["years_created"]) == (2, ["2026 (พ.ศ. 2569)"])
    assert report["targets"][0] == {"item_code": "S1-LPG", "month": "2026-01-01", "year": "2026 (พ.ศ. 2569)",
                                    "quantity": 500.0, "unit": "kg"}  # fmt: skip
    assert api.post("/organisations/lampang/activity", json={"entries": entries}).json()["unchanged"] == 2
    wrong = api.post("/organisations/lampang/activity", json={"entries": [{**entries[0], "item_code": "S2-ELEC",
                                                                           "unit": "kWh"}]})  # fmt: skip
    assert wrong.status_code == 422
    assert [(e["row"], e["column"]) for e in wrong.json()["errors"]] == [(1, "item_code")]
    typed = api.post("/organisations/lampang/activity", json={"entries": [{**entries[0], "quantity": "lots"}]})
    assert typed.status_code == 422  # FastAPI's own validation: not a number
    csv_body = "รหัสรายการ,เดือน,ปริมาณ,หน่วย\nS1-LPG,2026-01,520,kg\n".encode()
    via_csv = api.post("/organisations/lampang/activity/import", content=csv_body,
                       headers={"content-type": "text/csv"}, params={"file_name": "feb.csv"})  # fmt: skip
    assert via_csv.status_code == 200 and via_csv.json()["updated"] == 1
    inventory = api.get("/organisations/lampang/inventory", params={"year": 2026}).json()
    lpg = next(i for i in inventory["items"] if i["item_code"] == "S1-LPG")
    assert (lpg["months"][0]["quantity"], lpg["months"][0]["origin"]) == (520.0, "csv")


def test_mappings_put_get_and_refusals(api: TestClient) -> None:
    _import(api, csv_bytes())
    put = api.put("/organisations/lampang/mappings", params={"year": 2025},
                  json={"mappings": [{"device_id": "HALL-M1", "item_code": "S2-ELEC"}]})  # fmt: skip
    assert put.status_code == 200, put.text
    assert (put.json()["added"], put.json()["year_created"]) == (1, False)
    got = api.get("/organisations/lampang/mappings", params={"year": 2025}).json()
    assert [(m["device_id"], m["item_code"], m["device_source_class"]) for m in got["mappings"]] == [
        ("HALL-M1", "S2-ELEC", "building_electricity")
    ]
    assert [(p["severity"], p["problem"], p["device_id"]) for p in got["problems"]] == [
        ("warning", "device_unmapped", "HALL-M2")
    ]
    refused = api.put("/organisations/lampang/mappings", params={"year": 2025},
                      json={"mappings": [{"device_id": "TRUCK-1", "item_code": "S1-LPG"}]})  # fmt: skip
    assert refused.status_code == 422
    assert {(e["row"], e["column"]) for e in refused.json()["errors"]} == {(1, "item_code"), (1, "device_id")}
    assert len(api.get("/organisations/lampang/mappings").json()["mappings"]) == 1  # unchanged
