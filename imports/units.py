"""Activity units of the inventory, the spellings accepted for them (English and Thai), and conversions.

A unit belongs to one dimension; a quantity converts between units of the same dimension only (a litre of LPG is
not a kilogram of LPG without a density, so that conversion is refused rather than guessed). The canonical symbols
are what the store keeps in ``inventory_items.unit``; ``kWh`` and ``L`` match the metric catalogue's ``kWh`` and
``l`` (compared case-folded) so metered items line up with the engine's buckets.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unit:
    symbol: str  # canonical spelling stored in the database
    dimension: str
    scale: float  # value in the dimension's first unit = value * scale
    aliases: tuple[str, ...]  # other accepted spellings (folded before comparison)


UNITS: tuple[Unit, ...] = (
    Unit("kWh", "electric_energy", 1.0, ("kwh", "kw h", "หน่วย", "กิโลวัตต์ชั่วโมง", "กิโลวัตต์-ชั่วโมง")),
    Unit("MWh", "electric_energy", 1000.0, ("mwh", "เมกะวัตต์ชั่วโมง")),
    Unit("MJ", "heat", 1.0, ("mj", "เมกะจูล")),
    Unit("GJ", "heat", 1000.0, ("gj", "กิกะจูล")),
    Unit("L", "volume", 1.0, ("l", "litre", "liter", "litres", "liters", "ลิตร")),
    Unit("m3", "volume", 1000.0, ("m³", "cubic metre", "cubic meter", "ลูกบาศก์เมตร", "ลบ.ม.", "ลบ.ม")),
    Unit("scf", "gas_volume", 1.0, ("standard cubic foot", "ลูกบาศก์ฟุต")),
    Unit("kg", "mass", 1.0, ("kilogram", "kilograms", "กิโลกรัม", "กก.", "กก")),
    Unit("t", "mass", 1000.0, ("tonne", "tonnes", "ton", "tons", "ตัน")),
    Unit("km", "distance", 1.0, ("kilometre", "kilometer", "กิโลเมตร", "กม.", "กม")),
    Unit("ream", "paper_count", 1.0, ("reams", "รีม")),
    Unit("tree", "tree_count", 1.0, ("trees", "ต้น")),
)


def fold(text: str) -> str:
    """Case-fold, NFC, unify spacing; '₂' and '³' to digits so 'kg CO₂e / m³' folds like 'kgco2e/m3'."""
    text = unicodedata.normalize("NFC", text).replace("\ufeff", "").translate(str.maketrans("₂³", "23"))
    return re.sub(r"[\s_]+", " ", text.casefold()).strip()


_BY_SPELLING: dict[str, Unit] = {fold(a): u for u in UNITS for a in (u.symbol, *u.aliases)}
UNIT_BY_SYMBOL: dict[str, Unit] = {u.symbol: u for u in UNITS}
UNIT_SYMBOLS: tuple[str, ...] = tuple(u.symbol for u in UNITS)


def unit(text: str) -> Unit:
    """The unit a spelling names; ValueError with the accepted symbols if none."""
    found = _BY_SPELLING.get(fold(text))
    if found is None:
        raise ValueError(f"unknown unit {text.strip()!r}; expected one of: {', '.join(UNIT_SYMBOLS)}")
    return found


def convert(quantity: float, source: str, target: str) -> float:
    """``quantity`` in unit ``source`` expressed in unit ``target`` (both canonical symbols or spellings)."""
    a, b = unit(source), unit(target)
    if a.dimension != b.dimension:
        raise ValueError(f"{a.symbol} cannot be converted to {b.symbol}")
    return quantity if a is b else quantity * a.scale / b.scale


# "kgCO2e/kWh", "kg CO2eq / L", "tCO2e/t", "kgCO2e/หน่วย": mass of CO2e per activity unit.
_EF_UNIT = re.compile(r"^(kg|t|กก\.?|กิโลกรัม|ตัน)\s*co2\s*-?\s*(e|eq|equivalent|เทียบเท่า)?\s*(?:/|ต่อ|per)\s*(.+)$")
_EF_MASS_KG = {"kg": 1.0, "กก.": 1.0, "กก": 1.0, "กิโลกรัม": 1.0, "t": 1000.0, "ตัน": 1000.0}


def ef_unit(text: str) -> tuple[float, Unit]:
    """(kg per the written mass unit, activity unit) of an emission-factor unit such as 'tCO2e/t'."""
    match = _EF_UNIT.match(fold(text))
    if match is None:
        raise ValueError(f"not an emission-factor unit: {text.strip()!r}; write kgCO2e/<unit>, e.g. kgCO2e/kWh")
    return _EF_MASS_KG[match.group(1)], unit(match.group(3))


# Plain decimals, optionally with comma thousands separators ("1,234.5"); no other grouping is guessed.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")


def number(value: object) -> float | None:
    """A cell as a finite float; None when blank. ValueError "not a number: '1,2x'" otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):  # True is an int in Python; a TRUE cell is no quantity
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    else:
        text = str(value).strip().replace("\u00a0", "")
        if not text:
            return None
        if not (_NUMBER.match(text) or _GROUPED.match(text)):
            raise ValueError(f"not a number: {text!r}")
        result = float(text.replace(",", ""))
    if not math.isfinite(result):
        raise ValueError(f"not a finite number: {value!r}")
    return result
