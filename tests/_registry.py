"""A registry built by hand from the contract's catalogue, for decoder tests that need no database."""

from __future__ import annotations

from lccm.ingest.registry import Metric, Registry, UnitRow

METRICS = [
    Metric(1, "energy", "kWh", "register", 0, 1e12),
    Metric(2, "power", "W", "instant", -1e9, 1e9),
    Metric(6, "lamp_on", "", "state", 0, 1),
    Metric(9, "pm25", "ug/m3", "instant", 0, 5000),
    Metric(11, "so2", "ppb", "instant", 0, 100000),
    Metric(14, "co", "ppm", "instant", 0, 10000),
]
UNITS = [
    UnitRow(1, "kWh", "kwh", 1.0),
    UnitRow(1, "Wh", "wh", 0.001),
    UnitRow(2, "W", "w", 1.0),
    UnitRow(2, "kW", "kw", 1000.0),
    UnitRow(6, "", "", 1.0),
    UnitRow(9, "ug/m3", "ugm3", 1.0),
    UnitRow(11, "ppb", "ppb", 1.0),
    UnitRow(11, "ppm", "ppm", 1000.0),
    UnitRow(11, "ug/m3", "ugm3", 24.45 / 64.066),
    UnitRow(14, "ppm", "ppm", 1.0),
]


def registry(devices: dict[str, int] | None = None, cities: dict[str, str | None] | None = None) -> Registry:
    """Every device in the city ``lampang`` unless ``cities`` says otherwise."""
    devices = devices or {"M1": 7, "AQ1": 8, "L1": 9}
    slugs: dict[str, str | None] = {d: "lampang" for d in devices}
    return Registry.build(devices, METRICS, UNITS, slugs | (cities or {}))
