"""Storage side of the air-quality indices: the station-hour queue, hourly means, and the aqi_hourly table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import set_json_loads

from lccm.store import leases
from lccm.store.energy import _EPOCH, _US, Spans, _us
from lccm.store.leases import Held
from lccm.store.scope import Scope, scope_and
from lccm.store.writer import us_to_datetime

# Catalogue ids of the pollutants (001_core.sql) by the engine's pollutant keys.
POLLUTANT_METRICS: dict[str, int] = {"pm25": 9, "pm10": 10, "so2": 11, "no2": 12, "o3": 13, "co": 14}
INDEX_KEYS = ("thai_pcd_2023", "us_epa_2024", "us_epa_2024_nowcast")


def enqueue_station_hours(conn: psycopg.Connection, spans: Spans) -> None:
    """Queue the station hours whose pollutant means changed (spans of any metrics; non-pollutants are skipped)."""
    pick = np.isin(spans.metric_id, list(POLLUTANT_METRICS.values()))
    if not pick.any():
        return
    conn.execute(
        f"INSERT INTO aqi_queue (device_id, lo, hi) SELECT d, {_EPOCH} + lo * {_US}, {_EPOCH} + hi * {_US}"
        " FROM unnest(%s::int[], %s::bigint[], %s::bigint[]) AS t(d, lo, hi)",
        (spans.device_id[pick].tolist(), spans.lo_us[pick].tolist(), spans.hi_us[pick].tolist()),
    )


@dataclass(frozen=True, slots=True)
class StationSpan:
    device_id: int
    lo_us: int
    hi_us: int
    last_hour_us: int | None  # the station's latest hour with any pollutant mean


# The claimed rows merged per station, with the station's latest hour of any pollutant mean (placeholder: the
# pollutants' metric ids).
_MERGED_STATION_HOURS = sql.SQL(
    f"SELECT t.device_id, {_us('min(t.lo)')}, {_us('max(t.hi)')},"
    f"  (SELECT {_us('max(b.bucket_start)')} FROM sample_buckets b WHERE b.resolution = '1h'"
    "    AND b.device_id = t.device_id AND b.metric_id = ANY(%s))"
    " FROM taken t GROUP BY t.device_id ORDER BY t.device_id"
)


def claim_station_hours(conn: psycopg.Connection, limit: int = 5_000, held: Held | None = None) -> list[StationSpan]:
    """Take queued station hours (in the caller's transaction, so a failure puts them back), merged per station;
    with ``held``, only those of stations in the held partitions."""
    rows = leases.claim(
        conn, "aqi_queue", ("device_id", "lo", "hi"), _MERGED_STATION_HOURS, limit=limit, held=held,
        params=(list(POLLUTANT_METRICS.values()),),
    )  # fmt: skip
    return [StationSpan(*r) for r in rows]


def hourly_pollutant_means(
    conn: psycopg.Connection, device_ids: Sequence[int], lo_us: int, hi_us: int
) -> list[tuple[int, int, int, float]]:
    """(device, metric, hour start us, mean) of the stored hourly means in [lo, hi]."""
    return conn.execute(
        f"SELECT device_id, metric_id, {_us('bucket_start')}, sum / n FROM sample_buckets"
        " WHERE resolution = '1h' AND device_id = ANY(%s) AND metric_id = ANY(%s)"
        f" AND bucket_start BETWEEN {_EPOCH} + %s * {_US} AND {_EPOCH} + %s * {_US}",
        (list(device_ids), list(POLLUTANT_METRICS.values()), lo_us, hi_us),
    ).fetchall()


def pollutant_last_hours(conn: psycopg.Connection, device_id: int, since_us: int, before_us: int) -> dict[int, int]:
    """metric id -> start (us) of the station's latest hourly mean in [since, before), per pollutant that has one:
    what tells the AQI engine a pollutant is still measured although its window before ``before`` is empty."""
    rows = conn.execute(
        f"SELECT metric_id, {_us('max(bucket_start)')} FROM sample_buckets WHERE resolution = '1h'"
        " AND device_id = %s AND metric_id = ANY(%s)"
        f" AND bucket_start >= {_EPOCH} + %s * {_US} AND bucket_start < {_EPOCH} + %s * {_US} GROUP BY metric_id",
        (device_id, list(POLLUTANT_METRICS.values()), since_us, before_us),
    ).fetchall()
    return {int(m): int(t) for m, t in rows}


@dataclass(frozen=True, slots=True)
class AqiRow:
    """One index at one station hour (migration 006 and 010). ``aqi``, ``responsible`` and ``category`` are None
    where the status is withheld; ``reason`` is None where it is complete."""

    index_key: str
    device_id: int
    hour_start_us: int
    aqi: float | None
    responsible: str | None
    category: int | None
    sub_index: dict[str, float]
    average: dict[str, float]
    status: str
    reason: str | None
    missing: tuple[str, ...]
    coverage: dict[str, dict[str, int | str]]


def replace_aqi(conn: psycopg.Connection, spans: Sequence[tuple[int, int, int]], rows: Sequence[AqiRow]) -> None:
    """Replace every index's rows of each (station, first hour, last hour) with ``rows``."""
    conn.execute(
        f"DELETE FROM aqi_hourly a USING unnest(%s::int[], %s::bigint[], %s::bigint[]) AS t(d, lo, hi)"
        f" WHERE a.device_id = t.d AND a.hour_start BETWEEN {_EPOCH} + t.lo * {_US} AND {_EPOCH} + t.hi * {_US}",
        ([s[0] for s in spans], [s[1] for s in spans], [s[2] for s in spans]),
    )
    with conn.cursor().copy(
        "COPY aqi_hourly (index_key, device_id, hour_start, aqi, responsible, category, sub_index, average,"
        " status, reason, missing, coverage) FROM STDIN"
    ) as cp:
        for r in rows:
            cp.write_row(
                (
                    r.index_key, r.device_id, us_to_datetime(r.hour_start_us), r.aqi, r.responsible, r.category,
                    orjson.dumps(r.sub_index).decode(), orjson.dumps(r.average).decode(), r.status, r.reason,
                    list(r.missing), orjson.dumps(r.coverage).decode(),
                )
            )  # fmt: skip


@dataclass(frozen=True, slots=True)
class StationAqi:
    device_id: str
    name: str
    site_code: str
    site_name: str
    lat: float | None
    lon: float | None
    hour_start: datetime
    aqi: float | None
    responsible: str | None
    category: int | None
    sub_index: dict[str, float]
    average: dict[str, float]
    status: str
    reason: str | None
    missing: list[str]
    coverage: dict[str, dict[str, Any]]


_COLUMNS = (
    "d.device_id, d.name, s.site_code, s.name AS site_name, s.lat, s.lon, a.hour_start, a.aqi, a.responsible,"
    " a.category, a.sub_index, a.average, a.status, a.reason, a.missing, a.coverage"
)
_FROM = " FROM aqi_hourly a JOIN devices d ON d.id = a.device_id JOIN sites s ON s.id = d.site_id"


def _station_cursor(conn: psycopg.Connection) -> psycopg.Cursor[StationAqi]:
    """A cursor reading StationAqi rows in binary, whose jsonb columns orjson parses: a fiscal year of one station's
    hours is 26,280 small documents, and the standard library's parser took about half of the call
    (benchmarks/city_year.py)."""
    cur = conn.cursor(row_factory=class_row(StationAqi), binary=True)
    set_json_loads(orjson.loads, cur)
    return cur


def current_aqi(
    conn: psycopg.Connection, index_key: str, site_code: str | None = None, *, scope: Scope | None
) -> list[StationAqi]:
    """Each station's latest hour of the index (the running hour while readings come in)."""
    # One backwards probe of the primary key per station (as store.queries' latest values): DISTINCT ON over the
    # join read and sorted every hour of every station, ~0.3 s at a city-year.
    query = sql.SQL(
        f"SELECT {_COLUMNS} FROM devices d JOIN sites s ON s.id = d.site_id"
        " CROSS JOIN LATERAL (SELECT * FROM aqi_hourly x WHERE x.index_key = %s AND x.device_id = d.id"
        "     ORDER BY x.hour_start DESC LIMIT 1) a"
        " WHERE (%s::text IS NULL OR s.site_code = %s){scope} ORDER BY d.device_id"
    ).format(scope=scope_and(scope, "s.id"))
    return _station_cursor(conn).execute(query, (index_key, site_code, site_code)).fetchall()


def aqi_history(
    conn: psycopg.Connection,
    index_key: str,
    start: datetime,
    end: datetime,
    *,
    device_id: str | None = None,
    site_code: str | None = None,
    limit: int,
    scope: Scope | None,
) -> list[StationAqi]:
    query = sql.SQL(
        f"SELECT {_COLUMNS}{_FROM} WHERE a.index_key = %s AND a.hour_start >= %s AND a.hour_start < %s"
        " AND (%s::text IS NULL OR d.device_id = %s) AND (%s::text IS NULL OR s.site_code = %s){scope}"
        " ORDER BY d.device_id, a.hour_start LIMIT %s"
    ).format(scope=scope_and(scope, "s.id"))
    params = (index_key, start, end, device_id, device_id, site_code, site_code, limit)
    return _station_cursor(conn).execute(query, params).fetchall()


def aq_stations(
    conn: psycopg.Connection, *, scope: Scope | None
) -> list[tuple[str, str, str, float | None, float | None]]:
    """Every air-quality station (in scope): (device_id, name, site_code, lat, lon)."""
    query = sql.SQL(
        "SELECT d.device_id, d.name, s.site_code, s.lat, s.lon FROM devices d JOIN sites s ON s.id = d.site_id"
        " WHERE d.kind = 'aq_station'{scope} ORDER BY d.device_id"
    ).format(scope=scope_and(scope, "s.id"))
    return conn.execute(query).fetchall()
