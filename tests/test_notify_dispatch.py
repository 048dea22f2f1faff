"""Routing, quiet hours and daily digests, with an injected clock and real channels: webhook and LINE requests go
to the loopback receiver of test_notify_http, and the assertions are on what it received."""

from __future__ import annotations

import queue
import random
import time as time_mod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from lccm.notify.dispatch import Dispatcher, decide
from lccm.notify.line import LineNotifier
from lccm.notify.model import Address, AlertMessage, Notifier, NotifyConfigError, QuietHours, Recipient, Severity
from lccm.notify.outbox import MemoryOutbox
from lccm.notify.retry import RetryPolicy
from lccm.notify.webhook import WebhookNotifier
from lccm.workers import Worker
from tests.test_notify_http import LINE_USER, SECRET, Receiver, Reply

BKK = timezone(timedelta(hours=7))
PUSH = "/v2/bot/message/push"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, *args: int) -> None:
        """Bangkok wall-clock time: set(2025, 11, 22, 23, 0)."""
        self.now = bkk(*args)


def alert(n: int, severity: str, at: datetime, **kw: object) -> AlertMessage:
    fields: dict = {
        "alert_id": f"A-{n}",
        "rule_key": "pm25_24h",
        "dedup_key": f"cm-0{n}/pm25",
        "city": "chiang-mai",
        "site_id": f"cm-0{n}",
        "metric": "pm25",
        "severity": severity,
        "transition": "raised",
        "event_time": at,
        "value": 40.0 + n,
        "threshold": 37.5,
        "unit": "ug/m3",
    }
    fields.update(kw)
    return AlertMessage(**fields)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def no_wait() -> RetryPolicy:
    return RetryPolicy(3, 0.01, 0.1, sleep=lambda _s: None, rng=random.Random(1))


def make(receiver: Receiver, recipients: list[Recipient], clock: Clock) -> tuple[Dispatcher, MemoryOutbox]:
    outbox = MemoryOutbox()
    notifiers: list[Notifier] = [
        WebhookNotifier(no_wait()),
        LineNotifier("token", base_url=receiver.url, retry=no_wait()),
    ]
    return Dispatcher(recipients, notifiers, outbox, clock=clock), outbox


def duty(receiver: Receiver) -> Recipient:
    """On call: every alert at once, but not woken 22:00-07:00 for anything below critical."""
    addresses = (Address("webhook", receiver.url + "/duty", SECRET), Address("line", LINE_USER))
    return Recipient("duty", addresses, language="th", quiet_hours=QuietHours(time(22), time(7)))


def manager(receiver: Receiver) -> Recipient:
    """One English digest a day at 08:00 of warnings and above; critical ones at once."""
    addresses = (Address("webhook", receiver.url + "/manager", SECRET),)
    return Recipient("manager", addresses, language="en", digest=True, digest_hour=8, min_severity="warning")  # type: ignore[arg-type]


def bkk(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BKK)


# -- the rule, case by case ---------------------------------------------------------------------------------------


def test_the_hold_rule_case_by_case(receiver: Receiver) -> None:
    d, m = duty(receiver), manager(receiver)
    t = bkk(2025, 11, 22, 12, 0)
    warning, critical = alert(1, "warning", t), alert(2, "critical", t)
    # duty: quiet 22:00-07:00, start inclusive, end exclusive; the hold lasts until 07:00 Bangkok (00:00 UTC).
    assert decide(d, warning, bkk(2025, 11, 22, 12, 0)) == ("send", None)
    assert decide(d, warning, bkk(2025, 11, 22, 22, 0)) == ("quiet_hours", datetime(2025, 11, 23, 0, 0, tzinfo=UTC))
    assert decide(d, warning, bkk(2025, 11, 23, 6, 59)) == ("quiet_hours", datetime(2025, 11, 23, 0, 0, tzinfo=UTC))
    assert decide(d, warning, bkk(2025, 11, 23, 7, 0)) == ("send", None)
    assert decide(d, critical, bkk(2025, 11, 22, 23, 30)) == ("send", None)
    # manager: digest at 08:00 Bangkok (01:00 UTC), the next one strictly after now; critical bypasses.
    assert decide(m, warning, bkk(2025, 11, 22, 7, 59)) == ("digest", datetime(2025, 11, 22, 1, 0, tzinfo=UTC))
    assert decide(m, warning, bkk(2025, 11, 22, 8, 0)) == ("digest", datetime(2025, 11, 23, 1, 0, tzinfo=UTC))
    assert decide(m, critical, bkk(2025, 11, 22, 3, 0)) == ("send", None)
    # A lower bypass makes warnings go through quiet hours too.
    assert decide(d, warning, bkk(2025, 11, 22, 23, 0), bypass=Severity.WARNING) == ("send", None)


# -- quiet hours --------------------------------------------------------------------------------------------------


def test_quiet_hours_hold_non_critical_and_release_one_summary_at_the_end(receiver: Receiver) -> None:
    clock = Clock(bkk(2025, 11, 22, 23, 0))
    dispatcher, outbox = make(receiver, [duty(receiver)], clock)

    r1 = dispatcher.dispatch(alert(1, "warning", bkk(2025, 11, 22, 22, 55)))
    clock.set(2025, 11, 23, 2, 0)
    r2 = dispatcher.dispatch(alert(2, "info", bkk(2025, 11, 23, 1, 58)))
    r3 = dispatcher.dispatch(alert(3, "critical", bkk(2025, 11, 23, 1, 59)))

    assert r1.deliveries == [] and r2.deliveries == [] and len(r1.held) == len(r2.held) == 1
    # The critical one went out at once, on both channels.
    assert [(rec.channel, rec.ok) for rec in r3.deliveries] == [("webhook", True), ("line", True)]
    assert [r.json()["alerts"][0]["alert_id"] for r in receiver.on("/duty")] == ["A-3"]
    assert receiver.on(PUSH)[0].json()["messages"][0]["text"].startswith("[วิกฤต] แจ้งเตือนใหม่: PM2.5 ที่ cm-03")
    assert [i.alert.alert_id for i in outbox.pending("duty")] == ["A-1", "A-2"]
    assert dispatcher.next_due() == datetime(2025, 11, 23, 0, 0, tzinfo=UTC)  # 07:00 Bangkok

    clock.set(2025, 11, 23, 6, 59)
    assert dispatcher.run_due() == []
    clock.set(2025, 11, 23, 7, 0)
    records = dispatcher.run_due()
    assert [(rec.kind, rec.channel, rec.ok, rec.alert_ids) for rec in records] == [
        ("quiet_hours", "webhook", True, ("A-1/raised/1763826900000000", "A-2/raised/1763837880000000")),
        ("quiet_hours", "line", True, ("A-1/raised/1763826900000000", "A-2/raised/1763837880000000")),
    ]
    summary = receiver.on("/duty")[-1].json()
    assert summary["kind"] == "quiet_hours"
    assert summary["subject"] == "การแจ้งเตือนระหว่างช่วงงดแจ้งเตือน (2 รายการ)"
    assert [a["alert_id"] for a in summary["alerts"]] == ["A-1", "A-2"]
    assert summary["text"].splitlines()[2:] == [
        "22 พ.ย. 22:55 น. [เตือน] แจ้งเตือนใหม่: PM2.5 ที่ cm-01 41 µg/m³",
        "23 พ.ย. 01:58 น. [ข้อมูล] แจ้งเตือนใหม่: PM2.5 ที่ cm-02 42 µg/m³",
    ]
    assert len(receiver.on(PUSH)) == 2
    assert outbox.pending() == [] and dispatcher.next_due() is None
    assert dispatcher.run_due() == []
    # After 07:00 a warning goes straight out again.
    clock.set(2025, 11, 23, 7, 1)
    assert len(dispatcher.dispatch(alert(4, "warning", bkk(2025, 11, 23, 7, 0))).deliveries) == 2


# -- daily digest -------------------------------------------------------------------------------------------------


def test_one_digest_a_day_at_the_digest_hour(receiver: Receiver) -> None:
    clock = Clock(bkk(2025, 11, 22, 9, 0))
    dispatcher, outbox = make(receiver, [manager(receiver)], clock)
    day = [
        (9, 0, alert(1, "warning", bkk(2025, 11, 22, 8, 50))),
        (10, 0, alert(2, "info", bkk(2025, 11, 22, 9, 55))),  # below the manager's minimum: never seen
        (15, 0, alert(3, "warning", bkk(2025, 11, 22, 14, 50))),
        (16, 0, alert(4, "critical", bkk(2025, 11, 22, 15, 55))),  # at once, not in the digest
        (23, 0, alert(5, "warning", bkk(2025, 11, 22, 22, 50), transition="cleared")),
    ]
    for hour, minute, a in day:
        clock.set(2025, 11, 22, hour, minute)
        dispatcher.dispatch(a)
    assert [r.json()["alerts"][0]["alert_id"] for r in receiver.on("/manager")] == ["A-4"]

    clock.set(2025, 11, 23, 7, 59)
    assert dispatcher.run_due() == []
    clock.set(2025, 11, 23, 8, 0)
    [record] = dispatcher.run_due()
    assert record.ok and record.kind == "digest"
    digest = receiver.on("/manager")[-1].json()
    assert digest["subject"] == "Daily alert digest 23 Nov 2025 (3 alerts)"
    assert digest["text"].splitlines() == [
        "Critical 0 · Warning 3 · Info 0",
        "",
        "22 Nov 08:50 [Warning] Raised: PM2.5 at cm-01 41 µg/m³",
        "22 Nov 14:50 [Warning] Raised: PM2.5 at cm-03 43 µg/m³",
        "22 Nov 22:50 [Warning] Cleared: PM2.5 at cm-05 45 µg/m³",
    ]
    assert dispatcher.run_due() == []  # one a day

    # An alert after 08:00 waits for the next day's digest.
    clock.set(2025, 11, 23, 8, 0, 1)
    dispatcher.dispatch(alert(6, "warning", bkk(2025, 11, 23, 8, 0)))
    assert dispatcher.next_due() == bkk(2025, 11, 24, 8, 0)
    clock.set(2025, 11, 24, 10, 30)  # the process was down at 08:00: the overdue digest goes out on the next run
    [late] = dispatcher.run_due()
    assert late.alert_ids == ("A-6/raised/1763859600000000",) and len(receiver.on("/manager")) == 3
    assert outbox.pending() == []


# -- dedup, failures, configuration -------------------------------------------------------------------------------


def test_the_same_alert_change_is_delivered_and_held_once(receiver: Receiver) -> None:
    clock = Clock(bkk(2025, 11, 22, 12, 0))
    dispatcher, _ = make(receiver, [duty(receiver), manager(receiver)], clock)
    a = alert(1, "warning", bkk(2025, 11, 22, 11, 59))
    first, second = dispatcher.dispatch(a), dispatcher.dispatch(a)
    assert len(first.deliveries) == 2 and len(first.held) == 1
    assert second.deliveries == [] and second.held == []
    assert len(receiver.on("/duty")) == 1 and len(receiver.on(PUSH)) == 1
    # The same alert in another state is another message.
    assert len(dispatcher.dispatch(alert(1, "warning", bkk(2025, 11, 22, 12, 0), transition="cleared")).deliveries) == 2


def test_a_failed_channel_is_recorded_kept_and_can_be_resent(receiver: Receiver) -> None:
    receiver.script["/duty"] = [Reply(400, body=b"bad signature")]
    clock = Clock(bkk(2025, 11, 22, 12, 0))
    dispatcher, outbox = make(receiver, [duty(receiver)], clock)
    report = dispatcher.dispatch(alert(1, "critical", bkk(2025, 11, 22, 11, 59)))

    assert [(r.channel, r.ok) for r in report.deliveries] == [("webhook", False), ("line", True)]
    [failed] = outbox.deliveries(failed_only=True)
    assert failed.error == "HTTP 400 Bad Request: bad signature" and failed.attempts == 1
    assert failed.notification is not None and failed.notification.alerts[0].alert_id == "A-1"

    clock.set(2025, 11, 22, 12, 30)
    retried = dispatcher.resend(failed)
    assert retried.ok and retried.channel == "webhook"
    assert len(receiver.on("/duty")) == 2 and len(receiver.on(PUSH)) == 1  # LINE was not sent twice
    assert receiver.on("/duty")[0].body == receiver.on("/duty")[1].body
    assert dispatcher.resend(failed).detail == "already delivered"


def test_held_alerts_of_a_removed_recipient_are_reported_not_dropped(receiver: Receiver) -> None:
    clock = Clock(bkk(2025, 11, 22, 12, 0))
    dispatcher, outbox = make(receiver, [duty(receiver), manager(receiver)], clock)
    dispatcher.dispatch(alert(1, "warning", bkk(2025, 11, 22, 11, 59)))
    dispatcher.set_recipients([duty(receiver)])
    clock.set(2025, 11, 23, 8, 0)
    [record] = dispatcher.run_due()
    assert not record.ok and record.recipient == "manager"
    assert record.error == "recipient 'manager' is no longer configured; 1 held alert(s) not delivered"
    assert record.alert_ids == ("A-1/raised/1763787540000000",)
    assert outbox.deliveries(failed_only=True) == [record]


def test_configuration_errors_surface_at_start(receiver: Receiver) -> None:
    with pytest.raises(NotifyConfigError, match=r"no notifier for channel\(s\) \['line'\]"):
        Dispatcher([duty(receiver)], [WebhookNotifier(no_wait())], MemoryOutbox())
    with pytest.raises(NotifyConfigError, match="used twice"):
        Dispatcher([manager(receiver), manager(receiver)], [WebhookNotifier(no_wait())], MemoryOutbox())
    naive = Dispatcher([manager(receiver)], [WebhookNotifier(no_wait())], MemoryOutbox(), clock=datetime.now)
    with pytest.raises(NotifyConfigError, match="clock"):
        naive.dispatch(alert(1, "warning", bkk(2025, 11, 22, 11, 59)))


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time_mod.monotonic() + timeout_s
    while time_mod.monotonic() < deadline:
        if condition():
            return True
        time_mod.sleep(0.02)
    return condition()


def test_a_supervised_worker_dispatches_in_the_background_and_sends_what_comes_due(receiver: Receiver) -> None:
    clock = Clock(bkk(2025, 11, 22, 23, 0))
    dispatcher, outbox = make(receiver, [duty(receiver)], clock)
    inbox: queue.SimpleQueue[AlertMessage] = queue.SimpleQueue()

    def step(stopping: Callable[[], bool]) -> float:
        while not inbox.empty():
            dispatcher.dispatch(inbox.get())
        due = dispatcher.next_due()
        if due is not None and due <= dispatcher.now():
            dispatcher.run_due()
        return 0.05

    worker = Worker("notify-dispatch", step, idle_s=0.05)
    worker.start()
    try:
        inbox.put(alert(1, "critical", bkk(2025, 11, 22, 22, 59)))
        inbox.put(alert(2, "warning", bkk(2025, 11, 22, 22, 59)))
        worker.poke()
        assert wait_for(lambda: len(receiver.on("/duty")) == 1 and len(outbox.pending()) == 1)
        clock.set(2025, 11, 23, 7, 0)  # quiet hours over: the next step sends the summary
        assert wait_for(lambda: len(receiver.on("/duty")) == 2)
        assert receiver.on("/duty")[1].json()["kind"] == "quiet_hours"
    finally:
        assert worker.stop(timeout_s=10)
    assert worker.errors == 0 and outbox.pending() == [] and worker.status().state == "stopped"
