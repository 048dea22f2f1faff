"""Shared set-up of the end-to-end tests: the virtual city registered in a database, an ingest worker running."""

from __future__ import annotations

from pathlib import Path

import psycopg

from lccm.imports.registry import parse_registry_csv
from lccm.runtime import Ingest, Services, build_ingest
from lccm.services import Broker
from lccm.settings import Settings
from lccm.simulators.city import City, load_city
from lccm.store.devices import import_registry


def registered_city(url: str, folder: Path) -> City:
    """Load the default city and import its registry CSV exactly as `lccm devices import` would."""
    city = load_city()
    csv_path = folder / "devices.csv"
    city.devices_csv(csv_path)
    with psycopg.connect(url) as conn:
        import_registry(conn, parse_registry_csv(csv_path.read_bytes()))
    return city


def running_ingest(url: str, broker: Broker, topic_root: str, folder: Path) -> tuple[Ingest, Settings]:
    """An ingest worker on its own topic root, share group and client id (tests must not steal each other's)."""
    group = topic_root.split("/")[0]
    settings = Settings(database_url=url, mqtt_topic_root=topic_root, mqtt_share_group=group, data_dir=folder)
    worker = build_ingest(settings, Services(url, broker.host, broker.port, "auto"), client_id=group)
    worker.start()
    return worker, settings
