"""Energy, emissions and completeness routes against a real, migrated PostgreSQL: registers written by the production
writer, buckets computed by the production energy updater, totals checked by hand.

History (all 15-minute cadence, meters rated 100 kW), across Bangkok's midnight into 2026 (17:00Z on 2025-12-31),
when the grid factor drops from 0.4999 to 0.4750 kgCO2e/kWh; base year 2025 (0.4999 all year):

    HALL-M1  energy, 16:00Z .. 18:00Z, +4 kWh per quarter: 16 kWh before midnight, 16 kWh after
    HALL-M2  energy, 16:30Z .. 17:30Z, +2 kWh per quarter:  4 kWh before,           4 kWh after
    FLEET-F1 fuel,   16:45Z .. 17:15Z, 100 -> 110 -> 130 l: 10 l before,           20 l after (on-road diesel 2.7406)

    Bangkok 31 Dec: 20 kWh x 0.4999 = 9.998 kg (base 9.998);  10 l x 2.7406 = 27.406 kg
    Bangkok  1 Jan: 20 kWh x 0.4750 = 9.5 kg   (base 9.998);  20 l x 2.7406 = 54.812 kg

Live (site LIVE, today): L1 energy 2000 -> 2003 -> 2005 kWh from today's Bangkok midnight, G1 (generator diesel,
2.7078) 50 -> 54 l; L1's latest power is fresh, L2's is three hours old (stale at 3 x 900 s).

Completeness (site CMP, Bangkok day 2026-01-01): C1 hourly with seq 1..10 and seq 4 lost (seq 10 carries two
times), C2 every two hours without seq, C3 registered but silent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.api.routes import energy as energy_routes
from lccm.engine.factors import TGO_FACTORS
from lccm.engine.timebase import BANGKOK, bkk_us
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.writer import NO_SEQ, ReadingColumns, write_batch
from lccm.stream.days import DayUpdater
from lccm.stream.energy import EnergyUpdater
from tests._auth import admin_headers
from tests._db import REGISTRY_HEADER_EN, device_pk, fresh_database, registry_csv, us

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ENERGY, POWER, FUEL, PM25, TEMPERATURE = 1, 2, 8, 9, 15
BASE_2025 = (bkk_us(2025), bkk_us(2026))
NEW_YEAR = datetime(2025, 12, 31, 17, tzinfo=UTC)  # 2026-01-01 00:00 Asia/Bangkok
Q = timedelta(minutes=15)
H = timedelta(hours=1)
RECEIVED = datetime(2026, 1, 2, tzinfo=UTC)

NOW = datetime.now(UTC)
TODAY = datetime.combine(NOW.astimezone(BANGKOK).date(), datetime.min.time(), tzinfo=BANGKOK)

REGISTRY = [
    "HALL,City Hall,ศาลากลาง,building,Lampang,,,,HALL-M1,electricity_meter,Main meter,900,100",
    "HALL,City Hall,ศาลากลาง,building,Lampang,,,,HALL-M2,electricity_meter,Annex meter,900,100",
    "FLEET,Fleet depot,,fleet,Lampang,,,,FLEET-F1,fuel_meter,Pump,900,",
    "LIVE,Library,,building,Lampang,,,,LIVE-L1,electricity_meter,Main,900,100",
    "LIVE,Library,,building,Lampang,,,,LIVE-L2,electricity_meter,Annex,900,100",
    "LIVE,Library,,building,Lampang,,,,LIVE-G1,fuel_meter,Generator,900,",
    "LIVE,Library,,building,Lampang,,,,LIVE-P1,lamp,Path lamp,900,0.1",  # fed by L1's circuit: its power is L1's too
    "CMP,Station,,station,Lampang,,,,CMP-C1,aq_station,Hourly with seq,3600,",
    "CMP,Station,,station,Lampang,,,,CMP-C2,aq_station,Two-hourly,7200,",
    "CMP,Station,,station,Lampang,,,,CMP-C3,aq_station,Silent,3600,",
]


def _write(conn: psycopg.Connection, rows: Sequence[tuple[int, int, datetime, float, int]]) -> None:
    """(device pk, metric id, ts, value, seq or NO_SEQ) through the production writer."""
    cols = ReadingColumns(
        device_id=np.array([r[0] for r in rows], np.int32),
        metric_id=np.array([r[1] for r in rows], np.int16),
        ts_us=np.array([us(r[2]) for r in rows], np.int64),
        value=np.array([r[3] for r in rows], np.float64),
        seq=np.array([r[4] for r in rows], np.int64),
        received_at_us=np.full(len(rows), us(RECEIVED), np.int64),
    )
    write_batch(conn, cols, [])


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, REGISTRY)))
        pk = {
            d: device_pk(conn, d)
            for d in ("HALL-M1", "HALL-M2", "FLEET-F1", "LIVE-L1", "LIVE-L2", "LIVE-G1", "LIVE-P1")
        }
        start = NEW_YEAR - H
        history = [(pk["HALL-M1"], ENERGY, start + k * Q, 1000.0 + 4 * k, NO_SEQ) for k in range(9)]
        history += [(pk["HALL-M2"], ENERGY, start + 2 * Q + k * Q, 500.0 + 2 * k, NO_SEQ) for k in range(5)]
        history += [(pk["FLEET-F1"], FUEL, NEW_YEAR - Q + k * Q, v, NO_SEQ) for k, v in enumerate((100, 110, 130))]
        _write(conn, history)
        live = [(pk["LIVE-L1"], ENERGY, TODAY + k * Q, v, NO_SEQ) for k, v in enumerate((2000.0, 2003.0, 2005.0))]
        live += [(pk["LIVE-G1"], FUEL, TODAY + k * Q, v, NO_SEQ) for k, v in enumerate((50.0, 54.0))]
        live += [
            (pk["LIVE-L1"], POWER, NOW - timedelta(minutes=10), 1000.0, NO_SEQ),
            (pk["LIVE-L1"], POWER, NOW - timedelta(minutes=1), 1500.0, NO_SEQ),
            (pk["LIVE-P1"], POWER, NOW - timedelta(minutes=2), 90.0, NO_SEQ),  # an LED lamp's own report
            (pk["LIVE-L2"], POWER, NOW - timedelta(hours=3), 700.0, NO_SEQ),
        ]
        _write(conn, live)
        _write(conn, _completeness_readings(conn))
    EnergyUpdater(lambda: psycopg.connect(url), base_year_us=BASE_2025).drain()
    DayUpdater(lambda: psycopg.connect(url)).drain()  # completeness: reading_days


def _completeness_readings(conn: psycopg.Connection) -> list[tuple[int, int, datetime, float, int]]:
    c1, c2 = device_pk(conn, "CMP-C1"), device_pk(conn, "CMP-C2")
    rows = [(c1, PM25, NEW_YEAR - H, 9.0, 0)]  # the day before: not counted
    hours_by_seq = {1: [0], 2: [1], 3: [2], 5: [4], 6: [5], 7: [6], 8: [7], 9: [8], 10: [9, 10]}  # seq 4 lost
    for seq, hours in hours_by_seq.items():
        for h in hours:
            rows += [(c1, PM25, NEW_YEAR + h * H, 20.0, seq), (c1, TEMPERATURE, NEW_YEAR + h * H, 30.0, seq)]
    rows += [(c2, PM25, NEW_YEAR + 2 * h * H, 15.0, NO_SEQ) for h in range(12)]
    rows += [(c2, TEMPERATURE, NEW_YEAR, 29.0, NO_SEQ)]  # same time as a pm25 reading: one reading time
    rows += [(c2, PM25, NEW_YEAR - timedelta(seconds=1), 1.0, NO_SEQ), (c2, PM25, NEW_YEAR + 24 * H, 1.0, NO_SEQ)]
    return rows


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with fresh_database() as url:
        _seed(url)
        with (
            ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
            TestClient(create_app(Settings(database_url=url), pool), headers=admin_headers(url)) as c,
        ):
            yield c


def _energy(client: TestClient, **params: Any) -> dict[str, Any]:
    r = client.get("/energy", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _rows(body: dict[str, Any], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in (row[f] for f in fields)) for row in body["rows"]]


DAYS = {"from": "2025-12-31T00:00:00+07:00", "to": "2026-01-02T00:00:00+07:00"}
DEC31, JAN1 = "2025-12-30T17:00:00Z", "2025-12-31T17:00:00Z"


# --- /energy ------------------------------------------------------------------------------------------------------


def test_days_by_site_are_bangkok_days_with_in_force_and_base_year_emissions(client: TestClient) -> None:
    body = _energy(client, **DAYS, interval="1d", group_by="site", metric="energy")
    assert _rows(body, "bucket_start", "bucket_start_local", "group", "metric", "unit") == [
        (DEC31, "2025-12-31T00:00:00+07:00", "HALL", "energy", "kWh"),
        (JAN1, "2026-01-01T00:00:00+07:00", "HALL", "energy", "kWh"),
    ]
    # After the change the in-force figure drops; the base-year figure stays at 0.4999.
    assert _rows(body, "amount", "kgco2e", "kgco2e_base_year", "quality", "quality_label") == [
        (20.0, 9.998, 9.998, 0, "measured"),
        (20.0, 9.5, 9.998, 0, "measured"),
    ]
    # M1 covers 1 h and M2 30 min of each 24-hour day, over the site's 2 meters.
    assert [r["covered_fraction"] for r in body["rows"]] == [pytest.approx(5400 / (2 * 86400))] * 2
    assert [r["devices"] for r in body["rows"]] == [2, 2]
    assert (body["start"], body["end"], body["interval"], body["group_by"]) == (
        "2025-12-30T17:00:00Z", "2026-01-01T17:00:00Z", "1d", "site",
    )  # fmt: skip


def test_both_metrics_by_site_scope_gpc_and_cfo_category(client: TestClient) -> None:
    by_site = _energy(client, **DAYS, interval="1d", group_by="site")
    assert _rows(by_site, "bucket_start", "group", "metric", "unit", "amount", "kgco2e", "kgco2e_base_year") == [
        (DEC31, "FLEET", "fuel", "l", 10.0, 27.406, 27.406),
        (DEC31, "HALL", "energy", "kWh", 20.0, 9.998, 9.998),
        (JAN1, "FLEET", "fuel", "l", 20.0, 54.812, 54.812),
        (JAN1, "HALL", "energy", "kWh", 20.0, 9.5, 9.998),
    ]
    fields = ("bucket_start", "group", "amount", "kgco2e")
    expected = {
        "scope": [
            (DEC31, "1", 10.0, 27.406), (DEC31, "2", 20.0, 9.998),
            (JAN1, "1", 20.0, 54.812), (JAN1, "2", 20.0, 9.5),
        ],
        "gpc_ref": [
            (DEC31, "I.2.2", 20.0, 9.998), (DEC31, "II.1.1", 10.0, 27.406),
            (JAN1, "I.2.2", 20.0, 9.5), (JAN1, "II.1.1", 20.0, 54.812),
        ],
        "cfo_category": [
            (DEC31, "Mobile combustion", 10.0, 27.406), (DEC31, "Purchased electricity", 20.0, 9.998),
            (JAN1, "Mobile combustion", 20.0, 54.812), (JAN1, "Purchased electricity", 20.0, 9.5),
        ],
        "kind": [
            (DEC31, "electricity_meter", 20.0, 9.998), (DEC31, "fuel_meter", 10.0, 27.406),
            (JAN1, "electricity_meter", 20.0, 9.5), (JAN1, "fuel_meter", 20.0, 54.812),
        ],
    }  # fmt: skip
    for group_by, rows in expected.items():
        assert _rows(_energy(client, **DAYS, interval="1d", group_by=group_by), *fields) == rows, group_by


def test_hours_by_device_and_months_for_the_city(client: TestClient) -> None:
    hours = _energy(client, **DAYS, interval="1h", group_by="device", metric="energy")
    assert _rows(hours, "bucket_start", "group", "amount", "kgco2e", "kgco2e_base_year") == [
        ("2025-12-31T16:00:00Z", "HALL-M1", 16.0, 7.9984, 7.9984),
        ("2025-12-31T16:00:00Z", "HALL-M2", 4.0, 1.9996, 1.9996),
        ("2025-12-31T17:00:00Z", "HALL-M1", 16.0, 7.6, 7.9984),
        ("2025-12-31T17:00:00Z", "HALL-M2", 4.0, 1.9, 1.9996),
    ]
    months = _energy(client, **{"from": "2025-12-01T00:00:00+07:00", "to": "2026-02-01T00:00:00+07:00"},
                     interval="1mo", group_by="city")  # fmt: skip
    assert _rows(months, "bucket_start_local", "group", "metric", "amount", "kgco2e") == [
        ("2025-12-01T00:00:00+07:00", "Lampang", "energy", 20.0, 9.998),
        ("2025-12-01T00:00:00+07:00", "Lampang", "fuel", 10.0, 27.406),
        ("2026-01-01T00:00:00+07:00", "Lampang", "energy", 20.0, 9.5),
        ("2026-01-01T00:00:00+07:00", "Lampang", "fuel", 20.0, 54.812),
    ]


def test_quarter_hours_covered_fraction_counts_a_silent_meter(client: TestClient) -> None:
    body = _energy(client, **DAYS, interval="15min", group_by="site", site_code="HALL")
    # M2 reads only 16:30Z .. 17:30Z: outside that, one of the site's two meters covers the quarter.
    assert _rows(body, "bucket_start", "amount", "covered_fraction") == [
        ("2025-12-31T16:00:00Z", 4.0, 0.5),
        ("2025-12-31T16:15:00Z", 4.0, 0.5),
        ("2025-12-31T16:30:00Z", 6.0, 1.0),
        ("2025-12-31T16:45:00Z", 6.0, 1.0),
        ("2025-12-31T17:00:00Z", 6.0, 1.0),
        ("2025-12-31T17:15:00Z", 6.0, 1.0),
        ("2025-12-31T17:30:00Z", 4.0, 0.5),
        ("2025-12-31T17:45:00Z", 4.0, 0.5),
    ]
    only_fleet = _energy(client, **DAYS, interval="1d", group_by="device", site_code="FLEET")
    assert _rows(only_fleet, "group", "metric", "amount") == [("FLEET-F1", "fuel", 10.0), ("FLEET-F1", "fuel", 20.0)]


def test_factors_in_force_over_the_range(client: TestClient) -> None:
    body = _energy(client, **DAYS, interval="1d", site_code="HALL")
    assert [(f["key"], f["kgco2e_per_unit"], f["unit"], f["valid_from"], f["valid_to"]) for f in body["factors"]] == [
        ("grid_th", 0.4999, "kWh", None, "2025-12-31T17:00:00Z"),
        ("grid_th", 0.475, "kWh", "2025-12-31T17:00:00Z", None),
    ]
    assert body["factors"][1]["source"].startswith("TGO board decision announced 30 Nov 2025")
    everywhere = _energy(client, **{"from": "2026-06-01T00:00:00+07:00", "to": "2026-06-02T00:00:00+07:00"})
    assert everywhere["rows"] == []
    assert [(f["key"], f["kgco2e_per_unit"]) for f in everywhere["factors"]] == [
        ("diesel_onroad_l", 2.7406), ("diesel_stationary_l", 2.7078), ("grid_th", 0.475),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        ({"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00Z"}, "from", "no UTC offset"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00"}, "to", "no UTC offset"),
        ({"to": "2026-01-02T00:00:00Z"}, "from", "required"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to", "later than"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:01Z", "interval": "15min"}, "to", "31 days"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:01Z", "interval": "1h"}, "to", "366 days"),
        ({**DAYS, "group_by": "planet"}, "group_by", "site"),
        ({**DAYS, "interval": "1w"}, "interval", "15min"),
        ({**DAYS, "metric": "voltage"}, "metric", "energy"),
    ],
)
def test_bad_energy_parameters_are_422(client: TestClient, params: dict[str, Any], field: str, fragment: str) -> None:
    r = client.get("/energy", params=params)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"][-1] == field and fragment in error["msg"], error


def test_a_31_day_quarter_hour_range_is_allowed(client: TestClient) -> None:
    params = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "interval": "15min"}
    assert client.get("/energy", params=params).status_code == 200


def test_too_many_rows_is_422(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(energy_routes, "MAX_ROWS", 3)
    r = client.get("/energy", params={**DAYS, "interval": "1d"})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["type"] == "result_too_large" and "more than 3 rows" in error["msg"]


# --- /emission-factors --------------------------------------------------------------------------------------------


def test_emission_factor_registry(client: TestClient) -> None:
    body = client.get("/emission-factors").json()
    assert len(body) == len(TGO_FACTORS)
    assert [(f["key"], f["valid_from"]) for f in body] == sorted(
        [(f["key"], f["valid_from"]) for f in body], key=lambda k: (k[0], k[1] or "")
    )
    grid = [f for f in body if f["key"] == "grid_th"]
    assert [(f["kgco2e_per_unit"], f["valid_from"], f["valid_to"]) for f in grid] == [
        (0.4999, None, "2025-12-31T17:00:00Z"),
        (0.475, "2025-12-31T17:00:00Z", None),
    ]


# --- /sites/{site_code}/live --------------------------------------------------------------------------------------


def test_live_power_counts_fresh_readings_only_and_today_sums_todays_buckets(client: TestClient) -> None:
    r = client.get("/sites/LIVE/live")
    assert r.status_code == 200, r.text
    body = r.json()
    # L1's latest (not its earlier 1000 W); L2's 700 W is stale; the lamp's 90 W is already in L1's meter
    assert body["power_w"] == 1500.0
    assert (body["power_devices"], body["power_devices_stale"]) == (1, 1)
    assert body["energy_today_kwh"] == pytest.approx(5.0)
    assert body["fuel_today_l"] == pytest.approx(4.0)
    assert body["kgco2e_today"] == pytest.approx(5 * 0.4750 + 4 * 2.7078)
    assert (body["quality"], body["quality_label"]) == (0, "measured")
    assert body["day_start_local"] == TODAY.isoformat()
    assert body["day_start"] == TODAY.astimezone(UTC).isoformat().replace("+00:00", "Z")
    devices = {d["device_id"]: d for d in body["devices"]}
    assert list(devices) == ["LIVE-G1", "LIVE-L1", "LIVE-L2", "LIVE-P1"]
    assert (devices["LIVE-P1"]["power_w"], devices["LIVE-P1"]["power_stale"]) == (90.0, False)  # shown, not summed
    assert (devices["LIVE-L1"]["power_w"], devices["LIVE-L1"]["power_stale"]) == (1500.0, False)
    assert (devices["LIVE-L2"]["power_w"], devices["LIVE-L2"]["power_stale"]) == (700.0, True)
    assert (devices["LIVE-G1"]["power_w"], devices["LIVE-G1"]["power_stale"]) == (None, None)
    assert devices["LIVE-G1"]["kgco2e_today"] == pytest.approx(4 * 2.7078)


def test_live_of_a_site_without_readings_today(client: TestClient) -> None:
    body = client.get("/sites/HALL/live").json()
    assert (body["power_w"], body["power_devices"], body["power_devices_stale"]) == (None, 0, 0)
    assert (body["energy_today_kwh"], body["kgco2e_today"], body["quality"]) == (0.0, 0.0, None)


# --- /completeness ------------------------------------------------------------------------------------------------


def test_completeness_per_device_and_site_with_a_seq_gap(client: TestClient) -> None:
    r = client.get("/completeness", params={"date": "2026-01-01", "site_code": "CMP"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["day_start"], body["day_end"]) == ("2025-12-31T17:00:00Z", "2026-01-01T17:00:00Z")
    fields = ("device_id", "expected", "received", "completeness_pct", "seq_first", "seq_last",
              "messages_expected", "messages_received", "messages_lost")  # fmt: skip
    assert [tuple(d[f] for f in fields) for d in body["devices"]] == [
        ("CMP-C1", 24, 10, 41.67, 1, 10, 10, 9, 1),  # seq 10 carried two reading times
        ("CMP-C2", 12, 12, 100.0, None, None, None, None, None),
        ("CMP-C3", 24, 0, 0.0, None, None, None, None, None),
    ]
    (site,) = body["sites"]
    site_counts = {k: site[k] for k in ("site_code", "devices", "expected", "received", "completeness_pct")}
    assert site_counts == {"site_code": "CMP", "devices": 3, "expected": 60, "received": 22, "completeness_pct": 36.67}
    assert (site["messages_expected"], site["messages_received"], site["messages_lost"]) == (10, 9, 1)
    assert body["total"] == {k: v for k, v in site.items() if k != "site_code"}


def test_completeness_of_every_site(client: TestClient) -> None:
    body = client.get("/completeness", params={"date": "2026-01-01"}).json()
    sites = {s["site_code"]: (s["devices"], s["expected"], s["received"]) for s in body["sites"]}
    # HALL-M1 reads 17:00Z .. 18:00Z (5 times) and M2 17:00Z .. 17:30Z (3) on Bangkok 1 January; FLEET-F1 2.
    # LIVE's four devices (with its lamp) sent nothing that day.
    assert sites == {"CMP": (3, 60, 22), "FLEET": (1, 96, 2), "HALL": (2, 192, 8), "LIVE": (4, 384, 0)}
    total = body["total"]
    assert (total["devices"], total["expected"], total["received"]) == (10, 732, 32)
    assert total["completeness_pct"] == round(100 * 32 / 732, 2)


def test_completeness_of_today_and_of_a_future_day(client: TestClient) -> None:
    today = client.get("/completeness", params={"date": TODAY.date().isoformat(), "site_code": "CMP"}).json()
    elapsed_h = (datetime.fromisoformat(today["as_of"]) - TODAY) / H
    c3 = next(d for d in today["devices"] if d["device_id"] == "CMP-C3")
    assert c3["expected"] == math.floor(elapsed_h) < 24  # today is judged on its elapsed part
    future = client.get("/completeness", params={"date": "2099-01-01", "site_code": "CMP"}).json()
    assert future["total"]["expected"] == 0 and future["total"]["completeness_pct"] is None


# --- errors -------------------------------------------------------------------------------------------------------


def test_unknown_site_is_404(client: TestClient) -> None:
    for url, params in (
        ("/sites/NOPE/live", {}),
        ("/energy", {**DAYS, "site_code": "NOPE"}),
        ("/completeness", {"date": "2026-01-01", "site_code": "NOPE"}),
    ):
        r = client.get(url, params=params)
        assert r.status_code == 404, url
        assert r.json()["error"] == "site_not_found" and "NOPE" in r.json()["detail"]


def test_bad_completeness_date_is_422(client: TestClient) -> None:
    for params in ({"date": "2026-13-01"}, {}):
        assert client.get("/completeness", params=params).status_code == 422


def test_openapi_lists_the_energy_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/sites/{site_code}/live", "/energy", "/emission-factors", "/completeness"} <= set(paths)
