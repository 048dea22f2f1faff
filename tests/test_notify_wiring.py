"""Alert notifications as ``lccm ingest`` wires them (lccm/notifications.py): the evaluator's raises and clears reach
people over a real SMTP server process, a real HTTP receiver and the real broker, through the PostgreSQL outbox;
recipient files and channel settings are checked at start-up with messages that name what is wrong."""

from __future__ import annotations

import email
import email.policy
import hmac
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lccm.notifications import MQTT_ALL, alert_message, build_notifications, load_recipients
from lccm.notify import NotifyConfigError, Recipient
from lccm.notify.pg_outbox import PgOutbox
from lccm.services import Broker
from lccm.settings import Settings
from lccm.stream.alerts import AlertTransition
from tests.test_alerts_store_api import PLUME, SO2, at, cols, commit, evaluator
from tests.test_alerts_store_api import db as db  # fixture: registry with Sop Pat and the Mae Moh rule
from tests.test_notify_http import SECRET, Receiver, expected_signature
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


def test_a_plume_alert_reaches_email_webhook_and_the_mqtt_topic_once_each(
    db: str, smtpd: SmtpServer, receiver: Receiver, broker: Broker, topic_root: str
) -> None:
    sub = Subscriber(broker, f"{topic_root}/+/alerts/#")
    cfg = settings(db, smtpd, broker, topic_root)
    notes = build_notifications(cfg, db, mqtt_host=broker.host, mqtt_port=broker.port, recipients=people(receiver))
    handed: list[AlertTransition] = []

    def notify(tr: AlertTransition) -> None:
        handed.append(tr)
        notes(tr)

    ev = evaluator(db, clock="event")
    ev.notify = notify
    with psycopg.connect(db) as conn:
        for i, value in enumerate(PLUME):  # live: one reading per batch, as the station sends them
            commit(db, cols(conn, "MM1-S", SO2, at(i), [value]), ev)
            ev.drain()
    notes.close()  # delivers what was queued
    sub_messages = [sub.get(timeout=10) for _ in range(2)]
    sub.close()

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

    # Handed on again (a crash between hand-off and the evaluator's mark): the outbox knows, nobody hears twice.
    again = build_notifications(cfg, db, mqtt_host=broker.host, mqtt_port=broker.port, recipients=people(receiver))
    reports = [again.dispatcher.dispatch(alert_message(t)) for t in handed]
    again.close()
    assert [r.deliveries for r in reports] == [[], []]
    assert len(receiver.on("/hook")) == 2 and len(smtpd.messages()) == 2


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
        build_notifications(cfg, db, mqtt_host=broker.host, mqtt_port=broker.port)
    no_smtp = Settings(database_url=db, notify_recipients_file=good, notify_line_token="t")
    with pytest.raises(NotifyConfigError, match=r"env-division use email but LCCM_NOTIFY_SMTP_HOST"):
        build_notifications(no_smtp, db, mqtt_host=broker.host, mqtt_port=broker.port)

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
