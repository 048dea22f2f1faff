"""The dated emission factors an inventory item's metered months were computed with (issue 15).

The engine puts every metered interval at the factor in force over it (engine/emissions.py), from the registry the
application writes into ``emission_factors`` at start-up. A report that prints "quantity x factor" for a metered
month must print that same factor, so it reads the same table: per source class, its factor key's dated history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from lccm.engine.timebase import BANGKOK
from lccm.store.baseline import SliceSpec


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


@dataclass(frozen=True, slots=True)
class MeteredFactorPeriod:
    """A metered item's daily buckets over ``[start, end)`` at one factor in force (and the base year's factor)."""

    item_code: str
    start: datetime  # the first day's bucket start
    end: datetime  # the day after the last day's bucket
    quantity: float
    unit: str
    ef_kgco2e_per_unit: float
    ef_source: str
    kgco2e: float  # at the factor in force (the engine's)
    kgco2e_base: float  # at the base year's factor (the engine's)


# Per slice: the mapped devices' daily buckets of each metered item grouped by the registry factor in force at the
# bucket's start (a Bangkok day; TGO's change falls on a midnight, so a day has one factor). Summed per device and
# factor through the '1d' key range first: grouping every daily row of a city-year sorted 73,000 rows on disk.
_METERED_PERIODS = """
WITH s(lo, hi, year_id) AS (SELECT * FROM unnest(%s::timestamptz[], %s::timestamptz[], %s::int[]))
SELECT i.item_code, min(eb.first), max(eb.last) + interval '1 day', sum(eb.amount), i.unit,
       f.kgco2e_per_unit, f.source, sum(eb.kgco2e), sum(eb.kgco2e_base), extract(epoch FROM f.valid_from)
FROM s
JOIN device_item_map dm ON dm.reporting_year_id = s.year_id
JOIN inventory_items i ON i.id = dm.item_id
JOIN source_classes sc ON sc.key = i.source_class
JOIN emission_factors f ON f.key = sc.factor_key AND i.ef_unit = 'kgCO2e/' || f.unit
JOIN metrics mt ON lower(mt.unit) = lower(i.unit)
CROSS JOIN LATERAL (
    SELECT min(b.bucket_start) AS first, max(b.bucket_start) AS last, sum(b.amount) AS amount,
           sum(b.kgco2e) AS kgco2e, sum(b.kgco2e_base) AS kgco2e_base, count(*) AS n
    FROM energy_buckets b WHERE b.resolution = '1d' AND b.device_id = dm.device_id AND b.metric_id = mt.id
     AND b.bucket_start >= s.lo AND b.bucket_start < s.hi
     AND b.bucket_start >= f.valid_from AND b.bucket_start < f.valid_to) eb
WHERE eb.n > 0
GROUP BY i.item_code, i.unit, f.valid_from, f.kgco2e_per_unit, f.source
"""


def metered_factor_periods(conn: psycopg.Connection, organisation_id: int, kind: str,
                           slices: Sequence[SliceSpec]) -> list[MeteredFactorPeriod]:  # fmt: skip
    """The factor periods of the metered items over the month slices (each read from its ``kind`` reporting year of
    the organisation, as ``store.baseline.actual_kgco2e`` reads them), per item and factor, in time order. The
    kgCO2e are the engine's, as the comparison's actual figures sum them."""
    ids = {
        int(y): int(i)
        for y, i in conn.execute(
            "SELECT year_ce, id FROM reporting_years WHERE organisation_id = %s AND kind = %s AND year_ce = ANY(%s)",
            (organisation_id, kind, sorted({s.year_ce for s in slices})),
        )
    }
    known = [s for s in slices if s.year_ce in ids]
    merged: dict[tuple[str, float], MeteredFactorPeriod] = {}  # (item, factor's valid_from as epoch: may be -inf)
    rows = conn.execute(_METERED_PERIODS, ([s.start for s in known], [s.end for s in known],
                                           [ids[s.year_ce] for s in known]))  # fmt: skip
    for code, first, last, qty, unit, ef, source, kg, kg_base, since in rows:
        start, end = first.astimezone(BANGKOK), last.astimezone(BANGKOK)  # Bangkok midnights, printed as such
        key = (str(code), float(since))
        p = merged.get(key)
        if p is not None:
            start, end = min(start, p.start), max(end, p.end)
            qty, kg, kg_base = qty + p.quantity, kg + p.kgco2e, kg_base + p.kgco2e_base
        merged[key] = MeteredFactorPeriod(str(code), start, end, float(qty), str(unit), float(ef), str(source),
                                          float(kg), float(kg_base))  # fmt: skip
    return sorted(merged.values(), key=lambda p: (p.item_code, p.start))
