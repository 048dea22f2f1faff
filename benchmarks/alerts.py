"""Alert latency benchmark: publish -> alert raised, during a simulated burning-season episode.

The virtual Lampang (``simulators/``, seed 1) replays 9-11 January 2026: a smoke episode (PM2.5 24-h means near
110 ug/m3, AQI above 200) and, on the 10th around 09:20-10:25, an SO2 plume over the Mae Moh station at Sop Pat.
Everything is real: a private Mosquitto, a fresh database on the PostgreSQL of ``--admin-url`` (dropped at the
end), the ingest worker with the derived-data updaters and the alert evaluator on its commit hook, wired as
``lccm ingest`` wires them (``lccm.runtime``), and the shipped rule file (lccm/data/alert-rules.yaml).

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

Notifications are wired as ``lccm ingest`` wires them (``lccm.runtime.ingest_process``): the evaluator records the
changes to page, the ``notify-dispatch`` worker reads them from the database and sends them through the
PostgreSQL outbox, to the implicit MQTT-all recipient (every on-time
alert change to ``{root}/{city}/alerts/{severity}``) and one webhook recipient, an HTTP server on loopback that the
benchmark runs itself (it checks each request's HMAC signature and answers 401 to a bad one). A paho subscriber in
this process (MQTT 5, QoS 1) listens on ``{root}/+/alerts/#``. **Delivery latency** of a timed alert, per channel =
the wall time its ``raised`` change arrived (the subscriber's ``on_message``; the receiver, once the POST body is
read) minus the same publish time as above; deliveries are matched to alerts by the payload's alert id and
transition. Late alerts are recorded, not paged, so they have no delivery (counted apart). Notifications of the
prefill are delivered before the timed window starts (the benchmark waits for the outbox to record them).

Run: ``.venv/bin/python benchmarks/alerts.py`` (~5 minutes). Small: ``--city aq --hours 4 --speed 3600``. The last
line printed is one JSON object: ``alerts``, ``latency_p50_s``, ``latency_p99_s``, then the rest (``delivery_*``,
``deliveries_ok``, ``deliveries_failed`` among them).
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
import hashlib  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing as mp  # noqa: E402
import secrets  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.reasoncodes import ReasonCode  # noqa: E402
from psycopg import sql  # noqa: E402

from lccm.engine.alerts import AlertRule  # noqa: E402
from lccm.engine.timebase import BANGKOK  # noqa: E402
from lccm.imports.registry import parse_registry_csv  # noqa: E402
from lccm.notify import Recipient  # noqa: E402
from lccm.runtime import Services, ingest_process  # noqa: E402
from lccm.services import start_broker  # noqa: E402
from lccm.settings import Settings  # noqa: E402
from lccm.simulators.city import load_city  # noqa: E402
from lccm.store import alerts as st  # noqa: E402
from lccm.store.devices import import_registry  # noqa: E402
from lccm.store.migrate import migrate  # noqa: E402

log = logging.getLogger("bench.alerts")

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
GOAL_P99_S = 2.0
SEED = 1
EPISODE_START = datetime(2026, 1, 9, 0, 0, tzinfo=BANGKOK)
TOPIC_ROOT = "bench/v1"
WEBHOOK_PATH = "/lccm-alerts"
SIGNATURE_HEADER = "X-LCCM-Signature"  # notify/webhook.py; checked here with hmac, not with the code under test
TIMESTAMP_HEADER = "X-LCCM-Timestamp"


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


# ------------------------------------------------------------------------------------------------- receivers


class WebhookReceiver:
    """The webhook recipient's end: a ThreadingHTTPServer on 127.0.0.1 that records (wall time, body) of each POST
    whose signature is right (HMAC-SHA256 over ``<timestamp>.<body>``) and answers 401 to any other."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.arrivals: list[tuple[float, bytes]] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                at = time.time()  # the whole request is in: delivered
                ok = receiver.signed(self.headers.get(TIMESTAMP_HEADER, ""), body, self.headers.get(SIGNATURE_HEADER))
                with receiver._lock:
                    if ok:
                        receiver.arrivals.append((at, body))
                    else:
                        receiver.bad_signatures += 1
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{WEBHOOK_PATH}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="bench-webhook")

    def signed(self, timestamp: str, body: bytes, signature: str | None) -> bool:
        mac = hmac.new(self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return signature is not None and hmac.compare_digest(signature, "sha256=" + mac)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def received(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival wall time, alert dict) of every alert in every accepted POST."""
        with self._lock:
            got = list(self.arrivals)
        return [(at, a) for at, body in got for a in orjson.loads(body)["alerts"]]


class AlertSubscriber:
    """A paho subscriber (MQTT 5, QoS 1) on the alert topic that records (wall time, payload) of each message."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.topic = topic
        self.arrivals: list[tuple[float, bytes]] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-alert-subscriber", protocol=mqtt.MQTTv5
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    def start(self, timeout_s: float = 10.0) -> AlertSubscriber:
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"no SUBACK for {self.topic} within {timeout_s:.0f} s")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, codes: list[ReasonCode], _p: object) -> None:
        if codes and not codes[0].is_failure:
            self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.arrivals.append((time.time(), bytes(msg.payload)))  # list.append is atomic; parsed after the run

    def received(self) -> list[tuple[float, dict[str, Any]]]:
        return [(at, orjson.loads(payload)["alert"]) for at, payload in list(self.arrivals)]


def first_arrivals(received: Sequence[tuple[float, dict[str, Any]]]) -> tuple[dict[tuple[str, str], float], int]:
    """(alert id, transition) -> first arrival wall time; and how many arrivals repeated one already seen."""
    out: dict[tuple[str, str], float] = {}
    repeats = 0
    for at, a in sorted(received, key=lambda r: r[0]):
        key = (str(a["alert_id"]), str(a["transition"]))
        if key in out:
            repeats += 1
        else:
            out[key] = at
    return out, repeats


# ------------------------------------------------------------------------------------------------- publisher


def _simulate(host: str, port: int, start: str, end: str, speed: float | None, devices: list[str] | None,
              truth_path: str, client_prefix: str) -> None:  # fmt: skip  # pragma: no cover - child process
    from lccm.simulators.run import SimConfig, run_simulation

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


def raised_alerts(url: str, since: datetime) -> list[tuple[str, str, str, datetime, float, bool, str, str]]:
    """(rule, kind, device, raised_at, detected_at epoch s, late, signal, alert id) of alerts raised (event time)
    since."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.rule_key, coalesce(r.definition ->> 'kind', 'threshold'), d.device_id, a.raised_at,"
            " extract(epoch FROM a.detected_at)::float8, a.late, a.signal, a.id"
            " FROM alerts a JOIN devices d ON d.id = a.device_id LEFT JOIN alert_rules r ON r.key = a.rule_key"
            " WHERE a.raised_at >= %s ORDER BY a.raised_at",
            (since,),
        ).fetchall()
    return [
        (str(r), str(k), str(d), ra, float(det), bool(late), str(sig), str(aid))
        for r, k, d, ra, det, late, sig, aid in rows
    ]


def timed_alerts(
    alerts: Sequence[tuple[Any, ...]], published: dict[tuple[str, int], float]
) -> tuple[list[tuple[str, float, float, bool]], int]:
    """(alert id, publish wall time, detected wall time, late) of each metric-rule alert traced to the message that
    triggered it; and how many could not be traced."""
    out, unmatched = [], 0
    for _, kind, device, raised_at, detected, late, signal, alert_id in alerts:
        if kind == "offline" or signal.startswith("aqi_"):
            continue
        key = (device, (raised_at - datetime(1970, 1, 1, tzinfo=raised_at.tzinfo)) // timedelta(microseconds=1))
        if key not in published:
            unmatched += 1
            continue
        out.append((alert_id, published[key], detected, late))
    return out, unmatched


def delivery_latencies(
    timed: Sequence[tuple[str, float, float, bool]], arrived: dict[tuple[str, str], float]
) -> tuple[list[float], list[float], int, int]:
    """Publish-to-delivered latency of each timed alert's ``raised`` change on one channel, and raised-to-delivered
    (the notification path alone); how many on-time alerts never arrived; how many late alerts did not (late alerts
    are recorded, not paged)."""
    out, after_raised, missing, late_unpaged = [], [], 0, 0
    for alert_id, published_s, detected_s, late in timed:
        at = arrived.get((alert_id, "raised"))
        if at is not None:
            out.append(at - published_s)
            after_raised.append(at - detected_s)
        elif late:
            late_unpaged += 1
        else:
            missing += 1
    return out, after_raised, missing, late_unpaged


def delivery_counts(url: str, since_s: float) -> dict[str, dict[str, int]]:
    """channel -> {ok, failed}: rows of notify_deliveries recorded at or after ``since_s`` (epoch s)."""
    out: dict[str, dict[str, int]] = {}
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT channel, ok, count(*) FROM notify_deliveries WHERE at >= to_timestamp(%s) GROUP BY 1, 2",
            (since_s,),
        ).fetchall()
    for channel, ok, n in rows:
        out.setdefault(str(channel), {"ok": 0, "failed": 0})["ok" if ok else "failed"] += int(n)
    return dict(sorted(out.items()))


def delivery_errors(url: str, since_s: float, limit: int = 5) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT channel || ': ' || error FROM notify_deliveries WHERE NOT ok AND at >= to_timestamp(%s)"
            " ORDER BY id LIMIT %s",
            (since_s, limit),
        ).fetchall()
    return [str(r[0]) for r in rows]


def wait_delivered(url: str, expected: int, timeout_s: float = 300.0) -> int:
    """Until notify_deliveries holds ``expected`` rows (every change handed on, to every address); returns the
    count reached (less on timeout, logged)."""
    deadline = time.monotonic() + timeout_s
    n = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM notify_deliveries").fetchone()
            n = int(row[0]) if row else 0
            if n >= expected:
                return n
            if time.monotonic() > deadline:
                log.warning("only %d of %d deliveries recorded after %.0f s", n, expected, timeout_s)
                return n
            time.sleep(0.05)


def wait_received(subscriber: AlertSubscriber, expected: int, timeout_s: float = 10.0) -> None:
    """Until the subscriber has ``expected`` messages (the broker acknowledged them: they are on their way)."""
    deadline = time.monotonic() + timeout_s
    while len(subscriber.arrivals) < expected and time.monotonic() < deadline:
        time.sleep(0.02)


def paged_changes(url: str) -> int:
    """Alert changes recorded to page so far (each reaches every address once)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM alert_events WHERE page").fetchone()
    return int(row[0]) if row else 0


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
    receiver = WebhookReceiver(secrets.token_urlsafe(24)).start()
    webhook = Recipient.from_dict(
        {"name": "bench-webhook", "language": "both", "webhook": [{"url": receiver.url, "secret": receiver.secret}]}
    )
    # Every change goes to the MQTT-all recipient (one address) and to the webhook recipient (one address).
    addresses_per_change = 1 + len(webhook.addresses)
    try:
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
                subscriber = AlertSubscriber(broker.host, broker.port, f"{TOPIC_ROOT}/+/alerts/#").start()
                # As `lccm ingest` wires them (lccm.runtime.ingest_process), with the webhook recipient.
                svc = Services(url, broker.host, broker.port, broker.protocol)
                worker = ingest_process(settings, svc, client_id="bench-ingest", recipients=[webhook])
                evaluator = worker.evaluator
                assert evaluator is not None
                with psycopg.connect(url) as conn:
                    # Rules written through the API are an organisation's: the simulated city's (migration 007).
                    org = conn.execute("SELECT id FROM organisations WHERE code = 'lampang'").fetchone()
                    assert org is not None
                    for rule in tier_rules(args.tiers):
                        st.put_rule(conn, rule.key, rule.definition(), "api", int(org[0]))
                worker.start()
                try:
                    prefill_s = publish(
                        broker, prefill_start, start, None, devices, folder / "prefill.jsonl", "prefill"
                    )
                    worker.wait_idle(1.0, timeout_s=600)
                    wait_quiet(evaluator)
                    # The prefill's notifications go out before the window, not into its delivery figures.
                    prefill_notified = paged_changes(url)
                    wait_delivered(url, addresses_per_change * prefill_notified)
                    wall_start = time.time()
                    window_s = publish(broker, start, end, args.speed, devices, folder / "episode.jsonl", "episode")
                    worker.wait_idle(1.0, timeout_s=600)
                    wait_quiet(evaluator)
                    drain_t0 = time.monotonic()
                    notified = paged_changes(url)
                    wait_delivered(url, addresses_per_change * notified)
                    drain_s = time.monotonic() - drain_t0
                    stats = worker.loop.stats.as_dict()
                    t = evaluator.totals
                    evaluation = {
                        "runs": t.runs,
                        "busy_s": round(t.busy_s, 2),
                        "mean_run_ms": round(1000 * t.busy_s / max(t.runs, 1), 1),
                        "max_run_ms": round(1000 * t.max_run_s, 1),
                    }
                finally:
                    notify_errors = worker.supervisor["notify-dispatch"].errors
                    worker.stop()
                mqtt_ok_total = sum(c["ok"] for ch, c in delivery_counts(url, 0).items() if ch == "mqtt")
                wait_received(subscriber, mqtt_ok_total)
                subscriber.stop()
                published, messages, readings = published_at(folder / "episode.jsonl")
                found = [a for a in raised_alerts(url, start) if a[4] >= wall_start]
                timed, unmatched = timed_alerts(found, published)
                by_channel = delivery_counts(url, wall_start)
                errors = delivery_errors(url, wall_start)
            finally:
                broker.stop()
    finally:
        receiver.stop()
    lat = [detected - pub for _, pub, detected, _ in timed]
    mqtt_first, mqtt_repeats = first_arrivals(subscriber.received())
    hook_first, hook_repeats = first_arrivals(receiver.received())
    mqtt_lat, mqtt_after, mqtt_missing, late_unpaged = delivery_latencies(timed, mqtt_first)
    hook_lat, hook_after, hook_missing, _ = delivery_latencies(timed, hook_first)
    by_rule = Counter(a[0] for a in found)
    deliveries_ok = sum(c["ok"] for c in by_channel.values())
    deliveries_failed = sum(c["failed"] for c in by_channel.values())
    return {
        "alerts": len(found),
        "latency_p50_s": percentile(lat, 50),
        "latency_p99_s": percentile(lat, 99),
        "latency_max_s": round(max(lat), 4) if lat else None,
        "latency_alerts": len(lat),
        "goal_p99_s": GOAL_P99_S,
        "goal_met": bool(lat) and (percentile(lat, 99) or 0) < GOAL_P99_S,
        "delivery_mqtt_p50_s": percentile(mqtt_lat, 50),
        "delivery_mqtt_p99_s": percentile(mqtt_lat, 99),
        "delivery_webhook_p50_s": percentile(hook_lat, 50),
        "delivery_webhook_p99_s": percentile(hook_lat, 99),
        "deliveries_ok": deliveries_ok,
        "deliveries_failed": deliveries_failed,
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
            "notified": notified,
            "latency_p90_s": percentile(lat, 90),
            "latency_min_s": round(min(lat), 4) if lat else None,
            "delivery": {
                "mqtt": channel_detail(mqtt_lat, mqtt_after, mqtt_missing, mqtt_repeats, len(subscriber.arrivals)),
                "webhook": channel_detail(hook_lat, hook_after, hook_missing, hook_repeats, len(receiver.arrivals))
                | {"bad_signatures": receiver.bad_signatures},
                "late_not_paged": late_unpaged,
                "deliveries_by_channel": by_channel,
                "failures": errors,
                "dispatch_errors": notify_errors,
                "prefill_changes_notified": prefill_notified,
                "window_changes_notified": notified - prefill_notified,
                "drain_after_quiet_s": round(drain_s, 2),
            },
            "ingest": stats,
            "evaluator": evaluation,
        },
    }


def channel_detail(
    lat: Sequence[float], after_raised: Sequence[float], missing: int, repeats: int, arrivals: int
) -> dict[str, Any]:
    return {
        "alerts": len(lat),
        "p90_s": percentile(lat, 90),
        "min_s": round(min(lat), 4) if lat else None,
        "max_s": round(max(lat), 4) if lat else None,
        "after_raised_p50_s": percentile(after_raised, 50),
        "after_raised_p99_s": percentile(after_raised, 99),
        "after_raised_max_s": round(max(after_raised), 4) if after_raised else None,
        "missing": missing,
        "repeats": repeats,
        "received": arrivals,
    }


def render(res: dict[str, Any]) -> str:
    d = res["detail"]
    dv = d["delivery"]
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
    for name, key, how in (("mqtt", "mqtt", "MQTT alert topic, paho subscriber"),
                           ("webhook", "webhook", "webhook, HTTP receiver on loopback")):  # fmt: skip
        c = dv[key]
        lines.append(
            f"  publish -> delivered ({how}), {c['alerts']} alerts: p50 {res[f'delivery_{name}_p50_s']} s, "
            f"p90 {c['p90_s']} s, p99 {res[f'delivery_{name}_p99_s']} s, max {c['max_s']} s; "
            f"missing {c['missing']}, repeats {c['repeats']}"
        )
        lines.append(
            f"    of which raised -> delivered: p50 {c['after_raised_p50_s']} s, p99 {c['after_raised_p99_s']} s, "
            f"max {c['after_raised_max_s']} s"
        )
    per = ", ".join(f"{ch} {c['ok']}/{c['failed']}" for ch, c in dv["deliveries_by_channel"].items())
    lines.append(
        f"  deliveries in the window: ok {res['deliveries_ok']}, failed {res['deliveries_failed']} ({per or 'none'}; "
        f"ok/failed); late alerts not paged: {dv['late_not_paged']}; outbox drained {dv['drain_after_quiet_s']} s "
        f"after the evaluator went quiet"
    )
    lines += [f"    failed: {e}" for e in dv["failures"]]
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
