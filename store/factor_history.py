"""The dated emission factors an inventory item's metered months were computed with (issue 15).

The engine puts every metered interval at the factor in force over it (engine/emissions.py), from the registry the
application writes into ``emission_factors`` at start-up. A report that prints "quantity x factor" for a metered
month must print that same factor, so it reads the same table: per source class, its factor key's dated history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True, slots=True)
class DatedFactor:
    """A factor valid over ``[valid_from, valid_to)``; None = open (the table's -infinity / infinity)."""

    kgco2e_per_unit: float
    unit: str
    source: str
    valid_from: datetime | None
    valid_to: datetime | None


def factor_histories(conn: psycopg.Connection, source_classes: Iterable[str]) -> dict[str, list[DatedFactor]]:
    """source class -> the dated factors of its factor key, oldest first (classes without factors are absent)."""
    keys = sorted(set(source_classes))
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT sc.key, f.kgco2e_per_unit, f.unit, f.source,"
        " CASE WHEN f.valid_from = '-infinity' THEN NULL ELSE f.valid_from END,"
        " CASE WHEN f.valid_to = 'infinity' THEN NULL ELSE f.valid_to END"
        " FROM source_classes sc JOIN emission_factors f ON f.key = sc.factor_key"
        " WHERE sc.key = ANY(%s) ORDER BY sc.key, f.valid_from",
        (keys,),
    ).fetchall()
    out: dict[str, list[DatedFactor]] = {}
    for key, value, unit, source, lo, hi in rows:
        out.setdefault(str(key), []).append(DatedFactor(float(value), str(unit), str(source), lo, hi))
    return out
