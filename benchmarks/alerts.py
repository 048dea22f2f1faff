"""Alert latency benchmark: publish -> alert raised, during a simulated burning-season episode.

The virtual Lampang (``simulators/``, seed 1) replays 9-11 January 2026: a smoke episode (PM2.5 24-h means near
110 ug/m3, AQI above 200) and, on the 10th around 09:20-10:25, an SO2 plume over the Mae Moh station at Sop Pat.
Everything is real: a private Mosquitto, a fresh database on the PostgreSQL of ``--admin-url`` (dropped at the
end), the ingest worker with the derived-data updaters and the alert evaluator on its commit hook, wired as
``lccm ingest`` wires them (``lccm.runtime``), and the shipped rule file (deploy/alert-rules.yaml).

1. **Prefill** (not timed): the day before the timed window, flat out, so the 24-hour means are complete.
2. **Episode** (timed): ``--hours`` of the window at ``--speed`` simulated seconds per wall second (default 36 h
   at 600x: an hour of the city in 6 s), from a publisher in its own process (one MQTT connection, QoS 1), with
   the whole city (``--city full``: 2,107 devices, ~480 messages/s, ~4,200 readings/s at 600x: above the design's
   "a few hundred messages per second" for a Thai city) or the six AQ stations only (``--city aq``).

Besides the shipped rules the benchmark adds ``--tiers`` PM2.5 tiers on the raw readings (``bench_pm25_above_<n>``:
above n ug/m3 for 10 min, clear below 0.8 n, no hold-off): they fire and clear with every night's inversion, so
the latency has enough samples for a 99th percentile. They are benchmark rules, labelled as such in the output.

Latency of an alert = its ``detected_at`` (the database's wall clock when the evaluator wrote it) minus the wall
time the simulator published the message carrying the reading that completed the raise condition (the sample at
``raised_at`` of that device). Measured for every metric rule raised in the timed window; offline and index (AQI)
alerts are counted but not timed (the reading that "triggers" them is not one message: the watermark's, an hour's
end). The evaluator runs on the event clock (``alert_clock=event``): the replay of January is "now" for it.

Run: ``.venv/bin/python benchmarks/alerts.py`` (~5 minutes). Small: ``--city aq --hours 4 --speed 3600``. The last
line printed is one JSON object: ``alerts``, ``latency_p50_s``, ``latency_p99_s``, then the rest.
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
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing as mp  # noqa: E402
import secrets  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from engine.alerts import AlertRule  # noqa: E402
from engine.timebase import BANGKOK  # noqa: E402
from lccm.runtime import Services, alert_evaluator, build_ingest, updaters  # noqa: E402
from lccm.services import start_broker  # noqa: E402
from lccm.settings import Settings  # noqa: E402
from simulators.city import load_city  # noqa: E402
from store import alerts as st  # noqa: E402
from store.devices import import_registry, parse_registry_csv  # noqa: E402
from store.migrate import migrate  # noqa: E402
from stream.alerts import AlertThread, AlertTransition  # noqa: E402
from stream.energy import EnergyThread  # noqa: E402

log = logging.getLogger("bench.alerts")

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
GOAL_P99_S = 2.0
SEED = 1
EPISODE_START = datetime(2026, 1, 9, 0, 0, tzinfo=BANGKOK)
TOPIC_ROOT = "bench/v1"


# ------------------------------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    name = f"lccm_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def device_patterns(city: str) -> list[str] | None:
    return ["LPG-AQ-0[1-6]"] if city == "aq" else None


def register_city(url: str, folder: Path) -> None:
    path = folder / "devices.csv"
    load_city().devices_csv(path)
    with psycopg.connect(url) as conn:
        import_registry(conn, parse_registry_csv(path.read_bytes()))


def tier_rules(tiers: Sequence[float]) -> list[AlertRule]:
    return [
        AlertRule.model_validate(
            {
                "key": f"bench_pm25_above_{int(t)}",
                "name": {"en": f"[benchmark] PM2.5 above {t:g} ug/m3", "th": f"[ทดสอบ] PM2.5 เกิน {t:g}"},
                "metric": "pm25_ugm3",
                "raise": {"above": t, "for": "10min"},
                "clear": {"below": 0.8 * t},
                "holdoff": 0,
                "dedup_key": "{site}/{signal}",
                "severity": "info",
                "scope": {"device_kinds": ["aq_station"]},
            }
        )
        for t in tiers
    ]


# ------------------------------------------------------------------------------------------------- publisher


def _simulate(host: str, port: int, start: str, end: str, speed: float | None, devices: list[str] | None,
              truth_path: str, client_prefix: str) -> None:  # fmt: skip  # pragma: no cover - child process
    from simulators.run import SimConfig, run_simulation

    run_simulation(
        load_city(),
        SimConfig(
            host=host, port=port, seed=SEED, start=datetime.fromisoformat(start), end=datetime.fromisoformat(end),
            speed=speed, faults=False, device_filter=devices, topic_root=TOPIC_ROOT, client_id_prefix=client_prefix,
            clients=1, keep_messages=False, truth_path=Path(truth_path), cap_at_wall_clock=False,
        ),
    )  # fmt: skip


def publish(broker: Any, start: datetime, end: datetime, speed: float | None, devices: list[str] | None,
            truth_path: Path, name: str) -> float:  # fmt: skip
    """Run the simulator in its own process (it must not share the ingest's GIL); returns its wall time."""
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=_simulate,
        args=(broker.host, broker.port, start.isoformat(), end.isoformat(), speed, devices, str(truth_path),
              f"bench-sim-{name}"),
        name=f"bench-sim-{name}",
    )  # fmt: skip
    t0 = time.monotonic()
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"simulator ({name}) exited with {proc.exitcode}")
    return time.monotonic() - t0


def published_at(truth_path: Path) -> tuple[dict[tuple[str, int], float], int, int]:
    """(device, event time us) -> wall time its message was published; messages; readings."""
    out: dict[tuple[str, int], float] = {}
    messages = readings = 0
    with truth_path.open("rb") as fh:
        for line in fh:
            m = orjson.loads(line)
            if m["kind"] != "up" or not m["acked"] or m["publish_wall_s"] is None:
                continue
            messages += 1
            readings += len(m["readings"])
            for _, _, ts, _ in m["readings"]:
                out.setdefault((m["device_id"], int(ts)), float(m["publish_wall_s"]))
    return out, messages, readings


# ------------------------------------------------------------------------------------------------- measuring


def raised_alerts(url: str, since: datetime) -> list[tuple[str, str, str, datetime, float, bool, str]]:
    """(rule, kind, device, raised_at, detected_at epoch s, late, signal) of alerts raised (event time) since."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.rule_key, coalesce(r.definition ->> 'kind', 'threshold'), d.device_id, a.raised_at,"
            " extract(epoch FROM a.detected_at)::float8, a.late, a.signal"
            " FROM alerts a JOIN devices d ON d.id = a.device_id LEFT JOIN alert_rules r ON r.key = a.rule_key"
            " WHERE a.raised_at >= %s ORDER BY a.raised_at",
            (since,),
        ).fetchall()
    return [(str(r), str(k), str(d), ra, float(det), bool(late), str(sig)) for r, k, d, ra, det, late, sig in rows]


def latencies(alerts: Sequence[tuple[Any, ...]], published: dict[tuple[str, int], float]) -> tuple[list[float], int]:
    """Publish-to-detected latency of each metric-rule alert; and how many could not be matched to a message."""
    out, unmatched = [], 0
    for _, kind, device, raised_at, detected, _, signal in alerts:
        if kind == "offline" or signal.startswith("aqi_"):
            continue
        key = (device, (raised_at - datetime(1970, 1, 1, tzinfo=raised_at.tzinfo)) // timedelta(microseconds=1))
        if key not in published:
            unmatched += 1
            continue
        out.append(detected - published[key])
    return out, unmatched


def wait_quiet(evaluator: Any, quiet_s: float = 0.5, timeout_s: float = 300.0) -> None:
    """Until the alert thread has had nothing to do for quiet_s."""
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if evaluator.has_work():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.05)


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 4) if values else None


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--admin-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL to create the bench database on")
    p.add_argument("--city", choices=("full", "aq"), default="full", help="whole city, or the AQ stations only")
    p.add_argument("--hours", type=float, default=36.0, help="timed window, simulated hours from 9 Jan 00:00")
    p.add_argument("--prefill-hours", type=float, default=24.0, help="untimed history before the window")
    p.add_argument("--speed", type=float, default=600.0, help="simulated seconds per wall second in the window")
    p.add_argument("--tiers", type=float, nargs="*", default=list(range(40, 250, 10)),
                   help="benchmark PM2.5 tiers (ug/m3) added to the shipped rules")  # fmt: skip
    p.add_argument("--verbose", "-v", action="store_true")
    return p.parse_args(argv)


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    devices = device_patterns(args.city)
    start = EPISODE_START
    prefill_start = start - timedelta(hours=args.prefill_hours)
    end = start + timedelta(hours=args.hours)
    sent: list[AlertTransition] = []
    with bench_database(args.admin_url) as url:
        broker = start_broker(folder / "mosquitto", persist=False)
        try:
            register_city(url, folder)
            settings = Settings(
                database_url=url, mqtt_host=broker.host, mqtt_port=broker.port, mqtt_topic_root=TOPIC_ROOT,
                mqtt_share_group="bench", data_dir=folder, alert_clock="event", late_horizon_s=400 * 86400,
                # A replay at 600x puts 15 min of event time in 1.5 s of queueing: judge lateness on 2 h.
                alert_late_after_s=7200,
            )  # fmt: skip
            evaluator = alert_evaluator(settings, url, notify=sent.append)
            with psycopg.connect(url) as conn:
                for rule in tier_rules(args.tiers):
                    st.put_rule(conn, rule.key, rule.definition(), "api")
            energy = EnergyThread(updaters(settings, url))
            alerts = AlertThread(evaluator)
            energy.start()
            alerts.start()
            worker = build_ingest(
                settings, Services(url, broker.host, broker.port, broker.protocol), client_id="bench-ingest",
                on_commit=[energy.poke, alerts.on_commit],
            )  # fmt: skip
            worker.start()
            try:
                prefill_s = publish(broker, prefill_start, start, None, devices, folder / "prefill.jsonl", "prefill")
                worker.wait_idle(1.0, timeout_s=600)
                wait_quiet(evaluator)
                wall_start = time.time()
                window_s = publish(broker, start, end, args.speed, devices, folder / "episode.jsonl", "episode")
                worker.wait_idle(1.0, timeout_s=600)
                wait_quiet(evaluator)
                stats = worker.loop.stats.as_dict()
                t = evaluator.totals
                evaluation = {
                    "runs": t.runs,
                    "busy_s": round(t.busy_s, 2),
                    "mean_run_ms": round(1000 * t.busy_s / max(t.runs, 1), 1),
                    "max_run_ms": round(1000 * t.max_run_s, 1),
                }
            finally:
                worker.stop()
                energy.stop(drain=False)
                alerts.stop(drain=False)
            published, messages, readings = published_at(folder / "episode.jsonl")
            found = [a for a in raised_alerts(url, start) if a[4] >= wall_start]
            lat, unmatched = latencies(found, published)
        finally:
            broker.stop()
    by_rule = Counter(a[0] for a in found)
    return {
        "alerts": len(found),
        "latency_p50_s": percentile(lat, 50),
        "latency_p99_s": percentile(lat, 99),
        "latency_max_s": round(max(lat), 4) if lat else None,
        "latency_alerts": len(lat),
        "goal_p99_s": GOAL_P99_S,
        "goal_met": bool(lat) and (percentile(lat, 99) or 0) < GOAL_P99_S,
        "detail": {
            "city": args.city,
            "speed": args.speed,
            "window": [start.isoformat(), end.isoformat()],
            "prefill_hours": args.prefill_hours,
            "prefill_wall_s": round(prefill_s, 2),
            "window_wall_s": round(window_s, 2),
            "messages": messages,
            "readings": readings,
            "messages_per_s": round(messages / window_s, 1) if window_s else None,
            "by_rule": dict(sorted(by_rule.items())),
            "late": sum(1 for a in found if a[5]),
            "unmatched": unmatched,
            "notified": len(sent),
            "latency_p90_s": percentile(lat, 90),
            "latency_min_s": round(min(lat), 4) if lat else None,
            "ingest": stats,
            "evaluator": evaluation,
        },
    }


def render(res: dict[str, Any]) -> str:
    d = res["detail"]
    lines = [
        f"Alert latency during a burning-season episode ({d['city']} city, {d['speed']:g}x, {d['window'][0]} .. "
        f"{d['window'][1]})",
        f"  published {d['messages']} messages ({d['readings']} readings) in {d['window_wall_s']} s "
        f"({d['messages_per_s']} msg/s)",
        f"  alerts raised in the window: {res['alerts']} ({d['late']} late), notified {d['notified']}",
    ]
    lines += [f"    {rule:36} {n}" for rule, n in d["by_rule"].items()]
    lines.append(
        f"  publish -> alert raised, {res['latency_alerts']} metric-rule alerts: p50 {res['latency_p50_s']} s, "
        f"p90 {d['latency_p90_s']} s, p99 {res['latency_p99_s']} s, max {res['latency_max_s']} s "
        f"(goal p99 < {res['goal_p99_s']} s: {'met' if res['goal_met'] else 'MISSED'})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="lccm-bench-alerts-") as tmp:
        res = run(args, Path(tmp))
    print(render(res))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
