"""Measured action-plan KPIs (store/kpi.py, reports/kpi.py, GET /organisations/{code}/kpis, KPI targets' status) on
a real database: a registry built by hand, register readings through the production writer, energy and fuel from the
real updater, against hand-computed figures.

The city (all sites in Lampang, so all of organisation 'lampang'):

- street ST1: cabinet ST1-C1 (mapped) and 4 lamps; street ST2: cabinet ST2-C1 and 2 lamps, NOT mapped;
- buildings B1 (1,000 m², meter B1-M1 and a generator fuel meter B1-G1), B2 (500 m², B2-M1), B3 (no floor area,
  B3-M1);
- fleet depot FL: fuel meter FL-F1 (fleet diesel); the fleet's km are a manual item (unit km, factor 0): 123 km
  entered for March 2025, nothing for any other month.

Registers read at every Bangkok midnight from 1 March to 1 May 2025 (61 whole days: March 31 + April 30), at constant
daily rates: ST1-C1 12 kWh, ST2-C1 100 kWh, B1-M1 50 kWh, B2-M1 20 kWh, B3-M1 30 kWh, B1-G1 2 L, FL-F1 1.2 L.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.engine.timebase import BANGKOK, bkk_us
from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import parse_registry_csv
from lccm.reports.kpi import measured_kpis
from lccm.reports.periods import RequestInvalid
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.inventory import import_inventory_file
from lccm.store.inventory_mapping import set_mappings
from lccm.stream.energy import EnergyUpdater
from tests._db import device_pk, fresh_database, write_points
from tests._principal import as_caller

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ENERGY, FUEL = 1, 8
DAYS = 61  # 1 March .. 30 April 2025
REGISTRY = """site_code,site_name,site_kind,city,floor_area_m2,device_id,device_kind,device_name,cadence_s
ST1,Road 1 streetlights,street,Lampang,,ST1-C1,streetlight_cabinet,Cabinet 1,86400
ST1,Road 1 streetlights,street,Lampang,,ST1-L1,lamp,Lamp 1,900
ST1,Road 1 streetlights,street,Lampang,,ST1-L2,lamp,Lamp 2,900
ST1,Road 1 streetlights,street,Lampang,,ST1-L3,lamp,Lamp 3,900
ST1,Road 1 streetlights,street,Lampang,,ST1-L4,lamp,Lamp 4,900
ST2,Road 2 streetlights,street,Lampang,,ST2-C1,streetlight_cabinet,Cabinet 2,86400
ST2,Road 2 streetlights,street,Lampang,,ST2-L1,lamp,Lamp 1,900
ST2,Road 2 streetlights,street,Lampang,,ST2-L2,lamp,Lamp 2,900
B1,Town hall,building,Lampang,1000,B1-M1,electricity_meter,Main,86400
B1,Town hall,building,Lampang,1000,B1-G1,fuel_meter,Standby generator,86400
B2,Library,building,Lampang,500,B2-M1,electricity_meter,Main,86400
B3,Market,building,Lampang,,B3-M1,electricity_meter,Main,86400
FL,Fleet depot,fleet,Lampang,,FL-F1,fuel_meter,Garbage truck 1,86400
"""
DAILY = {"ST1-C1": 12.0, "ST2-C1": 100.0, "B1-M1": 50.0, "B2-M1": 20.0, "B3-M1": 30.0, "B1-G1": 2.0, "FL-F1": 1.2}
ZEROS = ",".join(["0"] * 12)
BLANK = ",".join([""] * 12)
INVENTORY_2025 = "\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    f"S2-STREET,2,purchased_electricity,Streetlights,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,"
    f"streetlight_electricity,,{ZEROS}",
    f"S2-BLDG,2,purchased_electricity,Buildings,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,building_electricity,,{ZEROS}",
    f"S1-GEN,1,stationary_combustion,Generator diesel,,L,2.7078,kgCO2e/L,TGO,,,I.2.1,metered,generator_diesel,,{ZEROS}",
    f"S1-FLEET,1,mobile_combustion,Fleet diesel,,L,2.7406,kgCO2e/L,TGO,,,II.1.1,metered,fleet_diesel,,{ZEROS}",
    f"S1-FLEET-KM,1,mobile_combustion,Fleet distance,,km,0,kgCO2e/km,memo (the fuel meters carry the emissions),,,"
    f"II.1.1,manual,,,{BLANK}",
]).encode()  # fmt: skip
MAPPING = [
    ("ST1-C1", "S2-STREET"),
    ("B1-M1", "S2-BLDG"),
    ("B2-M1", "S2-BLDG"),
    ("B3-M1", "S2-BLDG"),
    ("B1-G1", "S1-GEN"),
    ("FL-F1", "S1-FLEET"),
]  # fmt: skip  (ST2-C1 is left out on purpose)


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        import_registry(conn, parse_registry_csv(REGISTRY))
        import_inventory_file(conn, INVENTORY_2025, file_name="2025.csv", organisation="lampang", year_ce=2025)
        set_mappings(conn, "lampang", 2025, "calendar", MAPPING)
        midnights = [bkk_us(2025, 3, 1) + k * 86_400_000_000 for k in range(DAYS + 1)]
        for device_id, rate in DAILY.items():
            metric, device = (FUEL if device_id.endswith(("-G1", "-F1")) else ENERGY), device_pk(conn, device_id)
            for k, t in enumerate(midnights):  # live: each reading arrives a minute after it was taken
                write_points(conn, device, metric, [(t, k * rate)])
        conn.commit()
    EnergyUpdater(lambda: psycopg.connect(url), base_year_us=(bkk_us(2025), bkk_us(2026))).drain()


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with fresh_database() as url:  # the fresh_db fixture's database, once for the module
        _seed(url)
        yield url


@pytest.fixture(scope="module")
def client(db: str) -> Iterator[TestClient]:
    with (
        ConnectionPool(db, min_size=1, max_size=4, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=db), pool))) as c,
    ):
        km = {"item_code": "S1-FLEET-KM", "month": "2025-03", "quantity": 123, "unit": "km"}
        r = c.post("/organisations/lampang/activity", json={"entries": [km]})
        assert r.status_code == 200, r.text
        yield c


@pytest.fixture(scope="module")
def lenient(db: str, client: TestClient) -> Iterator[TestClient]:
    """The API with LCCM_COMPARISON_MIN_COVERAGE=0.1, on the same data (after ``client`` entered the km)."""
    with (
        ConnectionPool(db, min_size=1, max_size=2, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=db, comparison_min_coverage=0.1), pool))) as c,
    ):
        yield c


def _kpis(client: TestClient, **params: object) -> dict[str, dict[str, Any]]:
    r = client.get("/organisations/lampang/kpis", params=params)
    assert r.status_code == 200, r.text
    return {k["kpi"]: k for k in r.json()["kpis"]}


def test_a_finished_year_counts_only_mapped_meters_of_each_kind(client: TestClient) -> None:
    r = client.get("/organisations/lampang/kpis", params={"year": 2025, "date": "2025-12-31"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["year_over"], body["elapsed_days"], body["year_days"]) == (True, 365, 365)
    k = {x["kpi"]: x for x in body["kpis"]}
    # Streetlights: ST1-C1 12 kWh x 61 days = 732 kWh over its 4 lamps = 183 kWh/lamp measured. ST2-C1 (100 kWh/day,
    # 2 lamps) is not mapped: counting it would give (732 + 6,100) / 6 = 1,138.67.
    lamp = k["kwh_per_lamp"]
    assert lamp["measured_to_date"] == pytest.approx(183.0)
    assert lamp["numerator"] == {"value": pytest.approx(732.0), "unit": "kWh"}
    assert lamp["denominator"] == {"value": 4.0, "unit": "lamp"}
    # The meter reads 61 of the year's 365 days (readings at its daily cadence: 61 of 365): 183 kWh/lamp is not the
    # year's KPI. Below the 90 % threshold the value is withheld; over the covered time the year is 183 x 365 / 61 =
    # 1,095 kWh/lamp (12 kWh a day x 365 / 4 lamps).
    cov = lamp["coverage"]
    assert (cov["share"], cov["basis"], cov["sufficient"]) == (pytest.approx(61 / 365), "time", False)
    assert (cov["readings_expected"], cov["readings_present"]) == (pytest.approx(365), pytest.approx(61))
    assert (lamp["value"], lamp["value_kind"]) == (None, None)
    assert lamp["reason"] == "coverage 16.71 % is below the threshold 90.00 % (LCCM_COMPARISON_MIN_COVERAGE)"
    assert lamp["covered_time"]["value"] == pytest.approx(1095.0)
    assert lamp["devices"] == ["ST1-C1"]
    # Buildings: (50 + 20) kWh x 61 = 4,270 kWh over 1,000 + 500 m² = 2.84667 kWh/m². B3 has no floor area: its
    # 30 x 61 = 1,830 kWh are left out of the numerator too. Over the covered time: 70 x 365 / 1,500 = 17.0333.
    m2 = k["kwh_per_m2"]
    assert m2["value"] is None and m2["measured_to_date"] == pytest.approx(4270 / 1500)
    assert m2["covered_time"]["value"] == pytest.approx(70 * 365 / 1500)
    assert m2["numerator"]["value"] == pytest.approx(4270.0) and m2["denominator"] == {"value": 1500.0, "unit": "m2"}
    assert (m2["excluded_sites"], m2["excluded_amount"]) == (["B3"], pytest.approx(1830.0))
    assert m2["devices"] == ["B1-M1", "B2-M1"]
    # Fleet: March 1.2 L x 31 = 37.2 L over 123 km = 30.2439 L/100km. April's 1.2 x 30 = 36 L have no km: left out.
    # The generator (B1-G1, 2 L/day) is stationary combustion, not fleet.
    fleet = k["l_per_100km"]
    assert fleet["value"] == pytest.approx(100 * 37.2 / 123) and fleet["value_kind"] == "measured"
    assert fleet["numerator"] == {"value": pytest.approx(37.2), "unit": "L"}
    assert fleet["denominator"] == {"value": pytest.approx(123.0), "unit": "km"}
    assert fleet["excluded_amount"] == pytest.approx(36.0) and fleet["devices"] == ["FL-F1"]
    assert fleet["months_without_distance"] == [f"2025-{m:02d}" for m in range(1, 13) if m != 3]
    assert fleet["coverage"]["share"] == pytest.approx(1.0)  # March, the one month counted, is fully covered


def test_year_to_date_is_projected_by_elapsed_days_except_litres_per_100_km(client: TestClient) -> None:
    body = client.get("/organisations/lampang/kpis", params={"year": 2025, "date": "2025-03-10"}).json()
    # 1 January .. 10 March included: 31 + 28 + 10 = 69 days of 365.
    assert (body["year_over"], body["elapsed_days"]) == (False, 69)
    assert body["period"]["end"] == "2025-03-11T00:00:00+07:00"
    k = {x["kpi"]: x for x in body["kpis"]}
    lamp = k["kwh_per_lamp"]
    # To date 12 x 10 = 120 kWh / 4 = 30 kWh/lamp. The meter reads from 1 March only: 10 of 69 days covered. Scaling
    # by elapsed days (30 x 365 / 69 = 158.70) would count 59 days without data as 0; over the covered days the year
    # is 30 x 365 / 10 = 1,095 kWh/lamp, withheld at 14.49 % coverage.
    assert lamp["measured_to_date"] == pytest.approx(30.0) and lamp["value"] is None
    assert lamp["coverage"]["share"] == pytest.approx(10 / 69)
    assert lamp["covered_time"]["value"] == pytest.approx(30 * 365 / 10)
    assert lamp["scale_to_year"] == pytest.approx(365 / 10)
    m2 = k["kwh_per_m2"]
    assert m2["measured_to_date"] == pytest.approx(700 / 1500) and m2["value"] is None
    assert m2["covered_time"]["value"] == pytest.approx(700 / 1500 * 365 / 10)
    # Fleet: 1-10 March, 1.2 x 10 = 12 L over 10/31 of March's 123 km = 39.677 km -> 30.2439 L/100km, not scaled.
    fleet = k["l_per_100km"]
    assert fleet["denominator"]["value"] == pytest.approx(123 * 10 / 31)
    assert fleet["value"] == fleet["measured_to_date"] == pytest.approx(100 * 12 / (123 * 10 / 31))
    assert fleet["scale_to_year"] == 1.0 and fleet["months_without_distance"] == ["2025-01", "2025-02"]


def test_no_value_without_readings_or_distance_says_why(client: TestClient) -> None:
    k = _kpis(client, year=2025, date="2025-02-28")  # before the first reading, before the km entry
    assert all(x["value"] is None and x["value_kind"] is None for x in k.values())
    assert k["kwh_per_lamp"]["reason"] == "the mapped meters have no readings in the period"
    assert k["kwh_per_lamp"]["coverage"]["share"] == 0.0 and k["kwh_per_lamp"]["denominator"]["value"] == 4.0
    assert k["l_per_100km"]["reason"].startswith("no month of the period has the fleet's km entered")
    # No fiscal inventory exists, so nothing is mapped in fiscal 2025.
    k = _kpis(client, year=2025, date="2025-03-10", kind="fiscal")
    assert k["kwh_per_m2"]["value"] is None and k["kwh_per_m2"]["numerator"]["value"] == 0.0
    assert "there is no fiscal reporting year 2025" in k["kwh_per_m2"]["reason"]


def test_period_checks_and_one_day(db: str) -> None:
    # reports.kpi checks the period and cuts it into the month slices store.kpi.measured_kpis reads.
    with psycopg.connect(db) as conn:
        day = measured_kpis(conn, "lampang", "calendar", datetime(2025, 3, 1, tzinfo=BANGKOK),
                            datetime(2025, 3, 2, tzinfo=BANGKOK))  # fmt: skip
        # One day: 12 kWh / 4 lamps = 3; 70 kWh / 1,500 m² = 0.046667; 1.2 L / (123 / 31 km) x 100 = 30.2439.
        assert day.get("kwh_per_lamp").value == pytest.approx(3.0)
        assert day.get("kwh_per_m2").value == pytest.approx(70 / 1500)
        assert day.get("l_per_100km").value == pytest.approx(100 * 1.2 / (123 / 31))
        assert day.missing_years == ()
        with pytest.raises(RequestInvalid, match="not a Bangkok midnight"):
            measured_kpis(
                conn, "lampang", "calendar", datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC)
            )
        with pytest.raises(RequestInvalid, match="empty period"):
            measured_kpis(conn, "lampang", "calendar", datetime(2025, 3, 2, tzinfo=BANGKOK),
                          datetime(2025, 3, 2, tzinfo=BANGKOK))  # fmt: skip
        with pytest.raises(RequestInvalid, match="no time zone"):
            measured_kpis(conn, "lampang", "calendar", datetime(2025, 3, 1), datetime(2025, 3, 2))


def test_kpi_targets_use_the_reported_value_else_the_measured_one(client: TestClient) -> None:
    targets = {"targets": [
        {"target_key": "streetlights", "kpi": "kwh_per_lamp", "base_year": 2024, "target_year": 2030,
         "reduction_pct": 12, "kpi_values": {"2024": 200}},
        {"target_key": "buildings", "kpi": "kwh_per_m2", "base_year": 2024, "target_year": 2030,
         "reduction_pct": 6, "kpi_values": {"2024": 3.0, "2025": 2.9}},
        {"target_key": "fleet", "kpi": "l_per_100km", "base_year": 2024, "target_year": 2030,
         "reduction_pct": 6, "kpi_values": {"2024": 30.0}},
    ]}  # fmt: skip
    r = client.put("/organisations/lampang/targets", json=targets)
    assert r.status_code == 200, r.text
    r = client.get("/organisations/lampang/targets/status", params={"year": 2025, "date": "2025-12-31"})
    assert r.status_code == 200, r.text
    s = {x["target_key"]: x for x in r.json()}
    # Streetlights: 200 kWh/lamp, -12 % by 2030: 2025 allows 200 x (1 - 0.12 / 6) = 196. Measured 183 would be 13
    # under ("on track"), but from 61 of 365 days: no value, no verdict. Over the covered time the year is 1,095
    # kWh/lamp, 899 over the trajectory.
    lamp = s["streetlights"]
    assert (lamp["value"], lamp["value_kind"], lamp["margin"], lamp["on_track"]) == (None, None, None, None)
    assert lamp["reason"] == "coverage 16.71 % is below the threshold 90.00 % (LCCM_COMPARISON_MIN_COVERAGE)"
    assert lamp["coverage"]["share"] == pytest.approx(61 / 365) and lamp["trajectory"] == pytest.approx(196.0)
    assert lamp["covered_time"]["value"] == pytest.approx(1095.0)
    assert lamp["covered_time"]["margin"] == pytest.approx(196.0 - 1095.0)
    assert (
        lamp["measured"]["measured_to_date"] == pytest.approx(183.0) and lamp["measured"]["denominator"]["value"] == 4.0
    )
    # Buildings: the typed-in 2.9 is the official figure and wins over the measured 2.8467; 3 x 0.99 = 2.97 allowed.
    # A reported figure rests on no coverage of ours: the verdict stands.
    bldg = s["buildings"]
    assert (bldg["value_kind"], bldg["value"]) == ("reported", 2.9) and bldg["margin"] == pytest.approx(0.07)
    assert bldg["measured"]["measured_to_date"] == pytest.approx(4270 / 1500) and bldg["coverage"] is None
    assert bldg["on_track"] is True
    # Fleet: 30 x (1 - 0.06 / 6) = 29.7 allowed; measured 30.2439 over March, fully covered -> 0.5439 over, off track.
    fleet = s["fleet"]
    assert (fleet["value_kind"], fleet["value"]) == ("measured", pytest.approx(100 * 37.2 / 123))
    assert fleet["margin"] == pytest.approx(29.7 - 100 * 37.2 / 123) and fleet["on_track"] is False
    # While the year runs: scaled by elapsed days the streetlights read 30 x 365 / 69 = 158.70, "on track"; from 10
    # covered days of 69 there is no verdict.
    r = client.get("/organisations/lampang/targets/status", params={"year": 2025, "date": "2025-03-10"})
    lamp = {x["target_key"]: x for x in r.json()}["streetlights"]
    assert (lamp["value"], lamp["on_track"]) == (None, None)
    assert lamp["measured"]["measured_to_date"] == pytest.approx(30.0)
    # 2026 has not started on 31 December 2025: no value, no verdict.
    r = client.get("/organisations/lampang/targets/status", params={"year": 2026, "date": "2025-12-31"})
    lamp = {x["target_key"]: x for x in r.json()}["streetlights"]
    assert (lamp["value"], lamp["value_kind"], lamp["measured"], lamp["on_track"]) == (None, None, None, None)
    assert lamp["reason"] == "2026 has not started"


def test_a_lower_threshold_gives_the_covered_time_value_and_its_verdict(lenient: TestClient) -> None:
    # LCCM_COMPARISON_MIN_COVERAGE=0.1: 61/365 and 10/69 both suffice. The values are the years over the covered
    # time, and judged: 1,095 kWh/lamp against 196 allowed is off track (the plain 183 read "on track").
    target = {"target_key": "streetlights", "kpi": "kwh_per_lamp", "base_year": 2024, "target_year": 2030,
              "reduction_pct": 12, "kpi_values": {"2024": 200}}  # fmt: skip
    assert lenient.put("/organisations/lampang/targets", json={"targets": [target]}).status_code == 200
    r = lenient.get("/organisations/lampang/targets/status", params={"year": 2025, "date": "2025-12-31"})
    lamp = {x["target_key"]: x for x in r.json()}["streetlights"]
    assert (lamp["value_kind"], lamp["value"]) == ("gap_filled", pytest.approx(1095.0))
    assert lamp["margin"] == pytest.approx(196.0 - 1095.0) and lamp["on_track"] is False
    k = _kpis(lenient, year=2025, date="2025-03-10")
    assert (k["kwh_per_lamp"]["value_kind"], k["kwh_per_lamp"]["value"]) == ("measured_to_date", pytest.approx(1095.0))
    assert k["kwh_per_m2"]["value"] == pytest.approx(700 / 1500 * 365 / 10)


def test_bad_requests(client: TestClient) -> None:
    r = client.get("/organisations/nowhere/kpis", params={"year": 2025})
    assert r.status_code == 404 and "nowhere" in r.json()["detail"]
    for bad in ("abc", "1800"):
        r = client.get("/organisations/lampang/kpis", params={"year": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "year"], r.text
    r = client.get("/organisations/lampang/kpis", params={"year": 2026, "date": "2025-12-31"})
    assert r.status_code == 422 and r.json()["detail"] == [
        {"type": "invalid_parameter", "loc": ["query", "year"], "msg": "2026 has not started on 2025-12-31"}
    ]
    r = client.get("/organisations/lampang/kpis", params={"year": 2025, "kind": "weekly"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "kind"]
