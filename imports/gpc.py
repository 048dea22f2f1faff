"""GPC v1.1 reference numbers: sectors, sub-sectors, and what each full reference number means (scope, reporting
level). Pure. Both the inventory import (a ``gpc_ref`` cell is checked here) and the GPC report (reports/annual.py)
read an item's reference through :func:`resolve`, so a reference means the same thing everywhere.

A GPC reference number is ``<sector>.<sub-sector>.<number>``. The third number is **not** the scope everywhere:
in stationary energy and transportation .1/.2/.3 are scopes 1/2/3, but in waste they say where the waste is
treated (GHG Protocol, GPC v1.1, reporting table; docs/reference.md#gpc-sectors-and-scopes):

* III.x.1: waste generated in the city and treated inside its boundary, scope 1, BASIC;
* III.x.2: waste generated in the city and treated outside its boundary, scope 3, BASIC;
* III.x.3: waste generated outside the city and treated inside it, scope 1, territorial total only (the other
  city counts it in its own BASIC as scope 3).

IPPU (IV) and AFOLU (V) are scope 1 and BASIC+; VI is other scope 3, outside both. GPC's I.4.4 (energy generation
supplied to the grid, reported beside the totals) is not taken: a power plant's output is no part of a municipal
organisation's inventory, and the stored ``gpc_ref`` allows third numbers 1 to 3 only (migration 007).

A two-level reference (``I.2``) takes the row's CFO scope as its third number in sectors I and II, where the two
coincide. In waste it does not: the CFO scope follows the organisation's control of the site, the GPC scope the
city boundary (a municipal landfill outside the city limits is CFO scope 1 and GPC III.1.2, scope 3). So a waste
reference must carry its third number; a two-level one is refused at import, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["basic", "basic_plus", "territorial", "other_scope3"]

SECTORS: dict[str, str] = {
    "I": "Stationary energy", "II": "Transportation", "III": "Waste", "IV": "Industrial processes and product use",
    "V": "Agriculture, forestry and other land use", "VI": "Other scope 3",
}  # fmt: skip
SUBSECTORS: dict[str, str] = {
    "I.1": "Residential buildings", "I.2": "Commercial and institutional buildings/facilities",
    "I.3": "Manufacturing industries and construction", "I.4": "Energy industries",
    "I.5": "Agriculture, forestry and fishing activities", "I.6": "Non-specified sources",
    "I.7": "Fugitive emissions from coal", "I.8": "Fugitive emissions from oil and natural gas",
    "II.1": "On-road", "II.2": "Railways", "II.3": "Waterborne navigation", "II.4": "Aviation", "II.5": "Off-road",
    "III.1": "Solid waste disposal", "III.2": "Biological treatment of waste", "III.3": "Incineration and open burning",
    "III.4": "Wastewater treatment and discharge", "IV.1": "Industrial processes", "IV.2": "Product use",
    "V.1": "Livestock", "V.2": "Land", "V.3": "Aggregate sources and non-CO2 emission sources on land",
    "VI.1": "Other scope 3",
}  # fmt: skip
LEVEL_NAMES: dict[Level, str] = {
    "basic": "BASIC", "basic_plus": "BASIC+ only", "territorial": "territorial total only (not BASIC)",
    "other_scope3": "other scope 3 (not BASIC)",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Meaning:
    scope: int
    level: Level
    description: str


def _energy(sub: str, *, scope3: bool = True) -> dict[str, Meaning]:
    out = {f"{sub}.1": Meaning(1, "basic", "fuel combustion and fugitive emissions inside the city"),
           f"{sub}.2": Meaning(2, "basic", "grid-supplied energy used inside the city")}  # fmt: skip
    if scope3:
        out[f"{sub}.3"] = Meaning(3, "basic_plus", "transmission and distribution losses, transboundary trips")
    return out


def _waste(sub: str) -> dict[str, Meaning]:
    return {
        f"{sub}.1": Meaning(1, "basic", "waste generated in the city, treated inside the boundary"),
        f"{sub}.2": Meaning(3, "basic", "waste generated in the city, treated outside the boundary"),
        f"{sub}.3": Meaning(1, "territorial", "waste generated outside the city, treated inside the boundary"),
    }


# Every reference number of GPC v1.1's reporting table with its scope and reporting level.
REFERENCES: dict[str, Meaning] = {
    **{k: v for s in ("I.1", "I.2", "I.3", "I.4", "I.5", "I.6") for k, v in _energy(s).items()},
    "I.7.1": Meaning(1, "basic", "fugitive emissions inside the city"),
    "I.8.1": Meaning(1, "basic", "fugitive emissions inside the city"),
    **{k: v for s in ("II.1", "II.2", "II.3", "II.4") for k, v in _energy(s).items()},
    **_energy("II.5", scope3=False),
    **{k: v for s in ("III.1", "III.2", "III.3", "III.4") for k, v in _waste(s).items()},
    **{s: Meaning(1, "basic_plus", "inside the city") for s in ("IV.1", "IV.2", "V.1", "V.2", "V.3")},
    "VI.1": Meaning(3, "other_scope3", "other scope 3"),
}
BASIC_SECTORS = ("I", "II", "III")  # the sectors with BASIC cells (the report lists all their sub-sectors)


@dataclass(frozen=True, slots=True)
class Reference:
    """An item's GPC reference number, resolved: the full number, its sub-sector and what it means."""

    number: str  # e.g. "III.1.2"
    subsector: str  # e.g. "III.1"
    sector: str  # e.g. "III"
    scope: int
    level: Level

    @property
    def in_basic(self) -> bool:
        return self.level == "basic"


class GpcRefInvalid(ValueError):
    """A gpc_ref that is not a GPC v1.1 reference number, or does not say what the GPC needs to know."""


def _choices(subsector: str) -> str:
    return "; ".join(f"{k} = scope {m.scope}, {m.description}" for k, m in REFERENCES.items()
                     if k.rsplit(".", 1)[0] == subsector)  # fmt: skip


def resolve(text: str, cfo_scope: int) -> Reference:
    """The reference ``text`` (as written in an inventory) for an item of CFO scope ``cfo_scope``. Raises
    :class:`GpcRefInvalid` with a message for people that says what to write instead."""
    ref = text.strip()
    parts = ref.split(".")
    if len(parts) not in (2, 3) or parts[0] not in SECTORS or ".".join(parts[:2]) not in SUBSECTORS:
        raise GpcRefInvalid(
            "not a GPC reference number (sector.sub-sector.number, e.g. I.2.2 electricity of public buildings, "
            "II.1.1 fleet fuel, III.1.1 or III.1.2 solid waste treated inside or outside the city, IV.2, V.2)"
        )
    subsector = ".".join(parts[:2])
    if len(parts) == 2 and subsector in REFERENCES:
        number = subsector  # IV, V, VI: the sub-sector is the reference number
    elif len(parts) == 2 and parts[0] == "III":
        raise GpcRefInvalid(
            f"{subsector} must say where the waste is treated: {_choices(subsector)} (the CFO scope cannot tell)"
        )
    elif len(parts) == 2:
        number = f"{subsector}.{cfo_scope}"
    else:
        number = ref
    meaning = REFERENCES.get(number)
    if meaning is None:
        known = _choices(subsector) or f"{subsector} alone"
        detail = f" (taken from the row's scope {cfo_scope})" if len(parts) == 2 else ""
        raise GpcRefInvalid(f"{number}{detail} is not a GPC reference number; {subsector} has: {known}")
    return Reference(number, subsector, parts[0], meaning.scope, meaning.level)
