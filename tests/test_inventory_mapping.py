"""The double-count guard: the explicit device -> item mapping of metered items, what the database refuses, what
set_mappings refuses (with row and column), what the problems view finds, and metered months from the buckets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from lccm.imports.inventory import TEMPLATE_HEADER_EN, InventoryInvalid
from lccm.imports.registry import parse_registry_csv
from lccm.imports.rows import describe
from lccm.runtime import factor_rows
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import OrganisationIn, get_inventory, import_inventory_file, put_organisation
from lccm.store.inventory_mapping import auto_map, list_mappings, mapping_problems, set_mappings
from tests._db import device_pk, fresh_database

REGISTRY = """site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s
HALL,City Hall,building,Lampang,HALL-M1,electricity_meter,Main,60
HALL,City Hall,building,Lampang,HALL-M2,electricity_meter,Annex,60
HALL,City Hall,building,Lampang,GEN-1,fuel_meter,Generator,300
RD1,Road 1,street,Lampang,RD1-C1,streetlight_cabinet,Cabinet,300
FL,Depot,fleet,Lampang,TRUCK-1,fuel_meter,Truck,300
AQ1,Station,station,Lampang,AQ1-S1,aq_station,PM,300
KK,Khon Kaen Hall,building,Khon Kaen,KK-M1,electricity_meter,Main,60
"""
MONTHS = ",".join(["1"] * 12)
INVENTORY = "\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    f"S2-ELEC,2,purchased_electricity,Buildings,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,building_electricity,,{MONTHS}",
    f"S2-STREET,2,purchased_electricity,Streetlights,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,streetlight_electricity,,{MONTHS}",
    f"S1-FLEET,1,mobile_combustion,Fleet diesel,,L,2.7406,kgCO2e/L,TGO,,,II.1.1,metered,fleet_diesel,,{MONTHS}",
    f"S1-GEN,1,stationary_combustion,Generator diesel,,L,2.7078,kgCO2e/L,TGO,,,I.2.1,metered,,,{MONTHS}",
    f"S1-LPG,1,stationary_combustion,LPG,,kg,3.1134,kgCO2e/kg,TGO,,,I.2.1,manual,,,{MONTHS}",
]).encode()  # fmt: skip
GOOD = [("HALL-M1", "S2-ELEC"), ("HALL-M2", "S2-ELEC"), ("RD1-C1", "S2-STREET"), ("TRUCK-1", "S1-FLEET"),
        ("GEN-1", "S1-GEN")]  # fmt: skip


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            sync_factor_registry(conn, *factor_rows())
            import_registry(conn, parse_registry_csv(REGISTRY))
            put_organisation(conn, OrganisationIn("khonkaen", "Khon Kaen City Municipality", "Khon Kaen", "city",
                                                  "เทศบาลนครขอนแก่น", "ขอนแก่น", "Khon Kaen"))  # fmt: skip
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        c.execute("TRUNCATE device_item_map, inventory_quantities, inventory_items, reporting_years, "
                  "inventory_imports, energy_buckets RESTART IDENTITY CASCADE")  # fmt: skip
        import_inventory_file(c, INVENTORY, file_name="i.csv", organisation="lampang", year_ce=2025)
        c.commit()
        yield c


def _item_id(conn: psycopg.Connection, code: str, year: int = 2025) -> int:
    row = conn.execute(
        "SELECT i.id FROM inventory_items i JOIN reporting_years y ON y.id = i.reporting_year_id"
        " WHERE i.item_code = %s AND y.year_ce = %s",
        (code, year),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _mapped(conn: psycopg.Connection, year: int = 2025) -> list[tuple[str, str]]:
    return sorted((m.device_id, m.item_code) for m in list_mappings(conn, "lampang", year, "calendar")[1])


def test_sites_belong_to_organisations_by_registry_city(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT s.site_code, o.code FROM site_organisations so JOIN sites s ON s.id = so.site_id"
        " JOIN organisations o ON o.id = so.organisation_id ORDER BY s.site_code"
    ).fetchall()
    assert rows == [("AQ1", "lampang"), ("FL", "lampang"), ("HALL", "lampang"), ("KK", "khonkaen"), ("RD1", "lampang")]


def test_set_mappings_makes_the_given_pairs_the_whole_mapping(conn: psycopg.Connection) -> None:
    first = set_mappings(conn, "lampang", 2025, "calendar", GOOD)
    assert (first.added, first.changed, first.removed, first.unchanged, first.year_created) == (5, 0, 0, 0, False)
    again = set_mappings(conn, "lampang", 2025, "calendar", GOOD)
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 5)
    fewer = set_mappings(conn, "lampang", 2025, "calendar", GOOD[:1] + GOOD[2:])
    assert (fewer.added, fewer.removed, fewer.unchanged) == (0, 1, 4)
    conn.commit()
    assert _mapped(conn) == sorted(GOOD[:1] + GOOD[2:])
    assert [(p.severity, p.problem, p.device_id) for p in mapping_problems(conn, "lampang", 2025, "calendar")] == [
        ("warning", "device_unmapped", "HALL-M2")
    ]


def test_set_mappings_refuses_each_wrong_pair_with_row_and_column(conn: psycopg.Connection) -> None:
    set_mappings(conn, "lampang", 2025, "calendar", GOOD)
    conn.commit()
    pairs = [
        ("HALL-M1", "S1-LPG"),  # 1: manual item
        ("KK-M1", "S2-ELEC"),  # 2: Khon Kaen's meter
        ("TRUCK-1", "S2-ELEC"),  # 3: litres into kWh, and fleet diesel is not building electricity
        ("AQ1-S1", "S1-GEN"),  # 4: no register
        ("NOPE", "S2-ELEC"),  # 5: unknown device
        ("HALL-M2", "S9-NONE"),  # 6: unknown item
        ("RD1-C1", "S2-ELEC"),  # 7: streetlight cabinet into building electricity
        ("HALL-M1", "S2-ELEC"),  # 8: HALL-M1 again
    ]
    with pytest.raises(InventoryInvalid) as info:
        set_mappings(conn, "lampang", 2025, "calendar", pairs)
    conn.rollback()
    assert [describe(e) for e in info.value.errors] == [
        "row 1, column 'item_code': item is manual: its quantities are entered by hand; a device would count them "
        "twice (mark the item metered in the inventory file)",
        "row 1, column 'device_id': device counts kWh, item 'S1-LPG' is in kg",
        "row 2, column 'device_id': device belongs to a site of another organisation (or of none)",
        "row 3, column 'device_id': device counts L, item 'S2-ELEC' is in kWh",
        "row 3, column 'device_id': device is fleet_diesel, item 'S2-ELEC' is building_electricity",
        "row 4, column 'device_id': device has no energy or fuel register",
        "row 5, column 'device_id': no such device (register it with `lccm devices import`)",
        "row 6, column 'item_code': no item 'S9-NONE' in the 2025 (พ.ศ. 2568) inventory",
        "row 7, column 'device_id': device is streetlight_electricity, item 'S2-ELEC' is building_electricity",
        "row 8, column 'device_id': device listed twice (first at 1): one item per device",
    ]
    assert _mapped(conn) == sorted(GOOD)  # all or nothing


def test_the_database_allows_one_item_per_device_and_year(conn: psycopg.Connection) -> None:
    set_mappings(conn, "lampang", 2025, "calendar", GOOD)
    conn.commit()
    year = conn.execute("SELECT id FROM reporting_years WHERE year_ce = 2025").fetchone()
    assert year is not None
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO device_item_map (device_id, reporting_year_id, item_id) VALUES (%s, %s, %s)",
                     (device_pk(conn, "HALL-M1"), year[0], _item_id(conn, "S2-STREET")))  # fmt: skip
    conn.rollback()


def test_the_database_refuses_a_manual_item_and_re_marking_a_mapped_item_manual(conn: psycopg.Connection) -> None:
    year = conn.execute("SELECT id FROM reporting_years WHERE year_ce = 2025").fetchone()
    assert year is not None
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # no (item, year, 'metered') row for a manual item
        conn.execute("INSERT INTO device_item_map (device_id, reporting_year_id, item_id) VALUES (%s, %s, %s)",
                     (device_pk(conn, "GEN-1"), year[0], _item_id(conn, "S1-LPG")))  # fmt: skip
    conn.rollback()
    set_mappings(conn, "lampang", 2025, "calendar", GOOD)
    conn.commit()
    with pytest.raises(psycopg.errors.CheckViolation):  # the collection cascades into the map, whose check says no
        conn.execute("UPDATE inventory_items SET collection = 'manual' WHERE item_code = 'S2-ELEC'")
    conn.rollback()


def test_problems_view_finds_what_bypasses_the_checks(conn: psycopg.Connection) -> None:
    set_mappings(conn, "lampang", 2025, "calendar", GOOD[:1] + GOOD[3:])  # HALL-M2 and RD1-C1 left unmapped
    year = conn.execute("SELECT id FROM reporting_years WHERE year_ce = 2025").fetchone()
    assert year is not None
    raw = "INSERT INTO device_item_map (device_id, reporting_year_id, item_id) VALUES (%s, %s, %s)"
    conn.execute(raw, (device_pk(conn, "KK-M1"), year[0], _item_id(conn, "S2-ELEC")))  # another organisation's
    conn.execute(raw, (device_pk(conn, "RD1-C1"), year[0], _item_id(conn, "S2-ELEC")))  # wrong class
    conn.execute(raw, (device_pk(conn, "AQ1-S1"), year[0], _item_id(conn, "S1-GEN")))  # no register
    conn.execute(  # a hand-entered month on a metered item that has devices: counted twice
        "INSERT INTO inventory_quantities (item_id, month_start, quantity, origin) VALUES (%s, '2025-03-01', 5, 'api')"
        " ON CONFLICT (item_id, month_start) DO UPDATE SET origin = 'api'",
        (_item_id(conn, "S2-ELEC"),),
    )
    conn.execute(  # a manual item for what GEN-1 meters
        "INSERT INTO inventory_items (reporting_year_id, item_code, position, scope, cfo_category, activity_en, unit,"
        " ef_kgco2e_per_unit, ef_unit, ef_source, collection, source_class)"
        " VALUES (%s, 'S1-GEN-BILLS', 9, 1, 'stationary_combustion', 'Diesel bills', 'L', 2.7078, 'kgCO2e/L', 'TGO',"
        " 'manual', 'generator_diesel')",
        (year[0],),
    )
    conn.commit()
    found = {(p.severity, p.problem, p.device_id, p.item_code) for p in mapping_problems(conn)}
    assert found == {
        ("error", "device_of_other_organisation", "KK-M1", "S2-ELEC"),
        ("error", "source_class_mismatch", "RD1-C1", "S2-ELEC"),
        ("error", "unit_mismatch", "AQ1-S1", "S1-GEN"),
        ("error", "manual_quantities_on_metered_item", None, "S2-ELEC"),
        ("error", "metered_class_on_manual_item", "GEN-1", "S1-GEN-BILLS"),
        ("warning", "device_unmapped", "HALL-M2", None),
    }
    assert mapping_problems(conn, "khonkaen") == []


def test_auto_map_maps_unambiguous_meters_and_reports_the_rest(conn: psycopg.Connection) -> None:
    report = auto_map(conn, "lampang", 2025, "calendar")
    assert report.mapped == [("HALL-M1", "S2-ELEC"), ("HALL-M2", "S2-ELEC"), ("RD1-C1", "S2-STREET"),
                             ("TRUCK-1", "S1-FLEET")]  # fmt: skip
    assert report.unmatched == ["GEN-1"]  # S1-GEN names no source class: map it by hand
    assert report.ambiguous == {}
    conn.execute(
        "INSERT INTO inventory_items (reporting_year_id, item_code, position, scope, cfo_category, activity_en, unit,"
        " ef_kgco2e_per_unit, ef_unit, ef_source, collection, source_class)"
        " SELECT reporting_year_id, 'S1-FLEET-2', 9, 1, 'mobile_combustion', 'Second fleet', 'L', 2.7406, 'kgCO2e/L',"
        " 'TGO', 'metered', 'fleet_diesel' FROM inventory_items WHERE item_code = 'S1-FLEET'"
    )
    conn.execute("DELETE FROM device_item_map")
    report = auto_map(conn, "lampang", 2025, "calendar")
    assert report.ambiguous == {"TRUCK-1": ["S1-FLEET", "S1-FLEET-2"]}
    conn.rollback()


def test_a_new_year_carries_the_mapping_forward(conn: psycopg.Connection) -> None:
    set_mappings(conn, "lampang", 2025, "calendar", GOOD)
    report = set_mappings(conn, "lampang", 2026, "calendar", GOOD)
    assert (report.year_created, report.added, report.unchanged) == (True, 0, 5)
    conn.commit()
    assert _mapped(conn, 2026) == sorted(GOOD)
    assert _item_id(conn, "S2-ELEC", 2026) != _item_id(conn, "S2-ELEC", 2025)


def _factor(conn: psycopg.Connection, code: str, year: int, kind: str = "calendar") -> tuple[float, str]:
    row = conn.execute(
        "SELECT i.ef_kgco2e_per_unit, i.ef_source FROM inventory_items i JOIN reporting_years y"
        " ON y.id = i.reporting_year_id WHERE i.item_code = %s AND y.year_ce = %s AND y.kind = %s",
        (code, year, kind),
    ).fetchone()
    assert row is not None
    return float(row[0]), str(row[1])


def test_a_carried_year_takes_the_grid_factor_in_force_all_year(conn: psycopg.Connection) -> None:
    # TGO's grid factor is 0.4999 until 2025-12-31 and 0.4750 from 2026-01-01 00:00 Bangkok
    # (docs/reference.md#grid-electricity-factors): calendar 2026 has one factor all year, so its metered electricity
    # items take 0.4750 and its source.
    set_mappings(conn, "lampang", 2026, "calendar", GOOD)
    conn.commit()
    for code in ("S2-ELEC", "S2-STREET"):
        value, source = _factor(conn, code, 2026)
        assert value == 0.4750 and "effective 1 Jan 2026" in source
        assert _factor(conn, code, 2025) == (0.4999, "TGO"), "the base year keeps its imported factor"
    assert _factor(conn, "S1-FLEET", 2026)[0] == 2.7406  # TGO 2022 diesel, the same value: from the registry
    assert _factor(conn, "S1-GEN", 2026) == (2.7078, "TGO"), "no source class: copied as it was"
    assert _factor(conn, "S1-LPG", 2026) == (3.1134, "TGO"), "manual: copied as it was"
    # Fiscal 2026 (Oct 2025 - Sep 2026) straddles the change: no single factor, copied as it was.
    set_mappings(conn, "lampang", 2026, "fiscal", GOOD)
    conn.commit()
    assert _factor(conn, "S2-ELEC", 2026, "fiscal") == (0.4999, "TGO")


def test_metered_months_sum_the_mapped_devices_buckets_of_the_year(conn: psycopg.Connection) -> None:
    set_mappings(conn, "lampang", 2025, "calendar", GOOD)
    buckets = [  # (device, metric, Bangkok month start, amount, kgco2e)
        ("HALL-M1", 1, "2025-01-01 00:00+07", 1000.0, 499.9),
        ("HALL-M2", 1, "2025-01-01 00:00+07", 250.0, 124.975),
        ("HALL-M1", 1, "2025-12-01 00:00+07", 900.0, 449.91),
        ("HALL-M1", 1, "2026-01-01 00:00+07", 777.0, 369.075),  # next year: not in 2025
        ("TRUCK-1", 8, "2025-01-01 00:00+07", 80.0, 219.248),
        ("KK-M1", 1, "2025-01-01 00:00+07", 5000.0, 2499.5),  # not mapped
    ]
    for device, metric, start, amount, kg in buckets:
        conn.execute(
            "INSERT INTO energy_buckets (resolution, device_id, metric_id, bucket_start, amount, amount_estimated,"
            " covered_s, quality, intervals, kgco2e, kgco2e_base) VALUES ('1mo', %s, %s, %s, %s, 0, 86400, 0, 1, %s,"
            " %s)",
            (device_pk(conn, device), metric, start, amount, kg, kg),
        )
    conn.commit()
    view = get_inventory(conn, "lampang", 2025, "calendar")
    items = {i.item_code: i for i in view.items}
    elec = items["S2-ELEC"].months
    # January: HALL-M1 1000 + HALL-M2 250 = 1250 kWh, 499.9 + 124.975 = 624.875 kg; December: 900 kWh alone.
    january = (elec[0].month_start, elec[0].metered_quantity, elec[0].metered_kgco2e)
    assert january == (date(2025, 1, 1), 1250.0, pytest.approx(624.875))
    assert elec[11].metered_quantity == 900.0 and elec[1].metered_quantity is None
    assert items["S2-ELEC"].metered_quantity == 2150.0
    assert items["S1-FLEET"].metered_quantity == 80.0  # litres from the fuel register, not kWh
    assert items["S2-STREET"].metered_quantity is None
