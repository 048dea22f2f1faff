"""The contract's metric catalogue as the simulator needs it: units, JSON keys, scales, ranges, precision.

Written out from docs/contract.md on purpose (the simulator is an independent vendor and imports nothing of the
decoder). `scale` converts a sent value to the canonical unit: canonical = sent * scale.
"""

from __future__ import annotations

from dataclasses import dataclass

# Molar volume at 25 °C and 1 atm (L/mol) and molar masses (g/mol), as in the contract.
_MOLAR_VOLUME = 24.45
_M_SO2 = 64.066
_M_NO2 = 46.0055
_M_O3 = 47.9982
_M_CO = 28.010


@dataclass(frozen=True, slots=True)
class UnitSpec:
    metric: str
    unit: str  # SenML spelling; "" for unit-less metrics
    key_suffix: str  # plain-JSON key suffix; "" means the key is the metric name alone
    scale: float
    decimals: int  # precision a device sends with

    @property
    def key(self) -> str:
        return f"{self.metric}_{self.key_suffix}" if self.key_suffix else self.metric


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    canonical_unit: str
    kind: str  # register, instant, state
    min_value: float
    max_value: float


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in [
        MetricSpec("energy", "kWh", "register", 0.0, 1e12),
        MetricSpec("power", "W", "instant", -1e9, 1e9),
        MetricSpec("voltage", "V", "instant", 0.0, 1e6),
        MetricSpec("current", "A", "instant", 0.0, 1e5),
        MetricSpec("power_factor", "/", "instant", -1.0, 1.0),
        MetricSpec("lamp_on", "", "state", 0.0, 1.0),
        MetricSpec("dimming", "%", "instant", 0.0, 100.0),
        MetricSpec("fuel", "l", "register", 0.0, 1e12),
        MetricSpec("pm25", "ug/m3", "instant", 0.0, 5000.0),
        MetricSpec("pm10", "ug/m3", "instant", 0.0, 10000.0),
        MetricSpec("so2", "ppb", "instant", 0.0, 100000.0),
        MetricSpec("no2", "ppb", "instant", 0.0, 100000.0),
        MetricSpec("o3", "ppb", "instant", 0.0, 100000.0),
        MetricSpec("co", "ppm", "instant", 0.0, 10000.0),
        MetricSpec("temperature", "Cel", "instant", -60.0, 70.0),
        MetricSpec("humidity", "%RH", "instant", 0.0, 100.0),
    ]
}

_UNITS = [
    UnitSpec("energy", "kWh", "kwh", 1.0, 2),
    UnitSpec("energy", "Wh", "wh", 0.001, 0),
    UnitSpec("energy", "MWh", "mwh", 1000.0, 5),
    UnitSpec("energy", "J", "j", 1.0 / 3.6e6, 0),
    UnitSpec("power", "W", "w", 1.0, 1),
    UnitSpec("power", "kW", "kw", 1000.0, 3),
    UnitSpec("voltage", "V", "v", 1.0, 1),
    UnitSpec("current", "A", "a", 1.0, 2),
    UnitSpec("power_factor", "/", "", 1.0, 3),
    UnitSpec("lamp_on", "", "", 1.0, 0),
    UnitSpec("dimming", "%", "pct", 1.0, 0),
    UnitSpec("fuel", "l", "l", 1.0, 1),
    UnitSpec("fuel", "L", "litre", 1.0, 1),
    UnitSpec("fuel", "m3", "m3", 1000.0, 4),
    UnitSpec("pm25", "ug/m3", "ugm3", 1.0, 1),
    UnitSpec("pm10", "ug/m3", "ugm3", 1.0, 1),
    UnitSpec("so2", "ppb", "ppb", 1.0, 1),
    UnitSpec("so2", "ppm", "ppm", 1000.0, 4),
    UnitSpec("so2", "ug/m3", "ugm3", _MOLAR_VOLUME / _M_SO2, 1),
    UnitSpec("no2", "ppb", "ppb", 1.0, 1),
    UnitSpec("no2", "ppm", "ppm", 1000.0, 4),
    UnitSpec("no2", "ug/m3", "ugm3", _MOLAR_VOLUME / _M_NO2, 1),
    UnitSpec("o3", "ppb", "ppb", 1.0, 1),
    UnitSpec("o3", "ppm", "ppm", 1000.0, 4),
    UnitSpec("o3", "ug/m3", "ugm3", _MOLAR_VOLUME / _M_O3, 1),
    UnitSpec("co", "ppm", "ppm", 1.0, 2),
    UnitSpec("co", "ppb", "ppb", 0.001, 0),
    UnitSpec("co", "mg/m3", "mgm3", _MOLAR_VOLUME / _M_CO, 2),
    UnitSpec("temperature", "Cel", "c", 1.0, 1),
    UnitSpec("humidity", "%RH", "pct", 1.0, 1),
]

UNITS: dict[tuple[str, str], UnitSpec] = {(u.metric, u.unit): u for u in _UNITS}
UNITS_BY_KEY: dict[str, UnitSpec] = {u.key: u for u in _UNITS}


def canonical_unit(metric: str) -> UnitSpec:
    return UNITS[(metric, METRICS[metric].canonical_unit)]


def unit_for(metric: str, unit: str | None) -> UnitSpec:
    """The unit a device sends a metric in (None = canonical); unknown combinations are a configuration error."""
    if unit is None:
        return canonical_unit(metric)
    try:
        return UNITS[(metric, unit)]
    except KeyError:
        raise ValueError(f"unit {unit!r} is not accepted for metric {metric!r} (docs/contract.md)") from None


def quantise(canonical_value: float, spec: UnitSpec) -> float | int:
    """Convert a canonical value to the sending unit at the device's precision; integers where precision is 0."""
    sent = round(canonical_value / spec.scale, spec.decimals)
    if spec.decimals == 0:
        return int(sent)
    # +0.0 turns a rounded -0.0 into 0.0, so no device ever sends "-0.0".
    return sent + 0.0
