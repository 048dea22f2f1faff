"""Issue 10's outage test: the database goes away for 60 s under a running ingest, wired exactly as ``lccm ingest``
wires it (:func:`lccm.runtime.ingest_process`), and comes back.

The database is the shared PostgreSQL behind a TCP proxy (tests/_proxy.py) that the test cuts: every live
connection is reset and new ones are refused for 60 s, while readings keep arriving over MQTT. Channels: a signed
webhook (an HTTP receiver here) and the MQTT alert topic (the private broker). An SO2 alert is raised before the
outage, cleared by readings that arrive during it, and raised and cleared again after it. The test asserts that
both channels received every raise and clear exactly once after dedup by event; that every worker recovered (their
restarts counted); that health was reported unhealthy by the rule (failing for longer than
LCCM_WORKER_UNHEALTHY_AFTER_S) and healthy again after; and that at no moment was an event marked notified that no
channel had taken (a watcher on a direct connection checks it every 100 ms throughout). ``pytest -s`` prints the
figures.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lccm.imports.registry import parse_registry_csv
from lccm.notify import Recipient
from lccm.runtime import Services, ingest_process
from lccm.services import Broker
from lccm.settings import Settings
from lccm.store.devices import import_registry
from lccm.workers import heartbeat_problems, write_heartbeat
from tests._db import REGISTRY_HEADER_EN, registry_csv
from tests._proxy import Proxy
from tests.test_notify_http import SECRET, Receiver, expected_signature
from tests.test_notify_http import receiver as receiver  # fixture
from tests.test_notify_mqtt import Subscriber

OUTAGE_S = 60.0
UNHEALTHY_AFTER_S = 20.0
RULES = """
rules:
  - key: so2_outage_test
    name: {en: SO2 above 150 ppb, th: SO2 เกิน 150 ppb}
    metric: so2_ppb
    raise: {above: 150}
    clear: {below: 50}
    holdoff: 0
    dedup_key: "{site}/{signal}"
    severity: critical
    scope: {device_kinds: [aq_station]}
"""
STATION = "MM1,Sop Pat,สบป้าด,station,Lampang,18.273,99.721,,MM1-S,aq_station,Sop Pat SO2,60,"


class Readings:
    """A station publishing one SO2 reading a second (event time = now) at the level it is told, over MQTT."""

    def __init__(self, broker: Broker, topic_root: str) -> None:
        self.level = 20.0
        self.sent = 0
        self._topic = f"{topic_root}/lampang/MM1-S/up"
        self._stop = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"station-{uuid.uuid4().hex[:8]}")
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="test-station", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            ts = datetime.now(UTC).isoformat(timespec="milliseconds")
            payload = json.dumps({"ts": ts, "values": {"so2_ppb": self.level}})
            self._client.publish(self._topic, payload, qos=1).wait_for_publish(10)
            self.sent += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()


class NotifiedWatcher:
    """Every 100 ms, on a direct connection (not through the proxy): is any event marked notified without a record
    of each channel having taken it (a delivery, ok or failed with its message kept, or a hold)?"""

    def __init__(self, db: str) -> None:
        self.violations: list[str] = []
        self.checks = 0
        self._db = db
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with psycopg.connect(self._db, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                # Events first, records second: a record committed with its mark is visible to the later query.
                events = conn.execute(
                    "SELECT e.id, a.id, e.kind, e.at FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
                    " WHERE e.page AND e.notified_at IS NOT NULL"
                ).fetchall()
                taken = conn.execute(
                    "SELECT channel, unnest(alert_ids) FROM notify_deliveries WHERE ok OR notification IS NOT NULL"
                    " UNION SELECT 'held', message_id FROM notify_held"
                ).fetchall()
                channels: dict[str, set[str]] = {}
                for channel, taken_id in taken:
                    channels.setdefault(taken_id, set()).add(channel)
                for event_id, alert_id, kind, at in events:
                    missing = {"webhook", "mqtt"} - channels.get(message_id(alert_id, kind, at), set())
                    if missing:
                        self.violations.append(f"event {event_id} notified, not taken by {sorted(missing)}")
                self.checks += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def message_id(alert_id: int, kind: str, at: datetime) -> str:
    """notify.AlertMessage.message_id of an event: the identity receivers dedup by."""
    return f"{alert_id}/{kind}/{(at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)}"


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float = 120.0) -> float:
    """Poll until ``condition``; returns the seconds it took (the test's figures; never asserted on)."""
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - t0


def received(receiver: Receiver, sub: Subscriber, store: dict[str, list[tuple[str, str]]]) -> None:
    """Drain the subscriber into ``store['mqtt']`` and copy the webhook's requests into ``store['webhook']``, as
    (alert id/transition/event time, transition) per message."""
    while not sub.messages.empty():
        doc = json.loads(sub.messages.get().payload)
        store["mqtt"].append(_key(doc["alert"]))
    store["webhook"] = []
    for r in receiver.on("/hook"):
        ts = r.headers["x-lccm-timestamp"]
        assert r.headers["x-lccm-signature"] == expected_signature(SECRET, ts, r.body)
        store["webhook"] += [_key(a) for a in r.json()["alerts"]]


def _key(alert: dict[str, Any]) -> tuple[str, str]:
    at = datetime.fromisoformat(alert["event_time"].replace("Z", "+00:00"))
    us = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return f"{alert['alert_id']}/{alert['transition']}/{us}", alert["transition"]


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.close()


@pytest.mark.slow
def test_a_60_s_database_outage_loses_no_notification_and_every_worker_recovers(
    fresh_db: str, broker: Broker, topic_root: str, receiver: Receiver, proxy: Proxy, tmp_path: Path
) -> None:
    with psycopg.connect(fresh_db) as conn:
        import_registry(conn, parse_registry_csv(registry_csv(REGISTRY_HEADER_EN, [STATION])))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    group = topic_root.split("/")[0]
    settings = Settings(
        database_url=proxy.url(fresh_db), mqtt_host=broker.host, mqtt_port=broker.port, mqtt_protocol=broker.protocol,
        mqtt_topic_root=topic_root, mqtt_share_group=group, data_dir=tmp_path, alert_rules_file=rules,
        worker_unhealthy_after_s=UNHEALTHY_AFTER_S, worker_backoff_cap_s=5.0, db_pool_timeout_s=3.0,
        notify_tick_s=1.0,
    )  # fmt: skip
    hook = Recipient.from_dict({"name": "city-ops", "webhook": [{"url": receiver.url + "/hook", "secret": SECRET}]})
    sub = Subscriber(broker, f"{topic_root}/+/alerts/#")
    svc = Services(settings.database_url, broker.host, broker.port, broker.protocol)
    ingest = ingest_process(settings, svc, client_id=group, recipients=[hook])
    ingest.start()
    station = Readings(broker, topic_root)
    watcher = NotifiedWatcher(fresh_db)
    got: dict[str, list[tuple[str, str]]] = {"mqtt": [], "webhook": []}
    beat = tmp_path / "ingest.heartbeat"

    def transitions(channel: str) -> list[str]:
        received(receiver, sub, got)
        return [t for _, t in dict(got[channel]).items()]  # one per event: dedup by event identity

    def both_have(n: int, kind: str) -> Callable[[], bool]:
        return lambda: all(transitions(c).count(kind) >= n for c in ("mqtt", "webhook"))

    try:
        # Before the outage: a raise, delivered on both channels.
        assert ingest.supervisor.healthy()
        station.level = 200.0
        wait_for("the first raise on both channels", both_have(1, "raised"))

        # The outage: live connections reset, new ones refused for 60 s; readings go on, now clearing the alert.
        station.level = 20.0
        cut_at = time.monotonic()
        cut = proxy.cut()
        unhealthy_after = wait_for("health to turn", lambda: not ingest.supervisor.healthy(), OUTAGE_S)
        time.sleep(max(0.0, UNHEALTHY_AFTER_S + 10 - (time.monotonic() - cut_at)))  # every failing stage is over it
        write_heartbeat(beat, ingest.supervisor)
        problems = heartbeat_problems(beat, max_age_s=60)
        during = {s.name: s.state for s in ingest.supervisor.statuses()}
        assert transitions("webhook").count("cleared") == 0, "nothing can be sent while the database is away"
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        proxy.restore()
        restored_at = time.monotonic()
        outage_s = restored_at - cut_at

        # After: every worker recovers, the clear recorded from the outage's readings goes out, then a new alert.
        recover_s = wait_for(
            "every worker to run again",
            lambda: ingest.supervisor.healthy() and all(s.state == "running" for s in ingest.supervisor.statuses()),
        )
        wait_for("the clear on both channels", both_have(1, "cleared"))
        clear_s = time.monotonic() - restored_at
        write_heartbeat(beat, ingest.supervisor)
        assert heartbeat_problems(beat, max_age_s=60) == []
        station.level = 200.0
        wait_for("the second raise on both channels", both_have(2, "raised"))
        station.level = 20.0
        wait_for("the second clear on both channels", both_have(2, "cleared"))
        time.sleep(2.0)  # anything sent twice arrives now
    finally:
        station.close()
        statuses = ingest.supervisor.statuses()
        ingest.stop(drain_s=1.0)
        watcher.close()
        received(receiver, sub, got)
        sub.close()

    with psycopg.connect(fresh_db) as conn:
        events = conn.execute(
            "SELECT a.id, e.kind, e.at, e.notified_at IS NOT NULL FROM alert_events e JOIN alerts a"
            " ON a.id = e.alert_id WHERE e.page ORDER BY e.id"
        ).fetchall()
        deliveries: dict[str, int] = dict(
            conn.execute(
                "SELECT channel, count(*) FILTER (WHERE ok) FROM notify_deliveries GROUP BY channel"
            ).fetchall()
        )
        failed = conn.execute("SELECT count(*) FROM notify_deliveries WHERE NOT ok").fetchone()
        readings = conn.execute("SELECT count(*) FROM readings").fetchone()
    expected = [message_id(a, k, at) for a, k, at, _ in events]
    restarts = {s.name: s.restarts for s in statuses}
    print(
        f"\noutage: {outage_s:.1f} s ({cut} connections cut, {proxy.refused} connections refused during it)"
        f"\nhealth: unhealthy {unhealthy_after:.1f} s into the outage (rule: failing > {UNHEALTHY_AFTER_S:.0f} s);"
        f" states then {during}\nhealthcheck --ingest said: {problems}"
        f"\nrecovered: every worker running and healthy {recover_s:.1f} s after the database returned; the clear"
        f" recorded from the outage's readings had reached both channels {clear_s:.1f} s after it returned"
        f"\nrestarts per stage: {restarts}"
        f"\nevents paged: {[k for _, k, _, _ in events]}; deliveries ok per channel: {deliveries},"
        f" failed: {failed[0] if failed else 0}"
        f"\nreceived (raw, deduped by event): webhook {len(got['webhook'])}, {len(set(got['webhook']))};"
        f" mqtt {len(got['mqtt'])}, {len(set(got['mqtt']))}"
        f"\nreadings stored: {readings[0] if readings else 0} of {station.sent} published;"
        f" notified-without-a-channel checks: {watcher.checks}, violations: {len(watcher.violations)}"
    )

    assert watcher.checks > 100 and watcher.violations == []
    assert [k for _, k, _, _ in events] == ["raised", "cleared", "raised", "cleared"]
    assert all(notified for *_, notified in events)
    for channel in ("webhook", "mqtt"):
        assert sorted({m for m, _ in got[channel]}) == sorted(expected), channel  # every event, none extra
    assert deliveries == {"webhook": 4, "mqtt": 4}, "one committed delivery per event and address"
    assert readings is not None and readings[0] == station.sent, "every reading published was stored once"
    # Health: unhealthy by the rule, naming the stages and why; every worker that failed recovered.
    assert unhealthy_after >= UNHEALTHY_AFTER_S
    assert problems and all("is unhealthy (backing-off" in p for p in problems)
    # the stream's writer meets the outage (the stream thread waits at its hand-off)
    assert any("ingest: worker stream-writer is unhealthy" in p for p in problems)
    for stage in ("stream-writer", "updaters", "alerts", "notify-dispatch"):
        assert restarts[stage] > 0, f"{stage} never failed: the outage did not reach it"
    assert restarts["mqtt-in"] == 0 and restarts["alert-publisher"] == 0, "the broker stayed up"
