"""Device registry import: parsing (pure) and upserts against a real PostgreSQL, plus the typer CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from lccm.cli_devices import devices_app
from lccm.imports.registry import RegistryInvalid, parse_registry_csv
from lccm.simulators.city import City, load_city
from lccm.store.devices import ImportReport, UpsertCounts, import_registry
from tests._db import REGISTRY_HEADER_EN, REGISTRY_HEADER_TH, REGISTRY_ROWS, fresh_database, registry_csv

# The optional register_modulus column (kWh / l where the register wraps to 0) after the 13 base columns.
MODULUS_HEADER_EN = REGISTRY_HEADER_EN + ",register_modulus"
MODULUS_HEADER_TH = REGISTRY_HEADER_TH + ",ค่าวนกลับของมิเตอร์"
MODULI = ["100000", "1000000", "99999.99", ""]  # HALL-M1, HALL-M2, RD1-C1 (cabinet), AQ1-S1 (no register)
MODULUS_ROWS = [f"{row},{modulus}" for row, modulus in zip(REGISTRY_ROWS, MODULI, strict=True)]


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        c.execute("TRUNCATE device_status, devices, sites RESTART IDENTITY CASCADE")
        c.commit()
        yield c


def _snapshot(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT s.site_code, s.name, s.name_th, s.kind, s.city, s.lat, s.lon, s.floor_area_m2,"
        " d.device_id, d.kind, d.name, d.cadence_s, d.rated_kw, d.register_modulus"
        " FROM devices d JOIN sites s ON s.id = d.site_id ORDER BY d.device_id"
    ).fetchall()


def _errors(data: bytes) -> list[tuple[int, str, str]]:
    with pytest.raises(RegistryInvalid) as info:
        parse_registry_csv(data)
    return [(e.row, e.column, e.value) for e in info.value.errors]


# --- parsing -----------------------------------------------------------------------------------------------------


def test_english_and_thai_headers_parse_to_the_same_rows() -> None:
    english = parse_registry_csv(registry_csv(REGISTRY_HEADER_EN))
    thai = parse_registry_csv(registry_csv(REGISTRY_HEADER_TH))
    assert english == thai
    assert [r.device_id for r in english] == ["HALL-M1", "HALL-M2", "RD1-C1", "AQ1-S1"]
    first = english[0]
    assert (first.site_name_th, first.lat, first.floor_area_m2, first.cadence_s, first.rated_kw) == (
        "ศาลากลาง", 18.2888, 5200.0, 60, 250.0,
    )  # fmt: skip
    assert english[1].rated_kw is None  # blank optional cell


def test_bom_case_and_spacing_in_headers_are_accepted() -> None:
    header = " Site Code ,SITE_NAME,site name th,Site-Kind,City,LAT,lon,floor area m2,Device ID,device kind,"
    header += "device_name,cadence_s,Rated KW"
    rows = parse_registry_csv(registry_csv(header, bom=True))
    assert rows[0].site_code == "HALL"
    assert rows == parse_registry_csv(registry_csv())
    spaced_thai = REGISTRY_HEADER_TH.replace("_", " ")  # "พื้นที่ใช้สอย ตร.ม." as typed by hand
    assert parse_registry_csv(registry_csv(spaced_thai)) == rows


def test_optional_columns_may_be_absent_and_kinds_are_case_folded() -> None:
    data = "site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s\n"
    data += "S1,Depot,Fleet,Lampang,TRUCK-1,Fuel_Meter,Truck 1,900\n"
    (row,) = parse_registry_csv(data)
    assert (row.site_kind, row.device_kind, row.lat, row.rated_kw) == ("fleet", "fuel_meter", None, None)


def test_register_modulus_in_english_and_thai_headers() -> None:
    english = parse_registry_csv(registry_csv(MODULUS_HEADER_EN, MODULUS_ROWS))
    thai = parse_registry_csv(registry_csv(MODULUS_HEADER_TH.replace("_", " "), MODULUS_ROWS, bom=True))
    assert english == thai
    assert [r.register_modulus for r in english] == [100000.0, 1000000.0, 99999.99, None]
    assert all(r.register_modulus is None for r in parse_registry_csv(registry_csv()))  # column absent


def test_register_modulus_is_validated() -> None:
    rows = [
        *MODULUS_ROWS,
        "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,5200,HALL-M3,electricity_meter,X,60,,0",  # 6
        "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,5200,HALL-M4,electricity_meter,X,60,,-1",  # 7
        "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,5200,HALL-M5,electricity_meter,X,60,,lots",  # 8
        "FL,Depot,,fleet,Lampang,,,,TRUCK-1,fuel_meter,Truck,900,,inf",  # row 9
        "AQ1,Station 1,สถานีที่ 1,station,Lampang,18.29,99.5,,AQ1-S2,aq_station,PM,3600,,100000",  # row 10
        "RD1,Phahon Road,ถนนพหลโยธิน,street,Lampang,,,,RD1-L1,lamp,Lamp 1,300,0.1,100000",  # row 11
        "FL,Depot,,fleet,Lampang,,,,TRUCK-2,fuel_meter,Truck 2,900,, 1000000 ",  # row 12: fine
    ]
    assert _errors(registry_csv(MODULUS_HEADER_TH, rows)) == [
        (6, "ค่าวนกลับของมิเตอร์", "0"),
        (7, "ค่าวนกลับของมิเตอร์", "-1"),
        (8, "ค่าวนกลับของมิเตอร์", "lots"),
        (9, "ค่าวนกลับของมิเตอร์", "inf"),
        (10, "ค่าวนกลับของมิเตอร์", "100000"),
        (11, "ค่าวนกลับของมิเตอร์", "100000"),
    ]
    with pytest.raises(RegistryInvalid) as info:
        parse_registry_csv(registry_csv(MODULUS_HEADER_EN, rows[8:9]))
    assert "aq_station has no register" in info.value.errors[0].message


def test_simulator_registry_parses_with_its_moduli(tmp_path: Path) -> None:
    city = load_city()
    rows = {r.device_id: r for r in parse_registry_csv(_simulator_csv(city, tmp_path))}
    assert len(rows) == len(city.devices)
    for device in city.devices:
        modulus = rows[device.device_id].register_modulus
        if device.register is None:
            assert modulus is None
        else:
            scale = 0.001 if device.register.unit == "Wh" else 1.0
            assert modulus == pytest.approx(device.register.modulus * scale, rel=1e-12)
    assert rows["LPG-TH-01-M2"].register_modulus == rows["LPG-WW-01-M1"].register_modulus == 100000.0  # Wh meters


def _simulator_csv(city: City, tmp_path: Path) -> bytes:
    path = tmp_path / "devices.csv"
    city.devices_csv(path)
    return path.read_bytes()


def test_every_row_error_is_reported_with_row_column_and_value() -> None:
    rows = [
        *REGISTRY_ROWS,
        "HALL,City Hall,ศาลากลาง,building,Lampang,18.2888,99.4908,5200,bad id,electricity_meter,X,60,",  # row 6
        "RD2,Road 2,,street,Lampang,95,99,,RD2-C1,lamp,L,0,-1",  # row 7
        "RD3,Road 3,,castle,Lampang,,,,RD3-C1,toaster,L,sixty,",  # row 8
        "HALL,City Hall 2,ศาลากลาง,building,Lampang,18.2888,99.4908,5200,HALL-M3,electricity_meter,X,60,",  # 9
        "AQ1,Station 1,สถานีที่ 1,station,Lampang,18.29,99.5,,HALL-M1,aq_station,dup,60,",  # row 10
    ]
    found = _errors(registry_csv(rows=rows))
    assert found == [
        (6, "device_id", "bad id"),
        (7, "lat", "95"),
        (7, "cadence_s", "0"),
        (7, "rated_kw", "-1"),
        (8, "site_kind", "castle"),
        (8, "device_kind", "toaster"),
        (8, "cadence_s", "sixty"),
        (9, "site_name", "City Hall 2"),
        (10, "device_id", "HALL-M1"),
    ]


def test_error_columns_are_named_as_in_the_file() -> None:
    rows = ["HALL,City Hall,,building,Lampang,,,,HALL-M1,electricity_meter,Main,-5,"]
    assert _errors(registry_csv(REGISTRY_HEADER_TH, rows)) == [(2, "รอบส่งข้อมูล_วินาที", "-5")]


def test_header_problems_are_reported_before_rows() -> None:
    header = "site_code,site_name,site_kind,city,device_id,device_kind,device_name,colour"
    found = _errors(registry_csv(header, ["S,N,building,C,D1,lamp,L,red"]))
    assert found == [(1, "colour", "colour"), (1, "cadence_s", "")]


def test_row_numbers_follow_the_file_across_blank_lines_and_quoted_newlines() -> None:
    data = (
        REGISTRY_HEADER_EN + "\n\n"  # row 2 blank
        'S1,"Hall\nNorth",,building,Lampang,,,,D1,lamp,L,60,\n'  # rows 3-4
        "S2,Hall,,building,Lampang,,,,D2,lamp,L,0,\n"  # row 5
    )
    assert _errors(data.encode()) == [(5, "cadence_s", "0")]


def test_non_utf8_and_empty_files_are_refused() -> None:
    assert _errors("site_code\nศาลา\n".encode("cp874")) == [(1, "", "")]
    assert _errors(b"") == [(1, "", "")]
    assert _errors(registry_csv(rows=[])) == [(1, "", "")]


# --- database ----------------------------------------------------------------------------------------------------


def test_import_then_reimport_is_idempotent(conn: psycopg.Connection) -> None:
    rows = parse_registry_csv(registry_csv())
    first = import_registry(conn, rows)
    assert first == ImportReport(sites=UpsertCounts(inserted=3), devices=UpsertCounts(inserted=4))
    before = _snapshot(conn)
    again = import_registry(conn, rows)
    assert again == ImportReport(sites=UpsertCounts(unchanged=3), devices=UpsertCounts(unchanged=4))
    assert _snapshot(conn) == before
    assert conn.execute("SELECT count(*) FROM devices").fetchone() == (4,)


def test_reimport_applies_updates_and_new_rows(conn: psycopg.Connection) -> None:
    import_registry(conn, parse_registry_csv(registry_csv()))
    changed = list(REGISTRY_ROWS)
    changed[1] = changed[1].replace("Annex meter,60,", "Annex meter,30,80")  # device change only
    changed[2] = changed[2].replace("Phahon Road", "Phahon Rd")  # site change only
    changed.append("AQ1,Station 1,สถานีที่ 1,station,Lampang,18.29,99.5,,AQ1-S2,aq_station,Second,3600,")
    report = import_registry(conn, parse_registry_csv(registry_csv(rows=changed)))
    assert report.sites == UpsertCounts(inserted=0, updated=1, unchanged=2)
    assert report.devices == UpsertCounts(inserted=1, updated=1, unchanged=3)
    assert conn.execute("SELECT cadence_s, rated_kw FROM devices WHERE device_id = 'HALL-M2'").fetchone() == (30, 80)
    assert conn.execute("SELECT name FROM sites WHERE site_code = 'RD1'").fetchone() == ("Phahon Rd",)


def _modulus(conn: psycopg.Connection, device_id: str) -> float | None:
    row = conn.execute("SELECT register_modulus FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    assert row is not None
    return row[0]


def test_register_modulus_is_stored_updated_and_cleared(conn: psycopg.Connection) -> None:
    first = import_registry(conn, parse_registry_csv(registry_csv(MODULUS_HEADER_EN, MODULUS_ROWS)))
    assert first.devices == UpsertCounts(inserted=4)
    assert [_modulus(conn, d) for d in ("HALL-M1", "HALL-M2", "RD1-C1", "AQ1-S1")] == [1e5, 1e6, 99999.99, None]
    again = import_registry(conn, parse_registry_csv(registry_csv(MODULUS_HEADER_TH, MODULUS_ROWS)))
    assert again.devices == UpsertCounts(unchanged=4)
    changed = list(MODULUS_ROWS)
    changed[0] = changed[0].removesuffix(",100000") + ",10000000"  # a new meter with more digits
    changed[2] = changed[2].removesuffix(",99999.99") + ","  # blank clears
    report = import_registry(conn, parse_registry_csv(registry_csv(MODULUS_HEADER_EN, changed)))
    assert report.devices == UpsertCounts(updated=2, unchanged=2)
    assert (_modulus(conn, "HALL-M1"), _modulus(conn, "RD1-C1"), _modulus(conn, "HALL-M2")) == (1e7, None, 1e6)
    # A file without the column says "no value" for every device, like any optional column.
    report = import_registry(conn, parse_registry_csv(registry_csv()))
    assert report.devices == UpsertCounts(updated=2, unchanged=2)
    assert _modulus(conn, "HALL-M1") is None and _modulus(conn, "HALL-M2") is None
    with pytest.raises(psycopg.errors.CheckViolation):  # the schema refuses what the parser refuses
        conn.execute("UPDATE devices SET register_modulus = 0 WHERE device_id = 'HALL-M1'")
    conn.rollback()


def test_simulator_registry_imports(conn: psycopg.Connection, tmp_path: Path) -> None:
    city = load_city()
    report = import_registry(conn, parse_registry_csv(_simulator_csv(city, tmp_path)))
    assert report.devices == UpsertCounts(inserted=len(city.devices))
    with_modulus = conn.execute(
        "SELECT kind, count(*) FROM devices WHERE register_modulus IS NOT NULL GROUP BY kind ORDER BY kind"
    ).fetchall()
    assert {k for k, _ in with_modulus} == {"electricity_meter", "fuel_meter", "streetlight_cabinet"}
    assert _modulus(conn, "LPG-WP-01-M1") == 100000.0


def test_device_moves_to_another_site(conn: psycopg.Connection) -> None:
    import_registry(conn, parse_registry_csv(registry_csv()))
    moved = [*REGISTRY_ROWS[:2], "AQ1,Station 1,สถานีที่ 1,station,Lampang,18.29,99.5,,RD1-C1,lamp,L,300,"]
    report = import_registry(conn, parse_registry_csv(registry_csv(rows=moved)))
    assert report.devices == UpsertCounts(inserted=0, updated=1, unchanged=2)
    site = conn.execute(
        "SELECT s.site_code FROM devices d JOIN sites s ON s.id = d.site_id WHERE d.device_id = 'RD1-C1'"
    ).fetchone()
    assert site == ("AQ1",)


# --- CLI ---------------------------------------------------------------------------------------------------------


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "registry.csv"
    path.write_bytes(data)
    return path


def test_cli_import_reports_counts_then_unchanged(conn: psycopg.Connection, db_url: str, tmp_path: Path) -> None:
    path = _write(tmp_path, registry_csv(REGISTRY_HEADER_TH, bom=True))
    runner = CliRunner()
    first = runner.invoke(devices_app, ["import", str(path), "--no-credentials", "--database-url", db_url])
    assert first.exit_code == 0, first.output
    assert "sites    inserted 3, updated 0, unchanged 0" in first.output
    assert "devices  inserted 4, updated 0, unchanged 0" in first.output
    second = runner.invoke(devices_app, ["import", str(path), "--no-credentials", "--database-url", db_url])
    assert "devices  inserted 0, updated 0, unchanged 4" in second.output
    # Each run is in the audit log, by the operator who ran it, with what it changed.
    logged = conn.execute(
        "SELECT actor_subject, after FROM audit_log WHERE action = 'lccm devices import' ORDER BY id"
    ).fetchall()
    assert [(a["devices"]["inserted"], a["rows"]) for _, a in logged] == [(4, 4), (0, 4)]
    assert all(subject.startswith("cli:") for subject, _ in logged)
    listing = runner.invoke(devices_app, ["list", "--site-code", "HALL", "--database-url", db_url])
    assert listing.exit_code == 0, listing.output
    assert "HALL-M1" in listing.output and "RD1-C1" not in listing.output


def test_cli_invalid_file_writes_nothing_and_exits_nonzero(
    conn: psycopg.Connection, db_url: str, tmp_path: Path
) -> None:
    import_registry(conn, parse_registry_csv(registry_csv()))
    before = _snapshot(conn)
    logged = conn.execute("SELECT count(*) FROM audit_log").fetchone()
    rows = [REGISTRY_ROWS[0].replace("City Hall", "Renamed Hall"), "X,Y,,building,C,,,,Z 1,lamp,L,60,"]
    path = _write(tmp_path, registry_csv(rows=rows))
    result = CliRunner().invoke(devices_app, ["import", str(path), "--no-credentials", "--database-url", db_url])
    assert result.exit_code == 1
    assert "row 3, column 'device_id' (value 'Z 1')" in result.output
    assert "nothing was imported" in result.output
    assert _snapshot(conn) == before  # the valid first row was not applied either
    assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == logged  # nor logged as done
