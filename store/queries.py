"""Read queries for the API and the CLI. Every query is parameterised; optional filters are composed from fixed
``psycopg.sql`` fragments (never from user text), so each combination gets its own plan instead of one generic plan
full of ``(%s IS NULL OR col = %s)`` that cannot use an index.

Functions return frozen dataclasses (or ``None`` for "no such row"); they never raise HTTP errors: deciding that a
missing device is a 404 belongs to the API edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import args_row, class_row

from lccm.engine.timebase import BANGKOK, CITY_TZ_NAME, FISCAL_YEAR_FIRST_MONTH
from lccm.store.migrate import current_layout
from lccm.store.scope import Scope, scope_and, scope_clauses, scope_where, site_in_scope


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


def _filters(*conditions: tuple[LiteralString, object]) -> tuple[list[sql.Composable], list[object]]:
    """The conditions whose value is set (not None), as clauses (constant SQL text, one %s each) and parameters."""
    given = [(text, value) for text, value in conditions if value is not None]
    return [sql.SQL(text) for text, _ in given], [value for _, value in given]


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


def list_sites(conn: psycopg.Connection, *, scope: Scope | None) -> list[Site]:
    cur = conn.cursor(row_factory=class_row(Site))
    return cur.execute(_SITE_SELECT + scope_where(scope, "s.id") + sql.SQL(" ORDER BY s.site_code")).fetchall()


def get_site(conn: psycopg.Connection, site_code: str, *, scope: Scope | None) -> Site | None:
    """The site, or None when there is none of that code in ``scope`` (a site outside it looks unknown)."""
    cur = conn.cursor(row_factory=class_row(Site))
    query = _SITE_SELECT + sql.SQL(" WHERE s.site_code = %s") + scope_and(scope, "s.id")
    return cur.execute(query, (site_code,)).fetchone()


_DEVICE_SELECT = sql.SQL(
    "SELECT d.id, d.device_id, s.site_code, d.kind, d.name, d.cadence_s, d.rated_kw,"
    " st.status, st.changed_at AS status_changed_at, d.updated_at"
    " FROM devices d JOIN sites s ON s.id = d.site_id LEFT JOIN device_status st ON st.device_id = d.id"
)


def list_devices(
    conn: psycopg.Connection,
    *,
    scope: Scope | None,
    site_code: str | None = None,
    kind: str | None = None,
    after_device_id: str | None = None,
    limit: int | None = None,
) -> list[Device]:
    """Devices ordered by device_id; ``after_device_id`` is the keyset cursor (the last id of the previous page)."""
    clauses, params = _filters(
        ("s.site_code = %s", site_code), ("d.kind = %s", kind), ("d.device_id > %s", after_device_id)
    )
    clauses += scope_clauses(scope, "s.id")
    query = _DEVICE_SELECT + sql.SQL(" ") + _where(clauses) + sql.SQL(" ORDER BY d.device_id")
    if limit is not None:
        query += sql.SQL(" LIMIT %s")
        params.append(limit)
    return conn.cursor(row_factory=class_row(Device)).execute(query, params).fetchall()


def get_device(conn: psycopg.Connection, device_id: str, *, scope: Scope | None) -> Device | None:
    """The device, or None when there is none of that id in ``scope`` (a device outside it looks unknown)."""
    cur = conn.cursor(row_factory=class_row(Device))
    query = _DEVICE_SELECT + sql.SQL(" WHERE d.device_id = %s") + scope_and(scope, "s.id")
    return cur.execute(query, (device_id,)).fetchone()


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


def latest_for_device(conn: psycopg.Connection, device_pk: int, *, scope: Scope | None) -> list[LatestValue]:
    cur = conn.cursor(row_factory=class_row(LatestValue))
    query = _LATEST.format(filter=sql.SQL("d.id = %s") + scope_and(scope, "d.site_id"))
    return cur.execute(query, (device_pk,)).fetchall()


def latest_for_site(conn: psycopg.Connection, site_id: int, *, scope: Scope | None) -> list[LatestValue]:
    cur = conn.cursor(row_factory=class_row(LatestValue))
    query = _LATEST.format(filter=sql.SQL("d.site_id = %s") + scope_and(scope, "d.site_id"))
    return cur.execute(query, (site_id,)).fetchall()


def readings_page(
    conn: psycopg.Connection,
    *,
    device_pk: int,
    metric_id: int | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[int, datetime] | None,
    limit: int,
    scope: Scope | None,
) -> list[Reading]:
    """Readings of one device in [start, end), ordered by (metric_id, ts): the primary key's order, so the keyset
    condition ``(metric_id, ts) > after`` and the LIMIT are served by an index range scan, with no sort."""
    clauses, params = _filters(
        ("device_id = %s", device_pk), ("metric_id = %s", metric_id), ("ts >= %s", start), ("ts < %s", end)
    )
    if scope is not None:  # the device is in scope, checked once (not per reading)
        clauses.append(
            sql.SQL(
                "(SELECT d.site_id FROM devices d WHERE d.id = %s) IN (SELECT s.id FROM sites s WHERE {cond})"
            ).format(cond=site_in_scope(scope, "s.id"))
        )
        params.append(device_pk)
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


def _dead_letter_scope(scope: Scope, topic_root: str) -> tuple[sql.Composable, list[object]]:
    """A dead letter belongs to the organisation of the device its topic names, if that device is registered, else to
    the organisation whose city slug (``lccm_city_slug(city_key)``, migration 015) is its topic's <city> level; with
    neither it belongs to nobody, and no caller sees it. A scope limited to sites sees only its sites' devices'."""
    device_site = sql.SQL("SELECT d.site_id FROM devices d WHERE d.device_id = dl.device_ref")
    if scope.site_ids is not None:
        cond = sql.SQL("({site_id}) IN ({scoped})").format(
            site_id=device_site,
            scoped=sql.SQL("SELECT s.id FROM sites s WHERE ") + site_in_scope(scope, "s.id"),
        )
        return cond, []
    # The <city> level follows the topic root (a setting: ``lccm/v1`` by default).
    city = sql.SQL(
        "CASE WHEN starts_with(dl.topic, %s || '/') THEN split_part(substr(dl.topic, length(%s) + 2), '/', 1) END"
    )
    owner = sql.SQL(
        "coalesce((SELECT so.organisation_id FROM site_organisations so WHERE so.site_id = ({device_site})),"
        " (SELECT o.id FROM organisations o WHERE lccm_city_slug(o.city_key) = {city}))"
    ).format(device_site=device_site, city=city)
    return sql.SQL("{owner} = %s").format(owner=owner), [topic_root, topic_root, scope.organisation_id]


def _dead_letter_filters(
    scope: Scope, topic_root: str, reason: str | None, start: datetime | None, end: datetime | None
) -> tuple[list[sql.Composable], list[object]]:
    clauses, params = _filters(("reason = %s", reason), ("received_at >= %s", start), ("received_at < %s", end))
    cond, scope_params = _dead_letter_scope(scope, topic_root)
    return [*clauses, cond], [*params, *scope_params]


def dead_letters_page(
    conn: psycopg.Connection,
    *,
    scope: Scope,
    topic_root: str,
    reason: str | None,
    start: datetime | None,
    end: datetime | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[DeadLetter]:
    """Newest first (a person looks at what just went wrong); ``before`` is the keyset cursor (received_at, id)."""
    clauses, params = _dead_letter_filters(scope, topic_root, reason, start, end)
    if before is not None:
        clauses.append(sql.SQL("(received_at, id) < (%s::timestamptz, %s::bigint)"))
        params.extend(before)
    params.append(limit)
    query = sql.SQL(
        "SELECT id, received_at, topic, reason, detail, device_ref, payload FROM dead_letters dl {where}"
        " ORDER BY received_at DESC, id DESC LIMIT %s"
    ).format(where=_where(clauses))
    return conn.cursor(row_factory=class_row(DeadLetter)).execute(query, params).fetchall()


def dead_letter_summary(
    conn: psycopg.Connection,
    *,
    scope: Scope,
    topic_root: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[ReasonCount]:
    clauses, params = _dead_letter_filters(scope, topic_root, None, start, end)
    query = sql.SQL(
        "SELECT reason, count(*) AS count, min(received_at) AS first_received_at,"
        " max(received_at) AS last_received_at FROM dead_letters dl {where}"
        " GROUP BY reason ORDER BY count(*) DESC, reason"
    ).format(where=_where(clauses))
    return conn.cursor(row_factory=class_row(ReasonCount)).execute(query, params).fetchall()


# ---------------------------------------------------------------------------------------------------------------
# Energy and emissions (energy_buckets, emission_factors, source_classes; migration 003)

# The register metrics the energy engine turns into buckets, by catalogue name: energy (kWh) and fuel (l).
REGISTER_METRICS = ("energy", "fuel")


@dataclass(frozen=True, slots=True)
class LiveDevice:
    device_id: str
    kind: str
    cadence_s: int
    power_w: float | None  # latest power reading by event time, fresh or not; None = the device never sent one
    power_ts: datetime | None
    power_fresh: bool | None  # power_ts newer than stale_cadences x cadence before as_of; None without one
    energy_kwh: float  # today's 15-minute buckets (Bangkok day)
    fuel_l: float
    kgco2e: float
    quality: int | None  # worst quality of today's buckets; None = no bucket today


# Devices whose power is already measured by another device of the same site: an LED lamp reports its own power, but
# its cabinet's meter feeds it and measures it too. A site's live power sums the other devices only (lamps stay in
# the per-device list with their own power), as its energy sums the meters' registers only.
BEHIND_METER_KINDS: tuple[str, ...] = ("lamp",)


# Per device of one site: the latest power reading (one backwards probe of the primary key, as in _LATEST: the
# metric id is a scalar subquery, not a join, so the planner can walk (device_id, metric_id, ts) backwards and stop
# at the first row instead of sorting every power reading) and the sum of today's 15-minute buckets (a range of the
# energy_buckets primary key).
_LIVE = sql.SQL(
    "SELECT d.device_id, d.kind, d.cadence_s, p.value AS power_w, p.ts AS power_ts,"
    " CASE WHEN p.ts IS NOT NULL"
    "   THEN p.ts > %(as_of)s - %(stale_cadences)s * d.cadence_s * interval '1 second' END AS power_fresh,"
    " coalesce(e.energy_kwh, 0) AS energy_kwh, coalesce(e.fuel_l, 0) AS fuel_l, coalesce(e.kgco2e, 0) AS kgco2e,"
    " e.quality"
    " FROM devices d JOIN sites s ON s.id = d.site_id"
    " LEFT JOIN LATERAL (SELECT r.ts, r.value FROM readings r"
    "     WHERE r.device_id = d.id AND r.metric_id = (SELECT id FROM metrics WHERE name = 'power')"
    "     ORDER BY r.ts DESC LIMIT 1) p ON true"
    # the sums in a stated order, the one store/live.py's overview query uses: the same totals to the bit
    " LEFT JOIN LATERAL (SELECT sum(b.amount ORDER BY b.bucket_start) FILTER (WHERE m.name = 'energy') AS energy_kwh,"
    "     sum(b.amount ORDER BY b.bucket_start) FILTER (WHERE m.name = 'fuel') AS fuel_l,"
    "     sum(b.kgco2e ORDER BY b.metric_id, b.bucket_start) AS kgco2e, max(b.quality) AS quality"
    "     FROM energy_buckets b JOIN metrics m ON m.id = b.metric_id"
    "     WHERE b.resolution = '15min' AND b.device_id = d.id AND m.name = ANY(%(metrics)s)"
    "     AND b.bucket_start >= %(day_start)s AND b.bucket_start < %(day_end)s) e ON true"
    " WHERE s.site_code = %(site_code)s{scope} ORDER BY d.device_id"
)


def site_live(
    conn: psycopg.Connection,
    site_code: str,
    *,
    as_of: datetime,
    day_start: datetime,
    day_end: datetime,
    stale_cadences: int = 3,
    scope: Scope | None,
) -> list[LiveDevice]:
    """Every device of a site with its latest power reading and its energy, fuel and kgCO2e in [day_start, day_end).
    ``as_of`` is passed in (not the database's now()) so the caller reports the instant it judged freshness at."""
    params = {
        "as_of": as_of,
        "stale_cadences": stale_cadences,
        "metrics": list(REGISTER_METRICS),
        "day_start": day_start,
        "day_end": day_end,
        "site_code": site_code,
    }
    query = _LIVE.format(scope=scope_and(scope, "s.id"))
    return conn.cursor(row_factory=class_row(LiveDevice)).execute(query, params).fetchall()


@dataclass(frozen=True, slots=True)
class EnergyRow:
    bucket_start: datetime
    group: str | None  # None: the devices have no value for the grouping (no source class for this metric)
    metric: str
    unit: str
    amount: float
    kgco2e: float
    kgco2e_base: float
    quality: int
    covered_fraction: float | None  # None for a bucket that has not started by as_of
    devices: int  # devices counted in the coverage denominator (see energy_series)


# One grouping expression per group_by value, over the columns of the `x` rows below (fixed text, never user input).
# The inventory classifications (scope, TGO CFO category, GPC reference) apply only to the metric the device's
# source class is for: the engine gives a register of any other metric no emissions, so it gets no group either.
ENERGY_GROUPS: dict[str, sql.Composable] = {
    "site": sql.SQL("x.site_code"),
    "device": sql.SQL("x.device_code"),
    "kind": sql.SQL("x.kind"),
    "city": sql.SQL("x.city"),
    "scope": sql.SQL("CASE WHEN x.class_metric = x.metric_id THEN x.scope::text END"),
    "cfo_category": sql.SQL("CASE WHEN x.class_metric = x.metric_id THEN x.cfo_category END"),
    "gpc_ref": sql.SQL("CASE WHEN x.class_metric = x.metric_id THEN x.gpc_ref END"),
}
ENERGY_RESOLUTIONS: dict[str, str] = {
    "15min": "15 minutes", "1h": "1 hour", "1d": "1 day", "1mo": "1 month", "fy": "1 year",
}  # fmt: skip
# A Thai fiscal year (October to September, named by the year it ends in) is the sum of its Bangkok months.
_STORED_RESOLUTION = {"fy": "1mo"}
# Shifting a local month by 13 - first month lands every month of a fiscal year in the calendar year it is named by.
_FISCAL_YEAR_START = sql.SQL(
    "make_timestamptz(extract(year FROM (x.bucket_start AT TIME ZONE %(tz)s)"
    " + make_interval(months => 13 - %(fy_month)s::int))::int - 1, %(fy_month)s::int, 1, 0, 0, 0, %(tz)s)"
)

# dev: the devices in scope with every grouping attribute. b: the buckets in range, each with its device's group.
# members: per (group, metric), the devices expected to meter it - those whose source class is for the metric, plus
# any other device that has buckets of it in the range - the denominator of covered_fraction, so a meter that sent
# nothing lowers the coverage instead of vanishing from it. Bucket ends are computed in Bangkok time ('1 month'
# varies in length); a bucket still running at as_of is judged on its elapsed part. The group may be NULL.
# What both energy queries do once the CTEs b (the rows, grouped as asked), met and members are there: the sums
# per bucket, group and metric, and the covered fraction over the members. Each sum meets its group's member count
# in a window over both (a window partition puts NULL groups together), not in a join: the CTEs carry no
# statistics, the scope's filter makes the planner expect a couple of rows, and the join on the group was then a
# nested loop testing every bucket against every group (one site by device for 120 days at 1 day: 9,600 x 80
# tests, ~200 of its 250 ms).
_ENERGY_SUMS = """
    agg AS (
        SELECT bucket_start, grp, metric_id, sum(amount) AS amount, sum(kgco2e) AS kgco2e,
               sum(kgco2e_base) AS kgco2e_base, max(quality)::int AS quality, sum(covered_s) AS covered_s,
               extract(epoch FROM least(
                   ((bucket_start AT TIME ZONE %(tz)s) + %(width)s::interval) AT TIME ZONE %(tz)s, %(as_of)s
               ) - bucket_start) AS elapsed_s,
               NULL::int AS devices
        FROM b GROUP BY bucket_start, grp, metric_id
        UNION ALL
        SELECT NULL, grp, metric_id, NULL, NULL, NULL, NULL, NULL, NULL, devices FROM members),
    counted AS (
        SELECT agg.*, max(agg.devices) OVER (PARTITION BY agg.grp, agg.metric_id) AS group_devices
        FROM agg)
    -- EnergyRow's fields, in its order: energy_series builds the rows positionally
    SELECT c.bucket_start, c.grp AS "group", met.name AS metric, met.unit, c.amount, c.kgco2e,
           c.kgco2e_base, c.quality,
           CASE WHEN c.elapsed_s > 0
                THEN least(1.0, c.covered_s / (c.elapsed_s * c.group_devices))::float8 END AS covered_fraction,
           c.group_devices AS devices
    FROM counted c JOIN met ON met.id = c.metric_id
    WHERE c.bucket_start IS NOT NULL AND c.group_devices IS NOT NULL
    ORDER BY c.bucket_start, c.grp NULLS LAST, c.metric_id
    LIMIT %(limit)s
"""

_ENERGY = sql.SQL(
    """
    WITH dev AS (
        SELECT d.id, d.device_id AS device_code, d.kind, s.site_code, s.city,
               sc.metric_id AS class_metric, sc.scope, sc.cfo_category, sc.gpc_ref
        FROM devices d JOIN sites s ON s.id = d.site_id
        LEFT JOIN device_sources ds ON ds.device_id = d.id
        LEFT JOIN source_classes sc ON sc.key = ds.source_class
        {site_filter}),
    met AS (SELECT id, name, unit FROM metrics WHERE name = ANY(%(metrics)s)),
    b AS (
        SELECT {bucket} AS bucket_start, x.device_id, x.metric_id, x.amount, x.kgco2e, x.kgco2e_base, x.quality,
               x.covered_s, {group} AS grp
        FROM (SELECT dev.*, b.bucket_start, b.device_id, b.metric_id, b.amount, b.kgco2e, b.kgco2e_base, b.quality,
                     b.covered_s
              FROM energy_buckets b JOIN met ON met.id = b.metric_id JOIN dev ON dev.id = b.device_id
              WHERE b.resolution = {resolution} AND b.bucket_start >= %(start)s AND b.bucket_start < %(end)s) x),
    members AS (
        SELECT {group} AS grp, x.metric_id, count(*)::int AS devices FROM (
            SELECT dev.*, met.id AS metric_id FROM dev JOIN met ON met.id = dev.class_metric
            UNION
            SELECT dev.*, seen.metric_id FROM (SELECT DISTINCT device_id, metric_id FROM b) seen
            JOIN dev ON dev.id = seen.device_id) x
        GROUP BY 1, 2),
    """
    + _ENERGY_SUMS
)


# The same figures from the per-site rows (migration 021) when the grouping is a site attribute: one row per site and
# bucket instead of one per device. members counts the same devices: those whose source class is for the metric,
# and any other device of the sites in scope with a bucket of the metric in the range (one probe of the primary key
# each, at the stored resolution).
_ENERGY_BY_SITE = sql.SQL(
    """
    WITH dev AS (
        SELECT d.id, d.site_id, d.device_id AS device_code, d.kind, s.site_code, s.city,
               sc.metric_id AS class_metric, sc.scope, sc.cfo_category, sc.gpc_ref
        FROM devices d JOIN sites s ON s.id = d.site_id
        LEFT JOIN device_sources ds ON ds.device_id = d.id
        LEFT JOIN source_classes sc ON sc.key = ds.source_class
        {site_filter}),
    -- MATERIALIZED: the sites first, then each one's rows; flattened, the scope's semi-join was planned after a
    -- read of every site's buckets.
    st AS MATERIALIZED (SELECT s.id, s.site_code, s.city FROM sites s {site_filter}),
    met AS (SELECT id, name, unit FROM metrics WHERE name = ANY(%(metrics)s)),
    b AS (
        SELECT {bucket} AS bucket_start, x.metric_id, x.amount, x.kgco2e, x.kgco2e_base, x.quality, x.covered_s,
               {group} AS grp
        FROM (SELECT st.*, b.bucket_start, b.metric_id, b.amount, b.kgco2e, b.kgco2e_base, b.quality, b.covered_s
              FROM energy_site_buckets b JOIN met ON met.id = b.metric_id JOIN st ON st.id = b.site_id
              WHERE b.resolution = {resolution} AND b.bucket_start >= %(start)s AND b.bucket_start < %(end)s) x),
    members AS (
        SELECT {group} AS grp, x.metric_id, count(*)::int AS devices FROM (
            SELECT dev.*, met.id AS metric_id FROM dev JOIN met ON met.id = dev.class_metric
            UNION ALL
            SELECT dev.*, met.id FROM dev CROSS JOIN met
            CROSS JOIN LATERAL (
                SELECT 1 FROM energy_buckets e WHERE e.resolution = {resolution} AND e.device_id = dev.id
                AND e.metric_id = met.id AND e.bucket_start >= %(start)s AND e.bucket_start < %(end)s LIMIT 1) seen
            WHERE dev.class_metric IS DISTINCT FROM met.id) x
        GROUP BY 1, 2),
    """
    + _ENERGY_SUMS
)
# Groupings that are attributes of the site, so that the per-site rows (migration 021) add up to them.
SITE_GROUPS = ("site", "city")


def energy_series(
    conn: psycopg.Connection,
    *,
    resolution: str,
    group_by: str,
    start: datetime,
    end: datetime,
    as_of: datetime,
    metrics: Sequence[str] = REGISTER_METRICS,
    site_code: str | None = None,
    limit: int,
    scope: Scope | None,
) -> list[EnergyRow]:
    """Energy (kWh) or fuel (l) and kgCO2e per bucket of ``resolution`` starting in [start, end), per group and
    metric; ordered by bucket, group (None last), metric. Buckets without any row are absent.

    ``covered_fraction`` = the seconds covered by reading intervals / (the bucket's elapsed seconds x the group's
    metering devices); a device registered now counts over the whole range.
    """
    if resolution not in ENERGY_RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}")
    query = (_ENERGY_BY_SITE if group_by in SITE_GROUPS else _ENERGY).format(
        bucket=_FISCAL_YEAR_START if resolution == "fy" else sql.SQL("x.bucket_start"),
        group=ENERGY_GROUPS[group_by],
        site_filter=_site_filter(site_code, scope),
        # A literal (checked above), not a parameter: see store.rollup_queries._stored.
        resolution=sql.Literal(_STORED_RESOLUTION.get(resolution, resolution)),
    )
    params = {
        "metrics": list(metrics),
        "resolution": _STORED_RESOLUTION.get(resolution, resolution),
        "start": start,
        "end": end,
        "as_of": as_of,
        "tz": CITY_TZ_NAME,
        "fy_month": FISCAL_YEAR_FIRST_MONTH,
        "width": ENERGY_RESOLUTIONS[resolution],
        "site_code": site_code,
        "limit": limit,
    }
    # Binary results, rows built from positional arguments: one site's 80 meters by device over 120 days at 1 day
    # are 9,600 rows, and parsing their text, then a dict of keyword arguments per row, took longer than the query.
    return conn.cursor(row_factory=args_row(EnergyRow), binary=True).execute(query, params).fetchall()


def _site_filter(site_code: str | None, scope: Scope | None) -> sql.Composable:
    """`` WHERE`` the site code (if given) and the scope (``s`` = sites), or nothing."""
    clauses = [sql.SQL("s.site_code = %(site_code)s")] if site_code is not None else []
    return sql.SQL(" ") + _where([*clauses, *scope_clauses(scope, "s.id")])


@dataclass(frozen=True, slots=True)
class EmissionFactorRow:
    key: str
    kgco2e_per_unit: float
    unit: str
    source: str
    valid_from: datetime | None  # None = open (stored as -infinity)
    valid_to: datetime | None  # None = open (stored as infinity); exclusive
    description: str


# psycopg cannot represent +-infinity as a datetime: open ends become NULL here.
_FACTOR_SELECT = sql.SQL(
    "SELECT f.key, f.kgco2e_per_unit, f.unit, f.source,"
    " CASE WHEN isfinite(f.valid_from) THEN f.valid_from END AS valid_from,"
    " CASE WHEN isfinite(f.valid_to) THEN f.valid_to END AS valid_to, f.description"
    " FROM emission_factors f"
)


def emission_factors(conn: psycopg.Connection) -> list[EmissionFactorRow]:
    cur = conn.cursor(row_factory=class_row(EmissionFactorRow))
    return cur.execute(_FACTOR_SELECT + sql.SQL(" ORDER BY f.key, f.valid_from")).fetchall()


def factors_in_force(
    conn: psycopg.Connection,
    *,
    start: datetime,
    end: datetime,
    metrics: Sequence[str] = REGISTER_METRICS,
    site_code: str | None = None,
    scope: Scope | None,
) -> list[EmissionFactorRow]:
    """The factors valid at some instant of [start, end) whose key is the factor of a source class (for one of
    ``metrics``) assigned to a device in scope: the factors the figures over that range were computed with."""
    site_filter = sql.SQL(" AND s.site_code = %(site_code)s" if site_code is not None else "") + scope_and(
        scope, "s.id"
    )
    query = _FACTOR_SELECT + sql.SQL(
        " WHERE f.valid_from < %(end)s AND f.valid_to > %(start)s AND f.key IN ("
        "SELECT sc.factor_key FROM source_classes sc JOIN metrics m ON m.id = sc.metric_id"
        " JOIN device_sources ds ON ds.source_class = sc.key JOIN devices d ON d.id = ds.device_id"
        " JOIN sites s ON s.id = d.site_id WHERE m.name = ANY(%(metrics)s){site_filter})"
        " ORDER BY f.key, f.valid_from"
    ).format(site_filter=site_filter)
    params = {"start": start, "end": end, "metrics": list(metrics), "site_code": site_code}
    return conn.cursor(row_factory=class_row(EmissionFactorRow)).execute(query, params).fetchall()


@dataclass(frozen=True, slots=True)
class DeviceCompleteness:
    device_id: str
    site_code: str
    kind: str
    cadence_s: int
    expected: int
    received: int
    seq_first: int | None
    seq_last: int | None
    messages_received: int | None


# Per device: the day's row of ``reading_days`` (distinct event times over all metrics and the seq span, kept by the
# derived-data updaters from what the writer queued: store/reading_days.py; it lags by their queue). The expected
# count runs to the end of the day or to as_of, whichever is earlier, so today is judged on its elapsed part.
_COMPLETENESS = sql.SQL(
    "SELECT d.device_id, s.site_code, d.kind, d.cadence_s,"
    " floor(greatest(0, extract(epoch FROM least(%(day_end)s, %(as_of)s) - %(day_start)s)) / d.cadence_s)::int"
    " AS expected,"
    " coalesce(r.received, 0)::int AS received, r.seq_first, r.seq_last, r.messages_received"
    " FROM devices d JOIN sites s ON s.id = d.site_id"
    " LEFT JOIN reading_days r ON r.day = %(day)s AND r.device_id = d.id"
    " {site_filter} ORDER BY s.site_code, d.device_id"
)


def completeness(
    conn: psycopg.Connection,
    *,
    day: date,
    as_of: datetime,
    site_code: str | None = None,
    scope: Scope | None,
) -> list[DeviceCompleteness]:
    """Expected and received readings of every device (of one site) over the Asia/Bangkok ``day``, in one query."""
    day_start = datetime.combine(day, time(), tzinfo=BANGKOK)
    query = _COMPLETENESS.format(site_filter=_site_filter(site_code, scope))
    params = {"day": day, "day_start": day_start, "day_end": day_start + timedelta(days=1), "as_of": as_of,
              "site_code": site_code}  # fmt: skip
    return conn.cursor(row_factory=class_row(DeviceCompleteness)).execute(query, params).fetchall()
