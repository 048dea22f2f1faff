"""Second values for stored readings (``reading_conflicts``, written by store/writer.py): the review list.

First wins (docs/contract.md#duplicates-and-corrections): the stored reading is untouched, the offered value is
kept here. Listed newest first by receive time, like the dead letters, with the device's external id, the metric's
name and its canonical unit (both values are in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from lccm.store.scope import Scope, scope_clauses


@dataclass(frozen=True, slots=True)
class Conflict:
    id: int
    device_id: str
    metric: str
    unit: str
    ts: datetime
    stored_value: float
    offered_value: float
    seq: int | None
    received_at: datetime


def conflicts_page(
    conn: psycopg.Connection,
    *,
    device_pk: int | None = None,
    metric_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
    scope: Scope | None,
) -> list[Conflict]:
    """Newest first by receive time; ``before`` is the keyset cursor (received_at, id)."""
    conditions: list[tuple[LiteralString, object]] = [
        ("c.device_id = %s", device_pk),
        ("c.metric_id = %s", metric_id),
        ("c.received_at >= %s", start),
        ("c.received_at < %s", end),
    ]
    clauses: list[sql.Composable] = [sql.SQL(text) for text, value in conditions if value is not None]
    params: list[object] = [value for _, value in conditions if value is not None]
    clauses += scope_clauses(scope, "d.site_id")
    if before is not None:
        clauses.append(sql.SQL("(c.received_at, c.id) < (%s::timestamptz, %s::bigint)"))
        params.extend(before)
    where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    query = sql.SQL(
        "SELECT c.id, d.device_id, m.name AS metric, m.unit, c.ts, c.stored_value, c.offered_value, c.seq,"
        " c.received_at FROM reading_conflicts c JOIN devices d ON d.id = c.device_id"
        " JOIN metrics m ON m.id = c.metric_id {where} ORDER BY c.received_at DESC, c.id DESC LIMIT %s"
    ).format(where=where)
    params.append(limit)
    return conn.cursor(row_factory=class_row(Conflict)).execute(query, params).fetchall()


def conflict_counts(
    conn: psycopg.Connection, *, device_pks: list[int], start: datetime, scope: Scope | None
) -> dict[int, int]:
    """Per device (by primary key) among ``device_pks``: how many conflicts were received from ``start`` on, the
    rows :func:`conflicts_page` lists for that device and start, in one query for them all (a site page's meters)."""
    clauses: list[sql.Composable] = [sql.SQL("c.device_id = ANY(%s)"), sql.SQL("c.received_at >= %s")]
    clauses += scope_clauses(scope, "d.site_id")
    query = sql.SQL(
        "SELECT c.device_id, count(*) FROM reading_conflicts c JOIN devices d ON d.id = c.device_id"
        " WHERE {where} GROUP BY c.device_id"
    ).format(where=sql.SQL(" AND ").join(clauses))
    return {int(r[0]): int(r[1]) for r in conn.execute(query, [device_pks, start])}
