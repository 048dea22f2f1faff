"""Issue 14 item 1's evidence: derived data does not depend on which ingest process received a message.

The same simulated stream (six hours of part of the virtual city, faults on) goes through 1, 2 and 3 real ``lccm
ingest`` processes on one shared subscription of the real mosquitto, and through two ``stream`` and two ``derived``
processes (LCCM_INGEST_ROLE), each run into a fresh database. In the run with three, one process is killed (SIGKILL)
halfway through and started again under the same client id, so its partitions are taken over when its leases
expire and its unacknowledged messages come again; in the split run, one derived process is. Only the processes
that derive hold leases. Readings, energy and emission buckets at every resolution, sample and lamp buckets, the
AQI hours, the per-day reading counts and the alert sequence (every alert's rule, dedup key, device, condition start,
raise, clear, reopenings, state and values; alerts on, partitioned like the rest, on the event clock) must equal the
single-process run's.

Readings of a series that arrive behind its frontier (reordered or delayed messages; the killed process's messages,
seconds later) make the evaluator run the series again and correct what it recorded (engine.alerts.revise: re-timed,
merged, withdrawn; docs/partitions.md#revisions); before that, the alerts' times, counts and values depended on the
grouping of the claims. Offline rules are left out: they judge delivery, not readings (below).

Not exercised, by design of the feed (docs/partitions.md#what-is-the-same-whoever-received-a-message): corrections
(a second value for a stored reading: the first committed wins, and with several processes which one commits first
is the broker's dispatch). Lateness of alerts: it is when data arrived (the kill delays a process's messages), so
the late-after limit is set beyond the window (docs/partitions.md#alerts). Stuck registers are on: this test found
twice that their buckets depended on how the readings were grouped into claims (both fixed,
tests/test_energy_order.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from lccm.alerts import default_rules_file
from lccm.engine.timebase import BANGKOK
from lccm.services import Broker
from lccm.simulators.city import City
from lccm.simulators.run import SimConfig, run_simulation
from tests._city import registered_city
from tests._db import fresh_database

DEVICES = ["LPG-*-M[0-9]", "LPG-SL-C0[1-3]", "LPG-SL-C01-L000[1-8]", "LPG-FL-0[1-4]", "LPG-GEN-*", "LPG-AQ-*"]
FAULTS = {
    "drop": 0.02, "duplicate": 0.05, "reorder": 0.03, "late": 0.02, "late_delay_s": [600, 3600], "clock_skew": 0.2,
    "stuck": 0.01, "spike": 0.01, "register_reset": 0.005,
    "correction": 0.0,  # first committed wins: with several processes, that is the broker's dispatch (see above)
}  # fmt: skip
PARTITIONS = 16
LEASE_S = 1.5
QUEUES = ("rollup_queue", "sample_queue", "aqi_queue", "day_queue", "alert_queue")
# Lateness is when data arrived, not who received it: the killed process's messages come again seconds later, hours
# of a replay at full speed, and would be late there only. Beyond the window, nothing is late in any run.
ALERT_LATE_AFTER_S = 86_400
# The shipped rules but the offline ones, and two that fire in the window: cabinets light up at dusk (the shipped
# day-burning rule watches the same power by day only), NO2 rises in the evening peak. Offline rules judge delivery,
# not data: whether a silence about as long as their limit raises one depends on when the data arrived, in one
# process as in several (a late fault, a slower process's backlog: docs/partitions.md#alerts).
LIT_AT_DUSK = {
    "key": "e2e_cabinet_lit", "name": {"en": "cabinet lit", "th": "ตู้เปิดไฟ"}, "metric": "power_w",
    "raise": {"above": 500, "for": "15min"}, "clear": {"at_or_below": 200, "for": "10min"},
    "dedup_key": "{device}/lit", "severity": "info", "scope": {"device_kinds": ["streetlight_cabinet"]},
}  # fmt: skip
# PM2.5 about its median and meters' 15-minute mean load about its upper quartile: thresholds near the stream's own
# quartiles, so that they raise, clear and reopen, and readings behind a series' frontier re-time, merge and
# withdraw what was recorded (engine.alerts.revise).
E2E_RULES = [
    LIT_AT_DUSK,
    {
        "key": "e2e_pm25_band", "name": {"en": "PM2.5 above its median", "th": "PM2.5 สูง"}, "metric": "pm25_ugm3",
        "raise": {"above": 26.6, "for": "10min"}, "clear": {"at_or_below": 25.5, "for": "10min"}, "holdoff": "20min",
        "dedup_key": "{device}/pm25_band", "severity": "info", "scope": {"device_kinds": ["aq_station"]},
    },
    {
        "key": "e2e_meter_load", "name": {"en": "meter load high", "th": "โหลดสูง"}, "metric": "power_w",
        "average": {"window": "15min", "min_fraction": 0.6},
        "raise": {"above": 12_600, "for": "15min"}, "clear": {"at_or_below": 10_000, "for": "15min"},
        "dedup_key": "{device}/load", "severity": "info", "scope": {"device_kinds": ["electricity_meter"]},
    },
    {
        "key": "e2e_no2_evening", "name": {"en": "NO2 in the evening peak", "th": "NO2 สูง"}, "metric": "no2_ppb",
        "raise": {"above": 20, "for": "15min"}, "clear": {"below": 12, "for": "15min"},
        "dedup_key": "{site}/{signal}", "severity": "info", "scope": {"device_kinds": ["aq_station"]},
    },
]  # fmt: skip

# What is compared, by the devices' own ids (not their keys), every value column.
SNAPSHOTS = {
    "readings": "SELECT d.device_id, r.metric_id, r.ts, r.value FROM readings r JOIN devices d ON d.id = r.device_id",
    "energy_buckets": "SELECT b.resolution, d.device_id, b.metric_id, b.bucket_start, b.amount, b.amount_estimated,"
    " b.covered_s, b.quality, b.intervals, b.kgco2e, b.kgco2e_base FROM energy_buckets b"
    " JOIN devices d ON d.id = b.device_id",
    "sample_buckets": "SELECT b.resolution, d.device_id, b.metric_id, b.bucket_start, b.n, b.sum, b.min, b.max,"
    " b.last, b.last_ts FROM sample_buckets b JOIN devices d ON d.id = b.device_id",
    "lamp_buckets": "SELECT b.resolution, d.device_id, b.bucket_start, b.on_s, b.day_on_s, b.night_off_s,"
    " b.night_known_s, b.unknown_s FROM lamp_buckets b JOIN devices d ON d.id = b.device_id",
    "aqi_hourly": "SELECT a.index_key, d.device_id, a.hour_start, a.aqi, a.responsible, a.category, a.status,"
    " a.reason, a.missing, a.sub_index, a.average, a.coverage FROM aqi_hourly a"
    " JOIN devices d ON d.id = a.device_id",
    # what completeness reads (counted by the day updater under the same leases; not the counted hull, which
    # depends on how the readings were grouped into claims)
    "reading_days": "SELECT d.device_id, r.day, r.received, r.seq_first, r.seq_last, r.messages_received"
    " FROM reading_days r JOIN devices d ON d.id = r.device_id",
    # The alert sequence: every alert (not those the evaluator withdrew or merged: readings behind a series'
    # frontier showed no such episode, or one episode recorded as two) by rule, dedup key and device id, its times,
    # reopenings, values shown (rounded to 9 significant digits below: a moving mean run again from a checkpoint sums
    # the same readings from another origin) and state. Not its events (what was recorded when: arrival) nor lateness
    # (nothing is late here).
    "alerts": "SELECT a.rule_key, a.dedup_key, d.device_id, a.started_at, a.raised_at, a.cleared_at, a.clear_reason,"
    " a.flaps, a.raised_value, a.peak_value, a.cleared_value, a.state FROM alerts a"
    " LEFT JOIN devices d ON d.id = a.device_id"
    " WHERE a.clear_reason IS DISTINCT FROM 'withdrawn' AND a.clear_reason IS DISTINCT FROM 'merged'",
}
ALERT_DIGITS = 9


def _rounded(v: Any) -> Any:
    """Floats to 12 significant digits (roll-ups sum in the order PostgreSQL reads the rows, which differs between
    databases in the last bits), in rows, lists and JSON objects alike, as hashable values."""
    if isinstance(v, float):
        return float(f"{v:.12g}")
    if isinstance(v, dict):
        return tuple(sorted((k, _rounded(x)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return tuple(_rounded(x) for x in v)
    return v


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        snap = {name: sorted(_rounded(r) for r in conn.execute(q).fetchall()) for name, q in SNAPSHOTS.items()}
    snap["alerts"] = sorted(
        tuple(float(f"{v:.{ALERT_DIGITS}g}") if isinstance(v, float) else v for v in row) for row in snap["alerts"]
    )
    return snap


class IngestProcess:
    """One ``lccm ingest`` as deployed: its own client id and data folder, the run's topic root and share group."""

    def __init__(self, env: dict[str, str], client_id: str, folder: Path, role: str = "all") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.env = {**env, "LCCM_MQTT_CLIENT_ID": client_id, "LCCM_DATA_DIR": str(folder), "LCCM_INGEST_ROLE": role}
        self.log = folder / "ingest.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lccm", "ingest"], env=self.env, stdout=subprocess.PIPE, stderr=out
            )

    def wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        # "ingesting from ..." once subscribed (messages from now on reach it); "deriving: ..." once started
        line = self.proc.stdout.readline()
        assert line.startswith(b"deriving:" if self.role == "derived" else b"ingesting from"), (
            line,
            self.log.read_text(),
        )
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # the stats lines: never let it block

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def wait_settled(url: str, readings: int, procs: list[IngestProcess], timeout_s: float = 120.0) -> None:
    """Until every reading is stored and the queues have stayed empty for a second (every process alive)."""
    deadline, quiet_since = time.monotonic() + timeout_s, None
    pending = " + ".join(f"(SELECT count(*) FROM {q})" for q in QUEUES)
    while time.monotonic() < deadline:
        for p in procs:
            assert p.proc is not None and p.proc.poll() is None, p.log.read_text()
        done = _count(url, "SELECT count(*) FROM readings") >= readings and _count(url, f"SELECT {pending}") == 0
        if not done:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 1.0:
            return
        time.sleep(0.1)
    raise AssertionError(f"not settled within {timeout_s} s: {[p.log.read_text()[-2000:] for p in procs]}")


@contextmanager
def city_database(folder: Path) -> Iterator[tuple[str, City]]:
    folder.mkdir(parents=True, exist_ok=True)
    with fresh_database() as url:
        yield url, registered_city(url, folder)


def run(
    broker: Broker, url: str, city: City, root: str, folder: Path, window: tuple[datetime, datetime],
    processes: int, *, kill_at: int | None = None, roles: list[str] | None = None, kill: int = 1,
) -> Any:  # fmt: skip
    """The stream through ``processes`` ingest processes (of ``roles``, default all ``all``); with ``kill_at``, the
    one at index ``kill`` is killed once that many readings are stored and started again. Returns the simulator's
    ground truth. Checks that only the processes that derive hold partition leases."""
    group = root.split("/")[0]
    rules = folder / "alert-rules.yaml"
    shipped = yaml.safe_load(default_rules_file().read_text(encoding="utf-8"))
    kept = [r for r in shipped["rules"] if r.get("kind") != "offline"]
    rules.write_text(yaml.safe_dump({"rules": [*kept, *E2E_RULES]}, allow_unicode=True), encoding="utf-8")
    env = {
        **os.environ, "LCCM_DATABASE_URL": url, "LCCM_MQTT_HOST": broker.host, "LCCM_MQTT_PORT": str(broker.port),
        "LCCM_MQTT_TOPIC_ROOT": root, "LCCM_MQTT_SHARE_GROUP": group, "LCCM_METRICS_PORT": "0",
        "LCCM_ALERTS_ENABLED": "true", "LCCM_ALERT_CLOCK": "event", "LCCM_ALERT_LATE_AFTER_S": str(ALERT_LATE_AFTER_S),
        "LCCM_NOTIFY_MQTT_ALL": "false", "LCCM_ALERT_RULES_FILE": str(rules),
        "LCCM_PARTITIONS": str(PARTITIONS), "LCCM_PARTITION_LEASE_S": str(LEASE_S),
        "LCCM_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    roles = roles or ["all"] * processes
    procs = [IngestProcess(env, f"{group}-{i}", folder / f"ingest-{i}", roles[i]) for i in range(processes)]
    for p in procs:  # started together (each takes seconds to import), ready once each has subscribed
        p.spawn()
    for p in procs:
        p.wait_ready()
    truth: list[Any] = []
    config = SimConfig(
        host=broker.host, port=broker.port, seed=14, start=window[0], end=window[1], speed=None, faults=True,
        fault_overrides=FAULTS, device_filter=DEVICES, topic_root=root, client_id_prefix=f"sim-{group}", clients=1,
    )  # fmt: skip
    sim = threading.Thread(target=lambda: truth.append(run_simulation(city, config)))
    try:
        sim.start()
        killed_at = None
        if kill_at is not None:
            # What was stored when the kill was decided: the others keep storing while it lands, and on a loaded
            # machine (batches of thousands of readings) they may store the rest before a count after it.
            while (killed_at := _count(url, "SELECT count(*) FROM readings")) < kill_at:
                time.sleep(0.02)
            procs[kill].kill()
            procs[kill].start()
        sim.join()
        assert truth, "the simulation failed"
        expected = len(truth[0].expected_readings())
        assert killed_at is None or killed_at < expected, "the kill came after the stream was stored: not halfway"
        wait_settled(url, expected, procs)
        with psycopg.connect(url) as conn:
            owners = conn.execute(
                "SELECT owner FROM worker_heartbeats WHERE seen_at >= now() - %s * interval '1 second'", (LEASE_S,)
            ).fetchall()
        deriving = {p.proc.pid for p in procs if p.role != "stream" and p.proc is not None}
        assert {int(o.split(":")[1]) for (o,) in owners} == deriving, (owners, deriving)
    finally:
        codes = [p.stop() for p in procs]
    assert codes == [0] * processes, [p.log.read_text()[-2000:] for p in procs]
    return truth[0]


def dusk_window() -> tuple[datetime, datetime]:
    """The latest 16:00-22:00 (Bangkok) over an hour ago: lamps switch on at dusk, so their accounting has rows; and
    recent, so nothing is past the writer's late horizon."""
    end = datetime.now(BANGKOK).replace(hour=22, minute=0, second=0, microsecond=0)
    while end > datetime.now(UTC) - timedelta(hours=1):
        end -= timedelta(days=1)
    return end - timedelta(hours=6), end


# (roles of the processes, index of the one killed halfway or None): one process, two and three sharing everything,
# and the work split by role (docs/partitions.md#roles) -- two stream processes and two derived ones, one of these
# killed halfway so its partitions are taken over by the other.
RUNS: list[tuple[list[str], int | None]] = [
    (["all"], None),
    (["all"] * 2, None),
    (["all"] * 3, 1),
    (["stream", "stream", "derived", "derived"], 3),
]


@pytest.mark.slow
@pytest.mark.timeout(900)  # four runs of the stream, up to four processes each on a shared two-core machine
def test_one_two_and_three_ingest_processes_one_killed_halfway_derive_identical_data(
    broker: Broker, topic_root: str, tmp_path: Path
) -> None:
    window = dusk_window()
    base = topic_root.split("/")[0]
    snaps: list[dict[str, list[tuple[Any, ...]]]] = []
    for i, (roles, kill) in enumerate(RUNS):
        folder = tmp_path / f"run{i}"
        t0 = time.monotonic()
        with city_database(folder) as (url, city):
            kill_at = len(snaps[0]["readings"]) // 2 if kill is not None else None
            truth = run(
                broker, url, city, f"{base}p{i}/v1", folder, window, len(roles), kill_at=kill_at, roles=roles,
                kill=kill or 0,
            )  # fmt: skip
            snaps.append(snapshot(url))
            revisions = _count(url, "SELECT count(*) FROM alert_events WHERE kind = 'revised'")
        print(f"{roles}: {time.monotonic() - t0:.1f} s, {len(snaps[-1]['alerts'])} alerts, {revisions} revised events")
        assert len(snaps[-1]["readings"]) == len(truth.expected_readings())
        faults = truth.summary()["faults"]
        assert all(faults.get(f, 0) > 0 for f in ("late", "duplicate", "reorder", "register_reset", "stuck")), faults
    one = snaps[0]
    assert all(len(one[t]) > 0 for t in SNAPSHOTS), {t: len(rows) for t, rows in one.items()}
    for (roles, _), other in zip(RUNS[1:], snaps[1:], strict=True):
        for table in SNAPSHOTS:
            if other[table] != one[table]:
                only_one = sorted(set(one[table]) - set(other[table]))[:5]
                only_other = sorted(set(other[table]) - set(one[table]))[:5]
                raise AssertionError(
                    f"{table} with processes {roles} differs from one process ({len(one[table])} vs"
                    f" {len(other[table])} rows): only with one {only_one}, only with {roles} {only_other}"
                )
