"""What the decoder needs to know, as plain data: devices and the metric catalogue.

The composition root loads it from the store and hands it in; ingest/ never opens a database connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Metric:
    id: int
    name: str  # SenML name, stem of the plain-JSON key
    unit: str  # canonical unit
    kind: str  # register, instant, state
    min_value: float
    max_value: float


@dataclass(frozen=True, slots=True)
class UnitRow:
    metric_id: int
    unit: str  # SenML spelling
    key_suffix: str  # plain-JSON key suffix ('' for unit-less metrics)
    scale: float  # canonical = value * scale


@dataclass(frozen=True, slots=True)
class Registry:
    devices: dict[str, int]  # external device id -> internal id
    metrics_by_name: dict[str, Metric]
    by_senml: dict[tuple[str, str], tuple[Metric, float]]  # (name, unit) -> metric, scale
    by_key: dict[str, tuple[Metric, float]]  # plain-JSON key -> metric, scale
    # external device id -> the <city> level its topics must carry (imports/registry.py ``city_slug`` of its site's
    # city); None where that city has no slug, so every message of the device is refused as ``city_mismatch``.
    cities: dict[str, str | None] = field(default_factory=dict)
    version: int = field(default=0)

    @classmethod
    def build(
        cls,
        devices: dict[str, int],
        metrics: Iterable[Metric],
        units: Iterable[UnitRow],
        cities: dict[str, str | None],
        version: int = 0,
    ) -> Registry:
        by_id = {m.id: m for m in metrics}
        by_senml: dict[tuple[str, str], tuple[Metric, float]] = {}
        by_key: dict[str, tuple[Metric, float]] = {}
        for u in units:
            m = by_id[u.metric_id]
            by_senml[(m.name, u.unit)] = (m, u.scale)
            key = f"{m.name}_{u.key_suffix}" if u.key_suffix else m.name
            by_key[key] = (m, u.scale)
        return cls(
            devices=dict(devices),
            metrics_by_name={m.name: m for m in by_id.values()},
            by_senml=by_senml,
            by_key=by_key,
            cities={d: cities.get(d) for d in devices},
            version=version,
        )
