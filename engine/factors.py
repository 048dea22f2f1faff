"""The emission-factor registry: dated factors with their sources, and the classification of emission sources.

Every factor carries its public source (issuer, document, date): the text the API and the reports print beside the
value, so it names the public document only; ``reference`` names the section of docs/reference.md that explains
it. Values no public source confirms are deliberately absent (older grid factors
0.5986 and 0.5813, gasohol E10/E20/E85, B7/B10 diesel, T-VER grid factor;
docs/reference.md#values-that-are-settings): such factors are configuration, to be added to a registry by whoever
can source them, never constants here.

Validity is a half-open span of instants ``[valid_from, valid_to)``; ``None`` is unbounded. A date "until
2025-12-31" is therefore ``valid_to = 2026-01-01 00:00 Asia/Bangkok``.

Grid electricity (location-based, kgCO2e/kWh): 0.4999 from TGO's April 2022 table until the end of 2025, 0.4750
from 2026-01-01 00:00 Asia/Bangkok (TGO board, announced 30 Nov 2025; docs/reference.md#grid-electricity-factors).
TGO allows the previous factor until
31 Mar 2026 as a transition; the registry applies the new one from its effective date. The registry seeds 0.4999
with an open start: it is the earliest sourced edition of the current method, and the older values are not dated
in the reference; a municipality that needs another factor for an earlier base year adds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from lccm.engine.buckets import WeightTable
from lccm.engine.kernels import NO_TS
from lccm.engine.timebase import BANGKOK, us_from_datetime

SRC_GRID_2026 = "TGO board decision announced 30 Nov 2025 (The Nation, 30 Nov 2025), effective 1 Jan 2026"
SRC_TGO_2022 = "TGO CFO emission factors, update of April 2022"
SRC_GRID_2022 = (
    "TGO CFO emission factors, update of April 2022: Grid Mix Electricity 2016-2018, LCIA IPCC 2013 GWP100 (AR5)"
)
REF_GRID = "docs/reference.md#grid-electricity-factors"
REF_FUEL = "docs/reference.md#fuel-factors"


@dataclass(frozen=True, slots=True)
class EmissionFactor:
    """kgCO2e per unit of activity, valid over ``[valid_from, valid_to)``."""

    key: str
    kgco2e_per_unit: float
    unit: str  # activity unit: "kWh", "L", "kg", "MJ", "scf"
    source: str  # public citation, as printed for people (issuer, document, date)
    valid_from: datetime | None = None  # inclusive, aware; None = since always
    valid_to: datetime | None = None  # exclusive, aware; None = until further notice
    description: str = ""
    reference: str = ""  # the docs/reference.md section that explains the value: for maintainers, never printed

    @property
    def valid_from_us(self) -> int:
        return NO_TS if self.valid_from is None else us_from_datetime(self.valid_from)

    @property
    def valid_to_us(self) -> int | None:
        return None if self.valid_to is None else us_from_datetime(self.valid_to)


@dataclass(frozen=True, slots=True)
class SourceClass:
    """What a metered quantity is in an inventory: its factor, scope, TGO CFO category and GPC reference."""

    key: str
    factor_key: str
    scope: int  # GHG Protocol / TGO CFO scope: 1 direct, 2 energy indirect, 3 other indirect
    cfo_category: str  # TGO CFO form 1.5(1) wording (docs/reference.md#scopes-and-cfo-categories)
    # GPC v1.1 reference number (docs/reference.md#gpc-sectors-and-scopes); in stationary energy and transport its
    # third number is the scope, which must be the class's. None = no GPC cell (e.g. the upstream scope-3 share).
    gpc_ref: str | None
    metric_id: int  # the metric it applies to: 1 energy (kWh register), 8 fuel (litre register)
    description: str = ""


_NEW_YEAR_2026 = datetime(2026, 1, 1, tzinfo=BANGKOK)


def _fuel(key: str, value: float, unit: str, description: str) -> EmissionFactor:
    return EmissionFactor(key, value, unit, SRC_TGO_2022, description=description, reference=REF_FUEL)


TGO_FACTORS: tuple[EmissionFactor, ...] = (
    EmissionFactor("grid_th", 0.4999, "kWh", SRC_GRID_2022, None, _NEW_YEAR_2026,
                   "Thai grid electricity, location-based (superseded 2026)", REF_GRID),
    EmissionFactor("grid_th", 0.4750, "kWh", SRC_GRID_2026, _NEW_YEAR_2026, None,
                   "Thai grid electricity, location-based: fuel combustion + T&D losses", REF_GRID),
    EmissionFactor("grid_th_upstream", 0.0812, "kWh", SRC_GRID_2026, _NEW_YEAR_2026, None,
                   "Thai grid electricity, scope 3: extraction, refining and transport of power-plant fuel", REF_GRID),
    _fuel("diesel_stationary_l", 2.7078, "L", "gas/diesel oil, stationary (generators)"),
    _fuel("diesel_onroad_l", 2.7406, "L", "gas/diesel oil, mobile, on-road"),
    _fuel("diesel_offroad_l", 2.9793, "L", "diesel, off-road equipment"),
    _fuel("gasoline_stationary_l", 2.1894, "L", "motor gasoline, stationary"),
    _fuel("gasoline_onroad_l", 2.2394, "L", "motor gasoline, on-road, uncontrolled"),
    _fuel("gasoline_onroad_oxcat_l", 2.2719, "L", "motor gasoline, on-road, oxidation catalyst"),
    _fuel("gasoline_onroad_lowmileage_l", 2.2327, "L", "motor gasoline, low-mileage light duty (1995+)"),
    _fuel("lpg_stationary_l", 1.6812, "L", "LPG, stationary (1 L = 0.54 kg)"),
    _fuel("lpg_stationary_kg", 3.1134, "kg", "LPG, stationary"),
    _fuel("lpg_mobile_l", 1.7306, "L", "LPG, mobile (1 L = 0.54 kg)"),
    _fuel("lpg_mobile_kg", 3.2049, "kg", "LPG, mobile"),
    _fuel("cng_mobile_kg", 2.2609, "kg", "CNG, mobile"),
    _fuel("natural_gas_stationary_mj", 0.0562, "MJ", "natural gas, stationary"),
    _fuel("natural_gas_stationary_scf", 0.0573, "scf", "natural gas, stationary"),
    _fuel("fuel_oil_a_l", 3.2200, "L", "heavy fuel oil A"),
    _fuel("fuel_oil_c_l", 3.2457, "L", "heavy fuel oil C"),
)  # fmt: skip

SOURCE_CLASSES: tuple[SourceClass, ...] = (
    SourceClass("building_electricity", "grid_th", 2, "Purchased electricity", "I.2.2", 1,
                "metered grid electricity of municipal buildings"),
    SourceClass("streetlight_electricity", "grid_th", 2, "Purchased electricity", "I.2.2", 1,
                "street lighting (GPC v1.1 section 6.3.1: I.2 covers public street lighting)"),
    SourceClass("electricity_upstream", "grid_th_upstream", 3, "Other indirect: fuel upstream of grid electricity",
                None, 1, "scope-3 companion of grid electricity (from 2026 only)"),
    SourceClass("generator_diesel", "diesel_stationary_l", 1, "Stationary combustion", "I.2.1", 8,
                "diesel for standby generators"),
    SourceClass("building_lpg", "lpg_stationary_l", 1, "Stationary combustion", "I.2.1", 8,
                "LPG in kitchens and schools, metered in litres"),
    SourceClass("fleet_diesel", "diesel_onroad_l", 1, "Mobile combustion", "II.1.1", 8,
                "diesel of the municipal fleet: refuse trucks, pick-ups, fire engines"),
    SourceClass("fleet_gasoline", "gasoline_onroad_l", 1, "Mobile combustion", "II.1.1", 8,
                "gasoline of the municipal fleet (uncontrolled on-road factor)"),
    SourceClass("fleet_lpg", "lpg_mobile_l", 1, "Mobile combustion", "II.1.1", 8, "LPG vehicles, metered in litres"),
)  # fmt: skip


class FactorRegistry:
    """Factors by key, each key a history of non-overlapping validity spans in one unit."""

    def __init__(self, factors: Iterable[EmissionFactor]) -> None:
        by_key: dict[str, list[EmissionFactor]] = {}
        for f in factors:
            by_key.setdefault(f.key, []).append(f)
        self._by_key: dict[str, tuple[EmissionFactor, ...]] = {}
        for key, items in by_key.items():
            items.sort(key=lambda f: f.valid_from_us)
            if len({f.unit for f in items}) != 1:
                raise ValueError(f"factor {key!r} mixes units")
            for f in items:
                if not (f.kgco2e_per_unit >= 0 and np.isfinite(f.kgco2e_per_unit)):
                    raise ValueError(f"factor {key!r} must be finite and >= 0")
                to = f.valid_to_us
                if to is not None and to <= f.valid_from_us:
                    raise ValueError(f"factor {key!r} ends before it starts")
            for a, b in itertools.pairwise(items):
                to = a.valid_to_us
                if to is None or to > b.valid_from_us:
                    raise ValueError(f"factor {key!r}: validity spans overlap")
            self._by_key[key] = tuple(items)

    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_key))

    def history(self, key: str) -> tuple[EmissionFactor, ...]:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"no emission factor {key!r} in the registry") from None

    def in_force(self, key: str, at_us: int) -> EmissionFactor | None:
        """The factor valid at an instant, or None."""
        for f in self.history(key):
            to = f.valid_to_us
            if f.valid_from_us <= at_us and (to is None or at_us < to):
                return f
        return None

    def _steps(self, key: str) -> list[tuple[int, float]]:
        steps: list[tuple[int, float]] = []
        for f in self.history(key):
            if steps and steps[-1][0] == f.valid_from_us:
                steps.pop()  # the previous factor's end marker coincides with this start
            steps.append((f.valid_from_us, f.kgco2e_per_unit))
            if f.valid_to_us is not None:
                steps.append((f.valid_to_us, np.nan))
        return steps

    def table(self, keys: Sequence[str]) -> WeightTable:
        """Step table (kgCO2e per unit, NaN = none in force) of each key in order: series i is keys[i]."""
        return _table([self._steps(key) for key in keys])

    def base_year_table(self, keys: Sequence[str], start_us: int, end_us: int) -> WeightTable:
        """Each key's factor of the base year [start_us, end_us), as a constant for all time (like-for-like
        comparison with the base year). Raises if a key has no single factor over the whole base year: pass the
        factor explicitly then (:func:`constant_table`), the registry will not guess which one the inventory used."""
        values = []
        for key in keys:
            f = self.in_force(key, start_us)
            to = None if f is None else f.valid_to_us
            if f is None or (to is not None and to < end_us):
                raise ValueError(f"factor {key!r} is not one value over the whole base year")
            values.append(f.kgco2e_per_unit)
        return constant_table(values)


def _table(series: list[list[tuple[int, float]]]) -> WeightTable:
    ptr = np.zeros(len(series) + 1, np.int64)
    ptr[1:] = np.cumsum([len(s) for s in series])
    flat = [step for s in series for step in s]
    return WeightTable(
        ptr=ptr,
        from_us=np.array([t for t, _ in flat], dtype=np.int64),
        value=np.array([v for _, v in flat], dtype=np.float64),
    )


def constant_table(values: Sequence[float]) -> WeightTable:
    """One series per value, constant for all time."""
    return _table([[(NO_TS, float(v))] for v in values])


TGO_REGISTRY = FactorRegistry(TGO_FACTORS)
SOURCE_CLASS_BY_KEY: dict[str, SourceClass] = {c.key: c for c in SOURCE_CLASSES}
