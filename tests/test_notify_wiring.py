"""Alert notifications as ``lccm ingest`` wires them (lccm/alerts.py): the evaluator's raises and clears reach
people over a real SMTP server process, a real HTTP receiver and the real broker, through the PostgreSQL outbox; an
event is marked notified in the transaction that records its deliveries, so a crash in between sends it again
(at least once, with the same delivery id) instead of never; failed deliveries are sent again; recipient files and
channel settings are checked at start-up with messages that name what is wrong."""

from __future__ import annotations

import email
import email.policy
import functools
import hmac
import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from lccm.alerts import MQTT_ALL, Notifications, alert_message, build_notifications, load_recipients
from lccm.notify import Address, Notification, NotifyConfigError, Recipient, SendOutcome, WebhookNotifier
from lccm.notify.pg_outbox import PgOutbox
from lccm.services import Broker
from lccm.settings import Settings
from tests.test_alerts_store_api import PLUME, SO2, at, cols, commit, evaluator, paged
from tests.test_alerts_store_api import db as db  # fixture: registry with Sop Pat and the Mae Moh rule
from tests.test_notify_http import SECRET, Receiver, Reply, expected_signature
from tests.test_notify_http import receiver as receiver  # fixture
from tests.test_notify_mqtt import Subscriber
from tests.test_notify_smtp import SmtpServer
from tests.test_notify_smtp import smtpd as smtpd  # fixture: the first DATA gets a 451

ENV = "env@lampang.go.th"


def settings(db: str, smtpd: SmtpServer, broker: Broker, topic_root: str, **kw: Any) -> Settings:
    return Settings(
        database_url=db, mqtt_topic_root=topic_root, mqtt_protocol=broker.protocol, notify_tick_s=0.2,
        notify_smtp_host="127.0.0.1", notify_smtp_port=smtpd.port, notify_smtp_security="plain",
        notify_smtp_sender="alerts@lampang.go.th", **kw,
    )  # fmt: skip


def people(receiver: Receiver) -> list[Recipient]:
    return [
        Recipient.from_dict({"name": "env-division", "language": "both", "email": [ENV],
                             "webhook": [{"url": receiver.url + "/hook", "secret": SECRET}]}),
        Recipient.from_dict({"name": "pm-desk", "metrics": ["pm25"], "webhook": [
            {"url": receiver.url + "/pm", "secret": SECRET}]}),
    ]  # fmt: skip


def notifications(cfg: Settings, broker: Broker, recipients: list[Recipient]) -> Notifications:
    connect = functools.partial(psycopg.connect, cfg.database_url)
    return build_notifications(cfg, connect, mqtt_host=broker.host, mqtt_port=broker.port, recipients=recipients)


def notified_events(db: str) -> list[tuple[str, bool]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT kind, notified_at IS NOT NULL FROM alert_events WHERE page ORDER BY id").fetchall()
    return [(k, bool(n)) for k, n in rows]


def test_a_plume_alert_reaches_email_webhook_and_the_mqtt_topic_once_each(
    db: str, smtpd: SmtpServer, receiver: Receiver, broker: Broker, topic_root: str
) -> None:
    sub = Subscriber(broker, f"{topic_root}/+/alerts/#")
    cfg = settings(db, smtpd, broker, topic_root)
    notes = notifications(cfg, broker, people(receiver))
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        for i, value in enumerate(PLUME):  # live: one reading per batch, as the station sends them
            commit(db, cols(conn, "MM1-S", SO2, at(i), [value]))
            ev.drain()
    handed = paged(db)  # what the evaluator recorded to page, waiting in the database
    assert notified_events(db) == [("raised", False), ("cleared", False)]
    notes.step()  # the notify-dispatch worker's step
    notes.close()
    sub_messages = [sub.get(timeout=10) for _ in range(2)]
    sub.close()
    assert notified_events(db) == [("raised", True), ("cleared", True)] and paged(db) == []

    # PLUME: raised at reading #3, 180 ppb (above 150 ppb for 10 min >= 6), cleared at #7 (45 < 50): two changes.
    assert [(t.kind, t.at) for t in handed] == [("raised", at(3)), ("cleared", at(7))]
    raised = alert_message(handed[0])
    assert (raised.city, raised.site_id, raised.metric, raised.unit) == ("lampang", "MM1", "so2", "ppb")
    assert (raised.site_name_en, raised.site_name_th, raised.value, raised.threshold) == ("Sop Pat", "สบป้าด",
                                                                                          180.0, 150.0)  # fmt: skip

    hooks = receiver.on("/hook")
    assert [r.json()["alerts"][0]["transition"] for r in hooks] == ["raised", "cleared"]
    for r in hooks:
        ts = r.headers["x-lccm-timestamp"]
        assert hmac.compare_digest(r.headers["x-lccm-signature"], expected_signature(SECRET, ts, r.body))
    assert "Sop Pat" in hooks[0].json()["subject"] and "สบป้าด" in hooks[0].json()["subject"]
    assert receiver.on("/pm") == [], "a recipient filtered to PM2.5 gets no SO2 alert"

    mails = [email.message_from_bytes(raw, policy=email.policy.default) for raw, _ in smtpd.messages()]
    assert [m["To"] for m in mails] == [ENV, ENV]
    assert "Sop Pat" in str(mails[0]["Subject"]) and "สบป้าด" in str(mails[0]["Subject"])

    assert [m.topic for m in sub_messages] == [f"{topic_root}/lampang/alerts/critical"] * 2
    payloads = [json.loads(m.payload) for m in sub_messages]
    assert [p["alert"]["transition"] for p in payloads] == ["raised", "cleared"]

    outbox = PgOutbox(lambda: psycopg.connect(db, autocommit=True))
    done = sorted((d.recipient, d.channel, d.ok) for d in outbox.deliveries())
    assert done == sorted([("env-division", "email", True), ("env-division", "webhook", True),
                           (MQTT_ALL, "mqtt", True)] * 2)  # fmt: skip
    email_attempts = [d.attempts for d in outbox.deliveries() if d.channel == "email"]
    assert sorted(email_attempts) == [1, 2], "the SMTP server's 451 on the first DATA was retried"

    # Handed on again (a second dispatcher given the same events): the outbox knows, nobody hears twice.
    again = notifications(cfg, broker, people(receiver))
    reports = [again.dispatcher.dispatch(alert_message(t)) for t in handed]
    again.close()
    assert [r.deliveries for r in reports] == [[], []]
    assert len(receiver.on("/hook")) == 2 and len(smtpd.messages()) == 2


class CrashAfterSend:
    """A webhook channel after which the database connection of the dispatch dies once, between the send and the
    commit (as in a crash or an outage at the worst moment)."""

    channel = "webhook"

    def __init__(self, db: str) -> None:
        self._db, self._inner, self.crashes = db, WebhookNotifier(), 0

    def send(self, to: Address, note: Notification) -> SendOutcome:
        outcome = self._inner.send(to, note)
        if not self.crashes:
            self.crashes += 1
            with psycopg.connect(self._db, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                )
        return outcome

    def close(self) -> None:
        self._inner.close()


def test_a_crash_between_sending_and_marking_sends_again_with_the_same_delivery_id_and_marks_once(
    db: str, smtpd: SmtpServer, receiver: Receiver, broker: Broker, topic_root: str
) -> None:
    cfg = settings(db, smtpd, broker, topic_root, notify_mqtt_all=False)
    hook = Recipient.from_dict({"name": "ops", "webhook": [{"url": receiver.url + "/ops", "secret": SECRET}]})
    notes = notifications(cfg, broker, [hook])
    crashing = CrashAfterSend(db)
    notes.dispatcher._notifiers["webhook"] = crashing  # the wiring's own channel, with a crash after its send
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, at(0), PLUME[:5]))
    ev.drain()
    with pytest.raises(psycopg.OperationalError):
        notes.step()  # sent, then the connection died: nothing of it committed
    assert crashing.crashes == 1 and len(receiver.on("/ops")) == 1
    assert notified_events(db) == [("raised", False)], "not marked: the delivery record was lost with the crash"
    notes.step()  # the worker's retry: the event is still pending in the database
    notes.close()
    calls = receiver.on("/ops")
    assert len(calls) == 2 and calls[0].json()["id"] == calls[1].json()["id"], "sent again, the same notification"
    assert calls[0].json()["alerts"] == calls[1].json()["alerts"]
    assert calls[0].headers["x-lccm-delivery"] == calls[1].headers["x-lccm-delivery"], "receivers drop the repeat"
    assert notified_events(db) == [("raised", True)]
    outbox = PgOutbox(lambda: psycopg.connect(db))
    assert [(d.recipient, d.ok) for d in outbox.deliveries()] == [("ops", True)], "one record: the committed one"


def test_a_failed_delivery_is_kept_with_its_message_and_sent_again(
    db: str, smtpd: SmtpServer, receiver: Receiver, broker: Broker, topic_root: str
) -> None:
    cfg = settings(db, smtpd, broker, topic_root, notify_mqtt_all=False, notify_redeliver_after_s=0.01,
                   notify_redeliver_max=3).model_copy(update={"notify_tick_s": 0.01})  # fmt: skip
    hook = Recipient.from_dict({"name": "ops", "webhook": [{"url": receiver.url + "/ops", "secret": SECRET}]})
    receiver.script["/ops"] = [Reply(400, body=b"maintenance"), Reply(400, body=b"still")]  # refused, not retried
    notes = notifications(cfg, broker, [hook])
    ev = evaluator(db, clock="event")
    with psycopg.connect(db) as conn:
        commit(db, cols(conn, "MM1-S", SO2, at(0), PLUME[:5]))
    ev.drain()
    notes.dispatch_pending()
    assert notified_events(db) == [("raised", True)], "the channel took it: its failure is recorded for retry"
    outbox = PgOutbox(lambda: psycopg.connect(db))
    [failed] = outbox.deliveries()
    assert not failed.ok and failed.notification is not None and "HTTP 400" in failed.error
    for _ in range(3):  # two retries: the first refused again, the second delivered; then nothing is left to retry
        time.sleep(0.05)
        notes.step()
    notes.close()
    assert [(d.ok, d.notification_id) for d in outbox.deliveries()] == [(False, failed.notification_id)] * 2 + [
        (True, failed.notification_id)]  # fmt: skip
    assert len({r.headers["x-lccm-delivery"] for r in receiver.on("/ops")}) == 1 and len(receiver.on("/ops")) == 3


def test_recipients_file_and_channel_settings_are_checked_at_start(
    tmp_path: Path, db: str, smtpd: SmtpServer, broker: Broker, topic_root: str
) -> None:
    good = tmp_path / "people.yaml"
    good.write_text(
        "recipients:\n"
        "  - {name: env-division, language: both, quiet_hours: '22:00-07:00', email: [env@lampang.go.th]}\n"
        "  - {name: mayor, digest: true, digest_hour: 8, line: [U0123456789abcdef0123456789abcdef]}\n",
        encoding="utf-8",
    )
    env, mayor = load_recipients(good)
    assert (env.name, str(env.quiet_hours), mayor.digest, mayor.addresses[0].channel) == (
        "env-division", "22:00-07:00", True, "line")  # fmt: skip

    # LINE is used by 'mayor' but no channel access token is set: start-up stops, naming both.
    cfg = settings(db, smtpd, broker, topic_root, notify_recipients_file=good)
    with pytest.raises(NotifyConfigError, match=r"mayor use line but LCCM_NOTIFY_LINE_TOKEN is not set"):
        build_notifications(cfg, functools.partial(psycopg.connect, db), mqtt_host=broker.host, mqtt_port=broker.port)
    no_smtp = Settings(database_url=db, notify_recipients_file=good, notify_line_token=SecretStr("t"))
    with pytest.raises(NotifyConfigError, match=r"env-division use email but LCCM_NOTIFY_SMTP_HOST"):
        build_notifications(no_smtp, functools.partial(psycopg.connect, db), mqtt_host=broker.host,
                            mqtt_port=broker.port)  # fmt: skip

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- {name: a, email: [not-an-address]}\n- {name: b, pager: ['555']}\n- just a string\n"
        "- {name: c, email: [c@x.th]}\n- {name: c, email: [c2@x.th]}\n",
        encoding="utf-8",
    )
    with pytest.raises(NotifyConfigError) as e:
        load_recipients(bad)
    text = str(e.value)
    assert "recipient a: e-mail address 'not-an-address' is not name@domain" in text
    assert "recipient b:" in text and "unknown keys ['pager']" in text
    assert "recipient #3: a recipient is a mapping of fields, not str" in text
    assert "recipient name 'c' is used twice" in text
    example = load_recipients(Path(__file__).resolve().parent.parent / "deploy" / "notify-recipients.example.yaml")
    assert [r.name for r in example] == ["env-division", "mae-moh-watch", "facilities", "city-ops-hook"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("recipients: [ {name: a\n", encoding="utf-8")
    with pytest.raises(NotifyConfigError, match="cannot read the recipients file"):
        load_recipients(broken)
