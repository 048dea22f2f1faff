"""Ingest benchmark: simulated devices -> real Mosquitto -> the ingest worker -> real PostgreSQL, its two limits and
a peer.

What it measures, for two workloads (one reading per message, and ``--readings-per-message`` readings per message),
each phase in turn on the same publishers, workload and database:

- **durable rate, as deployed** (phase ``ingest``): the ingest worker in its own process exactly as ``lccm ingest``
  wires it (``lccm.runtime.ingest_process``: the stream, the derived-data updaters, the alert evaluator with
  notification dispatch, one connection pool; ``--ingest-processes N`` runs N on the shared subscription; with
  ``--derived-processes M`` those N are of role ``stream`` and M more of role ``derived`` do the derived work in
  processes of their own, as docker-compose.scale.yml deploys it, docs/partitions.md#roles):
  distinct readings committed and acknowledged, divided by the time from the first publish to the last commit.
  Also the time until the derived data caught up (the updaters' queues empty and the evaluator idle), and the rate
  that gives. Publishers run in their own processes (they must not share the ingest's GIL), pre-encode their
  payloads, and publish at QoS 1 with a bounded window of outstanding messages, each for its own devices
  (``lccm/v1/bench/<device>/up``, seq per device, event times in the past). About 1 % of the messages are
  published twice, so dedup is exercised. At the end the rows are counted per device and metric in the database:
  ``lost`` is readings acknowledged by the broker but not stored (must be 0), ``extra`` is readings stored that
  were never sent (must be 0).
- **durable rate, stream alone** (phase ``stream``): the same without the updaters and the evaluator
  (``build_ingest``), to tell what they cost.
- **the Node-RED peer** (phase ``nodered``): ``benchmarks/nodered/flows.json`` in a headless Node-RED (MQTT in,
  QoS 1 -> batches of 20,000 readings -> one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` per batch
  through a node-postgres pool) into the same table; counted for loss like ours. It acknowledges on receipt, so it
  is not durable. Installed by ``make bench-peers`` (npm ci); skipped with a message when it is not.
- **transport limit**: the same publishers, to a paho subscriber (MQTT 5, QoS 1, auto-ack, network thread like the
  ingest source) that only counts messages. Two more count-only subscribers, each in a phase of its own on the same
  publishers: ``transport-lean``, the ingest's own MQTT adapter (``lccm.ingest.mqtt.MqttSource``: paho with its
  lean receiving path), acking what each read brought at once; ``transport-gmqtt``, gmqtt (asyncio, acks on
  receipt; the ``bench`` extra, skipped with a message without it).
- **database limit**: the same rows (same keys, same table, emptied first) by one bare binary COPY
  (``store.writer.encode_readings``), and by ``store.writer.write_batch`` in chunks of the batch size with a commit
  per chunk (what the ingest sink does).

Each phase gets a fresh private Mosquitto (``lccm.services.start_broker``, no-drop configuration) and starts from
empty tables (raw, queued and derived); the database is a fresh ``lccm_bench_<random>`` on the server of
``--admin-url``, dropped at the end. The CPU time of each part (ingest threads, publishers, broker, the sink's
PostgreSQL backend and, as deployed, the backends of the process's pool, where the derived work's queries run,
Node-RED and its backends) is reported so a miss can be located. ``--profile DIR`` records each
ingest phase with py-spy (``benchmarks/profile_shares.py`` sums the file). The machine is shared and noisy: read
the ratios more than the absolute figures.

Run: ``.venv/bin/python benchmarks/ingest.py`` (a few minutes). Small: ``--messages 2000 --batched-messages 100``.
The last line printed is one JSON object: the headline figures (ours as deployed; ratios to the limits and to the
peer), then everything under ``detail``.
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
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import resource  # noqa: E402
import secrets  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from psycopg import sql  # noqa: E402

from lccm.ingest.mqtt import MqttConfig, MqttSource  # noqa: E402
from lccm.runtime import (  # noqa: E402
    Ingest,
    Process,
    Services,
    build_ingest,
    derived_process,
    ingest_process,
    load_registry,
)
from lccm.services import Broker, start_broker  # noqa: E402
from lccm.settings import Settings  # noqa: E402
from lccm.store.migrate import migrate  # noqa: E402
from lccm.store.writer import READING_COLUMNS, ReadingColumns, encode_readings, write_batch  # noqa: E402
from lccm.stream.alerts import AlertEvaluator  # noqa: E402
from lccm.stream.loop import RawMessage, StreamStats  # noqa: E402

log = logging.getLogger("bench")

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
GOAL_BATCHED_READINGS_PER_S = 250_000
GOAL_SINGLE_MSGS_PER_S = 20_000
CITY = "bench"
# (plain-JSON key, metric id in store/migrations/001_core.sql, base value, step): an electricity meter's readings.
METER_KEYS = (
    ("energy_kwh", 1, 1000.0, 0.01),
    ("power_w", 2, 2000.0, 1.0),
    ("voltage_v", 3, 228.0, 0.1),
    ("current_a", 4, 9.0, 0.01),
    ("power_factor", 5, 0.9, 0.0001),
)
# The meters' registered reporting interval (devices.cadence_s), and by default the event time between a device's
# records: fifteen readings of a meter per 15-minute bucket, as a city's meters (or a gateway replaying its buffer)
# send them. --record-step-s 1 is the workload of every figure up to stop 20: records 1 s apart from meters
# registered at 60 s, 900 readings a bucket, a sixtieth of the derived rows per reading
# (benchmarks/README.md#records-in-event-time).
CADENCE_S = 60
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASES = ("transport", "transport-lean", "transport-gmqtt", "stream", "ingest", "nodered", "copy")


# ------------------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """What the publishers send. Everything is derived from these fields, in the publishers and in the parent."""

    name: str
    messages: int  # distinct messages, all publishers together (duplicates come on top)
    readings_per_message: int
    devices: tuple[str, ...]
    publishers: int
    window: int  # outstanding (unacknowledged) QoS 1 publishes per publisher
    dup_every: int  # one message in dup_every is published a second time, dup_lag messages later; 0: none
    dup_lag: int
    t0: int  # epoch seconds of the first event time: in the past, the contract refuses the future
    topic_root: str
    seconds: float | None  # stop publishing after this long (what was acknowledged is still checked)
    publisher: str = "paho"  # paho (QoS 1, our window, no network thread) or raw (minimal MQTT 3.1.1 on a socket)
    publisher_protocol: str = "3.1.1"  # paho publishers' MQTT version (5 costs them ~25 % more CPU)
    step_s: int = CADENCE_S  # event time between a device's consecutive records

    @property
    def keys_per_record(self) -> int:
        return len(METER_KEYS) if self.readings_per_message % len(METER_KEYS) == 0 else 1

    @property
    def records_per_message(self) -> int:
        return self.readings_per_message // self.keys_per_record

    def share(self, p: int) -> tuple[tuple[str, ...], int]:
        """Publisher p's devices and its number of distinct messages."""
        n = self.messages // self.publishers + (1 if p < self.messages % self.publishers else 0)
        return self.devices[p :: self.publishers], n


def schedule(n: int, dup_every: int, dup_lag: int) -> list[int]:
    """Order in which a publisher sends its n messages: each once, and every dup_every-th again dup_lag later."""
    order: list[int] = []
    later: dict[int, list[int]] = {}
    for j in range(n):
        order.append(j)
        if dup_every and j % dup_every == dup_every // 2:
            later.setdefault(min(j + dup_lag, n - 1), []).append(j)
        order.extend(later.pop(j, ()))
    for rest in later.values():
        order.extend(rest)
    return order


def encode_messages(wl: Workload, p: int) -> list[tuple[str, bytes]]:
    """Publisher p's distinct messages as (topic, payload); message j is device j % D, seq j // D."""
    devices, n = wl.share(p)
    topics = [f"{wl.topic_root}/{CITY}/{d}/up" for d in devices]
    keys = METER_KEYS[: wl.keys_per_record]
    r_per_msg = wl.records_per_message
    out: list[tuple[str, bytes]] = []
    for j in range(n):
        seq = j // len(devices)
        k0 = seq * r_per_msg
        if r_per_msg == 1 and len(keys) == 1:
            doc: dict[str, Any] = {
                "seq": seq,
                "ts": wl.t0 + k0 * wl.step_s,
                "values": {keys[0][0]: round(keys[0][2] + k0 * 0.01, 3)},
            }
        else:
            doc = {
                "seq": seq,
                "records": [
                    {
                        "ts": wl.t0 + k * wl.step_s,
                        "values": {key: round(base + (k % 1000) * step, 3) for key, _, base, step in keys},
                    }
                    for k in range(k0, k0 + r_per_msg)
                ],
            }
        out.append((topics[j % len(devices)], orjson.dumps(doc)))
    return out


def expected_columns(wl: Workload, sent: Sequence[int], device_pk: dict[str, int]) -> ReadingColumns:
    """The distinct readings publishers sent (sent[p]: how many entries of p's schedule went out), columnar."""
    dev_parts, met_parts, ts_parts, val_parts, seq_parts = [], [], [], [], []
    keys = METER_KEYS[: wl.keys_per_record]
    r_per_msg = wl.records_per_message
    for p in range(wl.publishers):
        devices, n = wl.share(p)
        js = np.unique(np.asarray(schedule(n, wl.dup_every, wl.dup_lag)[: sent[p]], dtype=np.int64))
        pks = np.asarray([device_pk[d] for d in devices], dtype=np.int32)
        seq = js // len(devices)
        dev = pks[js % len(devices)]
        k = (seq[:, None] * r_per_msg + np.arange(r_per_msg)[None, :]).ravel()  # record index, per message
        msg_dev = np.repeat(dev, r_per_msg)
        msg_seq = np.repeat(seq, r_per_msg)
        for _, metric_id, base, step in keys:
            dev_parts.append(msg_dev)
            met_parts.append(np.full(k.shape, metric_id, dtype=np.int16))
            ts_parts.append((wl.t0 + k * wl.step_s) * 1_000_000)
            val_parts.append(base + (k % 1000) * step)
            seq_parts.append(msg_seq)
    n_rows = sum(len(a) for a in dev_parts)
    now_us = time.time_ns() // 1000
    return ReadingColumns(
        device_id=np.concatenate(dev_parts).astype(np.int32) if n_rows else np.empty(0, np.int32),
        metric_id=np.concatenate(met_parts).astype(np.int16) if n_rows else np.empty(0, np.int16),
        ts_us=np.concatenate(ts_parts).astype(np.int64) if n_rows else np.empty(0, np.int64),
        value=np.concatenate(val_parts).astype(np.float64) if n_rows else np.empty(0, np.float64),
        seq=np.concatenate(seq_parts).astype(np.int64) if n_rows else np.empty(0, np.int64),
        received_at_us=np.full(n_rows, now_us, dtype=np.int64),
    )


# ------------------------------------------------------------------------------------------------- publishers


def _publisher_main(
    wl: Workload, p: int, host: str, port: int, ready: Any, start: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    """One publisher process: encode, connect, wait for the start signal, publish at QoS 1 with a window."""
    try:
        msgs = encode_messages(wl, p)
        order = schedule(len(msgs), wl.dup_every, wl.dup_lag)
        client_id = f"bench-pub-{wl.name}-{p}-{os.getpid()}"
        run = _publish_raw if wl.publisher == "raw" else _publish_paho
        results.put({"p": p} | run(wl, msgs, order, host, port, client_id, lambda: _ready_then_wait(ready, start, p)))
    except BaseException as e:
        results.put({"p": p, "error": f"{type(e).__name__}: {e}"})
        raise


def _ready_then_wait(ready: Any, start: Any, p: int) -> None:
    ready.put(p)
    if not start.wait(300):
        raise TimeoutError("no start signal")


def _publish_paho(
    wl: Workload,
    msgs: list[tuple[str, bytes]],
    order: list[int],
    host: str,
    port: int,
    client_id: str,
    await_start: Any,
) -> dict[str, Any]:
    acked = 0

    def on_publish(_c: object, _u: object, _mid: int, _rc: object, _props: object) -> None:
        nonlocal acked
        acked += 1

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if wl.publisher_protocol == "5" else mqtt.MQTTv311,
    )
    # We keep our own window. paho's own in-flight limit (default 20) rescans every outstanding message on each
    # PUBACK (Client._update_inflight): O(window) per ack, ~117 us per message at a window of 1,000.
    client.max_inflight_messages_set(0)
    client.on_publish = on_publish
    client.connect(host, port, keepalive=120)
    sock = client.socket()
    assert sock is not None
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise TimeoutError("no CONNACK")
        select.select([sock], [], [], 0.2)
        client.loop_read()
    await_start()

    # No network thread: publish() writes straight to the socket, and PUBACKs are read here, in bursts.
    publish = client.publish
    window, low = wl.window, wl.window // 2
    stop_at = None if wl.seconds is None else time.monotonic() + wl.seconds
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    first = time.monotonic()
    sent = 0
    for j in order:
        topic, payload = msgs[j]
        publish(topic, payload, qos=1)
        sent += 1
        if sent - acked >= window:
            while sent - acked > low:
                _pump(client, sock, 1.0)
        if stop_at is not None and sent & 255 == 0 and time.monotonic() >= stop_at:
            break
    drain_deadline = time.monotonic() + 120
    while acked < sent and time.monotonic() < drain_deadline:
        _pump(client, sock, 1.0)
    last = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    client.disconnect()
    return {"sent": sent, "acked": acked, "first": first, "last_ack": last, "cpu_s": _cpu(ru0, ru1)}


def _pump(client: mqtt.Client, sock: Any, timeout: float) -> None:
    want_write = client.want_write()
    readable, writable, _ = select.select([sock], [sock] if want_write else [], [], timeout)
    if writable:
        client.loop_write()
    if readable:
        client.loop_read()
    client.loop_misc()


def _cpu(ru0: resource.struct_rusage, ru1: resource.struct_rusage) -> float:
    return (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str16(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def _publish_raw(
    wl: Workload,
    msgs: list[tuple[str, bytes]],
    order: list[int],
    host: str,
    port: int,
    client_id: str,
    await_start: Any,
) -> dict[str, Any]:
    """A minimal MQTT 3.1.1 QoS 1 publisher on a plain socket: PUBLISH packets are built before the clock starts
    and written a window at a time; every PUBACK is read and its packet id checked, in order (the broker acks a
    connection's QoS 1 publishes in the order it received them). Costs a few microseconds per message, where paho
    costs ~50: the load generator then leaves the CPU to the system under test."""
    packets: list[bytes] = []
    for i, j in enumerate(order):
        topic, payload = msgs[j]
        body = _str16(topic) + ((i % 65_535) + 1).to_bytes(2, "big") + payload
        packets.append(b"\x32" + _varint(len(body)) + body)
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _str16("MQTT") + bytes([4, 0x02]) + (0).to_bytes(2, "big") + _str16(client_id)  # clean, no keepalive
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    connack = _recv_exact(sock, 4)
    if connack[:2] != b"\x20\x02" or connack[3] != 0:
        raise RuntimeError(f"CONNACK refused: {connack!r}")
    await_start()

    window = min(wl.window, 32_000)
    stop_at = None if wl.seconds is None else time.monotonic() + wl.seconds
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    first = time.monotonic()
    sent = acked = 0
    pending = b""
    n = len(packets)
    while acked < n:
        can_send = sent < n and (stop_at is None or time.monotonic() < stop_at)
        if not can_send and sent == acked:
            break  # stopped by --seconds, and everything sent is acknowledged
        if can_send and sent - acked < window:
            k = min(n, sent + min(window - (sent - acked), 256))
            sock.sendall(b"".join(packets[sent:k]))
            sent = k
        flags = socket.MSG_DONTWAIT if can_send and sent - acked < window // 2 else 0
        try:
            data = sock.recv(65_536, flags)
        except BlockingIOError:
            continue
        if not data:
            raise RuntimeError("broker closed the connection")
        pending += data
        usable = len(pending) - len(pending) % 4
        for off in range(0, usable, 4):
            if pending[off] != 0x40 or pending[off + 1] != 0x02:
                raise RuntimeError(f"unexpected packet {pending[off : off + 4]!r}")
            mid = (pending[off + 2] << 8) | pending[off + 3]
            if mid != (acked % 65_535) + 1:
                raise RuntimeError(f"PUBACK for packet id {mid}, expected {(acked % 65_535) + 1}")
            acked += 1
        pending = pending[usable:]
    last = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    return {"sent": sent, "acked": acked, "first": first, "last_ack": last, "cpu_s": _cpu(ru0, ru1)}


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("broker closed the connection")
        buf += chunk
    return buf


@dataclass
class PublishResult:
    sent: list[int]  # per publisher: entries of its schedule sent (and acknowledged, if acked == sent)
    acked: list[int]
    first: float  # monotonic (system-wide on Linux): first publish of any publisher
    last_ack: float
    cpu_s: float

    @property
    def messages(self) -> int:
        return sum(self.sent)

    @property
    def all_acked(self) -> bool:
        return self.sent == self.acked


class Publishers:
    """The publisher processes of one phase: started, connected and encoded before ``go()`` starts the clock."""

    def __init__(self, wl: Workload, broker: Broker) -> None:
        ctx = mp.get_context("spawn")
        self._wl = wl
        self._ready = ctx.Queue()
        self._results = ctx.Queue()
        self._start = ctx.Event()
        self._procs = [
            ctx.Process(
                target=_publisher_main,
                args=(wl, p, broker.host, broker.port, self._ready, self._start, self._results),
                name=f"bench-pub-{p}",
                daemon=True,
            )
            for p in range(wl.publishers)
        ]
        for proc in self._procs:
            proc.start()

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        for _ in self._procs:
            try:
                self._ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self._raise_child_error("publishers did not get ready")

    def go(self) -> None:
        self._start.set()

    def collect(self, timeout_s: float = 600) -> PublishResult:
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(rows) < len(self._procs):
            try:
                row = self._results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("publishers did not finish") from None
            if "error" in row:
                raise RuntimeError(f"publisher {row['p']} failed: {row['error']}")
            rows.append(row)
        for proc in self._procs:
            proc.join(timeout=30)
        rows.sort(key=lambda r: int(r["p"]))
        return PublishResult(
            sent=[int(r["sent"]) for r in rows],
            acked=[int(r["acked"]) for r in rows],
            first=min(float(r["first"]) for r in rows),
            last_ack=max(float(r["last_ack"]) for r in rows),
            cpu_s=sum(float(r["cpu_s"]) for r in rows),
        )

    def _raise_child_error(self, what: str) -> None:
        with contextlib.suppress(queue.Empty):
            row = self._results.get_nowait()
            raise RuntimeError(f"{what}: publisher {row.get('p')}: {row.get('error')}")
        raise RuntimeError(what)

    def close(self) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)


# ------------------------------------------------------------------------------------------------- CPU accounting


def proc_cpu_s(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (or one of its threads) from /proc; 0 if it is gone or unreadable."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        with open(path, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5), after "pid (comm)"


def own_backends_cpu_s(url: str, skip: int | None) -> float:
    """CPU of the PostgreSQL backends serving this process's connections (matched by their client port), but
    ``skip``'s, each since it connected. The updaters' queries run there: a cost moved from the process to the
    database shows here."""
    ports = local_tcp_ports(os.getpid())
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, client_port FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return round(sum(proc_cpu_s(pid) for pid, port in rows if port in ports and pid != skip), 2)


def local_tcp_ports(pid: int) -> set[int]:
    """The local TCP ports of a process's sockets (/proc: its socket inodes, looked up in the kernel's tables)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores, from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


@dataclass
class CpuMeter:
    """CPU seconds per named part, and of the whole machine, from creation to stop()."""

    parts: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # name -> (pid, tid)
    _t0: dict[str, float] = field(default_factory=dict)
    _machine0: tuple[float, float] = field(default_factory=machine_cpu_s)
    used: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, pid: int, tid: int | None = None) -> None:
        self.parts[name] = (pid, tid)
        self._t0[name] = proc_cpu_s(pid, tid)

    def stop(self) -> dict[str, float]:
        for name, (pid, tid) in self.parts.items():
            self.used[name] = round(proc_cpu_s(pid, tid) - self._t0[name], 2)
        busy, steal = machine_cpu_s()
        self.used["machine_busy"] = round(busy - self._machine0[0], 2)  # every process and the kernel
        if steal > self._machine0[1]:
            self.used["machine_steal"] = round(steal - self._machine0[1], 2)
        return self.used


# ------------------------------------------------------------------------------------------------- database


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


def first_event_s(records_per_device: int, step_s: int) -> int:
    """Epoch seconds of the first record: its device's last record (and a repeat run's) still well in the past, which
    the contract requires, and all of them within the late-data horizon (7 days)."""
    return int(time.time()) - (records_per_device + 2) * step_s * 2 - 86_400


def register_devices(url: str, devices: Sequence[str], cadence_s: int = CADENCE_S) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_code, name, kind, city) VALUES ('BENCH', 'Benchmark site', 'building', 'bench')"
            " ON CONFLICT DO NOTHING"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO devices (device_id, site_id, kind, name, cadence_s)"
                " SELECT %s, id, 'electricity_meter', %s, %s FROM sites WHERE site_code = 'BENCH'",
                [(d, d, cadence_s) for d in devices],
            )
        rows = conn.execute("SELECT device_id, id FROM devices WHERE device_id = ANY(%s)", (list(devices),)).fetchall()
    return {str(d): int(i) for d, i in rows}


# What an ingest phase writes: the raw tables, the derived data's queues, and what the updaters and the evaluator
# derive (each phase starts from an empty store, so one's queued work is never done in the next one's time).
PHASE_TABLES = (
    "readings, dead_letters, reading_conflicts, late_spans, device_status, rollup_queue, sample_queue, aqi_queue,"
    " day_queue, reading_days, energy_buckets, energy_counter_states, energy_bound_days, sample_buckets, lamp_buckets,"
    " aqi_hourly, alerts, alert_series_state, alert_queue, alert_device_clock, alert_behind, ingest_progress"
)


def empty_readings(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {PHASE_TABLES} CASCADE")


@dataclass
class Stored:
    lost: int  # expected readings missing
    extra: int  # stored readings nobody sent (or more per device than sent)
    rows: int
    messages: int  # distinct (device, seq) stored
    dead_letters: int


def check_stored(url: str, expected: ReadingColumns) -> Stored:
    """Compare the readings table with what was sent: per device and metric, count and distinct seq."""
    keys, counts = np.unique(
        expected.device_id.astype(np.int64) * 100 + expected.metric_id.astype(np.int64), return_counts=True
    )
    want = dict(zip(keys.tolist(), counts.tolist(), strict=True))
    with psycopg.connect(url) as conn:
        got = {
            int(dev) * 100 + int(met): int(n)
            for dev, met, n in conn.execute(
                "SELECT device_id, metric_id, count(*) FROM readings GROUP BY device_id, metric_id"
            ).fetchall()
        }
        row = conn.execute("SELECT count(*), count(DISTINCT (device_id, seq)) FROM readings").fetchone()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert row is not None and dead is not None
    lost = sum(max(0, n - got.get(k, 0)) for k, n in want.items())
    extra = sum(max(0, n - want.get(k, 0)) for k, n in got.items())
    return Stored(lost=lost, extra=extra, rows=int(row[0]), messages=int(row[1]), dead_letters=int(dead[0]))


# ------------------------------------------------------------------------------------------------- phases


def wait_until(cond: Any, progress: Any, stall_s: float) -> bool:
    """Poll cond() until true; give up when progress() has not changed for stall_s."""
    last, since = progress(), time.monotonic()
    while not cond():
        time.sleep(0.02)
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            return False
    return True


class CountingSubscriber:
    """The transport limit: MQTT 5, QoS 1, auto-ack, paho network thread (as the ingest source), count only."""

    def __init__(self, broker: Broker, topic_root: str) -> None:
        self.count = 0
        self.last = 0.0
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-count-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(f"{topic_root}/+/+/up", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("counting subscriber did not subscribe")

    def _on_message(self, _c: object, _u: object, _msg: object) -> None:
        self.count += 1
        self.last = time.monotonic()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _CountingInbox:
    """The inbox of a count-only MqttSource: counts what each read brought and acks it at once."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.source: MqttSource | None = None

    def put_many(self, msgs: list[RawMessage]) -> None:
        self.count += len(msgs)
        self.last = time.monotonic()
        if self.source is not None:
            self.source.ack([m.token for m in msgs])


class LeanCountingSubscriber:
    """A count-only subscriber on the ingest's own MQTT adapter (``lccm.ingest.mqtt.MqttSource``: paho with the
    lean receiving path, MQTT 5, QoS 1, a persistent session, the receive maximum of Settings), acking each read's
    messages as soon as they are counted: what paho can do when it is driven as the ingest drives it."""

    def __init__(self, broker: Broker, topic_root: str) -> None:
        self._inbox = _CountingInbox()
        cfg = MqttConfig(
            host=broker.host,
            port=broker.port,
            client_id=f"bench-lean-{os.getpid()}",
            topic_root=topic_root,
            receive_maximum=Settings().mqtt_receive_maximum,
            protocol="5",
        )
        self._source = MqttSource(cfg, self._inbox)
        self._inbox.source = self._source
        self._source.start()

    @property
    def count(self) -> int:
        return self._inbox.count

    @property
    def last(self) -> float:
        return self._inbox.last

    def close(self) -> None:
        self._source.stop()


class GmqttCountingSubscriber:
    """The transport limit on gmqtt (asyncio, MQTT 5, QoS 1, acks on receipt), its event loop in a thread of its
    own as paho's network thread is: count only."""

    def __init__(self, broker: Broker, topic_root: str) -> None:
        import asyncio

        import gmqtt

        self.count = 0
        self.last = 0.0
        self._subscribed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._client = gmqtt.Client(f"bench-gmqtt-{os.getpid()}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gmqtt", daemon=True)
        self._thread.start()
        connect = self._client.connect(broker.host, broker.port, version=gmqtt.constants.MQTTv50)
        asyncio.run_coroutine_threadsafe(connect, self._loop).result(10)
        self._loop.call_soon_threadsafe(lambda: self._client.subscribe(f"{topic_root}/+/+/up", qos=1))
        if not self._subscribed.wait(10):
            raise RuntimeError("gmqtt counting subscriber did not subscribe")

    def _on_message(self, _c: object, _topic: str, _payload: bytes, _qos: int, _props: object) -> int:
        self.count += 1
        self.last = time.monotonic()
        return 0

    def close(self) -> None:
        import asyncio

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._client.disconnect(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def gmqtt_missing() -> str | None:
    try:
        import gmqtt  # noqa: F401
    except ImportError:
        return "gmqtt is not installed (pip install -c constraints.txt '.[bench]')"
    return None


TRANSPORTS: dict[str, Any] = {
    "transport": CountingSubscriber,
    "transport-lean": LeanCountingSubscriber,
    "transport-gmqtt": GmqttCountingSubscriber,
}


def run_transport(wl: Workload, broker: Broker, subscriber: Any = CountingSubscriber) -> dict[str, Any]:
    sub = subscriber(broker, wl.topic_root)
    pubs = Publishers(wl, broker)
    try:
        pubs.wait_ready()
        cpu = CpuMeter()
        cpu.add("subscriber_process", os.getpid())
        cpu.add("broker", _pid(broker))
        pubs.go()
        res = pubs.collect()
        complete = wait_until(lambda: sub.count >= res.messages, lambda: sub.count, stall_s=10)
        used = cpu.stop()
    finally:
        pubs.close()
        sub.close()
    elapsed = max(sub.last - res.first, 1e-9)
    used["publishers"] = round(res.cpu_s, 2)
    return {
        "messages": res.messages,
        "received": sub.count,
        "complete": complete,
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(sub.count / elapsed),
        "readings_per_s": round(sub.count * wl.readings_per_message / elapsed),
        "publish_msgs_per_s": round(res.messages / max(res.last_ack - res.first, 1e-9)),
        "cpu_s": used,
    }


def _ingest_main(
    settings_kwargs: dict[str, Any],
    host: str,
    port: int,
    client_id: str,
    progress: Any,
    derived: Any,
    ready: Any,
    drain: Any,
    stop: Any,
    results: Any,
) -> None:  # pragma: no cover - runs in a child process
    """One ingest process, built as ``lccm ingest`` builds it (wiring ``deployed``: ``ingest_process``, with the
    derived-data updaters, the alert evaluator and notification dispatch) or the stream alone (wiring ``stream``:
    ``build_ingest`` without them). Once told to drain, it notes when the derived data has caught up (the updaters'
    queues empty and the evaluator idle); when told to stop, it reports its stats and CPU use."""
    try:
        switch = settings_kwargs.pop("_switch_interval", None)
        wiring = settings_kwargs.pop("_wiring", "deployed")
        if switch is not None:
            sys.setswitchinterval(switch)
        settings = Settings(**settings_kwargs)
        svc = Services(settings.database_url, host, port, "5")
        worker: Process
        if wiring == "deployed" and settings.ingest_role == "derived":
            worker = derived_process(settings, svc)
        elif wiring == "deployed":
            worker = ingest_process(settings, svc, client_id=client_id)
        else:
            worker = build_ingest(settings, svc, client_id=client_id)
        evaluating = _count_runs(worker.evaluator)
        worker.start()
        cpu = CpuMeter()
        cpu.add("process", os.getpid())
        for name in ("stream", "stream-writer", "updaters", "alerts", "notify-dispatch"):
            with contextlib.suppress(KeyError):
                tid = worker.supervisor[name].native_id
                if tid is not None:
                    cpu.add(f"{name.replace('-', '_')}_thread", os.getpid(), tid)
        source = worker.source if isinstance(worker, Ingest) else None
        paho_thread = getattr(source._client, "_thread", None) if source is not None else None
        if paho_thread is not None and paho_thread.native_id is not None:
            cpu.add("paho_thread", os.getpid(), paho_thread.native_id)
        ready.put(client_id)
        stats = worker.loop.stats if isinstance(worker, Ingest) else StreamStats()
        derived_done_at: float | None = None
        with psycopg.connect(settings.database_url, autocommit=True) as probe:
            while not stop.wait(0.1):  # seldom: this thread would compete for the GIL with the ones measured
                progress.value = stats.messages
                waiting = wiring == "deployed" and drain.is_set() and derived_done_at is None
                if waiting and _derived_idle(probe, worker, evaluating):
                    derived_done_at = time.monotonic()
                    derived.value = derived_done_at
        progress.value = stats.messages
        used = cpu.stop()
        conn = worker.sink._conn if isinstance(worker, Ingest) else None
        sink_backend = conn.info.backend_pid if conn is not None and not conn.closed else None
        if sink_backend is not None:  # the sink's backend: its CPU since it connected (this phase)
            used["postgres_backend"] = round(proc_cpu_s(sink_backend), 2)
        if wiring == "deployed":  # the pool's: the derived work's queries (updaters, evaluator, leases)
            used["postgres_pool_backends"] = own_backends_cpu_s(settings.database_url, sink_backend)
        worker.stop()
        results.put(
            {
                "client_id": client_id,
                "error": worker.error,
                "messages": stats.messages,
                "readings_stored": stats.readings_stored,
                "duplicates_dropped": stats.duplicates_dropped,
                "duplicates_in_db": stats.duplicates_in_db,
                "batches": stats.batches,
                "write_retries": stats.write_retries,
                "first_commit_at": stats.first_commit_at,
                "last_commit_at": stats.last_commit_at,
                "derived_done_at": derived_done_at if wiring == "deployed" else None,
                "cpu_s": used,
            }
        )
    except BaseException as e:
        results.put({"client_id": client_id, "error": f"{type(e).__name__}: {e}"})
        raise


DERIVED_QUEUES = ("rollup_queue", "sample_queue", "aqi_queue", "day_queue")


def _count_runs(evaluator: AlertEvaluator | None) -> list[int]:
    """[runs in progress]: wraps the evaluator's run_once (its drain calls it through the instance), so that an
    empty inbox with a run still evaluating does not count as caught up."""
    busy = [0]
    if evaluator is not None:
        run_once = evaluator.run_once

        def counted() -> Any:
            busy[0] += 1
            try:
                return run_once()
            finally:
                busy[0] -= 1

        evaluator.run_once = counted  # type: ignore[method-assign]
    return busy


def _derived_idle(conn: psycopg.Connection, worker: Process, evaluating: list[int]) -> bool:
    """The derived data caught up with what is committed: every inbox message committed, the updaters' queues empty
    (a claimed row is deleted in the transaction that writes its buckets) and the evaluator idle."""
    if isinstance(worker, Ingest) and worker.source.received != worker.loop.stats.messages:
        return False
    if worker.evaluator is not None and (evaluating[0] or worker.evaluator.has_work()):
        return False
    row = conn.execute("SELECT " + " + ".join(f"(SELECT count(*) FROM {q})" for q in DERIVED_QUEUES)).fetchone()
    return row is not None and row[0] == 0


class IngestProcesses:
    """Ingest workers in their own processes, one per role given (``all`` each by default), sharing the load by the
    shared subscription (and the derived work by the partitions)."""

    def __init__(self, roles: Sequence[str], settings_kwargs: dict[str, Any], broker: Broker, name: str) -> None:
        n = len(roles)
        ctx = mp.get_context("spawn")
        self._ready, self._results = ctx.Queue(), ctx.Queue()
        self._drain, self._stop = ctx.Event(), ctx.Event()
        self._progress = [ctx.Value("q", 0, lock=False) for _ in range(n)]
        self._derived = [ctx.Value("d", 0.0, lock=False) for _ in range(n)]
        self._procs = [
            ctx.Process(
                target=_ingest_main,
                args=(
                    dict(settings_kwargs) | {"ingest_role": roles[i]},
                    broker.host,
                    broker.port,
                    f"lccm-bench-ingest-{name}-{i}",
                    self._progress[i],
                    self._derived[i],
                    self._ready,
                    self._drain,
                    self._stop,
                    self._results,
                ),
                name=f"bench-ingest-{i}",
                daemon=True,
            )
            for i in range(n)
        ]
        for proc in self._procs:
            proc.start()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def wait_derived(self, timeout_s: float = 300) -> bool:
        """Tell the workers everything is committed, then wait until each has seen its derived data catch up."""
        self._drain.set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(v.value > 0 for v in self._derived):
                return True
            time.sleep(0.05)
        return False

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        for _ in self._procs:
            try:
                self._ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                detail = ""
                with contextlib.suppress(queue.Empty):
                    detail = f": {self._results.get_nowait().get('error')}"
                raise RuntimeError(f"ingest processes did not start{detail}") from None

    def messages(self) -> int:
        return sum(int(v.value) for v in self._progress)

    def stop(self, timeout_s: float = 120) -> list[dict[str, Any]]:
        self._stop.set()
        rows = []
        deadline = time.monotonic() + timeout_s
        for _ in self._procs:
            try:
                rows.append(self._results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise RuntimeError("ingest processes did not report") from None
        errors = [r["error"] for r in rows if r.get("error")]
        if errors:
            raise RuntimeError(f"ingest worker failed: {errors}")
        for proc in self._procs:
            proc.join(timeout=30)
        return rows

    def close(self) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)


def run_ingest(
    wl: Workload,
    broker: Broker,
    url: str,
    device_pk: dict[str, int],
    settings_kwargs: dict[str, Any],
    processes: int,
    wiring: str = "deployed",
    profile: Profiler | None = None,
    derived_processes: int = 0,
) -> tuple[dict[str, Any], ReadingColumns]:
    """One ingest phase. With ``derived_processes`` (wiring deployed), the ``processes`` are of role stream and that
    many more of role derived do the derived work (LCCM_INGEST_ROLE)."""
    empty_readings(url)
    split = wiring == "deployed" and derived_processes > 0
    roles = ["stream"] * processes + ["derived"] * derived_processes if split else ["all"] * processes
    ingest = IngestProcesses(roles, settings_kwargs | {"_wiring": wiring}, broker, wl.name)
    pubs: Publishers | None = None
    derived_complete = None
    try:
        ingest.wait_ready()
        pubs = Publishers(wl, broker)
        pubs.wait_ready()
        cpu = CpuMeter()
        cpu.add("broker", _pid(broker))
        if profile is not None:
            profile.start(ingest.pids[0], f"{wl.name}-{wiring}")
        pubs.go()
        res = pubs.collect()
        complete = wait_until(lambda: ingest.messages() >= res.messages, ingest.messages, stall_s=30)
        used = cpu.stop()
        if profile is not None:
            profile.stop()
        if wiring == "deployed":
            derived_complete = ingest.wait_derived()
        workers = ingest.stop()
    finally:
        if profile is not None:
            profile.stop()
        if pubs is not None:
            pubs.close()
        ingest.close()
    for i, w in enumerate(workers):
        prefix = "ingest_" if len(workers) == 1 else f"ingest{i}_"
        used |= {prefix + k: v for k, v in w["cpu_s"].items() if not k.startswith("machine_")}
    used["publishers"] = round(res.cpu_s, 2)
    expected = expected_columns(wl, res.sent, device_pk)
    stored = check_stored(url, expected)
    distinct_messages = sum(
        len(set(schedule(wl.share(p)[1], wl.dup_every, wl.dup_lag)[: res.sent[p]])) for p in range(wl.publishers)
    )
    duplicate_readings = (res.messages - distinct_messages) * wl.readings_per_message
    commits = [w["last_commit_at"] for w in workers if w["last_commit_at"] is not None]
    last_commit = max(commits) if commits else time.monotonic()
    elapsed = max(last_commit - res.first, 1e-9)
    readings = stored.rows
    total = {k: sum(int(w[k]) for w in workers) for k in ("readings_stored", "duplicates_dropped", "duplicates_in_db")}
    batches = sum(int(w["batches"]) for w in workers)
    derived: dict[str, Any] = {}
    if wiring == "deployed":
        done = [w["derived_done_at"] for w in workers if w.get("derived_done_at")]
        derived_s = max(max(done) - res.first, elapsed) if done and derived_complete else None
        derived = {
            "derived_complete": bool(derived_complete),
            # first publish -> derived data (energy, samples, AQI) and alert evaluation caught up with every commit
            "derived_seconds": None if derived_s is None else round(derived_s, 3),
            "derived_readings_per_s": None if derived_s is None else round(readings / derived_s),
        }
    return {
        "wiring": wiring,
        "ingest_processes": processes,
        "roles": roles,
        "messages_published": res.messages,
        "messages_distinct": distinct_messages,
        "all_acked_by_broker": res.all_acked,
        "complete": complete,
        "seconds": round(elapsed, 3),
        "readings_per_s": round(readings / elapsed),
        "msgs_per_s": round(distinct_messages / elapsed),
        "publish_msgs_per_s": round(res.messages / max(res.last_ack - res.first, 1e-9)),
        "readings_expected": len(expected),
        "readings_stored": readings,
        "lost": stored.lost,
        "extra": stored.extra,
        "dead_letters": stored.dead_letters,
        "duplicates_published": duplicate_readings,
        "duplicates_removed": total["duplicates_dropped"] + total["duplicates_in_db"],
        "duplicates_removed_in_db": total["duplicates_in_db"],
        "batches": batches,
        "mean_batch_readings": round((total["readings_stored"] + total["duplicates_dropped"]) / max(batches, 1)),
        "write_retries": sum(int(w["write_retries"]) for w in workers),
        **derived,
        "cpu_s": used,
    }, expected


# ------------------------------------------------------------------------------------------------- profiler


class Profiler:
    """``--profile DIR``: py-spy records the (first) ingest process of each ingest phase, from the start signal to
    the last commit, one file per phase (``<workload>-<wiring>.txt``, py-spy's raw collapsed stacks with thread
    ids; ``benchmarks/profile_shares.py`` sums them). py-spy is not a dependency: ``pip install py-spy``."""

    def __init__(self, out_dir: Path, extra_args: Sequence[str]) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy (into the venv only; not a dependency)")
        self._exe = exe
        self._dir = out_dir
        self._args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        out_dir.mkdir(parents=True, exist_ok=True)

    def start(self, pid: int, name: str) -> None:
        out = self._dir / f"{name}.txt"
        cmd = [self._exe, "record", "--pid", str(pid), "--threads", "--format", "raw", "-o", str(out), *self._args]
        with open(self._dir / f"{name}.log", "wb") as err:
            self._proc = subprocess.Popen(cmd, stdout=err, stderr=err)
        time.sleep(0.5)  # py-spy attaches before the clock starts

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ------------------------------------------------------------------------------------------------- Node-RED peer

NODERED_DIR = _HERE / "nodered"
NODERED_RED_JS = NODERED_DIR / "node_modules" / "node-red" / "red.js"
NODERED_BATCH_READINGS = 20_000


def nodered_missing() -> str | None:
    """Why the Node-RED peer cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not NODERED_RED_JS.exists():
        return f"Node-RED is not installed in {NODERED_DIR} (run `make bench-peers`)"
    return None


class NodeRedPeer:
    """The peer: benchmarks/nodered/flows.json in a headless Node-RED (settings.js), subscribed plainly to the
    workload's topics. It reports each committed batch on stdout (``LCCM-PEER {json}``); a reader thread adds them
    up."""

    def __init__(self, url: str, broker: Broker, topic_root: str, work_dir: Path, max_wait_s: float) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(url) as conn:
            reg = load_registry(conn)
        registry = work_dir / "registry.json"
        registry.write_bytes(
            orjson.dumps(
                {
                    "devices": reg.devices,
                    "keys": {k: [m.id, scale] for k, (m, scale) in reg.by_key.items()},
                }
            )
        )
        flows = work_dir / "flows.json"
        shutil.copyfile(NODERED_DIR / "flows.json", flows)
        info = psycopg.conninfo.conninfo_to_dict(url)
        env = os.environ | {
            "PGHOST": str(info.get("host", "127.0.0.1")),
            "PGPORT": str(info.get("port", "5432")),
            "PGUSER": str(info.get("user", "postgres")),
            "PGDATABASE": str(info["dbname"]),
            "LCCM_PEER_REGISTRY": str(registry),
            "LCCM_PEER_FLOWS": str(flows),
            "LCCM_PEER_MQTT_HOST": broker.host,
            "LCCM_PEER_MQTT_PORT": str(broker.port),
            "LCCM_PEER_TOPIC": f"{topic_root}/+/+/up",
            "LCCM_PEER_BATCH": str(NODERED_BATCH_READINGS),
            "LCCM_PEER_MAX_WAIT_MS": str(round(max_wait_s * 1000)),
        }
        if info.get("password"):
            env["PGPASSWORD"] = str(info["password"])
        self.messages = self.rows = self.inserted = self.failed = self.dropped = 0
        self.last_at = 0.0
        self.errors: list[str] = []
        self._connected = threading.Event()
        self._lines: list[str] = []
        self.proc = subprocess.Popen(
            ["node", str(NODERED_RED_JS), "--settings", str(NODERED_DIR / "settings.js"), "--userDir", str(work_dir)],
            cwd=work_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, name="nodered-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line.startswith("LCCM-PEER "):
                r = orjson.loads(line[len("LCCM-PEER ") :])
                self.rows += int(r.get("rows", 0))
                self.inserted += int(r.get("inserted", 0))
                self.failed += int(r.get("failed", 0))
                self.dropped += int(r.get("dropped", 0))
                self.last_at = max(self.last_at, float(r["at"]))
                if r.get("error") and len(self.errors) < 5:
                    self.errors.append(str(r["error"]))
                self.messages += int(r.get("messages", 0))  # last: the parent's wait reads it
            else:
                self._lines.append(line)
                if "Connected to broker" in line:
                    self._connected.set()

    def wait_connected(self, timeout_s: float = 60) -> None:
        if not self._connected.wait(timeout_s):
            self.stop()
            raise RuntimeError("Node-RED did not connect to the broker:\n" + "\n".join(self._lines[-20:]))
        time.sleep(0.5)  # its SUBSCRIBE follows the CONNACK

    def backend_cpu_s(self, url: str) -> float:
        with psycopg.connect(url, autocommit=True) as conn:
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'lccm-bench-nodered'"
            ).fetchall()
        return round(sum(proc_cpu_s(int(p)) for (p,) in pids), 2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


def run_nodered(
    wl: Workload, broker: Broker, url: str, device_pk: dict[str, int], work_dir: Path, max_wait_s: float
) -> dict[str, Any]:
    """The same publishers and workload into the Node-RED flow; stored readings counted as for our ingest."""
    empty_readings(url)
    peer = NodeRedPeer(url, broker, wl.topic_root, work_dir, max_wait_s)
    pubs: Publishers | None = None
    try:
        peer.wait_connected()
        pubs = Publishers(wl, broker)
        pubs.wait_ready()
        cpu = CpuMeter()
        cpu.add("broker", _pid(broker))
        cpu.add("nodered_process", peer.proc.pid)
        pubs.go()
        res = pubs.collect()
        complete = wait_until(lambda: peer.messages >= res.messages, lambda: peer.messages, stall_s=30)
        used = cpu.stop()
        used["nodered_postgres_backends"] = peer.backend_cpu_s(url)
    finally:
        if pubs is not None:
            pubs.close()
        peer.stop()
    used["publishers"] = round(res.cpu_s, 2)
    expected = expected_columns(wl, res.sent, device_pk)
    stored = check_stored(url, expected)
    elapsed = max((peer.last_at or time.monotonic()) - res.first, 1e-9)
    distinct_messages = sum(
        len(set(schedule(wl.share(p)[1], wl.dup_every, wl.dup_lag)[: res.sent[p]])) for p in range(wl.publishers)
    )
    return {
        "messages_published": res.messages,
        "messages_received": peer.messages,
        "all_acked_by_broker": res.all_acked,
        "complete": complete,
        "seconds": round(elapsed, 3),
        "readings_per_s": round(stored.rows / elapsed),
        "msgs_per_s": round(distinct_messages / elapsed),
        "publish_msgs_per_s": round(res.messages / max(res.last_ack - res.first, 1e-9)),
        "readings_expected": len(expected),
        "readings_stored": stored.rows,
        "lost": stored.lost,
        "extra": stored.extra,
        "rows_offered": peer.rows,
        "rows_failed": peer.failed,
        "readings_dropped_by_flow": peer.dropped,
        "errors": peer.errors,
        "batch_readings": NODERED_BATCH_READINGS,
        "cpu_s": used,
    }


def run_copy(url: str, cols: ReadingColumns, chunk: int) -> dict[str, Any]:
    """The database limit for the same rows: one bare binary COPY, then write_batch per chunk (commit each)."""
    n = len(cols)
    out: dict[str, Any] = {"rows": n}
    if n == 0:
        return out | {"copy_rows_per_s": 0, "write_batch_rows_per_s": 0}
    t = time.perf_counter()
    data = encode_readings(cols)
    out["encode_rows_per_s"] = round(n / max(time.perf_counter() - t, 1e-9))
    empty_readings(url)
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY readings {READING_COLUMNS} FROM STDIN (FORMAT BINARY)") as cp,
        ):
            cp.write(data)
        copy_s = time.perf_counter() - t
    empty_readings(url)
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        for i in range(0, n, chunk):
            part = ReadingColumns(
                device_id=cols.device_id[i : i + chunk],
                metric_id=cols.metric_id[i : i + chunk],
                ts_us=cols.ts_us[i : i + chunk],
                value=cols.value[i : i + chunk],
                seq=cols.seq[i : i + chunk],
                received_at_us=cols.received_at_us[i : i + chunk],
            )
            write_batch(conn, part)
        wb_s = time.perf_counter() - t
    empty_readings(url)
    return out | {
        "copy_seconds": round(copy_s, 3),
        "copy_rows_per_s": round(n / copy_s),
        "write_batch_chunk": chunk,
        "write_batch_rows_per_s": round(n / wb_s),
    }


def _pid(broker: Broker) -> int:
    assert broker.process is not None
    return broker.process.pid


# ------------------------------------------------------------------------------------------------- report


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and x < 10:
        return f"{x:.2f}"
    return f"{round(x):,}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def _get(res: dict[str, Any], *path: str) -> Any:
    node: Any = res
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def render(res: dict[str, Any]) -> str:
    """The human-readable table: each figure, its goal and its ratios to the two limits and to the Node-RED peer."""
    rpm = res["config"]["readings_per_message"]
    width = 112
    lines = [
        "",
        f"{'figure':<58} {'value':>12} {'goal':>10} {'/goal':>6} {'/transp':>8} {'/COPY':>6} {'/NodeRED':>9}",
        "-" * width,
    ]

    def row(
        label: str,
        value: Any,
        goal: float | None = None,
        transport: Any = None,
        copy: Any = None,
        peer: Any = None,
    ) -> None:
        if value is None:
            return
        lines.append(
            f"{label:<58} {_fmt(value):>12} {_fmt(goal):>10} {_ratio(value, goal):>6}"
            f" {_ratio(value, transport):>8} {_ratio(value, copy):>6} {_ratio(value, peer):>9}"
        )

    for name, unit, key, goal in (
        ("single", "msgs/s (= readings/s)", "msgs_per_s", GOAL_SINGLE_MSGS_PER_S),
        ("batched", "readings/s", "readings_per_s", GOAL_BATCHED_READINGS_PER_S),
    ):
        label = name if name == "single" else f"batched ({rpm}/msg)"
        transport = _get(res, name, "transport", key)
        copy = _get(res, name, "copy", "copy_rows_per_s")
        peer = _get(res, name, "nodered", key)
        row(f"{label}: DURABLE {unit}, as deployed", _get(res, name, "ingest", key), goal, transport, copy, peer)
        row(
            f"{label}: readings/s with derived data caught up",
            _get(res, name, "ingest", "derived_readings_per_s"),
            None,
            None,
            copy,
            _get(res, name, "nodered", "readings_per_s"),
        )
        row(f"{label}: DURABLE {unit}, stream alone", _get(res, name, "stream", key), goal, transport, copy, peer)
        row(f"{label}: Node-RED peer {unit} (acks on receipt)", peer, None, transport, copy)
        row(f"{name}: transport limit {unit.split()[0]} (count-only subscriber)", transport)
        row(
            f"{name}: count-only on the ingest's MQTT adapter (lean paho)",
            _get(res, name, "transport-lean", key),
            None,
            transport,
        )
        row(f"{name}: count-only gmqtt subscriber", _get(res, name, "transport-gmqtt", key), None, transport)
        if name == "batched":
            row("batched: transport limit msgs/s", _get(res, name, "transport", "msgs_per_s"))
        row(f"{name}: publishers' offered msgs/s, as deployed", _get(res, name, "ingest", "publish_msgs_per_s"))
        row(f"{name}: COPY limit rows/s (one bare binary COPY)", copy)
        row(f"{name}: write_batch rows/s (commit per batch)", _get(res, name, "copy", "write_batch_rows_per_s"))
    lines.append("-" * width)
    for name in ("single", "batched"):
        for part in ("ingest", "stream"):
            ing = _get(res, name, part)
            if ing is None:
                continue
            lines.append(
                f"{name} {ing['wiring']}: {ing['readings_stored']:,} of {ing['readings_expected']:,} acked readings"
                f" stored in {ing['seconds']:.1f} s: lost {ing['lost']}, extra {ing['extra']},"
                f" dead letters {ing['dead_letters']}, complete {ing['complete']};"
                f" duplicates published {ing['duplicates_published']:,}, removed {ing['duplicates_removed']:,}"
                f" ({ing['duplicates_removed_in_db']:,} by the database key); {ing['batches']:,} batches,"
                f" {ing['mean_batch_readings']:,} readings each on average"
                + (
                    f"; derived data caught up after {ing['derived_seconds']:.1f} s"
                    if ing.get("derived_seconds") is not None
                    else ""
                )
            )
        peer = _get(res, name, "nodered")
        if peer is not None and "skipped" in peer:
            lines.append(f"{name} Node-RED peer: skipped ({peer['skipped']})")
        elif peer is not None:
            lines.append(
                f"{name} Node-RED peer: {peer['readings_stored']:,} of {peer['readings_expected']:,} acked readings"
                f" stored in {peer['seconds']:.1f} s: LOST {peer['lost']:,}, extra {peer['extra']:,};"
                f" {peer['rows_failed']:,} rows in failed INSERTs"
                + (f" ({'; '.join(peer['errors'])})" if peer["errors"] else "")
                + f"; complete {peer['complete']}"
            )
    lines.append("CPU seconds used [wall seconds of the phase] (2 cores: at most 2 CPU-s per wall second):")
    for name in ("single", "batched"):
        for part in ("transport", "transport-lean", "transport-gmqtt", "stream", "ingest", "nodered"):
            ph = _get(res, name, part)
            if ph is not None and "cpu_s" in ph:
                used = dict(ph["cpu_s"])
                busy, steal = used.pop("machine_busy", None), used.pop("machine_steal", None)
                cpu = ", ".join(f"{k} {v:.1f}" for k, v in used.items())
                ours = sum(
                    v for k, v in used.items() if k.endswith(("process", "broker", "backend", "backends", "publishers"))
                )
                lines.append(f"  {name} {part} [{ph['seconds']:.1f} s]: {cpu}")
                if busy is not None:
                    lines.append(
                        f"    whole machine busy {busy:.1f} CPU-s, {max(0.0, busy - ours):.1f} of it outside the parts"
                        " above (kernel network stack, other tenants)" + (f", steal {steal:.1f}" if steal else "")
                    )
    lines.append(
        "  (an as-deployed process's own figures run on until its derived data caught up; the machine's stop at the"
        " last commit)"
    )
    lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in res["config"].items()))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000, help="single-reading messages (default %(default)s)")
    ap.add_argument(
        "--batched-messages", type=int, default=None, help="messages of --readings-per-message (default messages/10)"
    )
    ap.add_argument("--readings-per-message", type=int, default=100)
    ap.add_argument(
        "--seconds", type=float, default=None, help="stop publishing after this long in each phase (a time cap)"
    )
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
    ap.add_argument("--batch-max-readings", type=int, default=None, help="default: Settings()")
    ap.add_argument("--batch-max-wait-s", type=float, default=None, help="default: Settings()")
    ap.add_argument("--receive-maximum", type=int, default=None, help="default: Settings()")
    ap.add_argument(
        "--publisher",
        choices=["paho", "raw"],
        default="paho",
        help="paho: paho-mqtt QoS 1 publishers; raw: a minimal MQTT 3.1.1 QoS 1 publisher on a socket\n"
        "(same messages, ~5x less CPU, so the load generator steals less of the 2 cores)",
    )
    ap.add_argument("--publisher-protocol", choices=["3.1.1", "5"], default="3.1.1", help="paho publishers' MQTT")
    ap.add_argument(
        "--ingest-processes", type=int, default=1, help="ingest workers (processes) on one shared subscription"
    )
    ap.add_argument(
        "--derived-processes",
        type=int,
        default=0,
        help="phase ingest: the ingest processes of role stream, and this many more of role derived (0: role all)",
    )
    ap.add_argument(
        "--switch-interval", type=float, default=None, help="sys.setswitchinterval() in the ingest process (GIL)"
    )
    ap.add_argument("--workloads", default="single,batched", help="comma-separated subset of single,batched")
    ap.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated subset of " + ",".join(PHASES) + " (default: all):\n"
        "transport: the count-only paho subscriber; transport-lean: count-only on the ingest's MQTT adapter;\n"
        "transport-gmqtt: count-only on gmqtt; stream: the stream alone (no updaters, no evaluator);\n"
        "ingest: the product as deployed (as `lccm ingest` wires it); nodered: the Node-RED peer;\n"
        "copy: the bare COPY limit",
    )
    ap.add_argument(
        "--profile", type=Path, default=None, help="py-spy record each ingest phase's first process into this folder"
    )
    ap.add_argument(
        "--py-spy-args", default="--native", help="more py-spy record options with --profile (e.g. '--idle', '--gil')"
    )
    ap.add_argument(
        "--admin-url",
        default=os.environ.get("LCCM_BENCH_PG_ADMIN", os.environ.get("LCCM_TEST_PG_ADMIN", DEFAULT_ADMIN_URL)),
        help="PostgreSQL URL allowed to CREATE and DROP a database",
    )
    args = ap.parse_args(argv)
    if args.batched_messages is None:
        args.batched_messages = max(1, args.messages // 10)
    if args.devices < args.publishers:
        ap.error("--devices must be at least --publishers")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if shutil.which("mosquitto") is None:
        print("mosquitto is not installed: the benchmark needs the real broker", file=sys.stderr)
        return 2
    defaults = Settings()
    tuning = {
        "batch_max_readings": args.batch_max_readings or defaults.batch_max_readings,
        "batch_max_wait_s": args.batch_max_wait_s if args.batch_max_wait_s is not None else defaults.batch_max_wait_s,
        "mqtt_receive_maximum": args.receive_maximum or defaults.mqtt_receive_maximum,
    }
    devices = tuple(f"BENCH-{i:04d}" for i in range(args.devices))
    dup_every = round(100 / args.dup_percent) if args.dup_percent > 0 else 0
    records = max(args.messages, args.batched_messages * args.readings_per_message // len(METER_KEYS))
    t0 = first_event_s(records // args.devices, args.record_step_s)
    config = {
        "messages": args.messages,
        "batched_messages": args.batched_messages,
        "readings_per_message": args.readings_per_message,
        "seconds": args.seconds,
        "devices": args.devices,
        "record_step_s": args.record_step_s,
        "publishers": args.publishers,
        "ingest_processes": args.ingest_processes,
        "derived_processes": args.derived_processes,
        "window": args.window,
        "publisher": args.publisher if args.publisher == "raw" else f"paho MQTT {args.publisher_protocol}",
        "dup_percent": args.dup_percent,
        **tuning,
    }
    if args.switch_interval is not None:
        config["switch_interval_s"] = args.switch_interval
    profiler = None if args.profile is None else Profiler(args.profile, args.py_spy_args.split())
    started = time.monotonic()
    results: dict[str, Any] = {"config": config}
    with tempfile.TemporaryDirectory(prefix="lccm-bench-") as tmp, bench_database(args.admin_url) as url:
        device_pk = register_devices(url, devices)
        for name, n, rpm in (
            ("single", args.messages, 1),
            ("batched", args.batched_messages, args.readings_per_message),
        ):
            if name not in args.workloads.split(","):
                continue
            root = f"b{secrets.token_hex(4)}/v1"
            wl = Workload(
                name=name,
                messages=n,
                readings_per_message=rpm,
                devices=devices,
                publishers=args.publishers,
                window=args.window,
                dup_every=dup_every,
                dup_lag=args.window // 2,
                t0=t0,
                topic_root=root,
                seconds=args.seconds,
                publisher=args.publisher,
                publisher_protocol=args.publisher_protocol,
                step_s=args.record_step_s,
            )
            settings_kwargs: dict[str, Any] = {
                "database_url": url,
                "data_dir": Path(tmp),
                "mqtt_topic_root": root,
                "mqtt_share_group": "lccm-bench",
                "_switch_interval": args.switch_interval,
                **tuning,
            }
            phases = args.phases.split(",")
            phase: dict[str, Any] = {}
            for key, subscriber in TRANSPORTS.items():
                if key not in phases:
                    continue
                missing = gmqtt_missing() if key == "transport-gmqtt" else None
                if missing is not None:
                    print(f"[{name}] {key} skipped: {missing}", file=sys.stderr, flush=True)
                    phase[key] = {"skipped": missing}
                    continue
                print(f"[{name}] {key} limit ...", file=sys.stderr, flush=True)
                broker = start_broker(Path(tmp) / f"{name}-{key}", persist=False)
                try:
                    phase[key] = run_transport(wl, broker, subscriber)
                finally:
                    broker.stop()
            expected = None
            for key, wiring in (("stream", "stream"), ("ingest", "deployed")):
                if key not in phases:
                    continue
                print(f"[{name}] ingest, {wiring} ...", file=sys.stderr, flush=True)
                broker = start_broker(Path(tmp) / f"{name}-{key}", persist=False)
                try:
                    phase[key], expected = run_ingest(
                        wl, broker, url, device_pk, settings_kwargs, args.ingest_processes, wiring, profiler,
                        args.derived_processes,
                    )  # fmt: skip
                finally:
                    broker.stop()
            if "nodered" in phases:
                missing = nodered_missing()
                if missing is not None:
                    print(f"[{name}] Node-RED peer skipped: {missing}", file=sys.stderr, flush=True)
                    phase["nodered"] = {"skipped": missing}
                else:
                    print(f"[{name}] Node-RED peer ...", file=sys.stderr, flush=True)
                    broker = start_broker(Path(tmp) / f"{name}-nodered", persist=False)
                    try:
                        phase["nodered"] = run_nodered(
                            wl, broker, url, device_pk, Path(tmp) / f"{name}-nodered-user", tuning["batch_max_wait_s"]
                        )
                    finally:
                        broker.stop()
            if expected is None:
                full = [len(schedule(wl.share(p)[1], wl.dup_every, wl.dup_lag)) for p in range(wl.publishers)]
                expected = expected_columns(wl, full, device_pk)
            if "copy" in phases:
                print(f"[{name}] COPY limit ...", file=sys.stderr, flush=True)
                phase["copy"] = run_copy(url, expected, tuning["batch_max_readings"])  # type: ignore[arg-type]
            results[name] = phase
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    summary = summarize(results)
    print(render(results))
    print(json.dumps(summary | {"detail": results}, separators=(",", ":")))
    return 0 if summary["lost"] == 0 and summary["extra"] == 0 else 1


def summarize(res: dict[str, Any]) -> dict[str, Any]:
    s, b = res.get("single", {}), res.get("batched", {})

    def get(ph: dict[str, Any], part: str, key: str) -> Any:
        return ph.get(part, {}).get(key) or 0

    def ratio(a: float, c: float) -> float | None:
        return round(a / c, 3) if a and c else None

    single = get(s, "ingest", "msgs_per_s")
    batched = get(b, "ingest", "readings_per_s")
    batched_derived = get(b, "ingest", "derived_readings_per_s")
    batched_stream = get(b, "stream", "readings_per_s")
    t_single, t_batched = get(s, "transport", "msgs_per_s"), get(b, "transport", "readings_per_s")
    copy = get(b, "copy", "copy_rows_per_s") or get(s, "copy", "copy_rows_per_s")
    peer_single, peer_batched = get(s, "nodered", "msgs_per_s"), get(b, "nodered", "readings_per_s")
    ours = [ph for w in (s, b) for k, ph in w.items() if k in ("stream", "ingest")]
    return {
        "batched_readings_per_s": batched,
        "batched_derived_readings_per_s": batched_derived,
        "batched_stream_readings_per_s": batched_stream,
        "single_msgs_per_s": single,
        "single_stream_msgs_per_s": get(s, "stream", "msgs_per_s"),
        "nodered_batched_readings_per_s": peer_batched,
        "nodered_single_msgs_per_s": peer_single,
        "nodered_lost": get(s, "nodered", "lost") + get(b, "nodered", "lost"),
        "transport_limit_msgs_per_s": t_single,
        "transport_lean_msgs_per_s": get(s, "transport-lean", "msgs_per_s"),
        "transport_gmqtt_msgs_per_s": get(s, "transport-gmqtt", "msgs_per_s"),
        "transport_limit_batched_readings_per_s": t_batched,
        "transport_limit_batched_msgs_per_s": get(b, "transport", "msgs_per_s"),
        "copy_limit_rows_per_s": copy,
        "write_batch_rows_per_s": get(b, "copy", "write_batch_rows_per_s") or get(s, "copy", "write_batch_rows_per_s"),
        "lost": sum(int(ph.get("lost", 0)) for ph in ours),
        "extra": sum(int(ph.get("extra", 0)) for ph in ours),
        "duplicates_published": get(s, "ingest", "duplicates_published") + get(b, "ingest", "duplicates_published"),
        "duplicates_removed": get(s, "ingest", "duplicates_removed") + get(b, "ingest", "duplicates_removed"),
        "single_vs_goal": round(single / GOAL_SINGLE_MSGS_PER_S, 3),
        "batched_vs_goal": round(batched / GOAL_BATCHED_READINGS_PER_S, 3),
        "single_vs_transport": ratio(single, t_single),
        "single_stream_vs_transport": ratio(get(s, "stream", "msgs_per_s"), t_single),
        "transport_gmqtt_vs_paho": ratio(get(s, "transport-gmqtt", "msgs_per_s"), t_single),
        "transport_lean_vs_paho": ratio(get(s, "transport-lean", "msgs_per_s"), t_single),
        "batched_vs_transport": ratio(batched, t_batched),
        "batched_vs_copy": ratio(batched, copy),
        "batched_derived_vs_copy": ratio(batched_derived, copy),
        "batched_stream_vs_copy": ratio(batched_stream, copy),
        "batched_vs_nodered": ratio(batched, peer_batched),
        "batched_derived_vs_nodered": ratio(batched_derived, peer_batched),
        "single_vs_nodered": ratio(single, peer_single),
        "nodered_batched_vs_copy": ratio(peer_batched, copy),
        "elapsed_s": res.get("elapsed_s"),
    }


if __name__ == "__main__":
    sys.exit(main())
