"""Web pages benchmark (issue 13 item 7): every request the pages make, against the real app with a week of the demo
city's data.

Set-up (not timed): a fresh database (dropped at the end), migrated; the emission-factor registry; the demo city's
registry (2,107 devices, imported as ``lccm devices import`` does); Lampang's example base year mapped for this year
(as ``lccm demo`` does); the shipped alert rules; a demo user (role admin, made as ``lccm demo`` makes its users).
Then ``--days`` of the virtual Lampang (``simulators.run.generate``, seed 42, the demo's fault mix, ending now) go
through the product's own ingest path without a broker: the decoder and stream loop of ``lccm ingest``
(``ingest.decoder.make_decoder``, ``stream.loop.StreamLoop``, ``runtime.DbSink``), then every derived-data updater
and the alert evaluator (event clock, as the demo runs it) drain their queues; then ``ANALYZE`` (what autovacuum
would have done by then in a running city).

The timed part: the real app served by ``lccm api`` in its own process (uvicorn on a free loopback port), logged in
through ``POST /login`` with a session cookie, one keep-alive HTTP connection (httpx). Every page route under
``/app/`` and ``/`` is requested, with its CSVs and the assets base.html loads, ``--requests`` times each after
``--warmup`` untimed requests, round-robin (route 1, 2, ..., n, then again), so a cache warmed by one request does
not favour the next of the same route. Latency = client wall time from sending the request to the last byte of the
body. Per route: p50, p95, p99, max (goal: p99 < 200 ms). The overview (``/``) and the station map (``/app/aq``):
server time to full HTML (goal < 1 s). A browser's load-to-charts-drawn time needs Playwright and Debian's chromium;
without both the benchmark says so and reports server time only.

Run: ``.venv/bin/python benchmarks/web.py`` (a week: ~5 minutes of set-up). Small: ``--days 0.25 --requests 5``.
The last line printed is one JSON object: ``routes``, ``p99_max_ms`` (the slowest route's p99), ``slowest_route``,
``overview_ms``, ``map_ms``, ``goals_met``, then everything under ``detail``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and would shadow the ``ingest`` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from html import unescape as html_unescape  # noqa: E402
from importlib import resources  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from lccm.alerts import default_rules_file, load_rules_file  # noqa: E402
from lccm.api.auth import accounts  # noqa: E402
from lccm.api.principal import Role  # noqa: E402
from lccm.imports.registry import parse_registry_csv  # noqa: E402
from lccm.ingest.codec import Limits  # noqa: E402
from lccm.ingest.decoder import RegistryHolder, make_decoder  # noqa: E402
from lccm.runtime import DbSink, alert_evaluator, factor_rows, load_registry, updaters  # noqa: E402
from lccm.services import free_port, wait_for_port  # noqa: E402
from lccm.settings import Settings  # noqa: E402
from lccm.simulators.city import City, load_city  # noqa: E402
from lccm.simulators.run import SimConfig, generate  # noqa: E402
from lccm.store import alerts as st  # noqa: E402
from lccm.store import audit  # noqa: E402
from lccm.store.devices import import_registry  # noqa: E402
from lccm.store.energy import sync_factor_registry  # noqa: E402
from lccm.store.inventory import import_inventory_file  # noqa: E402
from lccm.store.inventory_mapping import auto_map  # noqa: E402
from lccm.store.migrate import migrate  # noqa: E402
from lccm.stream.batch import FlushPolicy  # noqa: E402
from lccm.stream.loop import RawMessage, StreamLoop  # noqa: E402

log = logging.getLogger("bench.web")

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
GOAL_P99_MS = 200.0
GOAL_PAGE_MS = 1000.0
SEED = 42  # lccm demo's default
BACKLOG_CLAIM = 5_000_000  # spans the sample updater claims at once from the loaded backlog
ORGANISATION = "lampang"
USERNAME = "demo-admin"
BASE_YEAR = resources.files("lccm").joinpath("data", "examples", "lampang-cfo-2025.csv")
ACTOR = audit.Actor("cli:bench", "benchmarks/web.py", None)
# Routes that are not pages a logged-in user loads: forms posted, the login form itself (it is the way in).
NOT_TIMED = {"/login"}
# charts.js draws each chart into a canvas; a page without charts is done at load
CHARTS_DRAWN = "() => [...document.querySelectorAll('.chart[data-chart]')].every(e => e.querySelector('canvas'))"


# ------------------------------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def bench_database(admin_url: str, keep: str | None) -> Iterator[tuple[str, bool]]:
    """A new database, dropped at the end; with ``keep``, that database is kept, and reused if it is there already
    (yields its URL and whether it was there: a kept city is measured again without building it again)."""
    name = keep or f"lccm_bench_web_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        existed = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if not existed:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield url, existed
    finally:
        if keep is None:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def new_password(url: str) -> str:
    """A kept city's demo user gets a new password, as ``lccm demo`` gives its users on every run."""
    password = secrets.token_urlsafe(12)
    with psycopg.connect(url) as conn:
        accounts.update_user(conn, accounts.Change(ACTOR, "web benchmark"), USERNAME, organisation_id=None,
                             password=password, disabled=False)  # fmt: skip
    return password


def prepare_city(url: str, city: City, folder: Path, now: datetime) -> str:
    """What ``lccm demo`` sets up before its simulator starts; returns the demo user's password."""
    path = folder / "devices.csv"
    city.devices_csv(path)
    password = secrets.token_urlsafe(12)
    with psycopg.connect(url) as conn:
        sync_factor_registry(conn, *factor_rows())
        import_registry(conn, parse_registry_csv(path.read_bytes()))
        import_inventory_file(conn, BASE_YEAR.read_bytes(), file_name=BASE_YEAR.name, organisation=ORGANISATION,
                              year_ce=2025, base_year=True)  # fmt: skip
        auto_map(conn, ORGANISATION, now.year, "calendar")
        rules = load_rules_file(default_rules_file(), metric_keys=st.metric_ids(conn))
        st.sync_file_rules(conn, [r.definition() for r in rules])
        change = accounts.Change(ACTOR, "web benchmark")
        accounts.add_user(conn, change, username=USERNAME, display_name="Demo admin", password=password,
                          organisation=ORGANISATION, roles=[Role.ADMIN], sites=None)  # fmt: skip
    return password


def ingest_history(url: str, city: City, settings: Settings, start: datetime, end: datetime) -> dict[str, Any]:
    """The simulated city's messages through ``lccm ingest``'s decoder, stream loop and sink (no broker: the
    messages are handed to the loop as the MQTT source would), then the updaters and the alert evaluator drained."""

    def reload() -> Any:
        with psycopg.connect(url) as conn:
            return load_registry(conn)

    holder = RegistryHolder(reload)
    limits = Limits(max_payload_bytes=settings.max_payload_bytes, max_readings=settings.max_readings_per_message,
                    future_tolerance_s=settings.future_tolerance_s, topic_root=settings.mqtt_topic_root)  # fmt: skip
    sink = DbSink(url, settings.late_horizon_s * 1_000_000)
    loop = StreamLoop(inbox=queue.SimpleQueue(), decode=make_decoder(holder, limits), sink=sink, ack=lambda _: None,
                      policy=FlushPolicy(settings.batch_max_readings, 3600.0),
                      dedup_cache_bytes=settings.dedup_cache_bytes)  # fmt: skip
    cfg = SimConfig(
        seed=SEED, start=start, end=end, faults=True, keep_messages=False, topic_root=settings.mqtt_topic_root
    )
    began = time.monotonic()
    try:
        for n, msg in enumerate(generate(city, cfg)):
            received_us = int(max(msg.send_s, 0.0) * 1_000_000)
            loop.accept(RawMessage(msg.topic, msg.payload, received_us, n, retained=msg.retain))
            if len(loop._batch) >= settings.batch_max_readings:  # the size trigger, without a clock
                loop.flush()
        loop.flush()
    finally:
        sink.close()
    ingest_s = time.monotonic() - began
    began = time.monotonic()
    derived = updaters(settings, url)
    # A week arrives here at once, not as it happened: claimed 20,000 spans at a time (the running default), the
    # lamps' backlog (~900,000 spans) takes over an hour on two shared cores; claimed whole, each lamp-day once.
    derived = dataclasses.replace(derived, samples=dataclasses.replace(derived.samples, claim_limit=BACKLOG_CLAIM))
    derived.drain()
    alert_evaluator(settings, url).drain()
    derive_s = time.monotonic() - began
    # A running system's autovacuum keeps the planner's statistics; a database loaded a moment ago has none yet, and
    # without them the planner picks plans no running city would see (the overview: 0.4 s instead of 0.01 s).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return {"messages": loop.stats.messages, "ingest_s": round(ingest_s, 1), "derive_s": round(derive_s, 1)}


def city_data(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM energy_buckets),"
            " (SELECT count(*) FROM alerts), (SELECT count(*) FROM dead_letters),"
            " (SELECT extract(epoch FROM max(ts) - min(ts)) / 86400 FROM readings)"
        ).fetchone()
    assert counts is not None
    return {"readings": counts[0], "energy_buckets": counts[1], "alerts": counts[2], "dead_letters": counts[3],
            "span_days": round(float(counts[4] or 0), 2)}  # fmt: skip


@contextlib.contextmanager
def api_server(url: str, folder: Path) -> Iterator[str]:
    """``lccm api`` in its own process, as production serves it."""
    port = free_port()
    env = {**os.environ, "LCCM_DATABASE_URL": url, "LCCM_SESSION_COOKIE_SECURE": "false", "LCCM_DATA_DIR": str(folder)}
    lccm = shutil.which("lccm", path=str(Path(sys.executable).parent)) or "lccm"
    log_file = (folder / "api.log").open("wb")
    proc = subprocess.Popen([lccm, "api", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log_file,
                            stderr=subprocess.STDOUT, cwd=folder)  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()


def log_in(client: httpx.Client, password: str) -> None:
    answer = client.post("/login", data={"username": USERNAME, "password": password})
    if answer.status_code != 303:
        raise SystemExit(f"log-in failed: {answer.status_code} {answer.text[:200]}")


# ------------------------------------------------------------------------------------------------- the routes


def page_urls(city: City, year: int) -> list[str]:
    """One URL per page route (a building, a streetlight cabinet, an AQ station); their downloads are found later."""
    building = next(d for d in city.devices if d.kind == "electricity_meter" and d.site.kind == "building").site.code
    cabinet = next(d for d in city.devices if d.kind == "streetlight_cabinet").site.code
    station = next(d for d in city.devices if d.kind == "aq_station").device_id
    return [
        "/",
        f"/app/sites/{building}",
        f"/app/sites/{cabinet}",
        "/app/streetlights",
        "/app/aq",
        f"/app/aq/{station}",
        "/app/alerts",
        "/app/rules",
        "/app/carbon",
        "/app/targets",
        "/app/imports",
        "/app/reports",
        f"/app/targets.csv?year={year}",  # the targets page links to it only once a target is set
    ]


def discovered(client: httpx.Client, pages: Sequence[str]) -> list[str]:
    """The pages, then every request they make or offer as a download: ``src`` (scripts, the report's frame) and
    ``href`` links marked ``download`` or to a style sheet, and ``hx-get`` fragments, as each page writes them (in the
    page's own query). The overview's Server-Sent Events stream (``sse-connect``) is not timed: it never ends."""
    found: list[str] = []
    for page in pages:
        html = client.get(page).text
        for tag in re.findall(r"<(?:a|script|link|iframe|img)\b[^>]*>", html):
            src = re.search(r'\bsrc="(/[^"]*)"', tag)
            href = re.search(r'\bhref="(/[^"]*)"', tag)
            if src:
                found.append(src.group(1))
            elif href and (" download" in tag or 'rel="stylesheet"' in tag):
                found.append(href.group(1))
        found += re.findall(r'\bhx-get="(/[^"]*)"', html)  # fragments htmx fetches (the overview's live table)
    extra = sorted({html_unescape(u) for u in found} - set(pages))
    return [*pages, *extra]


def uncovered(client: httpx.Client, urls: Sequence[str]) -> list[str]:
    """GET routes of the pages (from the served app's route table, via the source) that no URL here exercises."""
    from lccm.api.web import ROUTERS

    patterns = []
    for router in ROUTERS:
        for route in router.routes:
            path = getattr(route, "path", "")
            if "GET" in getattr(route, "methods", ()) and path not in NOT_TIMED:
                patterns.append(path)
    missing = []
    for path in patterns:
        rx = re.compile("^" + re.sub(r"\{[^}]+\}", "[^?]+", path) + r"(\?.*)?$")
        if not any(rx.match(u) for u in urls):
            missing.append(path)
    return missing


# ------------------------------------------------------------------------------------------------- timing


@dataclass
class Timings:
    url: str
    status: int
    size: int
    ms: list[float]

    def pct(self, q: float) -> float:
        return round(float(np.percentile(np.asarray(self.ms), q)), 1)


def measure(client: httpx.Client, urls: Sequence[str], requests: int, warmup: int) -> list[Timings]:
    found = {u: Timings(u, 0, 0, []) for u in urls}
    for rnd in range(warmup + requests):
        for u in urls:
            began = time.perf_counter()
            answer = client.get(u)
            body = answer.content  # read in full: the timing ends at the last byte
            ms = (time.perf_counter() - began) * 1000
            t = found[u]
            t.status, t.size = answer.status_code, len(body)
            if rnd >= warmup:
                t.ms.append(ms)
    return list(found.values())


def browser_timing(base: str, client: httpx.Client, pages: Sequence[str], runs: int) -> dict[str, Any]:
    """Load to charts drawn in headless Debian chromium through Playwright, when both are here."""
    if runs < 1:  # the first load only fills the cache: nothing would be timed
        return {"skipped": "--browser-runs 0: server time only"}
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright  # type: ignore[import-not-found,unused-ignore]  # optional
    except ImportError:
        return {"skipped": "the playwright package is not installed: server time only"}
    if chromium is None:
        return {"skipped": "no chromium on this machine: server time only"}
    cookies = [{"name": c.name, "value": c.value or "", "url": base} for c in client.cookies.jar]
    found: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context()
            context.add_cookies(cookies)  # type: ignore[arg-type,unused-ignore]
            page = context.new_page()
            for path in pages:
                ms = []
                for _ in range(runs + 1):  # the first load fills the browser's cache, as a returning user's is
                    began = time.perf_counter()
                    page.goto(base + path, wait_until="load")
                    # charts.js draws each chart into a canvas; a page without charts is done at load
                    page.wait_for_function(CHARTS_DRAWN)
                    ms.append((time.perf_counter() - began) * 1000)
                found[path] = {"p50_ms": round(float(np.median(ms[1:])), 1), "max_ms": round(max(ms[1:]), 1),
                               "first_ms": round(ms[0], 1)}  # fmt: skip
        finally:
            browser.close()
    return found


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--admin-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL to create the bench database on")
    p.add_argument("--days", type=float, default=7.0, help="days of the demo city's data, ending now")
    p.add_argument("--requests", type=int, default=50, help="timed requests per route")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests per route first")
    p.add_argument("--browser-runs", type=int, default=5, help="timed loads per page in chromium (if available)")
    p.add_argument("--keep-database", metavar="NAME", help="keep the city in this database (reused if it is there)")
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    city = load_city()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=args.days)
    with bench_database(args.admin_url, args.keep_database) as (url, existed):
        settings = Settings(database_url=url, data_dir=folder, alert_clock="event", late_horizon_s=400 * 86400)
        began = time.monotonic()
        if existed:
            password, data = new_password(url), city_data(url)
            data["reused"] = args.keep_database
        else:
            password = prepare_city(url, city, folder, now)
            data = {**ingest_history(url, city, settings, start, now), **city_data(url)}
        data["setup_s"] = round(time.monotonic() - began, 1)
        with api_server(url, folder) as base, httpx.Client(base_url=base, timeout=60) as client:
            log_in(client, password)
            urls = discovered(client, page_urls(city, now.year))
            missing = uncovered(client, urls)
            timings = measure(client, urls, args.requests, args.warmup)
            browser = browser_timing(base, client, ["/", "/app/aq"], args.browser_runs)
    return summarise(args, data, timings, missing, browser)


def summarise(args: argparse.Namespace, data: dict[str, Any], timings: list[Timings], missing: list[str],
              browser: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    routes = {
        t.url: {
            "status": t.status,
            "bytes": t.size,
            "p50_ms": t.pct(50),
            "p95_ms": t.pct(95),
            "p99_ms": t.pct(99),
            "max_ms": round(max(t.ms), 1),
        }
        for t in timings
    }
    slowest = max(routes, key=lambda u: routes[u]["p99_ms"])
    overview, station_map = routes["/"]["p50_ms"], routes["/app/aq"]["p50_ms"]
    bad = [u for u, r in routes.items() if r["status"] != 200]
    goals = {
        "p99_ms": routes[slowest]["p99_ms"] < GOAL_P99_MS,
        "overview_ms": max(routes["/"]["max_ms"], 0) < GOAL_PAGE_MS,
        "map_ms": routes["/app/aq"]["max_ms"] < GOAL_PAGE_MS,
        "every_route_200": not bad,
        "every_route_covered": not missing,
    }
    return {
        "routes": len(routes),
        "p99_max_ms": routes[slowest]["p99_ms"],
        "slowest_route": slowest,
        "overview_ms": overview,
        "map_ms": station_map,
        "goals_met": goals,
        "detail": {
            "days": args.days,
            "requests": args.requests,
            "warmup": args.warmup,
            "data": data,
            "routes": routes,
            "not_200": bad,
            "uncovered": missing,
            "browser": browser,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
    }


def render(res: dict[str, Any]) -> str:
    d = res["detail"]
    data = d["data"]
    lines = [
        f"web pages benchmark: {d['days']:g} days of the demo city (Lampang, seed {SEED}), {d['requests']} requests "
        f"per route after {d['warmup']} warm-up, one keep-alive connection, logged in as {USERNAME}",
        f"  data: {data['readings']:,} readings over {data['span_days']} days, {data['energy_buckets']:,} energy "
        f"buckets, {data['alerts']} alerts, {data['dead_letters']} dead letters; "
        + (
            f"the city kept in {data['reused']} from an earlier run"
            if "reused" in data
            else f"{data['messages']:,} messages: ingest {data['ingest_s']} s, updaters + alerts {data['derive_s']} s, "
            f"set-up in all {data['setup_s']} s"
        ),
        "",
        f"  {'route':72} {'status':>6} {'KiB':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for u, r in d["routes"].items():
        flag = "  <- over 200 ms at p99" if r["p99_ms"] >= GOAL_P99_MS else ""
        lines.append(
            f"  {u[:72]:72} {r['status']:>6} {r['bytes'] / 1024:>7.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
            f"{r['p99_ms']:>8.1f} {r['max_ms']:>8.1f}{flag}"
        )
    g = res["goals_met"]
    lines += [
        "",
        f"  slowest route at p99: {res['slowest_route']} {res['p99_max_ms']} ms (goal < {GOAL_P99_MS:g} ms: "
        f"{'met' if g['p99_ms'] else 'MISSED'})",
        f"  server time to full HTML: overview p50 {res['overview_ms']} ms, max {d['routes']['/']['max_ms']} ms; "
        f"station map p50 {res['map_ms']} ms, max {d['routes']['/app/aq']['max_ms']} ms (goal < {GOAL_PAGE_MS:g} ms: "
        f"{'met' if g['overview_ms'] and g['map_ms'] else 'MISSED'})",
    ]
    browser = d["browser"]
    if "skipped" in browser:
        lines.append(f"  browser (load to charts drawn): skipped, {browser['skipped']}")
    else:
        for page, b in browser.items():
            lines.append(f"  browser, headless chromium, load to charts drawn: {page} p50 {b['p50_ms']} ms, "
                         f"max {b['max_ms']} ms (first load {b['first_ms']} ms)")  # fmt: skip
    if d["not_200"]:
        lines.append(f"  NOT 200: {', '.join(d['not_200'])}")
    if d["uncovered"]:
        lines.append(f"  page routes not requested: {', '.join(d['uncovered'])}")
    lines.append(f"  load average at the end: {d['load_average']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="lccm-bench-web-") as tmp:
        res = run(args, Path(tmp))
    print(render(res))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
