"""Read queries for the API and the CLI. Every query is parameterised; optional filters are composed from fixed
``psycopg.sql`` fragments (never from user text), so each combination gets its own plan instead of one generic plan
full of ``(%s IS NULL OR col = %s)`` that cannot use an index.

Functions return frozen dataclasses (or ``None`` for "no such row"); they never raise HTTP errors: deciding that a
missing device is a 404 belongs to the API edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from store.migrate import current_layout


@dataclass(frozen=True, slots=True)
class StoreHealth:
    layout: str | None
    readings_estimate: int | None
    last_received_at: datetime | None


@dataclass(frozen=True, slots=True)
class Site:
    id: int
    site_code: str
    name: str
    name_th: str | None
    kind: str
    city: str
    lat: float | None
    lon: float | None
    floor_area_m2: float | None
    device_count: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    device_id: str
    site_code: str
    kind: str
    name: str
    cadence_s: int
    rated_kw: float | None
    status: str | None
    status_changed_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Metric:
    id: int
    name: str
    unit: str
    key: str
    kind: str


@dataclass(frozen=True, slots=True)
class LatestValue:
    device_id: str
    metric: str
    unit: str
    ts: datetime
    value: float
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Reading:
    metric_id: int
    metric: str
    unit: str
    ts: datetime
    value: float
    seq: int | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    device_ref: str | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    count: int
    first_received_at: datetime
    last_received_at: datetime


def _where(clauses: Sequence[sql.Composable]) -> sql.Composable:
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")


# ---------------------------------------------------------------------------------------------------------------
# Health

# The last arrival is looked for among readings whose event time is this recent: ts is what the BRIN index (or the
# hypertable's chunks) can narrow, whereas max(received_at) over the whole table is a full scan.
LAST_RECEIVED_WINDOW = timedelta(days=7)


def store_health(conn: psycopg.Connection) -> StoreHealth:
    layout = current_layout(conn)
    return StoreHealth(
        layout=layout,
        readings_estimate=_readings_estimate(conn, layout),
        last_received_at=_last_received_at(conn),
    )


def _readings_estimate(conn: psycopg.Connection, layout: str | None) -> int | None:
    """A planner estimate, not count(*): counting billions of rows for a health probe would take minutes."""
    if layout == "timescaledb":
        # A hypertable's parent holds no rows; TimescaleDB sums its chunks' statistics.
        row = conn.execute("SELECT approximate_row_count('readings')").fetchone()
        return None if row is None or row[0] is None else int(row[0])
    row = conn.execute(
        "SELECT c.reltuples, s.n_live_tup FROM pg_class c"
        " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = 'readings'::regclass"
    ).fetchone()
    if row is None:
        return None
    reltuples, live = row
    # reltuples is -1 until the table is first analysed; the statistics collector's live count covers that gap.
    if reltuples is not None and reltuples >= 0:
        return int(reltuples)
    return None if live is None else int(live)


def _last_received_at(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute(
        "SELECT max(received_at) FROM readings WHERE ts > now() - %s", (LAST_RECEIVED_WINDOW,)
    ).fetchone()
    return None if row is None else row[0]


# ---------------------------------------------------------------------------------------------------------------
# Sites and devices

_SITE_SELECT = sql.SQL(
    "SELECT s.id, s.site_code, s.name, s.name_th, s.kind, s.city, s.lat, s.lon, s.floor_area_m2,"
    " (SELECT count(*) FROM devices d WHERE d.site_id = s.id)::int AS device_count, s.updated_at"
    " FROM sites s"
)


def list_sites(conn: psycopg.Connection) -> list[Site]:
    cur = conn.cursor(row_factory=class_row(Site))
    return cur.execute(_SITE_SELECT + sql.SQL(" ORDER BY s.site_code")).fetchall()


def get_site(conn: psycopg.Connection, site_code: str) -> Site | None:
    cur = conn.cursor(row_factory=class_row(Site))
    return cur.execute(_SITE_SELECT + sql.SQL(" WHERE s.site_code = %s"), (site_code,)).fetchone()


_DEVICE_SELECT = sql.SQL(
    "SELECT d.id, d.device_id, s.site_code, d.kind, d.name, d.cadence_s, d.rated_kw,"
    " st.status, st.changed_at AS status_changed_at, d.updated_at"
    " FROM devices d JOIN sites s ON s.id = d.site_id LEFT JOIN device_status st ON st.device_id = d.id"
)


def list_devices(
    conn: psycopg.Connection,
    *,
    site_code: str | None = None,
    kind: str | None = None,
    after_device_id: str | None = None,
    limit: int | None = None,
) -> list[Device]:
    """Devices ordered by device_id; ``after_device_id`` is the keyset cursor (the last id of the previous page)."""
    clauses: list[sql.Composable] = []
    params: list[object] = []
    if site_code is not None:
        clauses.append(sql.SQL("s.site_code = %s"))
        params.append(site_code)
    if kind is not None:
        clauses.append(sql.SQL("d.kind = %s"))
        params.append(kind)
    if after_device_id is not None:
        clauses.append(sql.SQL("d.device_id > %s"))
        params.append(after_device_id)
    query = _DEVICE_SELECT + sql.SQL(" ") + _where(clauses) + sql.SQL(" ORDER BY d.device_id")
    if limit is not None:
        query += sql.SQL(" LIMIT %s")
        params.append(limit)
    return conn.cursor(row_factory=class_row(Device)).execute(query, params).fetchall()


def get_device(conn: psycopg.Connection, device_id: str) -> Device | None:
    cur = conn.cursor(row_factory=class_row(Device))
    return cur.execute(_DEVICE_SELECT + sql.SQL(" WHERE d.device_id = %s"), (device_id,)).fetchone()


def get_metric(conn: psycopg.Connection, name: str) -> Metric | None:
    cur = conn.cursor(row_factory=class_row(Metric))
    return cur.execute("SELECT id, name, unit, key, kind FROM metrics WHERE name = %s", (name,)).fetchone()


def list_metrics(conn: psycopg.Connection) -> list[Metric]:
    cur = conn.cursor(row_factory=class_row(Metric))
    return cur.execute("SELECT id, name, unit, key, kind FROM metrics ORDER BY id").fetchall()


# ---------------------------------------------------------------------------------------------------------------
# Readings

# Latest value per (device, metric) by EVENT time. One LATERAL probe per (device, metric) pair walks the primary key
# (device_id, metric_id, ts) backwards and stops at the first row: a few index pages each, however long the history.
# (DISTINCT ON (metric_id) ... ORDER BY metric_id, ts DESC also avoids a sort, but reads every row of the device.)
_LATEST = sql.SQL(
    "SELECT d.device_id, m.name AS metric, m.unit, r.ts, r.value, r.received_at"
    " FROM devices d CROSS JOIN metrics m"
    " CROSS JOIN LATERAL (SELECT ts, value, received_at FROM readings"
    "     WHERE device_id = d.id AND metric_id = m.id ORDER BY ts DESC LIMIT 1) r"
    " WHERE {filter} ORDER BY d.device_id, m.id"
)


def latest_for_device(conn: psycopg.Connection, device_pk: int) -> list[LatestValue]:
    cur = conn.cursor(row_factory=class_row(LatestValue))
    return cur.execute(_LATEST.format(filter=sql.SQL("d.id = %s")), (device_pk,)).fetchall()


def latest_for_site(conn: psycopg.Connection, site_id: int) -> list[LatestValue]:
    cur = conn.cursor(row_factory=class_row(LatestValue))
    return cur.execute(_LATEST.format(filter=sql.SQL("d.site_id = %s")), (site_id,)).fetchall()


def readings_page(
    conn: psycopg.Connection,
    *,
    device_pk: int,
    metric_id: int | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[int, datetime] | None,
    limit: int,
) -> list[Reading]:
    """Readings of one device in [start, end), ordered by (metric_id, ts): the primary key's order, so the keyset
    condition ``(metric_id, ts) > after`` and the LIMIT are served by an index range scan, with no sort."""
    clauses: list[sql.Composable] = [sql.SQL("device_id = %s")]
    params: list[object] = [device_pk]
    if metric_id is not None:
        clauses.append(sql.SQL("metric_id = %s"))
        params.append(metric_id)
    if start is not None:
        clauses.append(sql.SQL("ts >= %s"))
        params.append(start)
    if end is not None:
        clauses.append(sql.SQL("ts < %s"))
        params.append(end)
    if after is not None:
        clauses.append(sql.SQL("(metric_id, ts) > (%s::smallint, %s::timestamptz)"))
        params.extend(after)
    params.append(limit)
    # The metric names are joined on after the LIMIT so the join cannot change the inner plan.
    query = sql.SQL(
        "SELECT r.metric_id, m.name AS metric, m.unit, r.ts, r.value, r.seq, r.received_at FROM ("
        "SELECT metric_id, ts, value, seq, received_at FROM readings {where} ORDER BY metric_id, ts LIMIT %s"
        ") r JOIN metrics m ON m.id = r.metric_id ORDER BY r.metric_id, r.ts"
    ).format(where=_where(clauses))
    return conn.cursor(row_factory=class_row(Reading)).execute(query, params).fetchall()


# ---------------------------------------------------------------------------------------------------------------
# Dead letters


def _dead_letter_filters(
    reason: str | None, start: datetime | None, end: datetime | None
) -> tuple[list[sql.Composable], list[object]]:
    clauses: list[sql.Composable] = []
    params: list[object] = []
    if reason is not None:
        clauses.append(sql.SQL("reason = %s"))
        params.append(reason)
    if start is not None:
        clauses.append(sql.SQL("received_at >= %s"))
        params.append(start)
    if end is not None:
        clauses.append(sql.SQL("received_at < %s"))
        params.append(end)
    return clauses, params


def dead_letters_page(
    conn: psycopg.Connection,
    *,
    reason: str | None,
    start: datetime | None,
    end: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[DeadLetter]:
    """Newest first (a person looks at what just went wrong); ``before`` is the keyset cursor (received_at, id)."""
    clauses, params = _dead_letter_filters(reason, start, end)
    if before is not None:
        clauses.append(sql.SQL("(received_at, id) < (%s::timestamptz, %s::bigint)"))
        params.extend(before)
    params.append(limit)
    query = sql.SQL(
        "SELECT id, received_at, topic, reason, detail, device_ref, payload FROM dead_letters {where}"
        " ORDER BY received_at DESC, id DESC LIMIT %s"
    ).format(where=_where(clauses))
    return conn.cursor(row_factory=class_row(DeadLetter)).execute(query, params).fetchall()


def dead_letter_summary(
    conn: psycopg.Connection, *, start: datetime | None = None, end: datetime | None = None
) -> list[ReasonCount]:
    clauses, params = _dead_letter_filters(None, start, end)
    query = sql.SQL(
        "SELECT reason, count(*) AS count, min(received_at) AS first_received_at,"
        " max(received_at) AS last_received_at FROM dead_letters {where}"
        " GROUP BY reason ORDER BY count(*) DESC, reason"
    ).format(where=_where(clauses))
    return conn.cursor(row_factory=class_row(ReasonCount)).execute(query, params).fetchall()
