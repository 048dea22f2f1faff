"""Memory benchmark: peak RSS of one ingest process with many devices, and what its bounded structures hold.

Registers ``--devices`` devices (100,000 by default: electricity meters, and ``--aq-share`` of them AQ stations so
the alert evaluator's index rules have devices to watch) on ``--sites`` sites of one city, then streams ``--hours``
of simulated time (a day by default) from every device at ``--cadence-s`` through the ingest process as ``lccm
ingest`` wires it (``lccm.runtime.ingest_process``: the stream loop with its dedup cache, the derived-data updaters
and the alert evaluator with the shipped rules, on the event clock so the replay counts as live).

No broker: the broker would be the bottleneck, and the question is the ingest's memory. The benchmark builds each
message as a device would send it (JSON, ``lccm/v1/bench/<device>/up``) and puts it in the process's real inbox
(``stream.inbox.ByteBoundedInbox``), whose ``put`` waits when the inbox's byte budget is used up: the same
backpressure the MQTT network thread gets. Everything after the inbox is the product's: decode, dedup, the COPY,
the commit hooks, the updaters' and the evaluator's threads, on a fresh database on ``--admin-url`` (dropped at the
end).

Reports the peak RSS (``resource.getrusage``), the RSS after set-up and after each simulated hour (flat when
memory does not grow with history), and what each bounded structure holds (the inbox's peak bytes, the dedup
cache's arrays, the evaluator's per-device state) against its budget. At the end the stored readings are counted:
``lost`` must be 0.

The budgets are the settings' defaults unless given (``--inbox-mb``, ``--dedup-mb``). The
benchmark keeps nothing per device of its own: topics and payloads are made per message. ``--tracemalloc`` keeps a
snapshot of the allocation sites whenever the traced total is the highest yet, and logs the top 30 at the end.
``--index-check``: after the stream, waits until the updaters' queues are empty (the stream runs far faster than real
time, so the AQI updater is behind and the index rules get no AQI hour during it), checks every index and reports
the AQ stations' span history before and after (the index rules' frontiers move and let it go).

Run: ``.venv/bin/python benchmarks/memory.py`` (100,000 devices, a day at 15 minutes: long on a shared machine;
``--hours 2`` gives the peak in a few minutes). Small: ``--devices 200 --hours 1``. The last line printed is one
JSON object.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and its name would shadow the ``ingest`` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import secrets  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from lccm.runtime import Ingest, Services, build_ingest, ingest_process  # noqa: E402
from lccm.settings import Settings  # noqa: E402
from lccm.store.migrate import migrate  # noqa: E402
from lccm.stream.alerts import AlertEvaluator  # noqa: E402
from lccm.stream.inbox import ByteBoundedInbox  # noqa: E402
from lccm.stream.loop import RawMessage  # noqa: E402

log = logging.getLogger("bench")

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
GOAL_PEAK_RSS_MB = 500
CITY = "bench"
ROOT = "lccm/v1"
MB = 2**20


def rss_mb() -> float:
    """The current resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / MB


class PeakSampler:
    """Samples the RSS every 0.1 s in a thread, with what the process was doing then (the phase)."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), round(rss_mb(), 1))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


class TracedPeak:
    """With ``--tracemalloc``: every ``every_s`` looks at the memory Python and numpy have allocated (tracemalloc
    traces both) and keeps a snapshot whenever it is the highest yet, so the allocation sites are read at the peak,
    not at the end."""

    def __init__(self, every_s: float = 5.0) -> None:
        tracemalloc.start()
        self.peak_bytes = 0
        self.snapshot: tracemalloc.Snapshot | None = None
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self.look()

    def look(self) -> None:
        current, _ = tracemalloc.get_traced_memory()
        if current > self.peak_bytes:
            self.snapshot = None  # free the previous one before the next is taken
            self.peak_bytes = current
            self.snapshot = tracemalloc.take_snapshot().filter_traces(
                (tracemalloc.Filter(False, tracemalloc.__file__),)
            )

    def report(self, top: int = 30) -> list[str]:
        """The allocation sites by size at the traced peak (and the peak of tracemalloc's own counter)."""
        self._stop.set()
        self._thread.join()
        self.look()
        _, traced_peak = tracemalloc.get_traced_memory()
        lines = [f"tracemalloc: {self.peak_bytes / MB:.1f} MB traced at the snapshot, peak {traced_peak / MB:.1f} MB"]
        if self.snapshot is not None:
            lines += [f"tracemalloc: {stat}" for stat in self.snapshot.statistics("lineno")[:top]]
        tracemalloc.stop()
        return lines


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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


def device_name(i: int, aq_every: int) -> tuple[str, str]:
    """(device id, kind) of device i: every ``aq_every``-th one an AQ station."""
    if aq_every and i % aq_every == 0:
        return f"AQ{i:06d}", "aq_station"
    return f"M{i:06d}", "electricity_meter"


def register(url: str, devices: int, sites: int, aq_every: int, cadence_s: int) -> None:
    """Sites and devices by COPY (100,000 inserts one by one would take minutes). Nothing of it is kept: the names
    are made again as messages are built, so the benchmark's own data does not count in the process's RSS."""
    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY sites (site_code, name, kind, city, lat, lon) FROM STDIN") as cp:
            for s in range(sites):
                cp.write_row((f"S{s:05d}", f"Bench site {s}", "building", CITY, 18.29, 99.49))
        site_ids = dict(conn.execute("SELECT site_code, id FROM sites").fetchall())
        with conn.cursor().copy("COPY devices (device_id, site_id, kind, name, cadence_s) FROM STDIN") as cp:
            for i in range(devices):
                d, kind = device_name(i, aq_every)
                cp.write_row((d, site_ids[f"S{i % sites:05d}"], kind, d, cadence_s))


def payload(kind: str, i: int, step: int, ts: int) -> bytes:
    if kind == "aq_station":
        pm25 = 20.0 + (i * 7 + step * 3) % 40
        return f'{{"seq":{step},"ts":{ts},"values":{{"pm25_ugm3":{pm25},"pm10_ugm3":{pm25 * 1.6:.1f}}}}}'.encode()
    energy = 1000.0 + step * 2.5 + i % 97
    return f'{{"seq":{step},"ts":{ts},"values":{{"energy_kwh":{energy},"power_w":{10_000 + i % 500}}}}}'.encode()


def structures(ingest: Ingest, inbox: ByteBoundedInbox, settings: Settings, url: str) -> dict[str, Any]:
    """What each bounded structure holds now, against its budget."""
    cache = ingest.loop.dedup_cache
    out: dict[str, Any] = {
        "inbox": {"budget_bytes": inbox.budget_bytes, "peak_bytes": inbox.peak_bytes, "waits": inbox.waits},
        "dedup_cache": {"budget_bytes": settings.dedup_cache_bytes, "bytes": cache.nbytes, "readings": len(cache)},
    }
    ev: AlertEvaluator | None = ingest.evaluator
    if ev is not None:
        # The device clocks are rows of alert_device_clock (migration 022), not process memory; what the evaluator
        # keeps per device between runs is its offline cache (a dict slot and an int: about 100 bytes).
        offline = ev._offline.delivered  # the benchmark looks inside: an estimate, not an interface
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE cardinality(spans) > 0) FROM alert_device_clock"
            ).fetchone()
        assert row is not None
        out["alert_state"] = {
            "history_budget_bytes_per_watched_device": settings.alert_history_bytes,
            "devices": int(row[0]),
            "devices_with_history": int(row[1]),
            "spans_kept": spans_kept(url),
            "estimated_bytes": 100 * len(offline),
            "estimated_bytes_per_device": 100 if offline else 0,
        }
    return out


def failure(ingest: Ingest) -> str | None:
    """Why a started worker is unhealthy (the mqtt-in worker is never started: there is no broker)."""
    for st in ingest.supervisor.statuses():
        if st.name != "mqtt-in" and not st.healthy and st.state != "stopped":
            return f"{st.name} {st.state}: {st.last_error}"
    return None


def settle(ingest: Ingest, quiet_s: float = 1.0, timeout_s: float = 300.0) -> None:
    """Wait until the last batch's commit hooks ran and the evaluator has had nothing to do for ``quiet_s``."""
    ev = ingest.evaluator
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while ev is not None and time.monotonic() < deadline:
        if ev.has_work() or ingest.loop.stats.batches == 0:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.05)


def spans_kept(url: str) -> int:
    """The (newest event time, watermark) pairs the device clocks keep for index rules."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(cardinality(spans)), 0) / 2 FROM alert_device_clock").fetchone()
    return int(row[0]) if row else 0


def index_check(ingest: Ingest, url: str, timeout_s: float) -> dict[str, Any]:
    """Let the derived-data updaters empty their queues (the stream runs far faster than real time, so during it
    the AQI updater is hours behind and the index rules find no AQI hour), then check every index as an AQI
    recompute does: the index rules' frontiers move and the span history they passed is dropped."""
    before = spans_kept(url)
    started = time.monotonic()
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM rollup_queue) + (SELECT count(*) FROM sample_queue)"
                " + (SELECT count(*) FROM aqi_queue) + (SELECT count(*) FROM day_queue)"
            ).fetchone()
            if row is None or row[0] == 0:
                break
            time.sleep(1.0)
        else:
            log.warning("the updaters' queues did not empty in %.0f s: the index check may find no AQI hour", timeout_s)
    drained_s = time.monotonic() - started
    if ingest.evaluator is not None:
        ingest.evaluator.request_index_check()
        settle(ingest)  # the check is pending work until a run has done it
    return {
        "index_check": {"spans_kept_before": before, "updaters_drained_s": round(drained_s, 1),
                        "spans_kept_after": spans_kept(url)},
    }  # fmt: skip


def stream(ingest: Ingest, url: str, aq_every: int, args: argparse.Namespace, sampler: PeakSampler) -> dict[str, Any]:
    inbox = ingest.loop._inbox
    assert isinstance(inbox, ByteBoundedInbox)
    steps = int(args.hours * 3600 // args.cadence_s)
    t0 = int(time.time()) - int(args.hours * 3600) - 3600  # the simulated day ends an hour ago
    t0 -= t0 % args.cadence_s
    per_hour: list[float] = []
    sent = 0
    sampler.phase = "stream"
    started = time.perf_counter()
    for step in range(steps):
        ts = t0 + step * args.cadence_s
        received = time.time_ns() // 1000
        for i in range(args.devices):  # each message's topic and payload new, as paho hands them over
            d, kind = device_name(i, aq_every)
            inbox.put(RawMessage(f"{ROOT}/{CITY}/{d}/up", payload(kind, i, step, ts), received, (0, sent, 0)))
            sent += 1
        if (step + 1) * args.cadence_s % 3600 == 0:
            per_hour.append(round(rss_mb(), 1))
            log.info("hour %d: rss %.0f MB, %d messages", len(per_hour), per_hour[-1], sent)
        if failure(ingest):
            raise RuntimeError(failure(ingest))
    while ingest.loop.stats.messages < sent:
        if failure(ingest):
            raise RuntimeError(failure(ingest))
        time.sleep(0.1)
    sampler.phase = "settle"
    settle(ingest)
    elapsed = time.perf_counter() - started
    checked = index_check(ingest, url, args.index_check_timeout_s) if args.index_check else {}
    return {"messages": sent, "stream_s": round(elapsed, 1), "rss_mb_per_hour": per_hour, **checked}


def run(args: argparse.Namespace) -> dict[str, Any]:
    aq_every = round(1 / args.aq_share) if args.aq_share > 0 else 0
    with bench_database(args.admin_url) as url:
        register(url, args.devices, args.sites, aq_every, args.cadence_s)
        budgets = {  # the settings' defaults unless given
            name: value
            for name, value in (
                ("inbox_bytes", args.inbox_mb), ("dedup_cache_bytes", args.dedup_mb),
            )
            if value is not None
        }  # fmt: skip
        settings = Settings(
            database_url=url, alert_clock="event", alerts_enabled=True, notify_mqtt_all=False, mqtt_topic_root=ROOT,
            **{name: round(mb * MB) for name, mb in budgets.items()},
        )  # fmt: skip
        svc = Services(
            database_url=url, mqtt_host="127.0.0.1", mqtt_port=1, mqtt_protocol="5"
        )  # never connected: no broker
        if args.parts == "stream":  # the stream loop alone: what the updaters and the evaluator add, by difference
            ingest = build_ingest(settings, svc)
        else:
            if args.parts == "no-alerts":
                settings = settings.model_copy(update={"alerts_enabled": False})
            ingest = ingest_process(settings, svc)
        sampler = PeakSampler()
        inbox = ingest.loop._inbox
        assert isinstance(inbox, ByteBoundedInbox)
        if ingest.evaluator is not None:  # what its worker does first: the device and rule caches, the catch-up
            ingest.evaluator.prepare()
        for w in ingest.supervisor:
            if w.name != "mqtt-in":
                w.start()
        baseline = rss_mb()
        traced = TracedPeak() if args.tracemalloc else None
        try:
            streamed = stream(ingest, url, aq_every, args, sampler)
            held = structures(ingest, inbox, settings, url)
            sampler.phase = "stop"
            if traced is not None:
                for line in traced.report():
                    log.info("%s", line)
        finally:
            for w in ingest.supervisor:
                w.request_stop(drain=False)
            for w in ingest.supervisor:
                w.join(60)
            ingest.sink.close()
            if ingest.notifications is not None:
                ingest.notifications.close()
            if ingest.pool is not None:
                ingest.pool.close()
            by_phase = sampler.stop()
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
        stored = int(row[0]) if row else 0
    expected = streamed["messages"] * 2
    peak = peak_rss_mb()
    return {
        "peak_rss_mb": round(peak, 1),
        "goal_peak_rss_mb": GOAL_PEAK_RSS_MB,
        "within_goal": peak < GOAL_PEAK_RSS_MB,
        "lost": expected - stored,
        "devices": args.devices,
        "hours": args.hours,
        "cadence_s": args.cadence_s,
        "readings": expected,
        "readings_per_s": round(expected / max(streamed["stream_s"], 1e-9)),
        "rss_after_setup_mb": round(baseline, 1),
        "rss_peak_mb_by_phase": by_phase,
        "parts": args.parts,
        "path": "codec + stream loop + updaters + alert evaluator, fed through the inbox (no broker)",
        **streamed,
        "structures": held,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--sites", type=int, default=1_000)
    p.add_argument("--aq-share", type=float, default=0.01, help="share of the devices that are AQ stations")
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--cadence-s", type=int, default=900)
    p.add_argument("--inbox-mb", type=float, help="LCCM_INBOX_BYTES in MiB (default: the setting's default)")
    p.add_argument("--dedup-mb", type=float, help="LCCM_DEDUP_CACHE_BYTES in MiB (default: the setting's default)")
    p.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    p.add_argument(
        "--parts", choices=("all", "no-alerts", "stream"), default="all",
        help="all: as `lccm ingest` runs (default); no-alerts: without the evaluator; stream: the stream loop only",
    )  # fmt: skip
    p.add_argument(
        "--index-check", action="store_true",
        help="after the stream, wait for the updaters' queues to empty and check every index (alert_state then shows"
        " the span history the index rules' frontiers let go)",
    )  # fmt: skip
    p.add_argument("--index-check-timeout-s", type=float, default=600.0)
    p.add_argument("--tracemalloc", action="store_true", help="log the top Python allocation sites (slow)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("lccm").setLevel(logging.WARNING)
    result = run(args)
    for key in (
        "peak_rss_mb",
        "rss_after_setup_mb",
        "rss_peak_mb_by_phase",
        "rss_mb_per_hour",
        "lost",
        "readings",
        "readings_per_s",
    ):
        print(f"{key}: {result[key]}")
    for name, figures in result["structures"].items():
        print(f"{name}: {figures}")
    if "index_check" in result:
        print(f"index_check: {result['index_check']}")
    print(json.dumps(result))
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
