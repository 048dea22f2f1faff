"""Alerts, recipients and the one interface every channel implements.

Everything here is plain data, validated on construction so a bad recipient list fails at start-up with a message
that names the field, not at 3 a.m. when the first PM2.5 alert goes out.

Times are aware datetimes normalised to UTC; quiet hours and digest hours are wall-clock times in the city's zone,
:data:`lccm.engine.timebase.BANGKOK` (UTC+7 all year, no daylight saving; docs/reference.md#city-time-zone). An
alert's change and severity are the words every stage uses, ``lccm.engine.alert_kinds`` (TransitionKind, Severity).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol, cast, runtime_checkable

from lccm.engine.alert_kinds import Severity, TransitionKind
from lccm.engine.timebase import BANGKOK

# Stable namespace for notification ids (uuid5): the same alert to the same recipient always gets the same id,
# so a re-sent message carries the same idempotency key (LINE's X-Line-Retry-Key, the webhook delivery id).
NOTIFY_NAMESPACE = uuid.UUID("5b0c1f7e-43a4-4d8e-9a55-1c2f0f7e6a11")

Language = Literal["th", "en", "both"]
LANGUAGES: tuple[str, ...] = ("th", "en", "both")
NotificationKind = Literal["alert", "digest", "quiet_hours"]

_CITY = re.compile(r"^[a-z0-9-]{1,32}$")  # same rule as the topic contract (ingest/topic.py)
EMAIL_PATTERN = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_LINE_ID = re.compile(r"^[UCR][0-9a-f]{32}$")  # user, group, room ids of the Messaging API


class NotifyConfigError(ValueError):
    """A recipient, address or alert is not valid; the message names the field."""


# The spelling of a late raise in messages of earlier versions (``"transition": "late"``), still read: the outbox
# keeps messages it has not delivered yet.
_LATE_RAISE = "late"


def _enum(cls: type[StrEnum], value: object, what: str) -> Any:
    try:
        return cls(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise NotifyConfigError(f"{what} {value!r} is not one of: {allowed}") from None


def as_utc(dt: datetime, what: str = "time") -> datetime:
    """The same instant in UTC; a naive datetime is refused (its zone would be a guess)."""
    if not isinstance(dt, datetime):
        raise NotifyConfigError(f"{what} must be a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise NotifyConfigError(f"{what} {dt.isoformat()} is naive: give it a time zone")
    return dt.astimezone(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: object, what: str) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value, what)
    try:
        return as_utc(datetime.fromisoformat(str(value)), what)
    except ValueError:
        raise NotifyConfigError(f"{what} {value!r} is not an ISO 8601 time") from None


def _optional_float(value: object, what: str) -> float | None:
    if value is None:
        return None
    try:
        x = float(cast(Any, value))
    except (TypeError, ValueError):
        raise NotifyConfigError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise NotifyConfigError(f"{what} {value!r} is not finite")
    return x


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One change of one alert (an alert event), as people are told about it."""

    alert_id: str
    rule_key: str
    dedup_key: str
    city: str
    site_id: str  # station or building id
    metric: str  # pm25, pm10, so2, no2, o3, co, power, energy, aqi_th, ...
    severity: Severity
    transition: TransitionKind
    event_time: datetime  # aware; stored as UTC
    value: float | None = None
    threshold: float | None = None
    unit: str = ""  # as in the metric catalogue: ug/m3, ppb, ppm, kWh, W, Cel
    site_name_th: str = ""
    site_name_en: str = ""
    note_th: str = ""  # free text from the rule, e.g. health advice
    note_en: str = ""
    late: bool = False  # found in data that arrived late: the event time lies well before the notice

    def __post_init__(self) -> None:
        for name in ("alert_id", "rule_key", "dedup_key", "site_id", "metric"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise NotifyConfigError(f"alert {name} must be a non-empty string, got {value!r}")
        if not _CITY.match(self.city):
            raise NotifyConfigError(f"alert city {self.city!r} is not [a-z0-9-]{{1,32}}")
        object.__setattr__(self, "severity", _enum(Severity, self.severity, "alert severity"))
        if self.transition == _LATE_RAISE:
            object.__setattr__(self, "late", True)
            object.__setattr__(self, "transition", TransitionKind.RAISED)
        object.__setattr__(self, "transition", _enum(TransitionKind, self.transition, "alert transition"))
        object.__setattr__(self, "late", bool(self.late))
        object.__setattr__(self, "event_time", as_utc(self.event_time, "alert event_time"))
        object.__setattr__(self, "value", _optional_float(self.value, "alert value"))
        object.__setattr__(self, "threshold", _optional_float(self.threshold, "alert threshold"))

    @property
    def message_id(self) -> str:
        """Identity of this state change: the same change reported twice is delivered once."""
        us = (self.event_time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        return f"{self.alert_id}/{self.transition.value}/{us}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the outbox stores it; webhook and MQTT payloads carry it)."""
        return {
            "alert_id": self.alert_id,
            "rule_key": self.rule_key,
            "dedup_key": self.dedup_key,
            "city": self.city,
            "site_id": self.site_id,
            "metric": self.metric,
            "severity": self.severity.value,
            "transition": self.transition.value,
            "event_time": _iso(self.event_time),
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "site_name_th": self.site_name_th,
            "site_name_en": self.site_name_en,
            "note_th": self.note_th,
            "note_en": self.note_en,
            "late": self.late,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertMessage:
        required = ("alert_id", "rule_key", "dedup_key", "city", "site_id", "metric", "severity", "transition")
        missing = [k for k in (*required, "event_time") if k not in d]
        if missing:
            raise NotifyConfigError(f"alert is missing {', '.join(missing)}")
        return cls(
            alert_id=d["alert_id"],
            rule_key=d["rule_key"],
            dedup_key=d["dedup_key"],
            city=d["city"],
            site_id=d["site_id"],
            metric=d["metric"],
            severity=_enum(Severity, d["severity"], "alert severity"),
            transition=d["transition"],
            event_time=_parse_time(d["event_time"], "alert event_time"),
            value=d.get("value"),
            threshold=d.get("threshold"),
            unit=str(d.get("unit") or ""),
            site_name_th=str(d.get("site_name_th") or ""),
            site_name_en=str(d.get("site_name_en") or ""),
            note_th=str(d.get("note_th") or ""),
            note_en=str(d.get("note_en") or ""),
            late=bool(d.get("late", False)),
        )


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily Bangkok wall-clock window [start, end); it may wrap midnight (22:00-07:00)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            t = getattr(self, name)
            if not isinstance(t, time) or t.tzinfo is not None:
                raise NotifyConfigError(f"quiet hours {name} must be a naive Bangkok wall-clock time, got {t!r}")
        if self.start == self.end:
            raise NotifyConfigError(f"quiet hours start and end are both {self.start}: the window is ambiguous")

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """'22:00-07:00' (Bangkok time)."""
        try:
            a, b = str(text).split("-")
            return cls(time.fromisoformat(a.strip()), time.fromisoformat(b.strip()))
        except ValueError as e:
            if isinstance(e, NotifyConfigError):
                raise
            raise NotifyConfigError(f"quiet hours {text!r} are not HH:MM-HH:MM") from None

    def contains(self, now: datetime) -> bool:
        t = as_utc(now).astimezone(BANGKOK).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def end_after(self, now: datetime) -> datetime:
        """The first end of a quiet window strictly after ``now`` (UTC)."""
        return next_local_time(now, self.end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def next_local_time(now: datetime, at: time) -> datetime:
    """The first instant strictly after ``now`` whose Bangkok wall-clock time is ``at``; returned in UTC."""
    local = as_utc(now).astimezone(BANGKOK)
    candidate = datetime.combine(local.date(), at, tzinfo=BANGKOK)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Address:
    """Where one channel reaches a recipient: an e-mail address, a webhook URL (+ signing secret), a LINE id.

    For ``mqtt`` the address is an optional topic template; empty means the publisher's configured one.
    """

    channel: str
    to: str
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.channel or not re.match(r"^[a-z][a-z0-9_]*$", self.channel):
            raise NotifyConfigError(f"channel name {self.channel!r} is not [a-z][a-z0-9_]*")
        check = _ADDRESS_CHECKS.get(self.channel)
        if check is not None:
            check(self)


def _check_email(a: Address) -> None:
    if not EMAIL_PATTERN.match(a.to):
        raise NotifyConfigError(f"e-mail address {a.to!r} is not name@domain")


def _check_webhook(a: Address) -> None:
    if not re.match(r"^https?://[^\s/]+", a.to):
        raise NotifyConfigError(f"webhook url {a.to!r} is not an http(s) URL")
    if len(a.secret) < 16:
        raise NotifyConfigError(f"webhook {a.to} needs a signing secret of at least 16 characters")


def _check_line(a: Address) -> None:
    if not _LINE_ID.match(a.to):
        raise NotifyConfigError(f"LINE id {a.to!r} is not a user/group/room id (U, C or R + 32 hex digits)")


_ADDRESS_CHECKS = {"email": _check_email, "webhook": _check_webhook, "line": _check_line}


@dataclass(frozen=True, slots=True)
class Recipient:
    """A person, team or system that gets alerts, with its channels and preferences."""

    name: str
    addresses: tuple[Address, ...]
    language: Language = "th"
    quiet_hours: QuietHours | None = None
    digest: bool = False  # on: non-critical alerts are collected into one message a day at digest_hour
    digest_hour: int = 8  # Bangkok
    min_severity: Severity = Severity.INFO
    cities: frozenset[str] = frozenset()  # empty = all
    sites: frozenset[str] = frozenset()
    metrics: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise NotifyConfigError("recipient name is empty")
        if not self.addresses:
            raise NotifyConfigError(f"recipient {self.name!r} has no addresses")
        if self.language not in LANGUAGES:
            raise NotifyConfigError(f"recipient {self.name!r}: language {self.language!r} is not th, en or both")
        if not isinstance(self.digest_hour, int) or not 0 <= self.digest_hour <= 23:
            raise NotifyConfigError(f"recipient {self.name!r}: digest_hour {self.digest_hour!r} is not 0..23")
        object.__setattr__(self, "addresses", tuple(self.addresses))
        object.__setattr__(self, "min_severity", _enum(Severity, self.min_severity, f"{self.name} min_severity"))
        for name in ("cities", "sites", "metrics"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))

    def wants(self, alert: AlertMessage) -> bool:
        return (
            alert.severity.rank >= self.min_severity.rank
            and (not self.cities or alert.city in self.cities)
            and (not self.sites or alert.site_id in self.sites)
            and (not self.metrics or alert.metric in self.metrics)
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipient:
        """From settings (YAML/JSON), e.g.::

        {"name": "env-division", "language": "both", "quiet_hours": "22:00-07:00", "digest": true,
         "digest_hour": 8, "min_severity": "warning",
         "email": ["env@city.go.th"], "line": ["U0123..."],
         "webhook": [{"url": "https://ops.example/hook", "secret": "..."}], "mqtt": [""]}
        """
        name = str(d.get("name") or "")
        known = {"name", "language", "quiet_hours", "digest", "digest_hour", "min_severity", "cities", "sites"}
        known |= {"metrics", "email", "line", "webhook", "mqtt"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise NotifyConfigError(f"recipient {name!r}: unknown keys {unknown}")
        addresses = [Address("email", str(a)) for a in _as_list(d.get("email"))]
        addresses += [Address("line", str(a)) for a in _as_list(d.get("line"))]
        addresses += [_webhook_address(name, w) for w in _as_list(d.get("webhook"))]
        addresses += [Address("mqtt", str(a or "")) for a in _as_list(d.get("mqtt"))]
        quiet = d.get("quiet_hours")
        return cls(
            name=name,
            addresses=tuple(addresses),
            language=cast(Language, d.get("language", "th")),
            quiet_hours=QuietHours.parse(quiet) if quiet else None,
            digest=bool(d.get("digest", False)),
            digest_hour=d.get("digest_hour", 8),
            min_severity=d.get("min_severity", Severity.INFO),
            cities=frozenset(_as_list(d.get("cities"))),
            sites=frozenset(_as_list(d.get("sites"))),
            metrics=frozenset(_as_list(d.get("metrics"))),
        )


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | dict):
        return [value]
    return list(cast(Iterable[Any], value))


def _webhook_address(name: str, w: object) -> Address:
    if not isinstance(w, Mapping) or "url" not in w or "secret" not in w:
        raise NotifyConfigError(f"recipient {name!r}: a webhook is {{url: ..., secret: ...}}, got {w!r}")
    return Address("webhook", str(w["url"]), str(w["secret"]))


@dataclass(frozen=True, slots=True)
class Notification:
    """One rendered message for one recipient: a single alert, a daily digest or a quiet-hours summary."""

    id: str  # uuid, stable for the same content and recipient (idempotency key)
    kind: NotificationKind
    recipient: str
    language: Language
    subject: str
    body: str
    alerts: tuple[AlertMessage, ...]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "recipient": self.recipient,
            "language": self.language,
            "subject": self.subject,
            "text": self.body,
            "created_at": _iso(self.created_at),
            "alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What a channel reports for one notification to one address (after its own retries)."""

    ok: bool
    attempts: int
    error: str = ""  # empty when ok; otherwise what went wrong, for a person to read
    detail: str = ""  # e.g. the provider's request id, or "already accepted"


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery outcome, kept by the outbox so failures are visible."""

    notification_id: str
    kind: NotificationKind
    recipient: str
    channel: str
    to: str
    ok: bool
    attempts: int
    error: str
    detail: str
    at: datetime
    alert_ids: tuple[str, ...]
    notification: Notification | None = None  # kept on failure, so the message can be re-sent by hand


@runtime_checkable
class Notifier(Protocol):
    """One delivery channel. ``send`` does its own retries and never raises for delivery failures:
    it returns an outcome saying what happened."""

    channel: str

    def send(self, to: Address, note: Notification) -> SendOutcome: ...


def notification_id(recipient: str, parts: Iterable[str]) -> str:
    """A uuid5 over the recipient and the sorted message ids: same content -> same id."""
    key = recipient + "\n" + "\n".join(sorted(parts))
    return str(uuid.uuid5(NOTIFY_NAMESPACE, key))


def address_key(note_id: str, to: Address) -> str:
    """Idempotency key for one notification to one address (a uuid, as LINE's retry key requires)."""
    return str(uuid.uuid5(uuid.UUID(note_id), f"{to.channel}:{to.to}"))
