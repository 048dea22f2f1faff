"""Fault injection: the mix of faults per device, and builders for malformed messages.

Rates come from the city YAML (`faults:` default, by_kind, by_device) when a run enables faults, and code can
override any of them (SimConfig.fault_overrides, same shape). Each malformed kind is named after the dead-letter
reason docs/contract.md says the message must get, and breaks exactly one rule so that reason is unambiguous.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

from lccm.simulators.city import Device
from lccm.simulators.payloads import (
    Item,
    Record,
    dumps,
    iso_naive,
    plain_document,
    senml_bn,
    senml_pack,
)
from lccm.simulators.units import METRICS, UNITS

MAX_PAYLOAD_BYTES = 262_144
MAX_READINGS = 5_000
FUTURE_SHIFT_S = 5 * 365 * 86400  # far enough ahead of any system clock, and deterministic

MALFORMED_REASONS = (
    "bad_topic",
    "oversized_payload",
    "too_many_readings",
    "bad_json",
    "bad_payload",
    "bad_senml",
    "unknown_field",
    "device_mismatch",
    "unknown_metric",
    "unknown_unit",
    "bad_time",
    "naive_time",
    "future_time",
    "non_finite_value",
    "out_of_range",
    "bad_status",
    "city_mismatch",
    "unsupported_version",
)
TRANSPORT_FAULTS = ("drop", "duplicate", "reorder", "late")
VALUE_FAULTS = ("clock_skew", "stuck", "spike", "register_reset", "correction")
_RANGE_KEYS = ("late_delay_s", "clock_skew_s", "stuck_messages")


@dataclass
class FaultMix:
    """Rates for one device. Probabilities are per message, except clock_skew (per device)."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    late: float = 0.0
    late_delay_s: tuple[float, float] = (1800.0, 10800.0)
    clock_skew: float = 0.0
    clock_skew_s: tuple[float, float] = (-900.0, 240.0)
    stuck: float = 0.0
    stuck_messages: tuple[float, float] = (6.0, 36.0)
    spike: float = 0.0
    register_reset: float = 0.0
    # After a delivered message, the device sends one of its readings again with another value (a meter correcting
    # itself): first wins, the system keeps the stored value and lists the other (docs/contract.md).
    correction: float = 0.0
    malformed: dict[str, float] = field(default_factory=dict)

    def malformed_total(self) -> float:
        return sum(self.malformed.values())

    def any(self) -> bool:
        rates = [self.drop, self.duplicate, self.reorder, self.late, self.clock_skew, self.stuck, self.spike,
                 self.correction]  # fmt: skip
        return any(r > 0 for r in rates) or self.register_reset > 0 or self.malformed_total() > 0

    def apply(self, settings: dict[str, Any], where: str) -> None:
        names = {f.name for f in fields(self)}
        for key, value in settings.items():
            if key == "malformed":
                unknown = set(value) - set(MALFORMED_REASONS)
                if unknown:
                    raise ValueError(f"{where}: unknown malformed kinds {sorted(unknown)}; use {MALFORMED_REASONS}")
                self.malformed.update({k: float(v) for k, v in value.items()})
            elif key in _RANGE_KEYS:
                lo, hi = value
                setattr(self, key, (float(lo), float(hi)))
            elif key in names:
                setattr(self, key, float(value))
            elif key in MALFORMED_REASONS:
                self.malformed[key] = float(value)  # shorthand: {"bad_json": 0.1}
            else:
                raise ValueError(f"{where}: unknown fault {key!r}")


_SECTION_KEYS = ("by_kind", "by_device")


def resolve_mix(
    config: dict[str, Any], device: Device, enabled: bool, overrides: dict[str, Any] | None = None
) -> FaultMix:
    """The fault mix of one device: YAML layers when enabled (default < by_kind < by_device), then overrides.

    Ranges (delays, skews, stuck lengths) always come from the YAML so overrides can switch a fault on alone.
    """
    mix = FaultMix()
    default = config.get("default", {}) or {}
    mix.apply({k: v for k, v in default.items() if k in _RANGE_KEYS}, "faults.default")
    layers: list[tuple[str, dict[str, Any]]] = []
    if enabled:
        layers += _layers(config, device, "faults")
    if overrides:
        layers += _layers(overrides, device, "fault_overrides")
    for where, layer in layers:
        mix.apply(copy.deepcopy(layer), where)
    return mix


def _layers(config: dict[str, Any], device: Device, name: str) -> list[tuple[str, dict[str, Any]]]:
    top = {k: v for k, v in config.items() if k not in (*_SECTION_KEYS, "default")}
    out = [(f"{name}.default", config.get("default", {}) or {}), (name, top)]
    out.append((f"{name}.by_kind.{device.kind}", (config.get("by_kind") or {}).get(device.kind, {}) or {}))
    out.append(
        (f"{name}.by_device.{device.device_id}", (config.get("by_device") or {}).get(device.device_id, {}) or {})
    )
    return out


# Malformed messages --------------------------------------------------------------------------------------------------

# A unit each metric does not accept: (SenML unit, plain-JSON key suffix).
_BAD_UNITS = {
    "energy": ("BTU", "btu"),
    "power": ("hp", "hp"),
    "voltage": ("kV", "kv"),
    "current": ("mA", "ma"),
    "dimming": ("/", "ratio"),
    "fuel": ("gal", "gal"),
    "pm25": ("mg/m3", "mgm3"),
    "pm10": ("mg/m3", "mgm3"),
    "so2": ("mg/m3", "mgm3"),
    "no2": ("mg/m3", "mgm3"),
    "o3": ("mg/m3", "mgm3"),
    "co": ("ug/m3", "ugm3"),
    "temperature": ("K", "k"),
    "humidity": ("g/m3", "gm3"),
}
# A physically impossible canonical value per metric (out_of_range).
_IMPOSSIBLE = {
    "energy": -5.0,
    "power": 2.0e9,
    "voltage": -1.0,
    "current": -2.0,
    "power_factor": 1.7,
    "lamp_on": 3.0,
    "dimming": 180.0,
    "fuel": -3.0,
    "pm25": -7.5,
    "pm10": -2.0,
    "so2": -1.0,
    "no2": -1.0,
    "o3": -1.0,
    "co": -0.5,
    "temperature": 95.0,
    "humidity": 130.0,
}
# Prefer the textbook example per device kind (negative PM2.5 for a station).
_OUT_OF_RANGE_METRIC = {"aq_station": "pm25", "lamp": "dimming"}


@dataclass
class MalformedContext:
    device: Device
    topic: str
    status_topic: str
    seq: int
    records: list[Record]
    valid_payload: bytes
    other_device_id: str  # a registered device that is not this one


def build_malformed(reason: str, ctx: MalformedContext) -> tuple[str, bytes]:
    """(topic, payload) of a message that must be dead-lettered with `reason`."""
    builder = _BUILDERS.get(reason)
    if builder is None:
        raise ValueError(f"no builder for malformed kind {reason!r}")
    return builder(ctx)


def _plain(ctx: MalformedContext, **replace: Any) -> dict[str, Any]:
    doc = plain_document(ctx.device.device_id, ctx.seq, ctx.records[:1], ctx.device.time_format)
    doc.update(replace)
    return doc


def _senml(ctx: MalformedContext, records: list[Record] | None = None) -> list[dict[str, Any]]:
    return senml_pack(senml_bn(ctx.device.device_id, ctx.device.bn_style), ctx.seq, records or ctx.records[:1])


def _first_item(ctx: MalformedContext, prefer: tuple[str, ...] = ()) -> Item:
    items = ctx.records[0].items
    for metric in prefer:
        for item in items:
            if item.metric == metric:
                return item
    for item in items:
        if not isinstance(item.value, bool):
            return item
    return items[0]


def _bad_topic(ctx: MalformedContext) -> tuple[str, bytes]:
    # <root>/<city>/<device>/up with the city slug in capitals: slugs must be lower-case. Split from the right
    # so any topic root works.
    root, city, device_id, leaf = ctx.topic.rsplit("/", 3)
    return f"{root}/{city.upper()}/{device_id}/{leaf}", ctx.valid_payload


def _oversized(ctx: MalformedContext) -> tuple[str, bytes]:
    # Valid JSON padded with trailing whitespace: only the size is wrong.
    pad = MAX_PAYLOAD_BYTES + 1024 - len(ctx.valid_payload)
    return ctx.topic, ctx.valid_payload + b" " * max(1, pad)


def _too_many(ctx: MalformedContext) -> tuple[str, bytes]:
    # One metric read once a second for 5,001 seconds, in compact SenML: small in bytes, too many readings.
    item = _first_item(ctx)
    count = MAX_READINGS + 1
    base = ctx.records[0].ts_s - count
    records = [Record(base + i, (item,)) for i in range(count)]
    payload = dumps(senml_pack(senml_bn(ctx.device.device_id, ctx.device.bn_style), ctx.seq, records))
    assert len(payload) <= MAX_PAYLOAD_BYTES, "too_many_readings payload must stay under the size limit"
    return ctx.topic, payload


def _bad_json(ctx: MalformedContext) -> tuple[str, bytes]:
    return ctx.topic, ctx.valid_payload[: max(1, len(ctx.valid_payload) // 2)]


def _bad_payload(ctx: MalformedContext) -> tuple[str, bytes]:
    doc = _plain(ctx)
    doc.pop("ts", None)  # values without a time: neither form
    return ctx.topic, dumps(doc)


def _bad_senml(ctx: MalformedContext) -> tuple[str, bytes]:
    pack = _senml(ctx)
    for key in ("v", "vb"):
        pack[0].pop(key, None)  # a record with a name but no value
    return ctx.topic, dumps(pack)


def _unknown_field(ctx: MalformedContext) -> tuple[str, bytes]:
    pack = _senml(ctx)
    pack[0]["s"] = 1.0  # SenML "sum": valid RFC 8428, not accepted by the contract
    return ctx.topic, dumps(pack)


def _device_mismatch(ctx: MalformedContext) -> tuple[str, bytes]:
    return ctx.topic, dumps(_plain(ctx, device_id=ctx.other_device_id))


def _unknown_metric(ctx: MalformedContext) -> tuple[str, bytes]:
    if ctx.device.payload == "senml":
        pack = _senml(ctx)
        pack.append({"n": "noise", "u": "dB", "v": 55.2})
        return ctx.topic, dumps(pack)
    doc = _plain(ctx)
    doc["values"]["noise_db"] = 55.2
    return ctx.topic, dumps(doc)


def _unknown_unit(ctx: MalformedContext) -> tuple[str, bytes]:
    item = next((i for i in ctx.records[0].items if i.metric in _BAD_UNITS), None)
    if item is None:
        raise ValueError(f"{ctx.device.device_id}: no metric with a known bad unit")
    senml_unit, suffix = _BAD_UNITS[item.metric]
    value = 1.0 if isinstance(item.value, bool) else item.value
    if ctx.device.payload == "senml":
        pack = _senml(ctx)
        for entry in pack:
            if entry["n"] == item.metric:
                entry["u"] = senml_unit
        return ctx.topic, dumps(pack)
    doc = _plain(ctx)
    values = {k: v for k, v in doc["values"].items() if k != item.unit.key}
    values[f"{item.metric}_{suffix}"] = value
    doc["values"] = values
    return ctx.topic, dumps(doc)


def _bad_time(ctx: MalformedContext) -> tuple[str, bytes]:
    return ctx.topic, dumps(_plain(ctx, ts="yesterday at noon"))


def _naive_time(ctx: MalformedContext) -> tuple[str, bytes]:
    return ctx.topic, dumps(_plain(ctx, ts=iso_naive(ctx.records[0].ts_s)))


def _future_time(ctx: MalformedContext) -> tuple[str, bytes]:
    shifted = [Record(r.ts_s + FUTURE_SHIFT_S, r.items) for r in ctx.records[:1]]
    if ctx.device.payload == "senml":
        return ctx.topic, dumps(_senml(ctx, shifted))
    doc = plain_document(ctx.device.device_id, ctx.seq, shifted, ctx.device.time_format)
    return ctx.topic, dumps(doc)


def _non_finite(ctx: MalformedContext) -> tuple[str, bytes]:
    item = _first_item(ctx)
    marker = "__lccm_nan__"
    if ctx.device.payload == "senml":
        pack = _senml(ctx)
        for entry in pack:
            if entry["n"] == item.metric:
                entry.pop("vb", None)
                entry["v"] = marker
                break
        raw = dumps(pack)
    else:
        doc = _plain(ctx)
        doc["values"][item.unit.key] = marker
        raw = dumps(doc)
    # JSON's non-standard NaN literal, as some device firmware prints it.
    return ctx.topic, raw.replace(f'"{marker}"'.encode(), b"NaN", 1)


def _out_of_range(ctx: MalformedContext) -> tuple[str, bytes]:
    prefer = (_OUT_OF_RANGE_METRIC.get(ctx.device.kind, ""),)
    item = _first_item(ctx, prefer)
    bad = _IMPOSSIBLE[item.metric] / item.unit.scale
    value: float | int = int(bad) if item.unit.decimals == 0 or item.metric == "lamp_on" else bad
    if ctx.device.payload == "senml":
        pack = _senml(ctx)
        for entry in pack:
            if entry["n"] == item.metric:
                entry.pop("vb", None)
                entry["v"] = value
                break
        return ctx.topic, dumps(pack)
    doc = _plain(ctx)
    doc["values"][item.unit.key] = value
    return ctx.topic, dumps(doc)


def _bad_status(ctx: MalformedContext) -> tuple[str, bytes]:
    return ctx.status_topic, b"rebooting"


def _city_mismatch(ctx: MalformedContext) -> tuple[str, bytes]:
    # A valid slug that is not the device's city.
    root, city, device_id, leaf = ctx.topic.rsplit("/", 3)
    other = "elsewhere" if city != "elsewhere" else "somewhere"
    return f"{root}/{other}/{device_id}/{leaf}", ctx.valid_payload


def _unsupported_version(ctx: MalformedContext) -> tuple[str, bytes]:
    # A SenML pack of a version above RFC 8428's 10 (any device may send SenML).
    pack = _senml(ctx)
    pack[0]["bver"] = 11
    return ctx.topic, dumps(pack)


_BUILDERS = {
    "bad_topic": _bad_topic,
    "oversized_payload": _oversized,
    "too_many_readings": _too_many,
    "bad_json": _bad_json,
    "bad_payload": _bad_payload,
    "bad_senml": _bad_senml,
    "unknown_field": _unknown_field,
    "device_mismatch": _device_mismatch,
    "unknown_metric": _unknown_metric,
    "unknown_unit": _unknown_unit,
    "bad_time": _bad_time,
    "naive_time": _naive_time,
    "future_time": _future_time,
    "non_finite_value": _non_finite,
    "out_of_range": _out_of_range,
    "bad_status": _bad_status,
    "city_mismatch": _city_mismatch,
    "unsupported_version": _unsupported_version,
}

# Metrics a spike may hit: instants whose outliers stay physically possible.
SPIKE_METRICS = frozenset({"power", "current", "pm25", "pm10", "so2", "no2", "o3", "co"})


def spike_value(canonical: float, metric: str, factor: float) -> float:
    """An outlier inside the plausible range: `factor` times the value (or a jump from ~0), capped below max."""
    spec = METRICS[metric]
    raw = canonical * factor if abs(canonical) > 1e-6 else factor
    return min(raw, spec.max_value * 0.5)


def _check_tables() -> None:
    # Every bad unit must really be unaccepted, every impossible value really outside the range.
    for metric, (unit, _suffix) in _BAD_UNITS.items():
        assert (metric, unit) not in UNITS, metric
    for metric, value in _IMPOSSIBLE.items():
        spec = METRICS[metric]
        assert not spec.min_value <= value <= spec.max_value, metric


_check_tables()
