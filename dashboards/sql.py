"""Every query the dashboards run, as Grafana PostgreSQL-datasource SQL.

Grafana expands the macros before PostgreSQL sees the text: ``$__timeFilter(col)`` becomes
``col BETWEEN '<from>' AND '<to>'`` (RFC 3339, UTC), ``$__timeFrom()`` / ``$__timeTo()`` the quoted range ends, and a
multi-value variable such as ``$site`` the quoted list ``'A','B'``. Quoted literals have no type of their own, so
they are cast (``::timestamptz``) wherever an operator needs one.

Time columns are the stored ``bucket_start`` / ``hour_start`` (timestamptz). Calendar buckets in the store are
already cut in Asia/Bangkok (``1d`` starts at Bangkok midnight, ``1mo`` on the Bangkok first of the month), so panels
filter and plot them as they are and never re-bucket in UTC. Time-series queries return ``time``, ``metric`` (the
series name) and one numeric value column, ordered by time: Grafana's long format.

Metric ids (store/migrations/001_core.sql): 1 energy (kWh), 2 power (W), 9 pm25 (ug/m3), 11 so2 (ppb).
"""

from __future__ import annotations

from lccm.engine.timebase import CITY_TZ_NAME

ENERGY, POWER, PM25, SO2 = 1, 2, 9, 11
# Grafana's SQL has no bound parameters: the zone is quoted from the one module constant, never from user input.
_TZ = f"'{CITY_TZ_NAME}'"

# The Bangkok day that contains the end of the dashboard's range ("today" when the range ends now).
_DAY_OF_RANGE_END = f"date_trunc('day', $__timeTo()::timestamptz AT TIME ZONE {_TZ}) AT TIME ZONE {_TZ}"

_DEVICE_SITE = "JOIN devices d ON d.id = {alias}.device_id JOIN sites s ON s.id = d.site_id"


def _sites_with(*device_kinds: str) -> str:
    kinds = ", ".join(f"'{k}'" for k in device_kinds)
    return f"""
SELECT DISTINCT s.site_code AS __value, s.name AS __text
FROM sites s JOIN devices d ON d.site_id = s.id
WHERE d.kind IN ({kinds})
ORDER BY 1"""


# --- Energy: facility manager ---------------------------------------------------------------------------------------
ENERGY_SITES = _sites_with("electricity_meter")

# Live power of a site = the sum over its meters of each meter's mean power in the 15-minute bucket, kept per site
# (sample_site_buckets.sum_of_device_means, migration 021).
LIVE_POWER = f"""
SELECT b.bucket_start AS time, s.site_code AS metric, b.sum_of_device_means AS power_w
FROM sample_site_buckets b JOIN sites s ON s.id = b.site_id
WHERE b.resolution = '15min' AND b.metric_id = {POWER} AND $__timeFilter(b.bucket_start) AND s.site_code IN ($site)
ORDER BY 1, 2"""

# A site's energy is kept per site as the sum of its devices' (energy_site_buckets, migration 021).
TODAY_ENERGY = f"""
SELECT s.site_code AS site, e.amount AS energy_kwh, e.kgco2e
FROM energy_site_buckets e JOIN sites s ON s.id = e.site_id
WHERE e.resolution = '1d' AND e.metric_id = {ENERGY} AND e.bucket_start = {_DAY_OF_RANGE_END}
  AND s.site_code IN ($site)
ORDER BY 1"""

DAILY_ENERGY = f"""
SELECT e.bucket_start AS time, s.site_code AS metric, e.amount AS energy_kwh
FROM energy_site_buckets e JOIN sites s ON s.id = e.site_id
WHERE e.resolution = '1d' AND e.metric_id = {ENERGY} AND $__timeFilter(e.bucket_start) AND s.site_code IN ($site)
ORDER BY 1, 2"""

_FROM, _TO = "$__timeFrom()::timestamptz", "$__timeTo()::timestamptz"


def _first_whole(unit: str) -> str:
    """The first Bangkok ``unit`` (hour or day) starting at or after the range's start."""
    return (f"((date_trunc('{unit}', ({_FROM} - interval '1 microsecond') AT TIME ZONE {_TZ}) + interval '1 {unit}')"
            f" AT TIME ZONE {_TZ})")  # fmt: skip


def _end_whole(unit: str) -> str:
    """The end of the last Bangkok ``unit`` whose 15-minute buckets all start in the range (its end is inclusive)."""
    return f"(date_trunc('{unit}', ({_TO} + interval '15 minutes') AT TIME ZONE {_TZ}) AT TIME ZONE {_TZ})"


_HLO, _HHI, _DLO, _DHI = _first_whole("hour"), _end_whole("hour"), _first_whole("day"), _end_whole("day")
_QUALITY_ROWS = "SELECT b.device_id, b.quality, b.covered_s, b.amount_estimated, b.amount FROM energy_buckets b"

# Every meter of the selected sites, also one that sent nothing (worst quality 3 = missing, 0 % covered).
# covered_pct: seconds covered by intervals over the seconds of the range.
# The 15-minute buckets starting in the range are read as the Bangkok days (1d rows) that lie wholly in it, then
# the hours (1h rows) that do, then the 15-minute rows left at the edges: a week is ~7 + 46 + 6 rows per meter
# rather than 672, with the same sums (each level is the sum of the one below). Each edge is its own range of the
# time index, and the bounds are expressions of the range's literals, so the planner knows them (written as NOT
# inside the days over a CTE of bounds, the hours' and quarters' whole range was read, and JIT compiled the plan).
DATA_QUALITY = f"""
WITH e AS (
    {_QUALITY_ROWS}
    WHERE b.resolution = '1d' AND b.metric_id = {ENERGY} AND b.bucket_start >= {_DLO} AND b.bucket_start < {_DHI}
    UNION ALL
    {_QUALITY_ROWS}
    WHERE b.resolution = '1h' AND b.metric_id = {ENERGY} AND b.bucket_start >= {_HLO}
      AND b.bucket_start < least({_DLO}, {_HHI})
    UNION ALL
    {_QUALITY_ROWS}
    WHERE b.resolution = '1h' AND b.metric_id = {ENERGY} AND b.bucket_start >= greatest({_DHI}, {_DLO}, {_HLO})
      AND b.bucket_start < {_HHI}
    UNION ALL
    {_QUALITY_ROWS}
    WHERE b.resolution = '15min' AND b.metric_id = {ENERGY} AND $__timeFilter(b.bucket_start)
      AND b.bucket_start < {_HLO}
    UNION ALL
    {_QUALITY_ROWS}
    WHERE b.resolution = '15min' AND b.metric_id = {ENERGY} AND $__timeFilter(b.bucket_start)
      AND b.bucket_start >= greatest({_HHI}, {_HLO}))
SELECT s.site_code AS site, d.device_id AS device,
       coalesce(max(e.quality), 3) AS worst_quality,
       coalesce(100 * sum(e.covered_s) / extract(epoch FROM $__timeTo()::timestamptz - $__timeFrom()::timestamptz), 0)
           AS covered_pct,
       coalesce(100 * sum(e.amount_estimated) / nullif(sum(e.amount), 0), 0) AS estimated_pct,
       coalesce(sum(e.amount), 0) AS energy_kwh
FROM devices d JOIN sites s ON s.id = d.site_id
LEFT JOIN e ON e.device_id = d.id
WHERE d.kind = 'electricity_meter' AND s.site_code IN ($site)
GROUP BY 1, 2
ORDER BY 1, 2"""

# --- Emissions: city ------------------------------------------------------------------------------------------------
CITIES = """
SELECT DISTINCT city AS __value, city AS __text FROM sites ORDER BY 1"""

EMISSION_GROUPS = {
    "scope": "'Scope ' || sc.scope",
    "cfo_category": "sc.cfo_category",
    "gpc_ref": "coalesce(sc.gpc_ref, 'outside GPC')",
}
EMISSION_VALUES = {"in_force": "kgco2e", "base_year": "kgco2e_base"}

# A bucket counts under its device's source class for the class's own metric (energy for electricity, litres for
# fuel), as the energy API does (store/queries.py).
_EMISSIONS_FROM = """
FROM energy_buckets e
JOIN device_sources ds ON ds.device_id = e.device_id
JOIN source_classes sc ON sc.key = ds.source_class AND sc.metric_id = e.metric_id
JOIN devices d ON d.id = e.device_id JOIN sites s ON s.id = d.site_id
WHERE e.resolution = '1mo' AND $__timeFilter(e.bucket_start) AND s.city IN ($city)"""


def monthly_emissions(group: str, value: str) -> str:
    """kgCO2e per Bangkok month by ``group`` (a key of EMISSION_GROUPS) at ``value`` (a key of EMISSION_VALUES)."""
    return f"""
SELECT e.bucket_start AS time, {EMISSION_GROUPS[group]} AS metric, sum(e.{EMISSION_VALUES[value]}) AS kgco2e
{_EMISSIONS_FROM}
GROUP BY 1, 2
ORDER BY 1, 2"""


EMISSIONS_BY_SCOPE_TABLE = f"""
SELECT 'Scope ' || sc.scope AS scope, sum(e.kgco2e) AS kgco2e_in_force, sum(e.kgco2e_base) AS kgco2e_base_year,
       sum(e.kgco2e) - sum(e.kgco2e_base) AS factor_effect_kgco2e
{_EMISSIONS_FROM}
GROUP BY 1
ORDER BY 1"""

# --- Air quality: environment division ------------------------------------------------------------------------------
STATIONS = _sites_with("aq_station")

# The Thai AQI per station and hour (aqi_hourly, migrations 006 and 010). An incomplete hour (a measured pollutant
# withheld: its AQI is a lower bound) is its own series, "<station> (incomplete)", so it never reads as the full
# index; a withheld hour has no AQI and is a gap here, with its reason in STATION_STATUS.
THAI_AQI = f"""
SELECT a.hour_start AS time,
       s.name || CASE WHEN a.status = 'complete' THEN '' ELSE ' (incomplete)' END AS metric, a.aqi
FROM aqi_hourly a {_DEVICE_SITE.format(alias="a")}
WHERE a.index_key = 'thai_pcd_2023' AND a.aqi IS NOT NULL AND $__timeFilter(a.hour_start)
  AND s.site_code IN ($station)
ORDER BY 1, 2"""

_LATEST_THAI = f"""
FROM aqi_hourly a {_DEVICE_SITE.format(alias="a")}
WHERE a.index_key = 'thai_pcd_2023' AND $__timeFilter(a.hour_start) AND s.site_code IN ($station)"""


def station_map(good_categories: int) -> str:
    """The latest Thai AQI hour of each station in the range, with its position, for the geomap. ``category`` is
    -1 (grey) where the index is withheld, or incomplete with a lower bound in one of the first ``good_categories``
    categories (those that call the air good): a station is never painted good by omission."""
    return f"""
SELECT DISTINCT ON (a.device_id)
       s.name AS station, s.lat AS latitude, s.lon AS longitude, a.aqi,
       CASE WHEN a.status = 'complete' OR a.category >= {int(good_categories)} THEN a.category ELSE -1 END AS category,
       a.responsible, a.status, array_to_string(a.missing, ', ') AS missing, a.reason, a.hour_start AS time
{_LATEST_THAI}
  AND s.lat IS NOT NULL AND s.lon IS NOT NULL
ORDER BY a.device_id, a.hour_start DESC"""


# Each station's latest Thai AQI hour in the range: the index, whether it is complete, what is missing and why.
STATION_STATUS = f"""
SELECT * FROM (
    SELECT DISTINCT ON (a.device_id)
           s.name AS station, a.hour_start AS time, a.aqi, a.status, array_to_string(a.missing, ', ') AS missing,
           a.reason
    {_LATEST_THAI}
    ORDER BY a.device_id, a.hour_start DESC) latest
ORDER BY station"""


def hourly_mean(metric_id: int, column: str) -> str:
    """Each station's hourly mean of a pollutant (sample_buckets 1h: sum / n)."""
    return f"""
SELECT b.bucket_start AS time, s.name AS metric, b.sum / b.n AS {column}
FROM sample_buckets b {_DEVICE_SITE.format(alias="b")}
WHERE b.resolution = '1h' AND b.metric_id = {metric_id} AND $__timeFilter(b.bucket_start) AND s.site_code IN ($station)
ORDER BY 1, 2"""


# The 24-hour moving mean of the hourly means ending at each hour (what the PM2.5 24-h standard applies to). It reads
# 23 hours before the range so the first points have their full window. No completeness rule: the Thai AQI applies
# one (engine/aqi.py); this line is the raw mean.
PM25_24H = f"""
WITH h AS (
    SELECT b.device_id, b.bucket_start, b.sum / b.n AS mean
    FROM sample_buckets b
    WHERE b.resolution = '1h' AND b.metric_id = {PM25}
      AND b.bucket_start BETWEEN $__timeFrom()::timestamptz - interval '23 hours' AND $__timeTo()::timestamptz),
w AS (
    SELECT h.device_id, h.bucket_start,
           avg(h.mean) OVER (PARTITION BY h.device_id ORDER BY h.bucket_start
                             RANGE BETWEEN interval '23 hours' PRECEDING AND CURRENT ROW) AS mean_24h
    FROM h)
SELECT w.bucket_start AS time, s.name || ' (24-h mean)' AS metric, w.mean_24h AS pm25_ugm3
FROM w {_DEVICE_SITE.format(alias="w")}
WHERE $__timeFilter(w.bucket_start) AND s.site_code IN ($station)
ORDER BY 1, 2"""

# --- Streetlights ---------------------------------------------------------------------------------------------------
ROADS = _sites_with("lamp", "streetlight_cabinet")

LAMP_MEASURES = {
    "burning_h": "sum(l.on_s) / 3600.0",
    "day_burning_h": "sum(l.day_on_s) / 3600.0",
    # Share of the night with a known lamp state during which the lamp was off.
    "outage_pct": "100 * sum(l.night_off_s) / nullif(sum(l.night_known_s), 0)",
}


def lamps_per_day(measure: str) -> str:
    """A lamp measure (a key of LAMP_MEASURES) per road (site) per Bangkok day, summed over the road's lamps."""
    return f"""
SELECT l.bucket_start AS time, s.site_code AS metric, {LAMP_MEASURES[measure]} AS {measure}
FROM lamp_buckets l {_DEVICE_SITE.format(alias="l")}
WHERE l.resolution = '1d' AND $__timeFilter(l.bucket_start) AND s.site_code IN ($road)
GROUP BY 1, 2
ORDER BY 1, 2"""


CABINET_ENERGY = f"""
SELECT e.bucket_start AS time, s.site_code AS metric, sum(e.amount) AS energy_kwh
FROM energy_buckets e {_DEVICE_SITE.format(alias="e")}
WHERE e.resolution = '1d' AND e.metric_id = {ENERGY} AND d.kind = 'streetlight_cabinet'
  AND $__timeFilter(e.bucket_start) AND s.site_code IN ($road)
GROUP BY 1, 2
ORDER BY 1, 2"""
