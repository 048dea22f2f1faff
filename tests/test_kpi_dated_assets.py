"""Dated assets (issue 15): a streetlight cabinet whose 10 sodium lamps are replaced by 12 LED lamps on
1 March 2026 (10 of them replacing one sodium lamp each, 2 new), and an annex building that opens on the same day.
Registry dates in the CSV, registers read at every Bangkok midnight through the production writer and energy
updater; kWh per lamp before, after and for fiscal 2026, kWh per m² and completeness worked out by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from typer.testing import CliRunner

from lccm.api.app import create_app
from lccm.cli import app
from lccm.engine import calendar as cal
from lccm.engine.timebase import BANGKOK, bkk_us
from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import RegistryInvalid, parse_registry_csv
from lccm.reports.annual import build_cfo_report
from lccm.reports.baseline import comparison
from lccm.reports.kpi import measured_kpis
from lccm.settings import Settings
from lccm.store import assets
from lccm.store.devices import import_registry
from lccm.store.inventory import import_inventory_file
from lccm.store.inventory_mapping import set_mappings
from lccm.stream.energy import EnergyUpdater
from tests._auth import TestClient, admin_headers
from tests._db import device_pk, fresh_database, write_points

HEADER = ("site_code,site_name,site_kind,city,floor_area_m2,site_commissioned_on,device_id,device_kind,device_name,"
          "cadence_s,commissioned_on,decommissioned_on,replaces")  # fmt: skip
SODIUM = [f"RD1,Road 1,street,Lampang,,,NA-{n:02d},lamp,Sodium {n},900,,2026-03-01," for n in range(1, 11)]
LED = [f"RD1,Road 1,street,Lampang,,,LED-{n:02d},lamp,LED {n},900,2026-03-01,,{f'NA-{n:02d}' if n <= 10 else ''}"
       for n in range(1, 13)]  # fmt: skip
REGISTRY = "\n".join([
    HEADER,
    "RD1,Road 1,street,Lampang,,,RD1-C1,streetlight_cabinet,Cabinet,86400,,,",
    *LED,  # listed before the lamps they replace: the link is checked over the whole file
    *SODIUM,
    "ANX,Annex,building,Lampang,500,2026-03-01,ANX-M1,electricity_meter,Main,86400,2026-03-01,,",
]) + "\n"  # fmt: skip
ZEROS = ",".join(["0"] * 12)
FY2026 = "\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    f"S2-STREET,2,purchased_electricity,Streetlights,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,"
    f"streetlight_electricity,,{ZEROS}",
    f"S2-BLDG,2,purchased_electricity,Annex,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,building_electricity,,{ZEROS}",
]).encode()  # fmt: skip

START, RETROFIT, END = datetime(2025, 10, 1, tzinfo=BANGKOK), datetime(2026, 3, 1, tzinfo=BANGKOK), \
    datetime(2026, 10, 1, tzinfo=BANGKOK)  # fmt: skip
NOW = datetime(2026, 12, 7, tzinfo=UTC)
# Cabinet: 10 x 150 W x 24 h = 36 kWh a day before; 12 x 50 W x 24 h = 14.4 kWh a day from 1 March.
DAY_BEFORE, DAY_AFTER = 36.0, 14.4
# Days: Oct 31 + Nov 30 + Dec 31 + Jan 31 + Feb 28 = 151 before; Mar 31 + Apr 30 + May 31 + Jun 30 + Jul 31 +
# Aug 31 + Sep 30 = 214 from 1 March; 365 in the year.
DAYS_BEFORE, DAYS_AFTER = 151, 214
KWH_BEFORE = 5_436.0  # 151 x 36
KWH_AFTER = 3_081.6  # 214 x 14.4
PER_LAMP_BEFORE = 543.6  # 5,436 / 10 lamps
PER_LAMP_AFTER = 256.8  # 3,081.6 / 12 lamps
LAMPS_YEAR = (10 * 151 + 12 * 214) / 365  # 4,078 lamp-days / 365 days = 11.17260... lamps
PER_LAMP_YEAR = 8_517.6 / LAMPS_YEAR  # (5,436 + 3,081.6) / 11.1726 = 3,108,924 / 4,078 = 762.3649 kWh per lamp
# Annex: 48 kWh a day from its opening (1 March); 500 m² in service 214 of 365 days = 293.15... m² over the year.
ANNEX_KWH = 214 * 48.0  # 10,272
ANNEX_PER_M2_YEAR = 10_272 / (500 * 214 / 365)  # = 48 x 365 / 500 = 35.04 kWh/m²


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            import_registry(conn, parse_registry_csv(REGISTRY))
            import_inventory_file(conn, FY2026, file_name="fy.csv", organisation="lampang", year_ce=2026,
                                  kind="fiscal")  # fmt: skip
            set_mappings(conn, "lampang", 2026, "fiscal", [("RD1-C1", "S2-STREET"), ("ANX-M1", "S2-BLDG")])
            cabinet, annex = device_pk(conn, "RD1-C1"), device_pk(conn, "ANX-M1")
            day, value = 86_400_000_000, 0.0
            for k in range(DAYS_BEFORE + DAYS_AFTER + 1):
                write_points(conn, cabinet, 1, [(bkk_us(2025, 10, 1) + k * day, value)])
                value += DAY_BEFORE if k < DAYS_BEFORE else DAY_AFTER
            for k in range(DAYS_AFTER + 1):  # the annex meter reads from its commissioning day only
                write_points(conn, annex, 1, [(bkk_us(2026, 3, 1) + k * day, k * 48.0)])
            conn.commit()
        EnergyUpdater(lambda: psycopg.connect(url), base_year_us=(bkk_us(2025), bkk_us(2026))).drain()
        yield url


@pytest.fixture(scope="module")
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        yield c


def test_kwh_per_lamp_before_after_and_for_the_year(conn: psycopg.Connection) -> None:
    before = measured_kpis(conn, "lampang", "fiscal", START, RETROFIT, NOW).get("kwh_per_lamp")
    after = measured_kpis(conn, "lampang", "fiscal", RETROFIT, END, NOW).get("kwh_per_lamp")
    year = measured_kpis(conn, "lampang", "fiscal", START, END, NOW).get("kwh_per_lamp")
    assert (before.numerator, before.denominator) == (pytest.approx(KWH_BEFORE), pytest.approx(10.0))
    assert before.value == pytest.approx(PER_LAMP_BEFORE)
    assert (after.numerator, after.denominator) == (pytest.approx(KWH_AFTER), pytest.approx(12.0))
    assert after.value == pytest.approx(PER_LAMP_AFTER)
    assert year.denominator == pytest.approx(LAMPS_YEAR)
    assert year.value == pytest.approx(PER_LAMP_YEAR)
    assert year.value == pytest.approx(762.3649, abs=1e-4)
    # Against today's lamps (12) for the whole year the retrofit would read 709.8 kWh per lamp: the wrong figure.
    assert year.value != pytest.approx(8_517.6 / 12)


def test_a_new_building_counts_its_floor_and_its_meter_from_its_commissioning(conn: psycopg.Connection) -> None:
    year = measured_kpis(conn, "lampang", "fiscal", START, END, NOW).get("kwh_per_m2")
    assert year.numerator == pytest.approx(ANNEX_KWH)
    assert year.denominator == pytest.approx(500 * 214 / 365)
    assert year.value == pytest.approx(ANNEX_PER_M2_YEAR)
    assert year.coverage == pytest.approx(1.0)  # nothing was expected from the meter before 1 March
    before = measured_kpis(conn, "lampang", "fiscal", START, RETROFIT, NOW).get("kwh_per_m2")
    assert before.coverage is None  # the meter was not in service: nothing expected, nothing measured


def test_cfo_completeness_expects_nothing_before_commissioning(conn: psycopg.Connection) -> None:
    report = build_cfo_report(conn, "lampang", 2026, "fiscal")
    items = {i.item_code: i for s in report.scopes for c in s.categories for i in c.items}
    assert items["S2-BLDG"].completeness == pytest.approx(1.0)
    assert items["S2-STREET"].completeness == pytest.approx(1.0)
    assert items["S2-BLDG"].quantity == pytest.approx(ANNEX_KWH)


def test_registry_dates_and_replacement_links_are_stored(conn: psycopg.Connection) -> None:
    led = assets.get_dates(conn, "device", "LED-03")
    assert (led.commissioned_on, led.decommissioned_on, led.replaces) == (date(2026, 3, 1), None, "NA-03")
    assert assets.get_dates(conn, "device", "NA-03").decommissioned_on == date(2026, 3, 1)
    assert assets.get_dates(conn, "site", "ANX").commissioned_on == date(2026, 3, 1)


def test_thai_headers_and_clear_errors_for_bad_dates() -> None:
    thai = ("รหัสสถานที่,ชื่อสถานที่,ประเภทสถานที่,เมือง,วันเริ่มใช้สถานที่,รหัสอุปกรณ์,ประเภทอุปกรณ์,ชื่ออุปกรณ์,"
            "รอบส่งข้อมูล_วินาที,วันเริ่มใช้งาน,วันเลิกใช้งาน,แทนอุปกรณ์\n"
            "RD1,Road 1,street,Lampang,2020-01-01,NA-01,lamp,Old,900,,2026-03-01,\n"
            "RD1,Road 1,street,Lampang,2020-01-01,LED-01,lamp,New,900,2026-03-01,,NA-01\n")  # fmt: skip
    rows = parse_registry_csv(thai)
    assert (rows[1].commissioned_on, rows[1].replaces, rows[0].site_commissioned_on) == (
        date(2026, 3, 1), "NA-01", date(2020, 1, 1))  # fmt: skip
    bad = (HEADER + "\n"
           "RD1,Road 1,street,Lampang,,,L1,lamp,A,900,2569-03-01,,\n"
           "RD1,Road 1,street,Lampang,,,L2,lamp,B,900,2026-03-01,2026-03-01,\n"
           "RD1,Road 1,street,Lampang,,,L3,lamp,C,900,,,L3\n")  # fmt: skip
    with pytest.raises(RegistryInvalid) as exc:
        parse_registry_csv(bad)
    messages = {(e.row, e.column): e.message for e in exc.value.errors}
    assert "Buddhist-era" in messages[(2, "commissioned_on")] and "2026-03-01" in messages[(2, "commissioned_on")]
    assert "must be after the commissioning date 2026-03-01" in messages[(3, "decommissioned_on")]
    assert messages[(4, "replaces")] == "a device cannot replace itself"


def test_a_replaced_device_must_exist(conn: psycopg.Connection) -> None:
    rows = parse_registry_csv(HEADER + "\nRD1,Road 1,street,Lampang,,,LED-99,lamp,X,900,2026-03-01,,NA-99\n")
    with pytest.raises(RegistryInvalid) as exc:
        import_registry(conn, rows)
    conn.rollback()
    (error,) = exc.value.errors
    assert (error.row, error.column, error.value) == (2, "replaces", "NA-99")


def test_api_patch_edits_only_the_fields_named(db_url: str) -> None:
    with (
        ConnectionPool(db_url, min_size=1, max_size=2, open=True) as pool,
        TestClient(create_app(Settings(database_url=db_url), pool), headers=admin_headers(db_url)) as c,
    ):
        r = c.patch("/devices/NA-05/service", json={"commissioned_on": "2015-06-01"})
        assert r.status_code == 200, r.text
        assert r.json() == {"code": "NA-05", "commissioned_on": "2015-06-01", "decommissioned_on": "2026-03-01",
                            "replaces": None}  # fmt: skip
        bad = c.patch("/devices/NA-05/service", json={"decommissioned_on": "2015-06-01"})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "decommissioned_on"]
        assert c.patch("/devices/LED-01/service", json={"replaces": "NOPE"}).status_code == 422
        assert c.patch("/devices/NOPE/service", json={}).status_code == 404
        be = c.patch("/sites/ANX/service", json={"commissioned_on": "2569-03-01"})
        assert be.status_code == 422 and "Buddhist-era" in be.text
        r = c.patch("/sites/ANX/service", json={"decommissioned_on": "2030-01-01"})
        assert r.json()["commissioned_on"] == "2026-03-01" and r.json()["decommissioned_on"] == "2030-01-01"
        assert c.get("/sites/ANX/service").json()["decommissioned_on"] == "2030-01-01"
        r = c.patch("/sites/ANX/service", json={"decommissioned_on": None})
        assert r.json()["decommissioned_on"] is None


def test_cli_shows_and_sets_dates(db_url: str) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["devices", "dates", "LED-07", "--database-url", db_url])
    assert shown.exit_code == 0, shown.output
    assert "LED-07: commissioned 2026-03-01, decommissioned -, replaces NA-07" in shown.output
    done = runner.invoke(app, ["devices", "dates", "LED-12", "--decommissioned-on", "2027-01-01", "--database-url",
                               db_url])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "LED-12: commissioned 2026-03-01, decommissioned 2027-01-01" in done.output
    with psycopg.connect(db_url) as conn:
        (before, after), *_ = conn.execute(
            "SELECT before, after FROM audit_log WHERE action = 'lccm devices dates' AND target = %s",
            ("device:LED-12/service",),
        ).fetchall()
    assert (before["decommissioned_on"], after["decommissioned_on"]) == (None, "2027-01-01")
    bad = runner.invoke(app, ["devices", "site-dates", "ANX", "--decommissioned-on", "2020-01-01",
                              "--database-url", db_url])  # fmt: skip
    assert bad.exit_code == 1 and "must be after the commissioning date 2026-03-01" in bad.output


def test_comparison_coverage_expects_a_meter_only_while_in_service(conn: psycopg.Connection) -> None:
    answer = comparison(conn, "lampang", cal.year_period(2026, "fiscal"), "item", min_coverage=0.9, now=NOW)
    items = {i["item_code"]: i for i in answer["items_coverage"]}
    # The annex meter is in service 214 of the 365 days, read daily: 214 readings expected, all present.
    assert items["S2-BLDG"]["readings_expected"] == pytest.approx(214.0)
    assert items["S2-BLDG"]["readings_present"] == pytest.approx(214.0)
    assert items["S2-BLDG"]["share"] == pytest.approx(1.0)
    assert items["S2-STREET"]["share"] == pytest.approx(1.0)
