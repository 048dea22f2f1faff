"""A database that looks like a city in use, for the tests that go over every route (tests/test_api_fuzz.py,
tests/test_api_writes.py): the emission-factor registry, the Lampang registry (2,107 devices, imported as
`lccm devices import` does), Lampang's example base year (2025) mapped for this year, the shipped alert rules with
an open and an acknowledged alert, and a day of a building meter's and an air-quality station's readings, rolled
up by the same updaters as `lccm ingest`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import psycopg

from lccm.alerts import default_rules_file, load_rules_file
from lccm.engine.alert_kinds import Severity
from lccm.engine.timebase import BANGKOK
from lccm.imports.registry import parse_registry_csv
from lccm.runtime import factor_rows, updaters
from lccm.settings import Settings
from lccm.simulators.city import load_city
from lccm.store import alerts as st
from lccm.store.devices import import_registry
from lccm.store.energy import sync_factor_registry
from lccm.store.inventory import import_inventory_file
from lccm.store.inventory_mapping import auto_map
from tests._db import device_pk, us, write_readings

BASE_YEAR = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv")
ENERGY, POWER, PM25 = 1, 2, 9


@dataclass(frozen=True, slots=True)
class Seeded:
    meter: str  # a building's electricity meter with a day of readings
    station: str  # an air-quality station with a day of PM2.5
    site: str  # the meter's site
    open_alert: int
    acknowledged_alert: int
    seeded_at: datetime  # the last whole hour when seeded: the readings end a quarter-hour before it


def counts_today(seeded_at: datetime) -> bool:
    """Whether readings every 15 minutes up to a quarter-hour before ``seeded_at`` hold a whole interval of the
    Bangkok day it is now: not in the day's first hour (the seeds end at the last whole hour), nor once the day has
    turned since seeding. A figure of today's energy is 0 then, rightly."""
    day_start = datetime.now(BANGKOK).replace(hour=0, minute=0, second=0, microsecond=0)
    return seeded_at - timedelta(minutes=30) >= day_start


def seed_city(url: str, folder: Path) -> Seeded:
    city = load_city()
    registry = folder / "devices.csv"
    city.devices_csv(registry)
    meter = next(d for d in city.devices if d.kind == "electricity_meter" and d.site.kind == "building")
    station = next(d for d in city.devices if d.kind == "aq_station")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(url) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(registry.read_bytes()))
        import_inventory_file(conn, BASE_YEAR.read_bytes(), file_name=BASE_YEAR.name, organisation="lampang",
                              year_ce=2025, base_year=True)  # fmt: skip
        auto_map(conn, "lampang", now.year, "calendar")
        rules = load_rules_file(default_rules_file(), metric_keys=st.metric_ids(conn))
        st.sync_file_rules(conn, [r.definition() for r in rules])
        m, s = device_pk(conn, meter.device_id), device_pk(conn, station.device_id)
        rows = []
        for i in range(24 * 4):
            ts = now - timedelta(hours=24) + i * timedelta(minutes=15)
            rows += [(m, ENERGY, ts, 1000.0 + 5.0 * i, ts), (m, POWER, ts, 20_000.0, ts), (s, PM25, ts, 40.0, ts)]
        write_readings(conn, rows)
        raised, started = us(now - timedelta(hours=1)), us(now - timedelta(hours=2))
        alerts = [
            st.insert_alert(
                conn,
                st.NewAlert(
                    rules[0].key, f"seed/{n}", s, "pm25_ugm3", Severity.WARNING, started, raised, 80.0, 50.0, False
                ),
            )
            for n in range(2)
        ]
        conn.commit()
        st.acknowledge(conn, alerts[1], "seed", None)
        conn.commit()
    updaters(Settings(database_url=url), url).drain()
    return Seeded(meter.device_id, station.device_id, meter.site.code, alerts[0], alerts[1], now)
