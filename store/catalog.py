"""Read the device registry and the metric catalogue (what the decoder needs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True, slots=True)
class MetricRow:
    id: int
    name: str
    unit: str
    key: str
    kind: str
    min_value: float
    max_value: float


@dataclass(frozen=True, slots=True)
class MetricUnitRow:
    metric_id: int
    unit: str
    key_suffix: str
    scale: float


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str  # external id, as in the topic
    id: int
    city: str  # the registry city of its site (free text, as imported)


def devices(conn: psycopg.Connection) -> Iterator[DeviceRow]:
    """Every device, streamed (the registry is built as they come: 100,000 rows are not held twice)."""
    with conn.cursor() as cur:
        query = "SELECT d.device_id, d.id, s.city FROM devices d JOIN sites s ON s.id = d.site_id"
        for r in cur.stream(query, size=2_000):
            yield DeviceRow(*r)


def registry_fingerprint(conn: psycopg.Connection) -> tuple[object, ...]:
    """What changes whenever the device registry does (an import adds, moves or edits devices and sites): cheap
    enough to ask before every reload decision."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM devices), (SELECT max(updated_at) FROM devices),"
        " (SELECT count(*) FROM sites), (SELECT max(updated_at) FROM sites)"
    ).fetchone()
    return tuple(row) if row is not None else ()


def metrics(conn: psycopg.Connection) -> list[MetricRow]:
    rows = conn.execute("SELECT id, name, unit, key, kind, min_value, max_value FROM metrics ORDER BY id")
    return [MetricRow(*r) for r in rows]


def metric_units(conn: psycopg.Connection) -> list[MetricUnitRow]:
    rows = conn.execute("SELECT metric_id, unit, key_suffix, scale FROM metric_units ORDER BY metric_id, unit")
    return [MetricUnitRow(*r) for r in rows]
