"""Read queries over the sample and lamp rollups (migration 004) and the late-data list.

Device rows are combined per group here: ``n``, ``sum`` add up, ``min``/``max`` take the extreme, ``mean`` is the
group's sum over its n (the mean of all its readings), ``last`` is the value of the latest reading, and
``sum_of_device_means`` adds each device's own mean (a site's power is the sum of its meters' powers).
A Thai fiscal year (``fy``) combines the Bangkok months starting in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import LiteralString

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import class_row

from lccm.engine.timebase import CITY_TZ_NAME, FISCAL_YEAR_FIRST_MONTH
from lccm.store.queries import SITE_GROUPS
from lccm.store.scope import Scope, scope_and

ROLLUP_RESOLUTIONS = ("15min", "1h", "1d", "1mo", "fy")
GROUPS: dict[str, LiteralString] = {
    "device": "dev.device_code",
    "site": "dev.site_code",
    "kind": "dev.kind",
    "city": "dev.city",
}
# Shifting a local month by 13 - first month lands every month of a fiscal year in the calendar year it is named by.
_FY_START: LiteralString = (
    "make_timestamptz(extract(year FROM (b.bucket_start AT TIME ZONE %(tz)s)"
    " + make_interval(months => 13 - %(fy_month)s::int))::int - 1, %(fy_month)s::int, 1, 0, 0, 0, %(tz)s)"
)
_DEV: LiteralString = """
    dev AS (SELECT d.id, d.device_id AS device_code, d.kind, s.site_code, s.city
            FROM devices d JOIN sites s ON s.id = d.site_id
            WHERE (%(site_code)s::text IS NULL OR s.site_code = %(site_code)s)
              AND (%(device_id)s::text IS NULL OR d.device_id = %(device_id)s)
              AND (%(kind)s::text IS NULL OR d.kind = %(kind)s){scope})"""


def _dev(scope: Scope | None) -> sql.Composable:
    """The devices in the filters and the caller's scope, with their grouping attributes."""
    return sql.SQL(_DEV).format(scope=scope_and(scope, "s.id"))


@dataclass(frozen=True, slots=True)
class SampleRow:
    bucket_start: datetime
    group: str | None
    devices: int
    n: int
    sum: float
    min: float
    max: float
    mean: float
    last: float
    last_ts: datetime
    sum_of_device_means: float


def _bucket(resolution: str) -> sql.Composable:
    return sql.SQL(_FY_START if resolution == "fy" else "b.bucket_start")


def _stored(resolution: str) -> sql.Composable:
    """The stored resolution as a literal (one of ROLLUP_RESOLUTIONS, checked by the caller), not a parameter: the
    bucket tables are partitioned by resolution (migration 017), and a prepared statement's generic plan would
    otherwise be planned over every partition (psycopg prepares a query from its 6th run on a connection)."""
    return sql.Literal("1mo" if resolution == "fy" else resolution)


def _params(resolution: str, start: datetime, end: datetime, **filters: object) -> dict[str, object]:
    base = {
        "resolution": "1mo" if resolution == "fy" else resolution,
        "start": start,
        "end": end,
        "tz": CITY_TZ_NAME,
        "fy_month": FISCAL_YEAR_FIRST_MONTH,
    }
    return base | {"site_code": None, "device_id": None, "kind": None} | filters


def sample_series(
    conn: psycopg.Connection,
    *,
    metric_id: int,
    resolution: str,
    group_by: str,
    start: datetime,
    end: datetime,
    site_code: str | None = None,
    device_id: str | None = None,
    kind: str | None = None,
    limit: int,
    scope: Scope | None,
) -> list[SampleRow]:
    """Statistics of one metric's readings per bucket starting in [start, end) and per group."""
    if resolution not in ROLLUP_RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}")
    # Not a fiscal year: a device's mean over the year is not the sum of its monthly means, so sum_of_device_means
    # needs the device rows.
    if group_by in SITE_GROUPS and resolution != "fy" and device_id is None and kind is None:
        return _sample_series_by_site(conn, metric_id, resolution, group_by, start, end, site_code, limit, scope)
    query = sql.SQL(
        """
        WITH {dev},
        b AS (SELECT {bucket} AS bucket_start, b.device_id, b.n, b.sum, b.min, b.max, b.last, b.last_ts,
                     {group} AS grp
              FROM sample_buckets b JOIN dev ON dev.id = b.device_id
              WHERE b.resolution = {resolution} AND b.metric_id = %(metric_id)s
                AND b.bucket_start >= %(start)s AND b.bucket_start < %(end)s),
        per_device AS (
            SELECT bucket_start, grp, device_id, sum(n) AS n, sum(sum) AS sum, min(min) AS min, max(max) AS max,
                   (array_agg(last ORDER BY last_ts DESC))[1] AS last, max(last_ts) AS last_ts
            FROM b GROUP BY bucket_start, grp, device_id)
        SELECT bucket_start, grp AS "group", count(*)::int AS devices, sum(n)::bigint AS n, sum(sum) AS sum,
               min(min) AS min, max(max) AS max, sum(sum) / sum(n) AS mean,
               (array_agg(last ORDER BY last_ts DESC))[1] AS last, max(last_ts) AS last_ts,
               sum(sum / n) AS sum_of_device_means
        FROM per_device GROUP BY bucket_start, grp ORDER BY bucket_start, grp NULLS LAST LIMIT %(limit)s
        """
    ).format(
        dev=_dev(scope), bucket=_bucket(resolution), group=sql.SQL(GROUPS[group_by]), resolution=_stored(resolution)
    )
    params = _params(resolution, start, end, site_code=site_code, device_id=device_id, kind=kind)
    params |= {"metric_id": metric_id, "limit": limit}
    return conn.cursor(row_factory=class_row(SampleRow), binary=True).execute(query, params).fetchall()


def _sample_series_by_site(
    conn: psycopg.Connection,
    metric_id: int,
    resolution: str,
    group_by: str,
    start: datetime,
    end: datetime,
    site_code: str | None,
    limit: int,
    scope: Scope | None,
) -> list[SampleRow]:
    """:func:`sample_series` from the per-site rows: one row per site and bucket instead of one per device. The sites
    are MATERIALIZED first, so the scope's semi-join is not planned after a read of every site's rows."""
    query = sql.SQL(
        """
        WITH st AS MATERIALIZED (SELECT s.id, s.site_code, s.city FROM sites s
                    WHERE (%(site_code)s::text IS NULL OR s.site_code = %(site_code)s){scope})
        SELECT b.bucket_start, {group} AS "group", sum(b.devices)::int AS devices, sum(b.n)::bigint AS n,
               sum(b.sum) AS sum, min(b.min) AS min, max(b.max) AS max, sum(b.sum) / sum(b.n) AS mean,
               (array_agg(b.last ORDER BY b.last_ts DESC))[1] AS last, max(b.last_ts) AS last_ts,
               sum(b.sum_of_device_means) AS sum_of_device_means
        FROM sample_site_buckets b JOIN st ON st.id = b.site_id
        WHERE b.resolution = {resolution} AND b.metric_id = %(metric_id)s
          AND b.bucket_start >= %(start)s AND b.bucket_start < %(end)s
        GROUP BY 1, 2 ORDER BY 1, 2 NULLS LAST LIMIT %(limit)s
        """
    ).format(
        scope=scope_and(scope, "s.id"),
        group=sql.SQL(GROUPS[group_by].replace("dev.", "st.")),
        resolution=_stored(resolution),
    )
    params = {"site_code": site_code, "metric_id": metric_id, "start": start, "end": end, "limit": limit}
    return conn.cursor(row_factory=class_row(SampleRow), binary=True).execute(query, params).fetchall()


@dataclass(frozen=True, slots=True)
class RawSeries:
    """Readings of one metric for the devices in scope, with each device's group key (for on-demand rollups)."""

    device_idx: np.ndarray  # int32 index into groups_of_device
    ts_us: np.ndarray
    value: np.ndarray
    group_of_device: list[str | None]


def raw_series(
    conn: psycopg.Connection,
    *,
    metric_id: int,
    group_by: str,
    start: datetime,
    end: datetime,
    site_code: str | None = None,
    device_id: str | None = None,
    kind: str | None = None,
    limit: int,
    scope: Scope | None,
) -> RawSeries:
    """The raw readings in [start, end) (at most ``limit``; the caller checks), for a rollup the store keeps none of
    (1 minute)."""
    query = sql.SQL(
        """
        WITH {dev}
        SELECT dense_rank() OVER (ORDER BY r.device_id)::int - 1, {group},
               (extract(epoch FROM r.ts) * 1000000)::bigint, r.value
        FROM readings r JOIN dev ON dev.id = r.device_id
        WHERE r.metric_id = %(metric_id)s AND r.ts >= %(start)s AND r.ts < %(end)s
        ORDER BY r.device_id, r.ts LIMIT %(limit)s
        """
    ).format(dev=_dev(scope), group=sql.SQL(GROUPS[group_by]))
    params = _params("15min", start, end, site_code=site_code, device_id=device_id, kind=kind)
    rows = conn.execute(query, params | {"metric_id": metric_id, "limit": limit}).fetchall()
    groups: dict[int, str | None] = {}
    for idx, grp, _, _ in rows:
        groups.setdefault(idx, grp)
    return RawSeries(
        device_idx=np.array([r[0] for r in rows], np.int32),
        ts_us=np.array([r[2] for r in rows], np.int64),
        value=np.array([r[3] for r in rows], np.float64),
        group_of_device=[groups[i] for i in range(len(groups))],
    )


@dataclass(frozen=True, slots=True)
class LampRow:
    bucket_start: datetime
    group: str | None
    lamps: int
    on_s: float
    day_on_s: float
    night_off_s: float
    night_known_s: float
    unknown_s: float
    cabinet_energy_kwh: float | None


def lamp_series(
    conn: psycopg.Connection,
    *,
    resolution: str,
    group_by: str,
    start: datetime,
    end: datetime,
    site_code: str | None = None,
    device_id: str | None = None,
    limit: int,
    scope: Scope | None,
) -> list[LampRow]:
    """Lamp burning, day burning and night outage per bucket and group, with the energy metered by the group's
    streetlight cabinets in the same buckets (none when grouping by lamp)."""
    if resolution not in ROLLUP_RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}")
    query = sql.SQL(
        """
        WITH {dev},
        l AS (SELECT {bucket} AS bucket_start, {group} AS grp, count(DISTINCT b.device_id)::int AS lamps,
                     sum(b.on_s) AS on_s, sum(b.day_on_s) AS day_on_s, sum(b.night_off_s) AS night_off_s,
                     sum(b.night_known_s) AS night_known_s, sum(b.unknown_s) AS unknown_s
              FROM lamp_buckets b JOIN dev ON dev.id = b.device_id
              WHERE b.resolution = {resolution} AND b.bucket_start >= %(start)s AND b.bucket_start < %(end)s
              GROUP BY 1, 2),
        e AS (SELECT {bucket} AS bucket_start, {group} AS grp, sum(b.amount) AS kwh
              FROM energy_buckets b JOIN dev ON dev.id = b.device_id
              WHERE dev.kind = 'streetlight_cabinet' AND b.metric_id = 1 AND b.resolution = {resolution}
                AND b.bucket_start >= %(start)s AND b.bucket_start < %(end)s
              GROUP BY 1, 2)
        SELECT l.bucket_start, l.grp AS "group", l.lamps, l.on_s, l.day_on_s, l.night_off_s, l.night_known_s,
               l.unknown_s, e.kwh AS cabinet_energy_kwh
        FROM l LEFT JOIN e ON e.bucket_start = l.bucket_start AND e.grp IS NOT DISTINCT FROM l.grp
        ORDER BY l.bucket_start, l.grp NULLS LAST LIMIT %(limit)s
        """
    ).format(
        dev=_dev(scope), bucket=_bucket(resolution), group=sql.SQL(GROUPS[group_by]), resolution=_stored(resolution)
    )
    params = _params(resolution, start, end, site_code=site_code, device_id=device_id) | {"limit": limit}
    return conn.cursor(row_factory=class_row(LampRow)).execute(query, params).fetchall()


@dataclass(frozen=True, slots=True)
class LateSpan:
    id: int
    device_id: str
    metric: str
    lo: datetime
    hi: datetime
    readings: int
    received_at: datetime
    resolved_at: datetime | None


def late_spans(conn: psycopg.Connection, *, include_resolved: bool, limit: int, scope: Scope | None) -> list[LateSpan]:
    query = sql.SQL(
        "SELECT l.id, d.device_id, m.name AS metric, l.lo, l.hi, l.readings, l.received_at, l.resolved_at"
        " FROM late_spans l JOIN devices d ON d.id = l.device_id JOIN metrics m ON m.id = l.metric_id"
        " WHERE (%s OR l.resolved_at IS NULL){scope} ORDER BY l.received_at DESC, l.id DESC LIMIT %s"
    ).format(scope=scope_and(scope, "d.site_id"))
    return conn.cursor(row_factory=class_row(LateSpan)).execute(query, (include_resolved, limit)).fetchall()
