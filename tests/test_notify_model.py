"""Alert and recipient values: validation with clear errors, JSON round trip, quiet-hour windows."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from lccm.notify.model import (
    Address,
    AlertMessage,
    NotifyConfigError,
    QuietHours,
    Recipient,
    Severity,
    TransitionKind,
    next_local_time,
)

BKK = timezone(timedelta(hours=7))


def alert(**kw: object) -> AlertMessage:
    fields: dict = {
        "alert_id": "A-1",
        "rule_key": "so2_1h",
        "dedup_key": "mm-03/so2",
        "city": "lampang",
        "site_id": "mm-03",
        "metric": "so2",
        "severity": "warning",
        "transition": "raised",
        "event_time": datetime(2026, 2, 1, 10, 0, tzinfo=BKK),
        "value": 0.16,
        "threshold": 0.15,
        "unit": "ppm",
    }
    fields.update(kw)
    return AlertMessage(**fields)


def test_event_time_is_normalised_to_utc_and_naive_is_refused() -> None:
    a = alert()
    assert a.event_time == datetime(2026, 2, 1, 3, 0, tzinfo=UTC) and a.event_time.tzinfo is UTC
    assert a.severity is Severity.WARNING and a.transition is TransitionKind.RAISED
    # 2026-02-01 03:00 UTC = 1,769,914,800 s since the epoch
    assert a.message_id == "A-1/raised/1769914800000000"
    with pytest.raises(NotifyConfigError, match="naive"):
        alert(event_time=datetime(2026, 2, 1, 10, 0))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"severity": "severe"}, "severity 'severe' is not one of: info, warning, critical"),
        ({"transition": "opened"}, "transition 'opened' is not one of"),
        ({"city": "Chiang Mai"}, "city 'Chiang Mai'"),
        ({"alert_id": " "}, "alert_id must be a non-empty string"),
        ({"value": float("nan")}, "value nan is not finite"),
        ({"threshold": "high"}, "threshold 'high' is not a number"),
    ],
)
def test_bad_alerts_are_refused_with_the_field_named(kw: dict, message: str) -> None:
    with pytest.raises(NotifyConfigError, match=message.replace("(", r"\(")):
        alert(**kw)


def test_json_round_trip() -> None:
    a = alert(site_name_th="แม่เมาะ 3", note_en="Cut 120 MW")
    d = a.to_dict()
    assert d["event_time"] == "2026-02-01T03:00:00Z"
    assert AlertMessage.from_dict(d) == a
    with pytest.raises(NotifyConfigError, match="missing event_time"):
        AlertMessage.from_dict({k: v for k, v in d.items() if k != "event_time"})


def test_quiet_hours_wrapping_midnight() -> None:
    q = QuietHours.parse("22:00-07:00")
    assert (q.start, q.end) == (time(22), time(7))

    def at(h: int, m: int = 0) -> datetime:
        return datetime(2026, 2, 1, h, m, tzinfo=BKK)

    assert q.contains(at(22)) and q.contains(at(23, 59)) and q.contains(at(0)) and q.contains(at(6, 59))
    assert not q.contains(at(7)) and not q.contains(at(21, 59)) and not q.contains(at(12))
    # Inside the window at 23:30 on 1 Feb, it ends at 07:00 on 2 Feb Bangkok = 00:00 UTC on 2 Feb.
    assert q.end_after(at(23, 30)) == datetime(2026, 2, 2, 0, 0, tzinfo=UTC)
    assert q.end_after(at(3)) == datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    assert str(q) == "22:00-07:00"


def test_quiet_hours_within_a_day_and_bad_windows() -> None:
    q = QuietHours(time(12), time(13))
    assert q.contains(datetime(2026, 2, 1, 5, 30, tzinfo=UTC))  # 12:30 Bangkok
    assert not q.contains(datetime(2026, 2, 1, 6, 0, tzinfo=UTC))  # 13:00 Bangkok
    with pytest.raises(NotifyConfigError, match="ambiguous"):
        QuietHours(time(8), time(8))
    with pytest.raises(NotifyConfigError, match="HH:MM-HH:MM"):
        QuietHours.parse("10pm to 7am")


def test_next_local_time_is_strictly_after_now() -> None:
    eight = time(8)
    assert next_local_time(datetime(2026, 2, 1, 7, 59, tzinfo=BKK), eight) == datetime(2026, 2, 1, 1, 0, tzinfo=UTC)
    assert next_local_time(datetime(2026, 2, 1, 8, 0, tzinfo=BKK), eight) == datetime(2026, 2, 2, 1, 0, tzinfo=UTC)


def test_recipient_from_settings() -> None:
    r = Recipient.from_dict(
        {
            "name": "env-division",
            "language": "both",
            "quiet_hours": "22:00-07:00",
            "digest": True,
            "digest_hour": 8,
            "min_severity": "warning",
            "email": ["env@city.test", "head@city.test"],
            "line": "C" + "a" * 32,
            "webhook": [{"url": "https://ops.example/hook", "secret": "0123456789abcdef"}],
            "cities": ["lampang"],
        }
    )
    assert [(a.channel, a.to) for a in r.addresses] == [
        ("email", "env@city.test"),
        ("email", "head@city.test"),
        ("line", "C" + "a" * 32),
        ("webhook", "https://ops.example/hook"),
    ]
    assert r.addresses[3].secret == "0123456789abcdef" and "0123456789abcdef" not in repr(r)
    assert r.quiet_hours == QuietHours(time(22), time(7)) and r.min_severity is Severity.WARNING
    assert r.wants(alert()) and not r.wants(alert(severity="info")) and not r.wants(alert(city="chiang-mai"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "x", "email": "x@y.test", "phone": "+66"}, "unknown keys \\['phone'\\]"),
        ({"name": "x"}, "has no addresses"),
        ({"name": "x", "email": "not-an-address"}, "e-mail address 'not-an-address'"),
        ({"name": "x", "line": "U123"}, "LINE id 'U123'"),
        ({"name": "x", "webhook": [{"url": "https://h.example", "secret": "short"}]}, "at least 16 characters"),
        ({"name": "x", "webhook": ["https://h.example"]}, "a webhook is \\{url: ..., secret: ...\\}"),
        ({"name": "x", "email": "x@y.test", "digest_hour": 24}, "digest_hour 24 is not 0..23"),
        ({"name": "x", "email": "x@y.test", "language": "jp"}, "language 'jp'"),
    ],
)
def test_bad_recipients_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(NotifyConfigError, match=message):
        Recipient.from_dict(settings)


def test_address_channel_names() -> None:
    assert Address("mqtt", "").to == ""
    with pytest.raises(NotifyConfigError, match="channel name"):
        Address("E-Mail", "x@y.test")
