"""The reads of the live feed (api/live.py) and of the city overview (api/web/pages.py).

The feed's: every site's live power, alert changes and AQI hours written since a point, each row with the
organisation and site it belongs to, so the feed can route it to the callers whose scope holds it. These read the
whole deployment (no scope): the feed's one poller serves every organisation and filters per subscriber. A site of
no organisation (``site_organisations`` has none for it) is in nobody's scope and left out. The overview's
(:func:`sites_live`) reads the caller's scope only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from lccm.store.queries import BEHIND_METER_KINDS, REGISTER_METRICS, LiveDevice
from lccm.store.scope import Scope, scope_where


@dataclass(frozen=True, slots=True)
class SitePower:
    organisation_id: int
    site_id: int
    site_code: str
    power_w: float | None  # sum of the fresh devices' latest power; None when no device's power is fresh
    power_devices: int  # devices counted (fresh)


# As store/queries.py _LIVE (the answer of GET /sites/{code}/live), for every site at once: each device's latest
# power reading by one backwards probe of the primary key, fresh when newer than stale_cadences x its cadence.
_POWER = (
    "SELECT so.organisation_id, s.id AS site_id, s.site_code,"
    " sum(p.value) FILTER (WHERE p.ts > %(as_of)s - %(stale)s * d.cadence_s * interval '1 second') AS power_w,"
    " count(p.ts) FILTER (WHERE p.ts > %(as_of)s - %(stale)s * d.cadence_s * interval '1 second')::int"
    " AS power_devices"
    " FROM sites s JOIN site_organisations so ON so.site_id = s.id JOIN devices d ON d.site_id = s.id"
    " LEFT JOIN LATERAL (SELECT r.ts, r.value FROM readings r"
    "     WHERE r.device_id = d.id AND r.metric_id = (SELECT id FROM metrics WHERE name = 'power')"
    "     AND d.kind <> ALL(%(behind)s)"  # queries.BEHIND_METER_KINDS: their power is their cabinet's too
    "     ORDER BY r.ts DESC LIMIT 1) p ON true"
    " WHERE so.organisation_id IS NOT NULL"
    " GROUP BY so.organisation_id, s.id, s.site_code ORDER BY s.site_code"
)


def sites_power(conn: psycopg.Connection, *, as_of: datetime, stale_cadences: int) -> list[SitePower]:
    """Live power of every site that has devices, judged at ``as_of``."""
    cur = conn.cursor(row_factory=class_row(SitePower))
    return cur.execute(_POWER, {"as_of": as_of, "stale": stale_cadences, "behind": list(BEHIND_METER_KINDS)}).fetchall()


@dataclass(frozen=True, slots=True)
class AlertChange:
    event_id: int
    organisation_id: int
    site_id: int
    site_code: str
    alert_id: int
    kind: str  # raised | reopened | acknowledged | cleared | closed | revised
    at: datetime
    rule_key: str
    device_id: str | None
    signal: str
    severity: str
    state: str  # the alert's state now
    value: float | None
    actor: str | None


# Duplicates (a raise while one is active) change nothing a reader sees: they stay out of the feed.
_ALERTS = (
    "SELECT e.id AS event_id, so.organisation_id, s.id AS site_id, s.site_code, a.id AS alert_id, e.kind, e.at,"
    " a.rule_key, d.device_id, a.signal, a.severity, a.state,"
    " CASE WHEN e.value = 'NaN'::float8 THEN NULL ELSE e.value END AS value, e.actor"
    " FROM alert_events e JOIN alerts a ON a.id = e.alert_id JOIN sites s ON s.id = a.site_id"
    " JOIN site_organisations so ON so.site_id = s.id LEFT JOIN devices d ON d.id = a.device_id"
    " WHERE e.id > %(after)s AND e.kind <> 'duplicate' AND so.organisation_id IS NOT NULL"
    " ORDER BY e.id LIMIT %(limit)s"
)


def alert_changes(conn: psycopg.Connection, *, after_id: int, limit: int) -> list[AlertChange]:
    """Alert events with an id above ``after_id``, oldest first."""
    cur = conn.cursor(row_factory=class_row(AlertChange))
    return cur.execute(_ALERTS, {"after": after_id, "limit": limit}).fetchall()


def last_alert_event_id(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM alert_events").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class AqiHour:
    organisation_id: int
    site_id: int
    site_code: str
    station: str  # the station's device id
    index_key: str
    hour_start: datetime
    aqi: float | None  # None: withheld (too little data for the index)
    category: int | None
    responsible: str | None
    status: str  # complete | incomplete | withheld (migration 010)
    computed_at: datetime


_AQI = (
    "SELECT so.organisation_id, s.id AS site_id, s.site_code, d.device_id AS station, a.index_key, a.hour_start,"
    " a.aqi, a.category, a.responsible, a.status, a.computed_at"
    " FROM aqi_hourly a JOIN devices d ON d.id = a.device_id JOIN sites s ON s.id = d.site_id"
    " JOIN site_organisations so ON so.site_id = s.id"
    " WHERE a.computed_at > %(since)s AND so.organisation_id IS NOT NULL"
    " ORDER BY a.computed_at, d.device_id, a.index_key, a.hour_start LIMIT %(limit)s"
)


def aqi_hours_since(conn: psycopg.Connection, *, since: datetime, limit: int) -> list[AqiHour]:
    """AQI hours (every index) computed after ``since``, oldest computation first."""
    cur = conn.cursor(row_factory=class_row(AqiHour))
    return cur.execute(_AQI, {"since": since, "limit": limit}).fetchall()


def latest_aqi_computation(conn: psycopg.Connection) -> datetime | None:
    row = conn.execute("SELECT max(computed_at) FROM aqi_hourly").fetchone()
    return row[0] if row else None


@dataclass(frozen=True, slots=True)
class SiteLiveDevice(LiveDevice):
    """A device of any site in scope (store/queries.py ``LiveDevice``, the rows of GET /sites/{code}/live) with the
    same weekday last week up to the same clock time."""

    site_code: str
    energy_week_kwh: float  # energy of the 15-minute buckets started in [week_start, week_cut)
    kgco2e_week: float


# store/queries.py _LIVE for every site of the scope at once (the same per-device figures), plus the buckets of the
# same weekday last week started before the same clock time: one query for the overview. The day's and the week-ago
# buckets are read by time and grouped by device, not probed per device as _LIVE does for one site: most of a city's
# devices (lamps) have no register buckets, and 2 x 2 index probes for each of them were most of this query's time.
# The sums run in _LIVE's order (metric, then bucket start), so the floating-point totals are the same to the bit.
_SITES_LIVE = sql.SQL(
    "WITH reg AS (SELECT id, name FROM metrics WHERE name = ANY(%(metrics)s)),"
    " e AS (SELECT b.device_id, sum(b.amount ORDER BY b.bucket_start) FILTER (WHERE reg.name = 'energy') AS energy_kwh,"
    "     sum(b.amount ORDER BY b.bucket_start) FILTER (WHERE reg.name = 'fuel') AS fuel_l,"
    "     sum(b.kgco2e ORDER BY b.metric_id, b.bucket_start) AS kgco2e, max(b.quality) AS quality"
    "     FROM energy_buckets b JOIN reg ON reg.id = b.metric_id WHERE b.resolution = '15min'"
    "     AND b.bucket_start >= %(day_start)s AND b.bucket_start < %(day_end)s GROUP BY b.device_id),"
    " w AS (SELECT b.device_id, sum(b.amount ORDER BY b.bucket_start) FILTER (WHERE reg.name = 'energy') AS energy_kwh,"
    "     sum(b.kgco2e ORDER BY b.metric_id, b.bucket_start) AS kgco2e"
    "     FROM energy_buckets b JOIN reg ON reg.id = b.metric_id WHERE b.resolution = '15min'"
    "     AND b.bucket_start >= %(week_start)s AND b.bucket_start < %(week_cut)s GROUP BY b.device_id)"
    " SELECT d.device_id, d.kind, d.cadence_s, p.value AS power_w, p.ts AS power_ts,"
    " CASE WHEN p.ts IS NOT NULL"
    "   THEN p.ts > %(as_of)s - %(stale_cadences)s * d.cadence_s * interval '1 second' END AS power_fresh,"
    " coalesce(e.energy_kwh, 0) AS energy_kwh, coalesce(e.fuel_l, 0) AS fuel_l, coalesce(e.kgco2e, 0) AS kgco2e,"
    " e.quality, s.site_code, coalesce(w.energy_kwh, 0) AS energy_week_kwh, coalesce(w.kgco2e, 0) AS kgco2e_week"
    " FROM devices d JOIN sites s ON s.id = d.site_id"
    " LEFT JOIN LATERAL (SELECT r.ts, r.value FROM readings r"
    "     WHERE r.device_id = d.id AND r.metric_id = (SELECT id FROM metrics WHERE name = 'power')"
    "     AND d.kind <> ALL(%(behind)s)"  # not read: a lamp's power is its cabinet's too (one probe fewer per lamp)
    "     ORDER BY r.ts DESC LIMIT 1) p ON true"
    " LEFT JOIN e ON e.device_id = d.id LEFT JOIN w ON w.device_id = d.id"
    "{scope} ORDER BY s.site_code, d.device_id"
)


def sites_live(
    conn: psycopg.Connection,
    *,
    as_of: datetime,
    day_start: datetime,
    day_end: datetime,
    week_start: datetime,
    week_cut: datetime,
    stale_cadences: int,
    scope: Scope | None,
) -> list[SiteLiveDevice]:
    """Every device of every site in scope, as :func:`lccm.store.queries.site_live` gives one site's, with last
    week's figures; sites without devices are absent. The power of devices behind another's meter (lamps) is not
    read: it is no part of a site's power."""
    params = {
        "as_of": as_of, "stale_cadences": stale_cadences, "metrics": list(REGISTER_METRICS), "day_start": day_start,
        "day_end": day_end, "week_start": week_start, "week_cut": week_cut, "behind": list(BEHIND_METER_KINDS),
    }  # fmt: skip
    query = _SITES_LIVE.format(scope=scope_where(scope, "s.id"))
    return conn.cursor(row_factory=class_row(SiteLiveDevice)).execute(query, params).fetchall()
