"""GET /rollups (stored 15min..fy and on-demand 1min), /streetlights, /late-data and /energy?interval=fy, against
hand-computed figures."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import ConnectionPool
from starlette.exceptions import StarletteDeprecationWarning

from lccm.api.app import create_app
from lccm.engine.timebase import bkk_us
from lccm.runtime import factor_rows
from lccm.settings import Settings
from lccm.store.energy import sync_factor_registry
from lccm.stream.energy import EnergyUpdater
from lccm.stream.samples import SampleUpdater
from lccm.stream.updaters import Updaters
from tests._db import fresh_database, write_points
from tests._principal import as_caller

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ENERGY, POWER, LAMP_ON = 1, 2, 6
MIN = 60 * 1_000_000
T0 = bkk_us(2026, 9, 30, 23, 0)  # one hour before Thai fiscal year 2027 begins (1 Oct 2026 00:00 Bangkok)


_write = write_points


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        sync_factor_registry(conn, *factor_rows())
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city, lat, lon) VALUES"
            " ('HALL', 'City hall', 'building', 'Lampang', 18.29, 99.49),"
            " ('RD1', 'Road 1', 'street', 'Lampang', 18.29, 99.49)"
        )
        conn.execute(
            "INSERT INTO devices (id, device_id, site_id, kind, name, cadence_s, rated_kw, register_modulus) VALUES"
            " (1, 'M1', 1, 'electricity_meter', 'main', 60, 100, NULL),"
            " (2, 'M2', 1, 'electricity_meter', 'annex', 60, 100, NULL),"
            " (3, 'C1', 2, 'streetlight_cabinet', 'cabinet', 900, 10, NULL),"
            " (4, 'L1', 2, 'lamp', 'lamp 1', 900, NULL, NULL)"
        )
        # Power every minute 23:00-23:02 Bangkok: M1 1000, 2000, 3000 W; M2 500 W at 23:00 and 23:01.
        _write(conn, 1, POWER, [(T0, 1000.0), (T0 + MIN, 2000.0), (T0 + 2 * MIN, 3000.0)])
        _write(conn, 2, POWER, [(T0, 500.0), (T0 + MIN, 500.0)])
        # Energy across the fiscal-year change: M1 10 kWh per 30 min from 23:00 to 01:00 Bangkok.
        _write(conn, 1, ENERGY, [(T0 + k * 30 * MIN, 100.0 + 10 * k) for k in range(5)])
        # Cabinet energy 2 kWh in the hour; lamp on 23:00-23:45, off at 23:45 (night in Lampang).
        _write(conn, 3, ENERGY, [(T0, 0.0), (T0 + 60 * MIN, 2.0)])
        _write(conn, 4, LAMP_ON, [(T0 + k * 15 * MIN, 1.0) for k in range(3)] + [(T0 + 45 * MIN, 0.0)])
        # A reading 10 days late.
        _write(conn, 2, POWER, [(T0 - 10 * 24 * 60 * MIN, 42.0)], late_s=10 * 86_400)
    Updaters(
        EnergyUpdater(lambda: psycopg.connect(url), base_year_us=(bkk_us(2025), bkk_us(2026))),
        SampleUpdater(lambda: psycopg.connect(url)),
    ).drain()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with fresh_database() as url:
        _seed(url)
        with (
            ConnectionPool(url, min_size=1, max_size=4, open=True) as pool,
            TestClient(as_caller(create_app(Settings(database_url=url), pool))) as c,
        ):
            yield c


FROM, TO = "2026-09-30T23:00:00+07:00", "2026-10-01T01:00:00+07:00"


def test_stored_rollups_by_site_and_device(client: TestClient) -> None:
    r = client.get("/rollups", params={"metric": "power", "from": FROM, "to": TO, "interval": "15min",
                                       "group_by": "site"})  # fmt: skip
    assert r.status_code == 200, r.text
    (row,) = r.json()["rows"]
    # Five readings: 1000 + 2000 + 3000 + 500 + 500 = 7000; mean 1400; M1's mean 2000 + M2's 500 = 2500 W.
    assert (row["group"], row["devices"], row["n"], row["sum"], row["min"], row["max"]) == (
        "HALL",
        2,
        5,
        7000,
        500,
        3000,
    )
    assert row["mean"] == pytest.approx(1400.0) and row["sum_of_device_means"] == pytest.approx(2500.0)
    assert row["last"] == 3000.0 and row["last_ts"].startswith("2026-09-30T16:02:00")
    by_device = client.get("/rollups", params={"metric": "power", "from": FROM, "to": TO, "interval": "1h"}).json()
    assert {x["group"]: x["mean"] for x in by_device["rows"]} == {"M1": 2000.0, "M2": 500.0}


def test_one_minute_rollups_are_computed_from_raw_readings(client: TestClient) -> None:
    r = client.get("/rollups", params={"metric": "power", "from": FROM, "to": TO, "interval": "1min",
                                       "group_by": "site"})  # fmt: skip
    assert r.status_code == 200, r.text
    rows = [(x["bucket_start"][11:16], x["n"], x["sum"], x["sum_of_device_means"]) for x in r.json()["rows"]]
    assert rows == [("16:00", 2, 1500.0, 1500.0), ("16:01", 2, 2500.0, 2500.0), ("16:02", 1, 3000.0, 3000.0)]


def test_rollup_refusals_are_specific(client: TestClient) -> None:
    bad = client.get("/rollups", params={"metric": "nope", "from": FROM, "to": TO})
    assert bad.status_code == 422 and "unknown metric 'nope'" in bad.text
    register = client.get("/rollups", params={"metric": "energy", "from": FROM, "to": TO})
    assert register.status_code == 422 and "/energy" in register.text
    long = client.get("/rollups", params={"metric": "power", "from": "2026-09-01T00:00:00Z", "to": TO,
                                          "interval": "1min"})  # fmt: skip
    assert long.status_code == 422 and "2 days" in long.text


def test_streetlights_burning_outage_and_cabinet_energy(client: TestClient) -> None:
    r = client.get("/streetlights", params={"from": FROM, "to": TO, "interval": "1h", "group_by": "site"})
    assert r.status_code == 200, r.text
    first = r.json()["rows"][0]
    # On 23:00-23:45 (night): 0.75 h burning, no day burning; off 23:45-24:00: 0.25 h outage of 1 h known night.
    assert (first["group"], first["lamps"], first["burning_h"], first["day_burning_h"]) == ("RD1", 1, 0.75, 0.0)
    assert (first["outage_h"], first["night_known_h"], first["outage_fraction"]) == (0.25, 1.0, 0.25)
    assert first["cabinet_energy_kwh"] == pytest.approx(2.0)


def test_energy_by_thai_fiscal_year(client: TestClient) -> None:
    r = client.get("/energy", params={"from": "2026-09-01T00:00:00+07:00", "to": "2026-11-01T00:00:00+07:00",
                                      "interval": "fy", "group_by": "device", "site_code": "HALL"})  # fmt: skip
    assert r.status_code == 200, r.text
    rows = [(x["bucket_start"], x["amount"]) for x in r.json()["rows"]]
    # 23:00-24:00 on 30 Sep is FY 2026 (20 kWh); 00:00-01:00 on 1 Oct is FY 2027 (20 kWh).
    assert rows == [("2025-09-30T17:00:00Z", 20.0), ("2026-09-30T17:00:00Z", 20.0)]


def test_late_data_is_listed(client: TestClient) -> None:
    (span,) = client.get("/late-data").json()
    assert (span["device_id"], span["metric"], span["readings"], span["resolved_at"]) == ("M2", "power", 1, None)
    assert datetime.fromisoformat(span["received_at"]) - datetime.fromisoformat(span["hi"]) == timedelta(days=10)
    assert datetime.fromisoformat(span["hi"]).astimezone(UTC) == datetime(
        2026, 9, 20, 16, tzinfo=UTC
    )  # 30 Sep 23:00 Bangkok - 10 days
