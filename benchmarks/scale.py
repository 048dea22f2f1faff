"""Scale benchmark: the same batched workload through 1, 2 and 3 real ``lccm ingest`` processes (issue 14 item 3).

Each configuration gets a fresh private Mosquitto (``lccm.services.start_broker``, no-drop configuration) and empty
tables; its ingest processes are real ``lccm ingest`` commands (``python -m lccm ingest``, each its own client id
and data folder) on one shared subscription, configured by environment as deployed: alerts on, partition leases,
the updaters. The publishers are ``benchmarks/ingest.py``'s (imported, not copied: pre-encoded payloads, QoS 1 with a
window, about 1 % published twice). Configurations (``--configs``):

- ``N`` (1, 2, 3): N processes of role ``all``, each doing everything;
- ``NsMd``: N processes of role ``stream`` and M of role ``derived`` (LCCM_INGEST_ROLE, docs/partitions.md#roles).

Measured from outside, as an operator would: the database is polled every 0.2 s until every distinct reading
published is stored (``count(*)`` of readings: every 5 s, and at every poll once each publisher's last message is
stored, so that counting does not take the CPU it measures). ``readings_per_s`` is readings / (first publish -> all
stored); ``derived_s`` is first publish -> the derived-data queues empty once all is stored (the updaters caught up; the
evaluator's share of that is not visible from outside). Stored rows are checked against what was published (``lost``
and ``extra`` must be 0). The bare COPY limit is the same rows by one binary COPY in the same run
(``benchmarks/ingest.py: run_copy``).

Where the CPU went is printed per configuration, from the first publish until the derived data caught up: each
process and its threads (named when py-spy is installed: it is not a dependency), the PostgreSQL backends serving
each process (matched by client port), the broker, the publishers, the poll's own backend and the whole machine, and
the CPU-us per reading of the processes, their backends and the broker; then the partitions each process held over
time (``12.4s:32/32``: from 12.4 s after the first publish, 32 each) and the steps that failed and were retried.

Run under ``nice -n 10`` on a shared machine: ``.venv/bin/python benchmarks/scale.py`` (a few minutes). Small:
``--batched-messages 2000``. The last line printed is one JSON object with the rates and ratios (2 vs 1, 3 vs 1).
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
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402

from benchmarks.ingest import (  # noqa: E402
    CADENCE_S,
    DEFAULT_ADMIN_URL,
    DERIVED_QUEUES,
    METER_KEYS,
    CpuMeter,
    Publishers,
    Workload,
    bench_database,
    check_stored,
    empty_readings,
    expected_columns,
    first_event_s,
    local_tcp_ports,
    proc_cpu_s,
    register_devices,
    run_copy,
    schedule,
)
from lccm.services import Broker, start_broker  # noqa: E402
from lccm.settings import Settings  # noqa: E402

CONFIG = re.compile(r"^(?:(\d+)|(\d+)s(\d+)d)$")


def roles_of(config: str) -> list[str]:
    """``"2"`` -> two of role all; ``"2s1d"`` -> two stream and one derived."""
    m = CONFIG.match(config)
    if m is None:
        raise ValueError(f"configuration {config!r}: N or NsMd")
    if m.group(1):
        return ["all"] * int(m.group(1))
    return ["stream"] * int(m.group(2)) + ["derived"] * int(m.group(3))


class IngestCommand:
    """One ``lccm ingest`` process, started and ready (subscribed, or for role derived, started)."""

    def __init__(self, env: dict[str, str], client_id: str, folder: Path, role: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.log = folder / "ingest.log"
        env = {**env, "LCCM_MQTT_CLIENT_ID": client_id, "LCCM_DATA_DIR": str(folder), "LCCM_INGEST_ROLE": role}
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lccm", "ingest"], env=env, stdout=subprocess.PIPE, stderr=err
            )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(b"deriving:" if self.role == "derived" else b"ingesting from"):
            raise RuntimeError(f"lccm ingest did not start: {line!r} {self.log.read_text()[-2000:]}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # its stats lines: never let it block

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def _py_spy() -> str | None:
    """py-spy, when installed (profiling only, not a dependency): it names the threads the CPU is reported by."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def thread_names(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name of a running process (``py-spy dump``), or {} without py-spy: Python 3.11
    does not give its threads' names to the OS, so /proc shows every thread as ``python``."""
    spy = _py_spy()
    if spy is None:
        return {}
    try:
        out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', out, re.M)}


def threads_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process so far (/proc/<pid>/task)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return {}
    return {tid: proc_cpu_s(pid, tid) for tid in tids}


def backends_cpu_s(conn: psycopg.Connection, pids: Sequence[int]) -> dict[int, tuple[int, float]]:
    """PostgreSQL backend pid -> (index of the ingest process it serves, its CPU seconds so far): each backend of
    the database matched to a process by its client port (the sink's connection and the pool's)."""
    owner = {port: i for i, pid in enumerate(pids) for port in local_tcp_ports(pid)}
    rows = conn.execute(
        "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchall()
    return {int(b): (owner[port], proc_cpu_s(int(b))) for b, port in rows if port in owner}


class Probe:
    """Where the CPU went while a configuration ran, measured from outside: each ingest process (and its threads,
    named when py-spy is installed), the PostgreSQL backends serving it, the broker; and how the device partitions'
    leases were shared over time (a process that joins gets its share only after the others give theirs up)."""

    def __init__(self, conn: psycopg.Connection, procs: Sequence[IngestCommand], broker_pid: int) -> None:
        self.pids = [p.proc.pid for p in procs]
        self.names = [thread_names(pid) for pid in self.pids]
        self.meter = CpuMeter()
        for i, pid in enumerate(self.pids):
            self.meter.add(f"process_{i}", pid)
        self.meter.add("broker", broker_pid)
        self.meter.add("poll_backend", int(conn.info.backend_pid))  # what measuring costs: it must stay small
        self.threads0 = [threads_cpu_s(pid) for pid in self.pids]
        self.backends0 = backends_cpu_s(conn, self.pids)
        self.t0 = time.monotonic()
        self.leases: list[tuple[float, dict[int, int]]] = []

    def poll_leases(self, conn: psycopg.Connection) -> None:
        """Record the partitions each process holds (by process index) when it changed since the last poll."""
        rows = conn.execute(
            "SELECT owner, count(*) FROM worker_leases WHERE expires_at > now() GROUP BY owner"
        ).fetchall()
        index = {pid: i for i, pid in enumerate(self.pids)}
        held = {index.get(int(owner.split(":")[-2]), -1): int(n) for owner, n in rows if owner}
        if not self.leases or self.leases[-1][1] != held:
            self.leases.append((round(time.monotonic() - self.t0, 2), dict(sorted(held.items()))))

    def stop(self, conn: psycopg.Connection) -> dict[str, Any]:
        used: dict[str, Any] = dict(self.meter.stop())
        backends1 = backends_cpu_s(conn, self.pids)
        for i, pid in enumerate(self.pids):
            spent = {b: cpu - self.backends0.get(b, (i, 0.0))[1] for b, (j, cpu) in backends1.items() if j == i}
            used[f"process_{i}_backends"] = round(sum(spent.values()), 2)
            threads = {tid: cpu - self.threads0[i].get(tid, 0.0) for tid, cpu in threads_cpu_s(pid).items()}
            named: dict[str, float] = {}
            for tid, cpu in threads.items():
                name = self.names[i].get(tid, "other")
                named[name] = named.get(name, 0.0) + cpu
            used[f"process_{i}_threads"] = {k: round(v, 2) for k, v in sorted(named.items(), key=lambda kv: -kv[1])}
        return used


# How many of the given readings (device, metric, event time in us) are stored: index probes.
LAST_STORED = (
    "SELECT count(*) FROM unnest(%s::int[], %s::smallint[], %s::bigint[]) AS t(d, m, ts) JOIN readings r"
    " ON r.device_id = t.d AND r.metric_id = t.m AND r.ts = 'epoch'::timestamptz + t.ts * interval '1 microsecond'"
)


def last_readings(wl: Workload, device_pk: dict[str, int]) -> tuple[list[int], list[int], list[int]]:
    """A reading of each publisher's last distinct message (its schedule's last but the repeats of earlier ones), as
    the columns of LAST_STORED: message j is device j % D, its records k = seq * R ... at t0 + k * step_s seconds
    (benchmarks/ingest.py)."""
    devices, metrics, ts = [], [], []
    for p in range(wl.publishers):
        names, n = wl.share(p)
        if n == 0:
            continue
        j = n - 1
        devices.append(device_pk[names[j % len(names)]])
        metrics.append(METER_KEYS[0][1])
        ts.append((wl.t0 + (j // len(names)) * wl.records_per_message * wl.step_s) * 1_000_000)
    return devices, metrics, ts


def _count(conn: psycopg.Connection, query: str, params: Sequence[object] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def run_config(
    config: str, wl: Workload, broker: Broker, url: str, device_pk: dict[str, int], folder: Path, tuning: dict[str, str]
) -> dict[str, Any]:
    """The workload through one configuration's processes; rates measured by polling the database."""
    empty_readings(url)
    roles = roles_of(config)
    env = {
        **os.environ, "LCCM_DATABASE_URL": url, "LCCM_MQTT_HOST": broker.host, "LCCM_MQTT_PORT": str(broker.port),
        "LCCM_MQTT_PROTOCOL": "5", "LCCM_MQTT_TOPIC_ROOT": wl.topic_root, "LCCM_MQTT_SHARE_GROUP": "lccm-scale",
        "LCCM_METRICS_PORT": "0", "LCCM_LOG_LEVEL": "WARNING", **tuning,
    }  # fmt: skip
    procs = [IngestCommand(env, f"lccm-scale-{config}-{i}", folder / f"{config}-{i}", r) for i, r in enumerate(roles)]
    pubs = None
    try:
        for p in procs:
            p.wait_ready()
        pubs = Publishers(wl, broker)
        pubs.wait_ready()
        distinct = sum(
            len(set(schedule(wl.share(p)[1], wl.dup_every, wl.dup_lag))) for p in range(wl.publishers)
        )  # every message of the schedule is sent (no --seconds cap here)
        expected_rows = distinct * wl.readings_per_message
        last_keys = last_readings(wl, device_pk)
        pending = " + ".join(f"(SELECT count(*) FROM {q})" for q in DERIVED_QUEUES)
        with psycopg.connect(url, autocommit=True) as conn:
            # One backend does the poll's counting, so its CPU shows in the probe's poll_backend (parallel workers
            # are other processes) and it never takes both cores at once.
            conn.execute("SET max_parallel_workers_per_gather = 0")
            probe = Probe(conn, procs, broker.process.pid if broker.process is not None else os.getpid())
            pubs.go()
            stored_at = derived_at = None
            last, since = -1, time.monotonic()
            exact_at, exact_counts = time.monotonic(), 0
            while True:
                time.sleep(0.2)
                now = time.monotonic()
                probe.poll_leases(conn)
                # count(*) reads every row stored so far (about 0.1 CPU-s at 2 M rows): five times a second it
                # took a quarter to half of one of the two cores from the processes measured. So it runs every 5 s
                # (a stall shows), and at every poll only once each publisher's last message is stored (one index
                # probe each): what is left then is what the processes still hold of earlier messages.
                if stored_at is None and (
                    now - exact_at >= 5.0 or _count(conn, LAST_STORED, last_keys) == len(last_keys[0])
                ):
                    exact_at, exact_counts = now, exact_counts + 1
                    n = _count(conn, "SELECT count(*) FROM readings")
                    if n != last:
                        last, since = n, now
                    if n >= expected_rows:
                        stored_at = now
                if stored_at is not None and _count(conn, f"SELECT {pending}") == 0:
                    derived_at = now
                    break
                if now - since > 60:
                    break  # stalled: reported as incomplete
                for p in procs:
                    if p.proc.poll() is not None:
                        raise RuntimeError(f"an ingest process exited: {p.log.read_text()[-2000:]}")
            used = probe.stop(conn)
        res = pubs.collect()
    finally:
        if pubs is not None:
            pubs.close()
        codes = [p.stop() for p in procs]
    stored = check_stored(url, expected_columns(wl, res.sent, device_pk))
    # A step that failed and was retried (a deadlock, a unique violation between two processes) costs the time of
    # its backoff: it must show beside the rates, not only in a log that is deleted with the run's folder.
    failures = [line for p in procs for line in p.log.read_text().splitlines() if ": step failed (" in line]
    out: dict[str, Any] = {
        "config": config,
        "processes": len(roles),
        "roles": roles,
        "complete": stored_at is not None,
        "exit_codes": codes,
        "readings_stored": stored.rows,
        "lost": stored.lost,
        "extra": stored.extra,
        "all_acked_by_broker": res.all_acked,
        "cpu_s": used | {"publishers": round(res.cpu_s, 2)},
        "leases": probe.leases,
        "exact_counts": exact_counts,
        "step_failures": len(failures),
        "step_failure_examples": failures[:3],
    }
    ours = sum(v for k, v in used.items() if isinstance(v, float) and k.startswith(("process_", "broker")))
    out["cpu_us_per_reading"] = round(ours / max(stored.rows, 1) * 1e6, 2)  # processes, their backends, the broker
    if stored_at is not None:
        out["seconds"] = round(stored_at - res.first, 3)
        out["readings_per_s"] = round(stored.rows / (stored_at - res.first))
    if derived_at is not None:
        out["derived_seconds"] = round(derived_at - res.first, 3)
        out["derived_readings_per_s"] = round(stored.rows / (derived_at - res.first))
    return out


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 2) if a and b else None


def render(rows: list[dict[str, Any]], copy: dict[str, Any]) -> str:
    one = rows[0].get("readings_per_s") if rows else None
    lines = [
        "| processes (roles) | readings/s to commit | vs 1 | derived caught up, readings/s | vs 1 | lost | extra |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    one_d = rows[0].get("derived_readings_per_s") if rows else None
    for r in rows:
        label = f"{r['config']} ({', '.join(r['roles'])})"
        lines.append(
            f"| {label} | {r.get('readings_per_s', 'incomplete'):,} | {_ratio(r.get('readings_per_s'), one)} |"
            f" {r.get('derived_readings_per_s', 'incomplete'):,} | {_ratio(r.get('derived_readings_per_s'), one_d)} |"
            f" {r['lost']} | {r['extra']} |"
        )
    lines.append(f"| bare COPY of the same rows | {copy.get('copy_rows_per_s', 0):,} | | | | | |")
    for r in rows:
        lines.append(f"[{r['config']}] CPU-s, first publish -> derived caught up:" + cpu_line(r))
    return "\n".join(lines)


def cpu_line(r: dict[str, Any]) -> str:
    """One configuration's CPU seconds by part, and its partition shares over time (s after the first publish)."""
    used = r.get("cpu_s", {})
    parts = []
    for i in range(r["processes"]):
        threads = ", ".join(f"{k} {v:.1f}" for k, v in used.get(f"process_{i}_threads", {}).items() if v >= 0.05)
        parts.append(
            f"process {i} ({r['roles'][i]}) {used.get(f'process_{i}', 0):.1f} [{threads}],"
            f" its backends {used.get(f'process_{i}_backends', 0):.1f}"
        )
    rest = ", ".join(
        f"{k} {used[k]:.1f}" for k in ("broker", "publishers", "poll_backend", "machine_busy") if k in used
    )
    fails = f"\n  step failures {r['step_failures']}: {r['step_failure_examples']}" if r.get("step_failures") else ""
    shares = " ".join(f"{t}s:{'/'.join(str(n) for n in held.values())}" for t, held in r.get("leases", []))
    return (
        "\n  " + ";\n  ".join(parts) + f";\n  {rest}; {r.get('cpu_us_per_reading')} CPU-us per reading"
        " (processes, backends, broker)" + (f"\n  partitions held: {shares}" if shares else "") + fails
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batched-messages", type=int, default=20_000, help="messages (default %(default)s)")
    ap.add_argument("--readings-per-message", type=int, default=100)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument(
        "--record-step-s",
        type=int,
        default=CADENCE_S,
        help="event time between a device's records (default: its cadence)",
    )
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--window", type=int, default=1000, help="outstanding QoS 1 publishes per publisher")
    ap.add_argument("--dup-percent", type=float, default=1.0, help="messages published twice")
    ap.add_argument("--publisher", choices=["paho", "raw"], default="raw")
    ap.add_argument("--configs", default="1,2,3", help="comma-separated: N (role all) or NsMd (stream + derived)")
    ap.add_argument("--alerts", action=argparse.BooleanOptionalAction, default=True, help="LCCM_ALERTS_ENABLED")
    ap.add_argument("--admin-url", default=os.environ.get("LCCM_BENCH_ADMIN_URL", DEFAULT_ADMIN_URL))
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("mosquitto") is None:
        print("mosquitto is not installed: the benchmark needs the real broker", file=sys.stderr)
        return 2
    configs = args.configs.split(",")
    for c in configs:
        roles_of(c)
    devices = tuple(f"BENCH-{i:04d}" for i in range(args.devices))
    dup_every = round(100 / args.dup_percent) if args.dup_percent > 0 else 0
    t0 = first_event_s(
        args.batched_messages * args.readings_per_message // len(METER_KEYS) // args.devices, args.record_step_s
    )
    tuning = {"LCCM_ALERTS_ENABLED": "true" if args.alerts else "false"}
    config = {
        "batched_messages": args.batched_messages,
        "readings_per_message": args.readings_per_message,
        "devices": args.devices,
        "record_step_s": args.record_step_s,
        "publishers": args.publishers,
        "publisher": args.publisher,
        "window": args.window,
        "dup_percent": args.dup_percent,
        "configs": configs,
        "alerts": args.alerts,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lccm-scale-") as tmp, bench_database(args.admin_url) as url:
        device_pk = register_devices(url, devices)
        wl = None
        for c in configs:
            wl = Workload(
                name=f"scale{c}",
                messages=args.batched_messages,
                readings_per_message=args.readings_per_message,
                devices=devices,
                publishers=args.publishers,
                window=args.window,
                dup_every=dup_every,
                dup_lag=args.window // 2,
                t0=t0,
                topic_root=f"s{secrets.token_hex(4)}/v1",
                seconds=None,
                publisher=args.publisher,
                step_s=args.record_step_s,
            )
            print(f"[{c}] {', '.join(roles_of(c))} ...", file=sys.stderr, flush=True)
            broker = start_broker(Path(tmp) / f"broker-{c}", persist=False)
            try:
                rows.append(run_config(c, wl, broker, url, device_pk, Path(tmp), tuning))
            finally:
                broker.stop()
            print(f"[{c}] {rows[-1]}", file=sys.stderr, flush=True)
        copy: dict[str, Any] = {}
        if wl is not None:
            sent = [wl.share(p)[1] for p in range(wl.publishers)]
            copy = run_copy(url, expected_columns(wl, sent, device_pk), Settings().batch_max_readings)
    config["load_average_at_end"] = os.getloadavg()
    print(render(rows, copy))
    by = {r["config"]: r for r in rows}
    base = by.get("1", {})
    head: dict[str, Any] = {
        "readings_per_s": {c: r.get("readings_per_s") for c, r in by.items()},
        "derived_readings_per_s": {c: r.get("derived_readings_per_s") for c, r in by.items()},
        "copy_rows_per_s": copy.get("copy_rows_per_s"),
    }
    for c, r in by.items():
        if c != "1":
            head[f"ratio_{c}_vs_1"] = _ratio(r.get("readings_per_s"), base.get("readings_per_s"))
            head[f"derived_ratio_{c}_vs_1"] = _ratio(
                r.get("derived_readings_per_s"), base.get("derived_readings_per_s")
            )
    head["goal_2_vs_1"] = 1.6
    head["lost"] = sum(r["lost"] for r in rows)
    head["extra"] = sum(r["extra"] for r in rows)
    print(json.dumps(head | {"config": config, "detail": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
