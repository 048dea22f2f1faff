"""Dashboards as code: every panel's and every variable's SQL runs against a real migrated database seeded through the
production path (store.writer.write_batch, then lccm.runtime.updaters().drain()), returns what Grafana needs, and at
least one panel per dashboard shows a hand-computed figure. The provisioned files equal build_all() and every
datasource reference is the provisioned one.

Grafana cannot run here, so :func:`expand` does what Grafana's PostgreSQL datasource does to the SQL text before it
reaches the server (Grafana 11, pkg/tsdb/grafana-postgresql-datasource macros.go and the SQL datasource's
interpolateVariable):
- ``$__timeFilter(expr)`` -> ``expr BETWEEN '<from>' AND '<to>'``, both ends RFC 3339 in UTC (``...Z``);
- ``$__timeFrom()`` / ``$__timeTo()`` -> ``'<from>'`` / ``'<to>'``;
- ``$name`` / ``${name}`` of a multi-value (or include-all) variable -> its values as single-quoted literals joined by
  ``,`` (a quote inside a value doubled); "All" without a custom all-value -> every option's value.
Anything else that looks like a macro or variable is left unexpanded, and the test fails on it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
import yaml

from lccm import dashboards
from lccm.engine.aqi_tables import THAI_GOOD_CATEGORIES, thai_categories
from lccm.engine.timebase import bkk_us
from lccm.runtime import factor_rows, updaters
from lccm.settings import Settings
from lccm.store.energy import sync_factor_registry
from tests._db import fresh_database, write_points

ROOT = Path(__file__).resolve().parent.parent
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "lccm.yaml"

ENERGY, POWER, LAMP_ON, PM25, SO2 = 1, 2, 6, 9, 11
MIN = 60 * 1_000_000
H = 60 * MIN
T0 = bkk_us(2026, 9, 30, 23, 0)  # one hour before 1 Oct 2026 00:00 Bangkok
AQ0 = bkk_us(2026, 3, 10)  # burning season


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


# Each dashboard's test window (Grafana's from/to) over the seeded data.
WINDOWS = {
    "lccm-energy": (_utc(bkk_us(2026, 9, 30)), _utc(bkk_us(2026, 10, 1, 12))),
    "lccm-emissions": (_utc(bkk_us(2026, 1, 1)), _utc(bkk_us(2027, 1, 1))),
    "lccm-air-quality": (_utc(AQ0), _utc(AQ0 + 24 * H)),
    "lccm-streetlights": (_utc(bkk_us(2026, 9, 29)), _utc(bkk_us(2026, 10, 2))),
}

# --- the macro expander -------------------------------------------------------------------------------------------
_TIME_FILTER = re.compile(r"\$__timeFilter\(([^()]*)\)")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand(text: str, start: datetime, end: datetime, variables: dict[str, list[str]]) -> str:
    """Grafana's PostgreSQL macro and multi-value variable expansion (see the module docstring)."""
    lo, hi = _quote(_rfc3339(start)), _quote(_rfc3339(end))
    out = _TIME_FILTER.sub(lambda m: f"{m.group(1).strip()} BETWEEN {lo} AND {hi}", text)
    out = out.replace("$__timeFrom()", lo).replace("$__timeTo()", hi)

    def var(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            return m.group(0)  # left as is: the caller fails on it
        return ",".join(_quote(v) for v in variables[name])

    return _VARIABLE.sub(var, out)


def test_expand_follows_grafana() -> None:
    start, end = datetime(2026, 9, 30, 17, tzinfo=UTC), datetime(2026, 10, 1, 5, 30, tzinfo=UTC)
    text = "WHERE $__timeFilter(b.bucket_start) AND x < $__timeTo() AND s IN ($site) AND c IN (${city})"
    assert expand(text, start, end, {"site": ["A", "O'B"], "city": ["Lampang"]}) == (
        "WHERE b.bucket_start BETWEEN '2026-09-30T17:00:00Z' AND '2026-10-01T05:30:00Z'"
        " AND x < '2026-10-01T05:30:00Z' AND s IN ('A','O''B') AND c IN ('Lampang')"
    )
    assert "$nope" in expand("a = $nope", start, end, {})


# --- seeding through the production path ---------------------------------------------------------------------------
_write = write_points


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        sync_factor_registry(conn, *factor_rows())
        conn.execute(
            "INSERT INTO sites (id, site_code, name, kind, city, lat, lon) VALUES"
            " (1, 'HALL', 'City hall', 'building', 'Lampang', 18.29, 99.49),"
            " (2, 'RD1', 'Road 1', 'street', 'Lampang', 18.29, 99.49),"
            " (3, 'AQ1', 'City hall station', 'station', 'Lampang', 18.29, 99.49)"
        )
        conn.execute(
            "INSERT INTO devices (id, device_id, site_id, kind, name, cadence_s, rated_kw) VALUES"
            " (1, 'M1', 1, 'electricity_meter', 'main', 60, 100), (2, 'M2', 1, 'electricity_meter', 'annex', 60, 100),"
            " (3, 'C1', 2, 'streetlight_cabinet', 'cabinet', 900, 10), (4, 'L1', 2, 'lamp', 'lamp 1', 900, NULL),"
            " (5, 'AQ-1', 3, 'aq_station', 'City hall', 300, NULL)"
        )
        # Power 23:00-23:02 Bangkok: M1 1000, 2000, 3000 W; M2 500 W twice. M2 sends no energy at all.
        _write(conn, 1, POWER, [(T0, 1000.0), (T0 + MIN, 2000.0), (T0 + 2 * MIN, 3000.0)])
        _write(conn, 2, POWER, [(T0, 500.0), (T0 + MIN, 500.0)])
        # M1: 10 kWh per 30 min from 23:00 to 01:00 Bangkok -> 20 kWh on 30 Sep, 20 kWh on 1 Oct.
        _write(conn, 1, ENERGY, [(T0 + k * 30 * MIN, 100.0 + 10 * k) for k in range(5)])
        # Cabinet 2 kWh in 23:00-00:00; lamp on at 23:00, 23:15, 23:30, off at 23:45 (night in Lampang).
        _write(conn, 3, ENERGY, [(T0, 0.0), (T0 + 60 * MIN, 2.0)])
        _write(conn, 4, LAMP_ON, [(T0 + k * 15 * MIN, 1.0) for k in range(3)] + [(T0 + 45 * MIN, 0.0)])
        # PM2.5 30 and 50 ug/m3 in every hour of 10 Mar (hourly mean 40); SO2 100 and 200 ppb in its first hour.
        _write(conn, 5, PM25, [(AQ0 + h * H + m * MIN, v) for h in range(24) for m, v in ((10, 30.0), (40, 50.0))])
        _write(conn, 5, SO2, [(AQ0 + 10 * MIN, 100.0), (AQ0 + 40 * MIN, 200.0)])
    updaters(Settings(database_url=url), url).drain()


@pytest.fixture(scope="module")
def db() -> Iterator[str]:
    with fresh_database() as url:
        _seed(url)
        yield url


# --- running the dashboards' SQL ----------------------------------------------------------------------------------
def _run(url: str, text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    assert "$" not in text, f"unexpanded macro or variable in:\n{text}"
    with psycopg.connect(url) as conn:
        cur = conn.execute(text)
        names = [c.name for c in cur.description or []]
        return names, cur.fetchall()


def _variables(url: str, model: dict[str, Any]) -> dict[str, list[str]]:
    """Every variable at "All": the values its own query returns (how Grafana expands All without an all-value)."""
    start, end = WINDOWS[model["uid"]]
    values: dict[str, list[str]] = {}
    for var in model["templating"]["list"]:
        assert var["type"] == "query" and var["multi"] and var["includeAll"], var["name"]
        names, rows = _run(url, expand(var["query"], start, end, values))
        assert names == ["__value", "__text"], (var["name"], names)
        assert rows, f"variable {var['name']} has no options"
        values[var["name"]] = [str(r[0]) for r in rows]
    return values


def _targets(model: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in model["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target


def _numeric(v: Any) -> bool:
    return v is None or (isinstance(v, int | float | Decimal) and not isinstance(v, bool))


def _query(url: str, model: dict[str, Any], title: str, ref_id: str = "A") -> list[dict[str, Any]]:
    start, end = WINDOWS[model["uid"]]
    (target,) = [t for p, t in _targets(model) if p == title and t["refId"] == ref_id]
    names, rows = _run(url, expand(target["rawSql"], start, end, _variables(url, model)))
    return [dict(zip(names, r, strict=True)) for r in rows]


# The Thai scale as `lccm dashboards write` builds it with the default colours (the committed copies).
THAI_SCALE = dashboards.ThaiScale.of(thai_categories(), THAI_GOOD_CATEGORIES)
MODELS = dashboards.build_all(THAI_SCALE)
PROM_DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"


def _is_sql(model: dict[str, Any]) -> bool:
    return all("rawSql" in t for _, t in _targets(model))


SQL_MODELS = {uid: m for uid, m in MODELS.items() if _is_sql(m)}
PROM_MODELS = {uid: m for uid, m in MODELS.items() if uid not in SQL_MODELS}


def test_every_sql_dashboard_has_a_test_window_and_the_rest_are_prometheus() -> None:
    assert set(SQL_MODELS) == set(WINDOWS)
    assert set(PROM_MODELS) == {"lccm-operations"}
    assert all("expr" in t for m in PROM_MODELS.values() for _, t in _targets(m))


@pytest.mark.parametrize("uid", sorted(SQL_MODELS))
def test_every_query_runs_and_returns_what_grafana_needs(db: str, uid: str) -> None:
    model = MODELS[uid]
    start, end = WINDOWS[uid]
    variables = _variables(db, model)
    for title, target in _targets(model):
        names, rows = _run(db, expand(target["rawSql"], start, end, variables))
        assert rows, f"{uid} / {title}: no rows over the seeded data"
        if target["format"] == "time_series":
            # Grafana's long format: time (timestamptz), metric (series name), then numeric values; sorted by time.
            assert names[:2] == ["time", "metric"] and len(names) >= 3, (title, names)
            times = [r[0] for r in rows]
            assert all(isinstance(t, datetime) and t.tzinfo is not None for t in times), title
            assert times == sorted(times), f"{title}: not ordered by time"
            assert all(isinstance(r[1], str) for r in rows), title
            assert all(_numeric(v) for r in rows for v in r[2:]), title
        else:
            assert target["format"] == "table"
            assert any(all(_numeric(r[i]) for r in rows) for i in range(len(names))), f"{title}: no numeric column"


def test_energy_panels_show_hand_computed_figures(db: str) -> None:
    model = MODELS["lccm-energy"]
    power = _query(db, model, "Live power per site (sum of meter means, 15 min)")
    # 15-min bucket from 23:00: M1's mean (1000 + 2000 + 3000) / 3 = 2000 W plus M2's mean 500 W = 2500 W.
    assert [(r["time"], r["metric"], r["power_w"]) for r in power] == [(_utc(T0), "HALL", pytest.approx(2500.0))]
    # The range ends 1 Oct 12:00 Bangkok, so "today" is 1 Oct (Bangkok): M1's 00:00-01:00 = 2 x 10 = 20 kWh, at
    # the 2026 grid factor 0.4750 kgCO2e/kWh (TGO, from 1 Jan 2026): 20 x 0.4750 = 9.5 kgCO2e.
    (today,) = _query(db, model, "Today's energy per site (Bangkok day)")
    assert (today["site"], today["energy_kwh"], today["kgco2e"]) == ("HALL", pytest.approx(20.0), pytest.approx(9.5))
    daily = _query(db, model, "Daily energy per site (Bangkok days)")
    # Days start at Bangkok midnight (17:00 UTC the day before): 23:00-00:00 on 30 Sep, 00:00-01:00 on 1 Oct.
    assert [(r["time"], r["energy_kwh"]) for r in daily] == [
        (datetime(2026, 9, 29, 17, tzinfo=UTC), pytest.approx(20.0)),
        (datetime(2026, 9, 30, 17, tzinfo=UTC), pytest.approx(20.0)),
    ]
    quality = {r["device"]: r for r in _query(db, model, "Data quality per meter (worst: 0 measured, 1 estimated, "
                                                           "2 suspect, 3 missing)")}  # fmt: skip
    # M2 sent no energy reading: listed as missing (3), 0 % covered. M1 covered 23:00-01:00 = 7200 s of the
    # 36 h (129600 s) range: 100 x 7200 / 129600 = 5.556 %.
    assert (quality["M2"]["worst_quality"], quality["M2"]["covered_pct"]) == (3, 0)
    assert quality["M1"]["covered_pct"] == pytest.approx(100 * 7200 / 129600)
    assert quality["M1"]["energy_kwh"] == pytest.approx(40.0)


def test_emissions_by_scope_at_both_factors(db: str) -> None:
    model = MODELS["lccm-emissions"]
    in_force = _query(db, model, "Monthly kgCO2e by CFO scope (factor in force)")
    base = _query(db, model, "Monthly kgCO2e by CFO scope (base-year factor)")
    sep, oct_ = datetime(2026, 8, 31, 17, tzinfo=UTC), datetime(2026, 9, 30, 17, tzinfo=UTC)  # Bangkok months
    # September: M1 20 kWh + cabinet 2 kWh = 22 kWh of purchased electricity (scope 2); October: M1 20 kWh.
    # In force (2026, 0.4750): 22 x 0.4750 = 10.45 and 20 x 0.4750 = 9.5. Base year 2025 (0.4999, TGO April 2022
    # table): 22 x 0.4999 = 10.9978 and 20 x 0.4999 = 9.998.
    assert [(r["time"], r["metric"], r["kgco2e"]) for r in in_force] == [
        (sep, "Scope 2", pytest.approx(10.45)),
        (oct_, "Scope 2", pytest.approx(9.5)),
    ]
    assert [r["kgco2e"] for r in base] == [pytest.approx(10.9978), pytest.approx(9.998)]
    gpc = _query(db, model, "Monthly kgCO2e by GPC reference (factor in force)")
    assert {r["metric"] for r in gpc} == {"I.2.2"}
    (total,) = _query(db, model, "Totals by scope over the range: factor in force vs base-year factor")
    assert total["kgco2e_in_force"] == pytest.approx(19.95) and total["kgco2e_base_year"] == pytest.approx(20.9958)


def test_air_quality_panels(db: str) -> None:
    model = MODELS["lccm-air-quality"]
    pm = _query(db, model, "PM2.5: hourly and 24-h moving means (standard 37.5 ug/m3, 24-h)")
    assert len(pm) == 24 and {r["pm25_ugm3"] for r in pm} == {40.0}  # (30 + 50) / 2 every hour
    moving = _query(db, model, "PM2.5: hourly and 24-h moving means (standard 37.5 ug/m3, 24-h)", "B")
    assert {r["pm25_ugm3"] for r in moving} == {40.0}
    (so2,) = _query(db, model, "SO2: hourly means (standard 300 ppb, 1-h)")
    assert (so2["time"], so2["so2_ppb"]) == (_utc(AQ0), 150.0)  # (100 + 200) / 2
    thai = _query(db, model, "Thai AQI per station (PCD 2023)")
    # Hour 0: only SO2's 1-h index: 150 ppb in the band 101-200 -> 26-50: (50 - 26) / (200 - 101) x (150 - 101) + 26
    # = 37.88 -> 38; PM2.5 has 1 of 24 hours (18 needed): withheld, so the index is incomplete.
    # Hours 1..16: PM2.5 below 18 of 24 hours and SO2 (measured, last at hour 0) without data: withheld, a gap.
    # Hours 17..23: 18+ of 24 valid hours (75 %); 24-h mean 40.0 in the PCD band 37.6-75.0 -> AQI 101-200
    # (PCD 2023 table, docs/reference.md#thai-aqi): (200 - 101) / (75.0 - 37.6) x (40.0 - 37.6) + 101 = 107.35 -> 107,
    # incomplete: SO2 is still measured (within a week of its last hour) but has no value.
    incomplete = "City hall station (incomplete)"
    assert [(r["time"], r["metric"], r["aqi"]) for r in thai] == [(_utc(AQ0), incomplete, 38.0)] + [
        (_utc(AQ0 + h * H), incomplete, 107.0) for h in range(17, 24)
    ]
    (station,) = _query(
        db, model, "Stations: latest Thai AQI category (grey: withheld, or incomplete and reading good)"
    )
    # Category 3 = "starting to affect health" (orange), the latest hour 23:00: a lower bound that is already a
    # warning keeps its colour.
    assert (station["station"], station["latitude"], station["longitude"]) == ("City hall station", 18.29, 99.49)
    assert (station["category"], station["aqi"], station["time"]) == (3, 107.0, _utc(AQ0 + 23 * H))
    so2_missing = (
        "SO2 1-h value withheld: no data in this hour. The AQI shown is the highest sub-index available; with SO2 it"
        " may be higher."
    )
    assert (station["status"], station["missing"], station["reason"]) == ("incomplete", "so2", so2_missing)
    (status,) = _query(db, model, "Stations: latest Thai AQI, whether it is complete, and why not")
    assert (status["station"], status["time"], status["aqi"]) == ("City hall station", _utc(AQ0 + 23 * H), 107.0)
    assert (status["status"], status["missing"], status["reason"]) == ("incomplete", "so2", so2_missing)


def test_air_quality_thresholds_are_the_thai_standards() -> None:
    panels = {p["title"]: p for p in MODELS["lccm-air-quality"]["panels"]}

    def steps(title: str) -> list[Any]:
        return [s["value"] for s in panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]]

    # Thai standards: PM2.5 24-h 37.5 ug/m3, SO2 1-h 0.3 ppm = 300 ppb; PCD 2023 Thai AQI bands
    # (docs/reference.md#air-quality).
    assert steps("PM2.5: hourly and 24-h moving means (standard 37.5 ug/m3, 24-h)") == [None, 37.5]
    assert steps("SO2: hourly means (standard 300 ppb, 1-h)") == [None, 300.0]
    assert steps("Thai AQI per station (PCD 2023)") == [None, 26.0, 51.0, 101.0, 201.0]


def test_streetlight_panels(db: str) -> None:
    model = MODELS["lccm-streetlights"]
    sep30 = datetime(2026, 9, 29, 17, tzinfo=UTC)  # 30 Sep 00:00 Bangkok
    oct1 = datetime(2026, 9, 30, 17, tzinfo=UTC)
    burning = _query(db, model, "Burning lamp-hours per road per day")
    # On from 23:00 to the off reading at 23:45: 45 min = 0.75 h, all at night (no day burning).
    # The off state carries into 1 Oct: a row with 0 burning hours.
    assert [(r["time"], r["metric"], r["burning_h"]) for r in burning] == [
        (sep30, "RD1", pytest.approx(0.75)),
        (oct1, "RD1", 0.0),
    ]
    day = _query(db, model, "Day burning (lamp on while the sun is up), lamp-hours per day")
    assert [r["day_burning_h"] for r in day] == [0.0, 0.0]
    outage = _query(db, model, "Outage share of the known night, per road per day")
    # Known night on 30 Sep: 23:00-24:00 (the off reading holds past midnight: the hold is longer than 15 min), off
    # 23:45-24:00: 900 / 3600 = 25 %. On 1 Oct the only known night is the held off state: 100 %.
    assert [r["outage_pct"] for r in outage] == [pytest.approx(25.0), pytest.approx(100.0)]
    cabinet = _query(db, model, "Cabinet energy per road per day")
    assert [(r["time"], r["energy_kwh"]) for r in cabinet] == [(sep30, pytest.approx(2.0))]


# --- provisioning -------------------------------------------------------------------------------------------------
def test_provisioned_files_equal_build_all() -> None:
    files = {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")}
    assert set(files) == set(MODELS), "run `lccm dashboards write deploy/grafana/dashboards` after changing a dashboard"
    for uid, model in MODELS.items():
        assert files[uid] == dashboards.dump(model), (
            f"{uid}.json is stale: run `lccm dashboards write deploy/grafana/dashboards`"
        )


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for v in node.values():
            yield from _datasource_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _datasource_refs(v)


def test_every_datasource_is_the_provisioned_one() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    (prom,) = yaml.safe_load(PROM_DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    for uid, model in MODELS.items():
        refs = list(_datasource_refs(model))
        # Every panel, every target and every variable names it: PostgreSQL for SQL, Prometheus for PromQL.
        n = (
            len(model["panels"])
            + sum(len(p["targets"]) for p in model["panels"])
            + len(model["templating"].get("list", []))
        )
        assert len(refs) == n, uid
        want = source if uid in SQL_MODELS else prom
        assert all(r == {"type": want["type"], "uid": want["uid"]} for r in refs), uid


# --- the operations dashboard: PromQL against the metrics the code registers -------------------------------------
_LCCM_NAME = re.compile(r"\b(lccm_[a-z0-9_]+)")
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")  # name{...} or name[range]
PROMETHEUS_OWN = {"up"}  # written by Prometheus for every scrape target, not by the code


def _registered_names() -> set[str]:
    """Every series name the ingest's and the API's registries expose, with every collector built as the
    processes build them (the queue probe's database is unreachable here: its families are there all the same)."""
    from lccm.api.observability import ApiMetrics
    from lccm.metrics import IngestMetrics, metric_names
    from lccm.stream.loop import StreamStats

    ingest = IngestMetrics(channels=["webhook"])
    ingest.watch_stream(StreamStats, lambda: 0)
    ingest.watch_queues(lambda: psycopg.connect("postgresql://postgres@127.0.0.1:1/x", connect_timeout=1))
    ingest.watch_workers(list)
    return metric_names(ingest.registry) | metric_names(ApiMetrics().registry)


def test_every_promql_metric_is_one_the_code_registers() -> None:
    registered = _registered_names()
    assert {"lccm_ingest_commit_seconds_bucket", "lccm_queue_depth", "lccm_api_requests_total"} <= registered
    used: set[str] = set()
    for model in PROM_MODELS.values():
        for title, target in _targets(model):
            expr = target["expr"]
            names = set(_LCCM_NAME.findall(expr)) | set(_SELECTOR.findall(expr))
            assert names, f"{title}: no metric in {expr!r}"
            unknown = names - registered - PROMETHEUS_OWN
            assert not unknown, f"{title}: {sorted(unknown)} are not registered by the code ({expr!r})"
            used |= names
    # The list: each figure is on the dashboard.
    for name in (
        "lccm_ingest_messages_received_total",
        "lccm_ingest_readings_stored_total",
        "lccm_ingest_dead_letters_total",
        "lccm_ingest_commit_seconds_bucket",
        "lccm_ingest_commit_lag_seconds_bucket",
        "lccm_ingest_batch_readings_sum",
        "lccm_queue_depth",
        "lccm_queue_oldest_age_seconds",
        "lccm_worker_up",
        "lccm_worker_restarts_total",
        "lccm_notify_failures_total",
    ):
        assert name in used, f"{name} is on no panel"


def test_the_promql_check_catches_a_misspelt_metric() -> None:
    registered = _registered_names()
    expr = "sum(rate(lccm_ingest_reading_stored_total[$__rate_interval])) / sum(lccm_queue_depth)"
    found = set(_LCCM_NAME.findall(expr)) | set(_SELECTOR.findall(expr))
    assert found - registered == {"lccm_ingest_reading_stored_total"}


def test_panels_are_complete_and_do_not_overlap() -> None:
    for uid, model in MODELS.items():
        cells: set[tuple[int, int]] = set()
        for panel in model["panels"]:
            assert panel["options"] is not None and panel["targets"], (uid, panel["title"])
            g = panel["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert g["x"] + g["w"] <= 24 and not cells & mine, (uid, panel["title"])
            cells |= mine


# --- push over the HTTP API -----------------------------------------------------------------------------------------
class _Grafana(BaseHTTPRequestHandler):
    """The one route push() uses, POST /api/dashboards/db, answering like Grafana and recording what it got."""

    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((self.headers.get("Authorization", ""), body))
        uid = body["dashboard"]["uid"]
        answer = json.dumps({"id": 1, "uid": uid, "url": f"/d/{uid}", "status": "success", "version": 1}).encode()
        self.send_response(200 if self.path == "/api/dashboards/db" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


def test_push_posts_every_dashboard_with_the_token() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        answers = dashboards.push(f"http://127.0.0.1:{server.server_port}", "glsa_test", MODELS, folder_uid="lccm")
    finally:
        server.shutdown()
        server.server_close()
    assert [a["uid"] for a in answers] == list(MODELS)
    assert [auth for auth, _ in _Grafana.received] == ["Bearer glsa_test"] * len(MODELS)
    for (_, body), model in zip(_Grafana.received, MODELS.values(), strict=True):
        assert body["overwrite"] is True and body["folderUid"] == "lccm"
        assert body["dashboard"] == {**model, "id": None}
