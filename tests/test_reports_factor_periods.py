"""Factor periods in the CFO report and the GPC table (issue 15): fiscal 2026 (2025-10-01 .. 2026-09-30 Bangkok)
crosses TGO's grid factor change of 2026-01-01 00:00 Bangkok (0.4999 -> 0.4750, engine/factors.py,
docs/reference.md#grid-electricity-factors). A building meter's hourly readings go through the production writer
and updaters (the live figures); every report line and the total are worked out here by hand.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from lccm.engine import calendar as cal
from lccm.engine.factors import SRC_GRID_2026
from lccm.engine.timebase import BANGKOK
from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import parse_registry_csv
from lccm.reports.annual import CfoItem, CfoReport, build_cfo_report, build_gpc_report
from lccm.reports.baseline import comparison
from lccm.reports.render import cfo_csv, cfo_html, gpc_csv, gpc_html, to_json
from lccm.runtime import factor_rows, updaters
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file
from lccm.store.inventory_mapping import set_mappings
from tests._db import device_pk, fresh_database, write_readings

REGISTRY = """site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s,rated_kw
HALL,City Hall,building,Lampang,HALL-M1,electricity_meter,Main,3600,20
"""
START = datetime(2025, 10, 1, tzinfo=BANGKOK)
CHANGE = datetime(2026, 1, 1, tzinfo=BANGKOK)
END = datetime(2026, 10, 1, tzinfo=BANGKOK)
KWH_PER_HOUR_BEFORE, KWH_PER_HOUR_AFTER = 10.0, 8.0  # the hall draws less from January (new air conditioning)

# Fiscal 2026 inventory: month columns Jan..Dec of the template (Jan-Sep 2026, Oct-Dec 2025). The electricity item
# carries the factor of its base-year file (0.4999, its own source text); the meter fills all 12 months.
FY2026_CSV = "\r\n".join([
    ",".join(TEMPLATE_HEADER_EN),
    "S2-ELEC,2,purchased_electricity,Hall electricity,ไฟฟ้าอาคาร,kWh,0.4999,kgCO2e/kWh,TGO CFO 2022,AR5,,I.2.2,"
    "metered,building_electricity,," + ",".join(["0"] * 12),
    "S1-DIESEL,1,mobile_combustion,Fleet diesel,ดีเซล,L,2.7406,kgCO2e/L,TGO CFO 2022,AR5,,II.1.1,manual,,,"
    + ",".join(["100"] * 12),
]).encode() + b"\r\n"  # fmt: skip

# By hand. Oct, Nov, Dec 2025 = 31 + 30 + 31 = 92 days = 2,208 h; Jan-Sep 2026 = 31+28+31+30+31+30+31+31+30 = 273
# days = 6,552 h.
HOURS_BEFORE, HOURS_AFTER = 92 * 24, 273 * 24
KWH_BEFORE = HOURS_BEFORE * 10.0  # 22,080 kWh
KWH_AFTER = HOURS_AFTER * 8.0  # 52,416 kWh
KG_BEFORE = 11_037.792  # 22,080 x 0.4999
KG_AFTER = 24_897.6  # 52,416 x 0.4750
ELEC_KG = 35_935.392  # 11,037.792 + 24,897.6
DIESEL_KG = 3_288.72  # 12 x 100 L x 2.7406
GROSS_KG = 39_224.112  # 35,935.392 + 3,288.72
OCT_KG = 31 * 24 * 10.0 * 0.4999  # 7,440 kWh x 0.4999 = 3,719.256
JAN_KG = 31 * 24 * 8.0 * 0.4750  # 5,952 kWh x 0.4750 = 2,827.2


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        with psycopg.connect(url) as conn:
            sync_factor_registry(conn, *factor_rows())
            import_registry(conn, parse_registry_csv(REGISTRY))
            import_inventory_file(conn, FY2026_CSV, file_name="fy2026.csv", organisation="lampang", year_ce=2026,
                                  kind="fiscal")  # fmt: skip
            set_mappings(conn, "lampang", 2026, "fiscal", [("HALL-M1", "S2-ELEC")])
            meter, rows, value, ts = device_pk(conn, "HALL-M1"), [], 1000.0, START
            while ts <= END:
                rows.append((meter, 1, ts, value, ts))
                value += KWH_PER_HOUR_BEFORE if ts < CHANGE else KWH_PER_HOUR_AFTER
                ts += timedelta(hours=1)
            write_readings(conn, rows)
            conn.commit()
        updaters(Settings(database_url=url), url).drain()
        yield url


@pytest.fixture(scope="module")
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as c:
        yield c


@pytest.fixture(scope="module")
def report(conn: psycopg.Connection) -> CfoReport:
    return build_cfo_report(conn, "lampang", 2026, "fiscal")


def _item(report: CfoReport, code: str) -> CfoItem:
    return next(i for s in report.scopes for c in s.categories for i in c.items if i.item_code == code)


def test_electricity_has_one_line_per_factor_period_worked_out_by_hand(report: CfoReport) -> None:
    elec = _item(report, "S2-ELEC")
    before, after = elec.factor_periods
    assert (before.first_month, before.last_month, before.months_reported) == ("2025-10", "2025-12", 3)
    assert (after.first_month, after.last_month, after.months_reported) == ("2026-01", "2026-09", 9)
    assert before.quantity == pytest.approx(KWH_BEFORE, abs=1e-6)
    assert after.quantity == pytest.approx(KWH_AFTER, abs=1e-6)
    assert (before.ef_kgco2e_per_unit, before.ef_source) == (0.4999, "TGO CFO 2022")  # the item's own words
    assert (after.ef_kgco2e_per_unit, after.ef_source) == (0.4750, SRC_GRID_2026)  # the registry's
    assert before.kgco2e == pytest.approx(KG_BEFORE, abs=1e-6)
    assert after.kgco2e == pytest.approx(KG_AFTER, abs=1e-6)
    # Each line is its quantity x its factor, and the lines add up to the item's total.
    for p in (before, after):
        assert p.kgco2e == pytest.approx(p.quantity * p.ef_kgco2e_per_unit, abs=1e-6)
    assert elec.kgco2e == pytest.approx(ELEC_KG, abs=1e-6)
    assert before.kgco2e + after.kgco2e == pytest.approx(elec.kgco2e, abs=1e-6)
    # An item at several factors prints no single one beside its total.
    assert elec.ef_kgco2e_per_unit is None
    assert elec.monthly_kgco2e[0] == pytest.approx(OCT_KG, abs=1e-6)  # October 2025
    assert elec.monthly_kgco2e[3] == pytest.approx(JAN_KG, abs=1e-6)  # January 2026


def test_item_total_equals_the_live_figure_to_the_gram(report: CfoReport, conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT sum(eb.kgco2e), sum(eb.amount) FROM energy_buckets eb JOIN devices d ON d.id = eb.device_id"
        " WHERE d.device_id = 'HALL-M1' AND eb.resolution = '1mo' AND eb.bucket_start >= %s AND eb.bucket_start < %s",
        (START, END),
    ).fetchone()
    assert row is not None
    live_kg, live_kwh = float(row[0]), float(row[1])
    assert live_kwh == pytest.approx(KWH_BEFORE + KWH_AFTER, abs=1e-6)
    assert abs(_item(report, "S2-ELEC").kgco2e - live_kg) < 0.001
    assert abs(live_kg - ELEC_KG) < 0.001


def test_items_at_one_factor_keep_one_line_and_the_totals_add_up(report: CfoReport) -> None:
    diesel = _item(report, "S1-DIESEL")
    (only,) = diesel.factor_periods
    assert (only.first_month, only.last_month, only.ef_kgco2e_per_unit) == ("2025-10", "2026-09", 2.7406)
    assert diesel.ef_kgco2e_per_unit == 2.7406
    assert diesel.kgco2e == pytest.approx(DIESEL_KG, abs=1e-6)
    assert report.gross.kgco2e == pytest.approx(GROSS_KG, abs=1e-6)
    assert report.scopes[1].totals.kgco2e == pytest.approx(ELEC_KG, abs=1e-6)


def test_csv_json_and_html_carry_the_factor_periods(report: CfoReport) -> None:
    rows = list(csv.DictReader(io.StringIO(cfo_csv(report).decode("utf-8-sig"))))
    periods = [r for r in rows if r["row_type"] == "factor_period"]
    assert [
        (r["item_code"], r["factor_period"], float(r["quantity"]), float(r["ef_kgco2e_per_unit"]), float(r["kgco2e"]))
        for r in periods
    ] == [
        ("S2-ELEC", "2025-10..2025-12", pytest.approx(KWH_BEFORE), 0.4999, pytest.approx(KG_BEFORE, abs=1e-6)),
        ("S2-ELEC", "2026-01..2026-09", pytest.approx(KWH_AFTER), 0.4750, pytest.approx(KG_AFTER, abs=1e-6)),
    ]
    item = next(r for r in rows if r["row_type"] == "item" and r["item_code"] == "S2-ELEC")
    assert item["ef_kgco2e_per_unit"] == ""
    assert float(item["kgco2e"]) == pytest.approx(ELEC_KG, abs=1e-6)
    assert periods[1]["ef_source"] == SRC_GRID_2026
    assert all(r["row_type"] != "factor_period" or r["item_code"] != "S1-DIESEL" for r in rows)
    gross = next(r for r in rows if r["row_type"] == "gross_total")
    assert float(gross["kgco2e"]) == pytest.approx(GROSS_KG, abs=1e-6)

    doc = json.loads(to_json(report))
    elec = next(i for s in doc["scopes"] for c in s["categories"] for i in c["items"] if i["item_code"] == "S2-ELEC")
    assert [(p["quantity"], p["ef_kgco2e_per_unit"], p["kgco2e"]) for p in elec["factor_periods"]] == [
        (pytest.approx(KWH_BEFORE), 0.4999, pytest.approx(KG_BEFORE, abs=1e-6)),
        (pytest.approx(KWH_AFTER), 0.4750, pytest.approx(KG_AFTER, abs=1e-6))]  # fmt: skip

    html = cfo_html(report).decode()
    assert 'data-row="period-S2-ELEC-2025-10"' in html and 'data-row="period-S2-ELEC-2026-01"' in html
    assert "22,080.000 kWh" in html and "52,416.000 kWh" in html
    assert "0.4999 kgCO2e/kWh" in html and "0.4750 kgCO2e/kWh" in html
    assert "11.04" in html and "24.90" in html  # tCO2e of the two lines, to 2 decimals


def test_gpc_table_lists_the_factor_periods_of_its_cell(conn: psycopg.Connection) -> None:
    gpc = build_gpc_report(conn, "lampang", 2026, "fiscal")
    row = next(r for r in gpc.rows if r.gpc_ref == "I.2")
    assert row.scope_kgco2e[2] == pytest.approx(ELEC_KG, abs=1e-6)
    lines = [(f.item_code, f.item_ref, f.first_month, f.last_month, f.quantity, f.ef_kgco2e_per_unit, f.kgco2e)
             for f in row.factor_lines]  # fmt: skip
    assert lines == [("S2-ELEC", "I.2.2", "2025-10", "2025-12", pytest.approx(KWH_BEFORE), 0.4999,
                      pytest.approx(KG_BEFORE)),
                     ("S2-ELEC", "I.2.2", "2026-01", "2026-09", pytest.approx(KWH_AFTER), 0.4750,
                      pytest.approx(KG_AFTER))]  # fmt: skip
    assert sum(f.kgco2e for f in row.factor_lines) == pytest.approx(row.scope_kgco2e[2], abs=1e-6)
    rows = list(csv.DictReader(io.StringIO(gpc_csv(gpc).decode("utf-8-sig"))))
    notes = [r["note"] for r in rows if r["row_type"] == "factor_period"]
    assert notes[0].startswith("2025-10..2025-12: 22080.") and "kWh x 0.4999 kgCO2e/kWh (TGO CFO 2022)" in notes[0]
    assert notes[1].startswith("2026-01..2026-09: 52416.") and "kWh x 0.475 kgCO2e/kWh (TGO board" in notes[1]
    tco2e = [float(r["scope2_tco2e"]) for r in rows if r["row_type"] == "factor_period"]
    assert tco2e == [pytest.approx(KG_BEFORE / 1000, abs=1e-9), pytest.approx(KG_AFTER / 1000, abs=1e-9)]
    html = gpc_html(gpc).decode()
    assert 'data-row="period-S2-ELEC-2026-01"' in html and "52,416.000 kWh" in html


def test_comparison_gives_the_factor_periods_at_both_sets_of_factors(conn: psycopg.Connection) -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    answer = comparison(conn, "lampang", cal.year_period(2026, "fiscal"), "item", min_coverage=0.9, now=now)
    lines = [(p["item_code"], p["start"][:10], p["end"][:10], p["ef_kgco2e_per_unit"],
              p["ef_base_year_kgco2e_per_unit"]) for p in answer["factor_periods"]]  # fmt: skip
    assert lines == [("S2-ELEC", "2025-10-01", "2026-01-01", 0.4999, 0.4999),
                     ("S2-ELEC", "2026-01-01", "2026-10-01", 0.4750, 0.4999)]  # fmt: skip
    before, after = answer["factor_periods"]
    assert (before["quantity"], after["quantity"]) == (pytest.approx(KWH_BEFORE), pytest.approx(KWH_AFTER))
    # At the factors in force: 11,037.792 + 24,897.6 = 35,935.392 kgCO2e.
    assert before["actual_kgco2e"] == pytest.approx(KG_BEFORE, abs=1e-6)
    assert after["actual_kgco2e"] == pytest.approx(KG_AFTER, abs=1e-6)
    # At the base year's factor (2025: 0.4999 all year): 22,080 x 0.4999 = 11,037.792; 52,416 x 0.4999 = 26,202.7584.
    assert before["actual_base_factors_kgco2e"] == pytest.approx(11_037.792, abs=1e-6)
    assert after["actual_base_factors_kgco2e"] == pytest.approx(26_202.7584, abs=1e-6)
    row = next(r for r in answer["rows"] if r["group"] == "S2-ELEC")
    assert row["actual_kgco2e"] == pytest.approx(before["actual_kgco2e"] + after["actual_kgco2e"], abs=1e-6)
    assert row["actual_base_factors_kgco2e"] == pytest.approx(37_240.5504, abs=1e-6)  # 11,037.792 + 26,202.7584


def test_factor_periods_of_a_period_cut_inside_months(conn: psycopg.Connection) -> None:
    """15 November 2025 to 10 February 2026: the edges are day rows, December and January month rows (the store sums
    both kinds); the first and last days are the period's."""
    period = cal.custom_period(datetime(2025, 11, 15, tzinfo=BANGKOK), datetime(2026, 2, 10, tzinfo=BANGKOK))
    answer = comparison(conn, "lampang", period, "item", min_coverage=0.9, now=datetime(2026, 12, 7, tzinfo=UTC))
    before, after = answer["factor_periods"]
    assert (before["start"], before["end"]) == ("2025-11-15T00:00:00+07:00", "2026-01-01T00:00:00+07:00")
    assert (after["start"], after["end"]) == ("2026-01-01T00:00:00+07:00", "2026-02-10T00:00:00+07:00")
    # By hand: 16 November days + 31 December days = 47 days x 24 h x 10 kWh = 11,280 kWh; 31 + 9 = 40 days x 24 h
    # x 8 kWh = 7,680 kWh.
    assert (before["quantity"], after["quantity"]) == (pytest.approx(11_280.0), pytest.approx(7_680.0))
    assert before["actual_kgco2e"] == pytest.approx(11_280.0 * 0.4999, abs=1e-6)  # 5,638.872
    assert after["actual_kgco2e"] == pytest.approx(7_680.0 * 0.4750, abs=1e-6)  # 3,648.0
    row = next(r for r in answer["rows"] if r["group"] == "S2-ELEC")
    assert row["actual_kgco2e"] == pytest.approx(5_638.872 + 3_648.0, abs=1e-6)
