"""Comparison against the base year, projection, targets and building M&V through the API, on a real database fed
by the real pipeline (write_batch + the runtime's updaters), against hand-computed figures and an independent
numpy least-squares fit.

Grid factors (engine/factors.py, docs/reference.md#grid-electricity-factors): 0.4999 kgCO2e/kWh until the end of
2025, 0.4750 from 1 January 2026; the base-year factor of the energy buckets is 2025's (Settings.emission_base_year),
0.4999.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.engine.calendar import month_period
from lccm.engine.timebase import BANGKOK, bkk_us
from lccm.imports.inventory import TEMPLATE_HEADER_EN
from lccm.imports.registry import parse_registry_csv
from lccm.reports.baseline import comparison
from lccm.reports.periods import RequestInvalid
from lccm.runtime import factor_rows, updaters
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file
from lccm.store.inventory_mapping import set_mappings
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from tests._db import device_pk, fresh_database
from tests._principal import as_caller

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

REGISTRY = """site_code,site_name,site_kind,city,device_id,device_kind,device_name,cadence_s
HALL,City Hall,building,Lampang,HALL-M1,electricity_meter,Main,86400
LIB,Library,building,Lampang,LIB-M1,electricity_meter,Main,86400
AQ1,Station,station,Lampang,AQ1-S1,aq_station,Weather,3600
"""
ENERGY, TEMPERATURE = 1, 15
HALL_KWH_PER_DAY = 90.0
HOLIDAYS = [date(2025, 10, 13), date(2025, 10, 23)]  # King Bhumibol memorial day, Chulalongkorn day
MV_FROM, MV_TO, MV_END = date(2025, 10, 1), date(2025, 12, 1), date(2025, 12, 11)


def _inventory(elec: list[int], lpg: list[int], lpg_ef: float) -> bytes:
    def months(values: list[int]) -> str:
        return ",".join(str(v) for v in values)

    return "\n".join([
        ",".join(TEMPLATE_HEADER_EN),
        f"S2-ELEC,2,purchased_electricity,Buildings,,kWh,0.4999,kgCO2e/kWh,TGO,,,I.2.2,metered,building_electricity,,"
        f"{months(elec)}",
        f"S1-LPG,1,stationary_combustion,LPG,,kg,{lpg_ef},kgCO2e/kg,TGO,,,I.2.1,manual,,,{months(lpg)}",
    ]).encode()  # fmt: skip


# Base year 2024 (calendar): buildings 3,100 kWh in Jan, Oct, Dec and 3,000 in the other months; LPG 10 kg a month.
BASE_ELEC = [3100] + [3000] * 8 + [3100, 3000, 3100]
BASE = _inventory(BASE_ELEC, [10] * 12, 3.1134)
Y2025 = _inventory([0] * 12, [0] * 9 + [12, 12, 12], 3.1134)  # LPG 12 kg in Oct, Nov, Dec 2025
Y2026 = _inventory([0] * 12, [31] + [0] * 11, 3.0)  # LPG 31 kg in January 2026, at a new factor of 3.0


def _mv_day(i: int, d: date) -> tuple[float, float]:
    """(mean °C, kWh) of the library's i-th day: a CDD(24 °C) + working-day load with a deterministic wiggle."""
    temp = 25.0 + 0.5 * ((i * 7) % 11)
    workday = d.weekday() < 5 and d not in HOLIDAYS
    kwh = 100.0 + 5.0 * max(0.0, temp - 24.0) + 30.0 * workday + 2.0 * ((i * 5) % 7 - 3)
    if d >= MV_TO:
        kwh -= 10.0  # after the retrofit
    return temp, kwh


def _mv_days() -> list[date]:
    return [MV_FROM + timedelta(days=i) for i in range((MV_END - MV_FROM).days)]


def _write_daily(conn: psycopg.Connection, device: int, start: date, daily_kwh: list[float]) -> None:
    """Register readings at each Bangkok midnight from ``start`` (0 kWh) on, each arriving a minute later."""
    register = np.concatenate([[0.0], np.cumsum(daily_kwh)])
    ts = np.array([bkk_us((start + timedelta(days=k)).year, (start + timedelta(days=k)).month,
                          (start + timedelta(days=k)).day) for k in range(register.size)], np.int64)  # fmt: skip
    n = ts.size
    write_batch(
        conn,
        ReadingColumns(
            np.full(n, device, np.int32),
            np.full(n, ENERGY, np.int16),
            ts,
            register,
            np.full(n, NO_SEQ, np.int64),
            ts + 60_000_000,
        ),
    )


def _write_station(conn: psycopg.Connection, device: int) -> None:
    """Hourly readings at the station through the M&V baseline: the day's mean in every hour, with +-1 °C around it
    on alternate hours (so the hourly means average back to the day's mean)."""
    ts, temp = [], []
    for i, d in enumerate(_mv_days()):
        for h in range(24):
            ts.append(bkk_us(d.year, d.month, d.day, h))
            temp.append(_mv_day(i, d)[0] + (1.0 if h % 2 else -1.0))
    t = np.array(ts, np.int64)
    n = t.size
    write_batch(
        conn,
        ReadingColumns(
            np.full(n, device, np.int32),
            np.full(n, TEMPERATURE, np.int16),
            t,
            np.array(temp),
            np.full(n, NO_SEQ, np.int64),
            t + 60_000_000,
        ),
    )


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(REGISTRY))
        for year, data in ((2024, BASE), (2025, Y2025), (2026, Y2026)):
            import_inventory_file(conn, data, file_name=f"{year}.csv", organisation="lampang", year_ce=year)
        for year in (2025, 2026):
            set_mappings(conn, "lampang", year, "calendar", [("HALL-M1", "S2-ELEC")])
        # City hall: 90 kWh a day from 1 October 2025 to 10 January 2026 (102 days).
        _write_daily(conn, device_pk(conn, "HALL-M1"), date(2025, 10, 1), [HALL_KWH_PER_DAY] * 102)
        _write_daily(conn, device_pk(conn, "LIB-M1"), MV_FROM, [_mv_day(i, d)[1] for i, d in enumerate(_mv_days())])
        _write_station(conn, device_pk(conn, "AQ1-S1"))
        conn.commit()
    updaters(Settings(database_url=url), url).drain()


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with fresh_database() as url:
        _seed(url)
        yield url


@pytest.fixture(scope="module")
def client(db: str) -> Iterator[TestClient]:
    """The API as deployed: the default coverage threshold (0.9)."""
    with (
        ConnectionPool(db, min_size=1, max_size=4, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=db), pool))) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def lenient(db: str) -> Iterator[TestClient]:
    """The API with LCCM_COMPARISON_MIN_COVERAGE=0.25: headline figures from a quarter of the data."""
    with (
        ConnectionPool(db, min_size=1, max_size=2, open=True) as pool,
        TestClient(as_caller(create_app(Settings(database_url=db, comparison_min_coverage=0.25), pool))) as c,
    ):
        yield c


def test_fiscal_year_to_date_across_new_year_with_a_partial_month(client: TestClient) -> None:
    r = client.get("/organisations/lampang/comparison", params={"period": "fytd", "date": "2026-01-10", "by": "scope"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["period"]["start"], body["period"]["end"]) == (
        "2025-10-01T00:00:00+07:00",
        "2026-01-11T00:00:00+07:00",
    )
    rows = {x["group"]: x for x in body["rows"]}
    # Scope 2 baseline: Oct + Nov + Dec 2024 whole (3,100 + 3,000 + 3,100 = 9,200 kWh) + 10/31 of January's 3,100
    # (= 1,000 kWh) = 10,200 kWh x 0.4999 = 5,098.98 kgCO2e.
    s2 = rows["2"]
    assert s2["baseline_kgco2e"] == pytest.approx(5098.98)
    # Actual: 92 days x 90 = 8,280 kWh in Oct-Dec 2025 at 0.4999 = 4,139.172; 10 x 90 = 900 kWh in January 2026 at
    # 0.4750 = 427.5; in force 4,566.672. At the base-year factor: 9,180 x 0.4999 = 4,589.082.
    assert s2["actual_kgco2e"] == pytest.approx(4566.672)
    assert s2["actual_base_factors_kgco2e"] == pytest.approx(4589.082)
    # delta % in force = 100 x (4,566.672 - 5,098.98) / 5,098.98 = -10.43949...; like-for-like 9,180 / 10,200 - 1.
    assert s2["delta_kgco2e"] == pytest.approx(-532.308)
    assert s2["delta_pct"] == pytest.approx(100 * -532.308 / 5098.98)
    assert s2["delta_pct"] == pytest.approx(-10.43949, abs=1e-5)
    assert s2["delta_base_factors_pct"] == pytest.approx(-10.0)
    # Scope 1 (manual LPG). Baseline: 10 kg x 3.1134 x (3 + 10/31) = 93.402 + 10.04323 = 103.44523.
    # Actual in force: 36 kg x 3.1134 (2025) + 31 kg x 10/31 x 3.0 (2026) = 112.0824 + 30 = 142.0824; at the base
    # year's factor the January 10 kg count 3.1134: 112.0824 + 31.134 = 143.2164.
    s1 = rows["1"]
    assert s1["baseline_kgco2e"] == pytest.approx(93.402 + 31.134 * 10 / 31)
    assert s1["actual_kgco2e"] == pytest.approx(142.0824)
    assert s1["actual_base_factors_kgco2e"] == pytest.approx(143.2164)
    assert s1["delta_pct"] == pytest.approx(100 * (142.0824 / (93.402 + 31.134 * 10 / 31) - 1))
    total = body["total"]
    assert total["actual_kgco2e"] == pytest.approx(4566.672 + 142.0824)
    assert total["baseline_kgco2e"] == pytest.approx(5098.98 + 93.402 + 31.134 * 10 / 31)
    assert body["missing_reporting_years"] == []
    # Every day and month is covered: the hall's daily meter (cadence 86,400 s) has 102 of 102 readings (1 October to
    # 10 January), LPG 4 of 4 months entered; the like-for-like figures over the covered time are the plain ones.
    cov = total["coverage"]
    assert (cov["share"], cov["basis"], cov["sufficient"], cov["reason"]) == (pytest.approx(1.0), "baseline", True,
                                                                              None)  # fmt: skip
    assert (cov["readings_expected"], cov["readings_present"]) == (pytest.approx(102), pytest.approx(102))
    assert (cov["item_months_expected"], cov["item_months_present"]) == (4, 4)
    assert total["covered_time"]["delta_pct"] == pytest.approx(total["delta_pct"])
    assert body["period"]["partial"] is False


def test_comparison_refuses_an_incomplete_custom_period(client: TestClient) -> None:
    r = client.get("/organisations/lampang/comparison", params={"period": "custom", "from": "2026-01-05"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "from"]
    assert client.get("/organisations/nowhere/comparison").status_code == 404


def test_projection_scales_the_baseline_year_by_the_year_to_date_ratio(client: TestClient) -> None:
    r = client.get("/organisations/lampang/projection", params={"date": "2026-01-10", "kind": "calendar"})
    assert r.status_code == 200, r.text
    s2 = {x["group"]: x for x in r.json()["rows"]}["2"]
    # YTD 1-10 Jan 2026: actual 900 kWh x 0.4750 = 427.5; baseline 1,000 kWh x 0.4999 = 499.9; ratio 0.855169...
    # Base year 36,300 kWh x 0.4999 = 18,146.37; projected = 427.5 + ratio x (18,146.37 - 499.9) = ratio x 18,146.37.
    assert s2["ratio"] == pytest.approx(427.5 / 499.9)
    assert s2["projected_kgco2e"] == pytest.approx(427.5 / 499.9 * 18146.37)


def test_target_status_of_an_emission_and_a_kpi_target(client: TestClient) -> None:
    targets = {"targets": [
        {"target_key": "org", "target_year": 2030},
        {"target_key": "streetlights", "kpi": "kwh_per_lamp", "target_year": 2030, "reduction_pct": 10,
         "kpi_values": {"2024": 400, "2025": 395}},
    ]}  # fmt: skip
    r = client.put("/organisations/lampang/targets", json=targets)
    assert r.status_code == 200, r.text
    assert [t["reduction_pct"] for t in r.json()] == [5.0, 10.0]  # 5 % by default
    bad = client.put("/organisations/lampang/targets", json={"targets": [{"target_key": "x", "target_year": 2020}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["column"] == "target_year"
    assert len(client.get("/organisations/lampang/targets").json()) == 2  # the refused list wrote nothing
    r = client.get("/organisations/lampang/targets/status", params={"year": 2025, "date": "2025-12-31"})
    assert r.status_code == 200, r.text
    org, kpi = r.json()
    # Base 2024: 36,300 kWh x 0.4999 + 120 kg x 3.1134 = 18,146.37 + 373.608 = 18,519.978 kgCO2e. Trajectory 2025 =
    # base x (1 - 5 % x 1/6) = 18,365.6448. 2025 is over, but the hall's meter reads from 1 October only: the recorded
    # actual 8,280 x 0.4999 + 36 x 3.1134 = 4,251.2544 is a quarter of a year's electricity, and judging it against a
    # year's trajectory ("on track, margin 77 %") is what issue 11 found. Coverage, weighted by the base year: the
    # covered time's baseline (Oct-Dec 2024 9,200 kWh x 0.4999 = 4,599.08, and LPG's 12 entered months 373.608) over
    # the year's 18,519.978 = 4,972.688 / 18,519.978 = 26.85 %, below the default 90 %: no value, no verdict.
    assert org["base_value_kgco2e"] == pytest.approx(18519.978)
    assert org["trajectory"] == pytest.approx(18519.978 * (1 - 0.05 / 6))
    assert org["actual_to_date_kgco2e"] == pytest.approx(4251.2544)
    assert org["coverage"]["share"] == pytest.approx(4972.688 / 18519.978)
    assert (org["coverage"]["basis"], org["coverage"]["sufficient"]) == ("baseline", False)
    assert (org["value"], org["value_kind"], org["margin"], org["margin_pct"], org["on_track"]) == (None,) * 5
    assert org["reason"] == "coverage 26.85 % is below the threshold 90.00 % (LCCM_COMPARISON_MIN_COVERAGE)"
    # Beside it, the year over the covered time (each item's actual x its base year / its covered baseline):
    # electricity 4,139.172 / 4,599.08 = 0.9 x 18,146.37 = 16,331.733; LPG 112.0824 / 373.608 = 0.3 x 373.608 =
    # 112.0824; 16,443.8154 against 18,365.6448: margin 1,921.8294.
    assert org["covered_time"]["value"] == pytest.approx(16443.8154)
    assert org["covered_time"]["margin"] == pytest.approx(18519.978 * (1 - 0.05 / 6) - 16443.8154)
    # KPI: 400 kWh/lamp, -10 % by 2030: 2025 allows 400 - 40 / 6 = 393.333; 395 is 1.667 over -> off track.
    assert kpi["trajectory"] == pytest.approx(400 - 40 / 6)
    assert kpi["margin"] == pytest.approx(400 - 40 / 6 - 395)
    assert kpi["margin_pct"] == pytest.approx(100 * (400 - 40 / 6 - 395) / (400 - 40 / 6))
    assert kpi["on_track"] is False


def test_mv_fit_matches_numpy_lstsq_and_savings_use_the_stored_model(client: TestClient) -> None:
    days = _mv_days()
    csv = "date,mean_temp_c\n" + "".join(f"{d.isoformat()},{_mv_day(i, d)[0]}\n" for i, d in enumerate(days))
    r = client.post("/organisations/lampang/temperatures/import", content=csv.encode(),
                    headers={"content-type": "text/csv"})  # fmt: skip
    assert r.status_code == 200, r.text and r.json()["days"] == len(days)
    body = {"baseline_from": MV_FROM.isoformat(), "baseline_to": MV_TO.isoformat(), "base_temp_c": 24.0,
            "holidays": [h.isoformat() for h in HOLIDAYS],
            "limits": {"cv_rmse_pct": 10.0, "nmbe_pct": 5.0, "resolution": "daily"}}  # fmt: skip
    r = client.post("/sites/LIB/mv/fit", json=body)
    assert r.status_code == 200, r.text
    fit = r.json()
    # Independent fit: the design matrix built here from the same days (1 / CDD at 24 °C / weekday and not holiday).
    base = [(i, d) for i, d in enumerate(days) if d < MV_TO]
    temp = np.array([_mv_day(i, d)[0] for i, d in base])
    kwh = np.array([_mv_day(i, d)[1] for i, d in base])
    x = np.column_stack([np.ones(len(base)), np.maximum(temp - 24.0, 0.0),
                         [float(d.weekday() < 5 and d not in HOLIDAYS) for _, d in base]])  # fmt: skip
    coef, *_ = np.linalg.lstsq(x, kwh, rcond=None)
    assert fit["coef"] == pytest.approx(list(coef))
    resid = x @ coef - kwh
    n, p = len(base), 3
    cv = 100 * np.sqrt((resid @ resid) / (n - p)) / kwh.mean()
    assert fit["daily"]["n"] == n == 61 and fit["daily"]["cv_rmse_pct"] == pytest.approx(cv)
    assert fit["daily"]["nmbe_pct"] == pytest.approx(100 * resid.sum() / ((n - p) * kwh.mean()), abs=1e-9)
    assert 2.0 < cv < 10.0 and fit["passed"] is True  # CV(RMSE) 2.95 % against a configured 10 %
    tight = client.post("/sites/LIB/mv/fit", json=body | {"limits": {"cv_rmse_pct": 2.0, "nmbe_pct": 5.0,
                                                                    "resolution": "daily"}}).json()  # fmt: skip
    assert (tight["passed"], tight["cv_rmse_ok"], tight["nmbe_ok"]) == (False, False, True)
    # The station's hourly readings give the same daily means, hence the same model.
    by_station = client.post("/sites/LIB/mv/fit", json=body | {"station": "AQ1-S1"})
    assert by_station.status_code == 200, by_station.text
    assert by_station.json()["coef"] == pytest.approx(list(coef))
    assert fit["monthly"] is None  # two months cannot test three parameters
    # Savings 1-10 Dec 2025: the stored model at those days' weather and working days minus actual, at 0.4999.
    rep = [(i, d) for i, d in enumerate(days) if d >= MV_TO]
    xr = np.column_stack([np.ones(len(rep)), [max(_mv_day(i, d)[0] - 24.0, 0.0) for i, d in rep],
                          [float(d.weekday() < 5 and d not in HOLIDAYS) for _, d in rep]])  # fmt: skip
    avoided = float((xr @ coef - np.array([_mv_day(i, d)[1] for i, d in rep])).sum())
    r = client.get("/sites/LIB/mv/savings", params={"from": "2025-12-01", "to": "2025-12-11"})
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["days"] == 10 and s["avoided_kwh"] == pytest.approx(avoided)
    assert s["avoided_kgco2e"] == pytest.approx(avoided * 0.4999)


def test_temperature_csv_errors_name_the_line(client: TestClient) -> None:
    r = client.post("/organisations/lampang/temperatures/import", content=b"date,mean_temp_c\n2025-13-01,30\n",
                    headers={"content-type": "text/csv"})  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"] == [{"row": 2, "column": "date", "value": "2025-13-01",
                                   "message": "not an ISO date (YYYY-MM-DD)"}]  # fmt: skip


def test_items_without_data_are_listed_and_left_out_of_the_like_for_like_total(client: TestClient) -> None:
    # March 2026: the hall's meter has no readings after 11 January (no metered month), LPG has its entered 0 kg.
    r = client.get("/organisations/lampang/comparison", params={"period": "month", "date": "2026-03-15"})
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {x["group"]: x for x in body["rows"]}
    assert rows["2"]["items_without_data"] == ["S2-ELEC"] and rows["1"]["items_without_data"] == []
    assert body["items_without_data"] == ["S2-ELEC"]
    # Plain total: 0 against March 2024's 3,000 kWh x 0.4999 = 1,499.7 plus 10 kg LPG x 3.1134 = 31.134.
    assert body["total"]["baseline_kgco2e"] == pytest.approx(1499.7 + 31.134)
    # Over the covered time: LPG only (the electricity meter covers no time in March), 0 kg against 31.134 kgCO2e.
    covered = body["total"]["covered_time"]
    assert (body["total"]["actual_kgco2e"], covered["baseline_kgco2e"]) == (0.0, pytest.approx(31.134))
    assert covered["delta_pct"] == pytest.approx(-100.0)
    # The covered share, weighted by the base year: 31.134 / 1,530.834; far too little for a headline.
    assert body["total"]["coverage"]["share"] == pytest.approx(31.134 / (1499.7 + 31.134))
    assert body["total"]["delta_pct"] is None and rows["2"]["delta_pct"] is None
    # Scope 1 alone (LPG, entered) is fully covered: its own row keeps its figures.
    assert rows["1"]["coverage"]["sufficient"] and rows["1"]["delta_pct"] == pytest.approx(-100.0)


# ------------------------------------------------------------------------------------------------------ coverage
# January 2026: the hall's meter reads 1-10 January only (10 of 31 days), LPG's 31 kg are entered. Base January 2024:
# electricity 3,100 kWh x 0.4999 = 1,549.69; LPG 10 kg x 3.1134 = 31.134. Actual: 900 kWh x 0.4750 = 427.5 (at the
# base factor 449.91) and 31 kg x 3.0 = 93 (at the base year's 3.1134: 96.5154).
JAN_S2_BASE, JAN_LPG_BASE = 3100 * 0.4999, 31.134
JAN_S2_COVERED = JAN_S2_BASE * 10 / 31  # 499.9: the base January's share of the 10 covered days
JAN_ACTUAL, JAN_ACTUAL_BASE_FACTORS = 427.5 + 93.0, 449.91 + 31 * 3.1134


def test_a_comparison_from_a_third_of_the_data_withholds_its_change_and_compares_the_covered_time(
    client: TestClient, lenient: TestClient
) -> None:
    params = {"period": "custom", "from": "2026-01-01", "to": "2026-02-01", "by": "scope"}
    body = client.get("/organisations/lampang/comparison", params=params).json()
    total, rows = body["total"], {r["group"]: r for r in body["rows"]}
    # Recorded figures stay: actual 520.5 against the whole base January 1,580.824 (which would read -67.1 %).
    assert total["actual_kgco2e"] == pytest.approx(JAN_ACTUAL)
    assert total["baseline_kgco2e"] == pytest.approx(JAN_S2_BASE + JAN_LPG_BASE)
    # Coverage weighted by the base year: (499.9 + 31.134) / 1,580.824 = 33.59 %, below 90 %: the changes are null.
    cov = total["coverage"]
    share = (JAN_S2_COVERED + JAN_LPG_BASE) / (JAN_S2_BASE + JAN_LPG_BASE)
    assert cov["share"] == pytest.approx(share) and cov["sufficient"] is False
    assert cov["reason"] == "coverage 33.59 % is below the threshold 90.00 % (LCCM_COMPARISON_MIN_COVERAGE)"
    assert [total[k] for k in ("delta_kgco2e", "delta_pct", "delta_base_factors_kgco2e",
                               "delta_base_factors_pct")] == [None] * 4  # fmt: skip
    # Readings: 31 expected at the meter's daily cadence, 10 present; item-months: LPG's January, entered.
    assert (cov["readings_expected"], cov["readings_present"]) == (pytest.approx(31), pytest.approx(10))
    assert (cov["readings_share"], cov["item_months_expected"], cov["item_months_present"]) == (
        pytest.approx(10 / 31), 1, 1)  # fmt: skip
    # Like for like over the covered time: 520.5 against 530.934 (10 days of the base January's electricity and
    # all of its LPG): -10.534 kgCO2e, -1.984 %; at the base year's factors 546.4254: +15.3914, +2.898 %.
    covered = total["covered_time"]
    assert covered["baseline_kgco2e"] == pytest.approx(JAN_S2_COVERED + JAN_LPG_BASE)
    assert covered["delta_kgco2e"] == pytest.approx(JAN_ACTUAL - 531.034)
    assert covered["delta_pct"] == pytest.approx(100 * (JAN_ACTUAL / 531.034 - 1))
    assert covered["delta_base_factors_pct"] == pytest.approx(100 * (JAN_ACTUAL_BASE_FACTORS / 531.034 - 1))
    # Per group: scope 2 covers 10/31 of its time and is withheld; scope 1 (LPG, entered) keeps its change.
    assert rows["2"]["coverage"]["share"] == pytest.approx(10 / 31) and rows["2"]["delta_pct"] is None
    assert rows["1"]["coverage"]["share"] == pytest.approx(1.0)
    assert rows["1"]["delta_pct"] == pytest.approx(100 * (93 / 31.134 - 1))
    # Per item.
    items = {i["item_code"]: i for i in body["items_coverage"]}
    elec, lpg = items["S2-ELEC"], items["S1-LPG"]
    assert (elec["collection"], elec["devices"], elec["share"]) == ("metered", 1, pytest.approx(10 / 31))
    assert (elec["baseline_kgco2e"], elec["baseline_covered_kgco2e"]) == (pytest.approx(JAN_S2_BASE),
                                                                          pytest.approx(JAN_S2_COVERED))  # fmt: skip
    assert (lpg["collection"], lpg["item_months_expected"], lpg["item_months_present"], lpg["share"]) == (
        "manual", 1, 1, 1.0)  # fmt: skip
    # With LCCM_COMPARISON_MIN_COVERAGE=0.25 the same third of the data is enough for the headline.
    loose = lenient.get("/organisations/lampang/comparison", params=params).json()["total"]
    assert loose["coverage"]["sufficient"] is True and loose["coverage"]["threshold"] == 0.25
    assert loose["delta_kgco2e"] == pytest.approx(JAN_ACTUAL - JAN_S2_BASE - JAN_LPG_BASE)


def test_a_month_that_runs_past_today_meets_the_base_years_same_days(db: str) -> None:
    # "Now" is the first instant of 11 January 2026 (Bangkok): the month is cut at the end of today, 12 January
    # 00:00 (11 days), and compared with 11/31 of the base January, not the whole of it (which gave -70.9 %).
    now = datetime(2026, 1, 11, tzinfo=BANGKOK)
    with psycopg.connect(db) as conn:
        body = comparison(conn, "lampang", month_period(2026, 1), "scope", min_coverage=0.9, now=now)
        p = body["period"]
        assert (p["end"], p["days"], p["partial"]) == ("2026-01-12T00:00:00+07:00", 11.0, True)
        assert (p["requested_end"], p["label"]) == ("2026-02-01T00:00:00+07:00", "2026-01 to 2026-01-11")
        total = body["total"]
        base = (JAN_S2_BASE + JAN_LPG_BASE) * 11 / 31
        assert total["baseline_kgco2e"] == pytest.approx(base)
        # Actual: the hall's 10 days (427.5) and 11/31 of the entered 31 kg (33 x 3.0 = 33.0 kgCO2e).
        assert total["actual_kgco2e"] == pytest.approx(427.5 + 33.0)
        # Today has not elapsed: the meter covers 10 of the 11 days; weighted share (499.9 + 11.0476) / 560.9376.
        share = (JAN_S2_COVERED + JAN_LPG_BASE * 11 / 31) / base
        assert total["coverage"]["share"] == pytest.approx(share) and share > 0.9
        assert total["delta_pct"] == pytest.approx(100 * ((427.5 + 33.0) / base - 1))
        assert total["covered_time"]["delta_pct"] == pytest.approx(
            100 * ((427.5 + 33.0) / (JAN_S2_COVERED + JAN_LPG_BASE * 11 / 31) - 1)
        )
        with pytest.raises(RequestInvalid, match="2026-02 has not started on 2026-01-11"):
            comparison(conn, "lampang", month_period(2026, 2), "scope", min_coverage=0.9, now=now)


def test_projection_from_a_sixth_of_the_data_is_withheld_and_adds_up_item_by_item(client: TestClient) -> None:
    # 1 January to 15 March 2026 (74 days). The hall's meter covers 1-10 January; LPG has January (31 kg) and
    # February and March (0 kg) entered. Electricity to date: actual 427.5 against a baseline to date of (3,100 +
    # 3,000 + 15/31 x 3,000) kWh x 0.4999 = 3,775.0513, of which 499.9 over the covered time.
    body = client.get("/organisations/lampang/projection", params={"date": "2026-03-15", "kind": "calendar"}).json()
    s2 = {r["group"]: r for r in body["rows"]}["2"]
    assert s2["baseline_ytd_kgco2e"] == pytest.approx((3100 + 3000 + 3000 * 15 / 31) * 0.4999)
    assert s2["baseline_ytd_covered_kgco2e"] == pytest.approx(499.9)
    # The plain ratio 427.5 / 3,775.05 would project 2,054.9 kgCO2e, 11 % of the base year's electricity. Over the
    # covered time the ratio is 0.855: 15,518.3 kgCO2e.
    assert s2["ratio"] == pytest.approx(427.5 / 499.9)
    s2_projected = 427.5 / 499.9 * 18146.37
    lpg_covered = 31.134 * (2 + 15 / 31)  # January, February and 15/31 of March, all entered
    lpg_projected = 93.0 / lpg_covered * 373.608
    # Weighted coverage (499.9 + 77.33) / (3,775.05 + 77.33) = 14.98 %: the projection is withheld.
    total = body["total"]
    share = (499.9 + lpg_covered) / ((3100 + 3000 + 3000 * 15 / 31) * 0.4999 + lpg_covered)
    assert total["coverage"]["share"] == pytest.approx(share)
    assert (
        total["projected_kgco2e"] is None and body["projected_total_kgco2e"] is None and s2["projected_kgco2e"] is None
    )
    assert total["covered_time"]["projected_kgco2e"] == pytest.approx(s2_projected + lpg_projected)
    # Groups are sums of the item projections: every grouping adds up to the same total.
    for by in ("scope", "item", "cfo_category", "gpc_ref", "site"):
        doc = client.get("/organisations/lampang/projection", params={"date": "2026-03-15", "kind": "calendar",
                                                                      "by": by}).json()  # fmt: skip
        assert sum(r["covered_time"]["projected_kgco2e"] for r in doc["rows"]) == pytest.approx(
            s2_projected + lpg_projected
        ), by


def test_projection_and_target_value_are_the_same_sum_of_item_projections(client: TestClient) -> None:
    # 1-10 January 2026, everything covered. Electricity: 427.5 / 499.9 x 18,146.37 = 15,518.25. LPG: 10/31 of the
    # entered 31 kg x 3.0 = 30 against 10/31 of 31.134: ratio 2.987 x 373.608 = 1,116.00. Total 16,634.25. One ratio
    # over the total, (427.5 + 30) / (499.9 + 10.0432) x 18,519.978 = 16,615.47, would differ from the sum of the
    # groups' (or items') projections; per item every answer is the same.
    s2 = 427.5 / 499.9 * 18146.37
    lpg = 30.0 / (31.134 * 10 / 31) * 373.608
    for by in ("scope", "item"):
        doc = client.get("/organisations/lampang/projection", params={"date": "2026-01-10", "kind": "calendar",
                                                                      "by": by}).json()  # fmt: skip
        assert doc["total"]["coverage"]["sufficient"] is True
        assert doc["projected_total_kgco2e"] == pytest.approx(s2 + lpg)
        assert sum(r["projected_kgco2e"] for r in doc["rows"]) == pytest.approx(s2 + lpg)
    targets = {
        "targets": [
            {"target_key": "org", "target_year": 2030},
            {"target_key": "elec", "category": "purchased_electricity", "target_year": 2030},
        ]
    }
    assert client.put("/organisations/lampang/targets", json=targets).status_code == 200
    status = {t["target_key"]: t for t in client.get("/organisations/lampang/targets/status",
                                                       params={"year": 2026, "date": "2026-01-10"}).json()}  # fmt: skip
    assert (status["org"]["value_kind"], status["org"]["value"]) == ("projected", pytest.approx(s2 + lpg))
    assert status["elec"]["value"] == pytest.approx(s2) and status["elec"]["on_track"] is True
    assert status["org"]["on_track"] is True  # 16,634.25 against 18,519.978 x (1 - 0.05 x 2/6) = 18,211.31


def test_target_verdicts_follow_the_configured_threshold(lenient: TestClient) -> None:
    targets = {"targets": [{"target_key": "org", "target_year": 2030}]}
    assert lenient.put("/organisations/lampang/targets", json=targets).status_code == 200
    # 2025 with LCCM_COMPARISON_MIN_COVERAGE=0.25: its 26.85 % coverage suffices, and the value is the year over
    # its covered time (gap_filled: electricity 0.9 x 18,146.37, LPG 112.0824), not the recorded 4,251.25.
    (org,) = lenient.get("/organisations/lampang/targets/status", params={"year": 2025, "date": "2025-12-31"}).json()
    assert (org["value_kind"], org["value"]) == ("gap_filled", pytest.approx(16443.8154))
    assert org["margin"] == pytest.approx(18519.978 * (1 - 0.05 / 6) - 16443.8154) and org["on_track"] is True


def test_items_that_cannot_be_covered_say_why(client: TestClient) -> None:
    # March 2024, the base year itself: no device is mapped in 2024 (the hall's meter is mapped from 2025), so the
    # metered electricity covers nothing; LPG's base-year quantity is entered. December 2023: no 2023 inventory.
    body = client.get("/organisations/lampang/comparison",
                      params={"period": "custom", "from": "2023-12-01", "to": "2024-04-01"}).json()  # fmt: skip
    items = {i["item_code"]: i for i in body["items_coverage"]}
    assert items["S2-ELEC"]["notes"] == ["no calendar reporting year 2023", "no device mapped in 2024"]
    elec = items["S2-ELEC"]
    assert (elec["share"], elec["devices"], elec["readings_expected"]) == (0.0, 0, 0.0)
    # LPG: January to March 2024 entered (3 of 3 item-months of the existing year), December 2023 not covered:
    # 91 of 122 days.
    lpg = items["S1-LPG"]
    assert (lpg["item_months_expected"], lpg["item_months_present"]) == (3, 3)
    assert lpg["share"] == pytest.approx(91 / 122) and lpg["notes"] == ["no calendar reporting year 2023"]
    assert body["missing_reporting_years"] == [2023] and body["total"]["delta_pct"] is None
    # The base year's LPG over its covered months: 3 x 31.134; electricity none.
    assert body["total"]["covered_time"]["baseline_kgco2e"] == pytest.approx(3 * 31.134)
