"""Factor periods of an inventory item: the runs of months computed at one factor (issue 15).

A metered month is at the factor the engine used for it, the registry's factor in force over the month
(store/factor_history.py): the report then equals the live figure. A year across a factor change (fiscal 2026 and
TGO's grid factor of 1 January 2026) thus has two factors for one item, and the report prints one line per run of
months at one factor and source, each line "quantity x factor = kgCO2e", the lines adding up to the item's total.

Rules, so that a verifier can redo every line:

* a metered month takes the registry factor in force over the whole month, labelled with the item's own source
  when the value is the item's own factor (the file named it), with the registry's source otherwise;
* an entered (imported or typed) month takes the item's own factor: it is what the file declared for its quantities;
* a metered month with a change inside it (no registry change so far: TGO's is at a month boundary) takes the
  engine's kgCO2e of that month, split pro rata by time at the change, and prints its effective factor
  (kgCO2e / quantity) with both sources;
* a month without a registry factor (no source class, another unit, a hole in the history) takes the item's factor;
* blank months belong to no line; a line spans the first to the last month of its run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from lccm.engine.timebase import BANGKOK
from lccm.store.factor_history import DatedFactor
from lccm.store.inventory import ItemView, MonthValue

SPLIT_NOTE = "split pro rata by time at the change"


@dataclass(frozen=True, slots=True)
class MonthFactor:
    """The factor of one month with a value, and the month's kgCO2e (signed: negative for a removal)."""

    quantity: float
    ef_kgco2e_per_unit: float
    ef_source: str
    kgco2e: float
    source: str  # "metered" | "entered"


def _bangkok(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=BANGKOK)


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def _overlapping(history: Sequence[DatedFactor], start: datetime, end: datetime) -> list[DatedFactor]:
    return [
        f
        for f in history
        if (f.valid_from is None or f.valid_from < end) and (f.valid_to is None or f.valid_to > start)
    ]


def _covers(f: DatedFactor, start: datetime, end: datetime) -> bool:
    return (f.valid_from is None or f.valid_from <= start) and (f.valid_to is None or f.valid_to >= end)


def month_factor(view: ItemView, month: MonthValue, history: Sequence[DatedFactor]) -> MonthFactor | None:
    """The factor and kgCO2e of one month of an item (module docstring), None for a blank month."""
    if month.metered_quantity is None:
        if month.quantity is None:
            return None
        q = month.quantity
        return MonthFactor(q, view.ef_kgco2e_per_unit, view.ef_source, view.sign * q * view.ef_kgco2e_per_unit,
                           "entered")  # fmt: skip
    q = month.metered_quantity
    unit_ok = [f for f in history if view.ef_unit.lower() == f"kgco2e/{f.unit}".lower()]
    start, end = _bangkok(month.month_start), _bangkok(_next_month(month.month_start))
    found = _overlapping(unit_ok, start, end)
    if len(found) == 1 and _covers(found[0], start, end):
        f = found[0]
        source = view.ef_source if f.kgco2e_per_unit == view.ef_kgco2e_per_unit else f.source
        return MonthFactor(q, f.kgco2e_per_unit, source, view.sign * q * f.kgco2e_per_unit, "metered")
    if len(found) > 1 and month.metered_kgco2e is not None:
        live = month.metered_kgco2e
        effective = live / q if q else found[-1].kgco2e_per_unit
        source = " + ".join(f"{f.kgco2e_per_unit} ({f.source})" for f in found) + f", {SPLIT_NOTE}"
        return MonthFactor(q, effective, source, view.sign * live, "metered")
    return MonthFactor(q, view.ef_kgco2e_per_unit, view.ef_source, view.sign * q * view.ef_kgco2e_per_unit,
                       "metered")  # fmt: skip


def month_factors(view: ItemView, history: Sequence[DatedFactor]) -> list[MonthFactor | None]:
    """The 12 months of an item in the year's order."""
    return [month_factor(view, m, history) for m in view.months]


def runs(factors: Sequence[MonthFactor | None]) -> list[list[int]]:
    """Month indices grouped in runs at one (factor, source); blank months belong to none and break no run."""
    out: list[list[int]] = []
    key: tuple[float, str] | None = None
    for i, f in enumerate(factors):
        if f is None:
            continue
        if key != (f.ef_kgco2e_per_unit, f.ef_source):
            out.append([])
            key = (f.ef_kgco2e_per_unit, f.ef_source)
        out[-1].append(i)
    return out
