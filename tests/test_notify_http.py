"""Webhook and LINE channels against a real HTTP receiver on loopback (http.server in a thread).

The receiver answers from a per-path script (e.g. 503, 503, 200) and records every request; the tests check the
HMAC signature themselves with hmac/hashlib, not with the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lccm.notify.line import TRUNCATED, LineNotifier, split_text
from lccm.notify.model import Address, AlertMessage, Notification, notification_id
from lccm.notify.render import render_alert
from lccm.notify.retry import RetryPolicy
from lccm.notify.webhook import WebhookNotifier
from lccm.services import free_port

SECRET = "s3cret-for-tests-only-0123456789"
LINE_USER = "U" + "0123456789abcdef" * 2
LINE_TOKEN = "test-channel-access-token"


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1 that records POSTs and answers from ``script[path]`` (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    queue = receiver.script.get(self.path, [])
                    reply = queue.pop(0) if queue else Reply()
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def on(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def recording_policy(max_attempts: int = 5, base_s: float = 0.5) -> tuple[RetryPolicy, list[float]]:
    """A retry policy whose waits are recorded instead of slept (the receiver is real; only time is not)."""
    delays: list[float] = []
    return RetryPolicy(max_attempts, base_s, 10.0, 300.0, sleep=delays.append, rng=random.Random(7)), delays


def alert(**kw: object) -> AlertMessage:
    fields: dict = {
        "alert_id": "A-42",
        "rule_key": "pm25_24h_red",
        "dedup_key": "cm-01/pm25",
        "city": "chiang-mai",
        "site_id": "cm-01",
        "metric": "pm25",
        "severity": "critical",
        "transition": "raised",
        "event_time": datetime(2025, 11, 22, 7, 5, tzinfo=UTC),
        "value": 87.4,
        "threshold": 75.0,
        "unit": "ug/m3",
        "site_name_th": "สถานีศาลากลาง",
        "site_name_en": "City Hall station",
    }
    fields.update(kw)
    return AlertMessage(**fields)


def note_for(a: AlertMessage, recipient: str = "duty", language: str = "th") -> Notification:
    subject, body = render_alert(a, language)  # type: ignore[arg-type]
    nid = notification_id(recipient, ["alert", a.message_id])
    return Notification(nid, "alert", recipient, language, subject, body, (a,), datetime.now(UTC))  # type: ignore[arg-type]


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


# -- webhook ------------------------------------------------------------------------------------------------------


def test_webhook_retries_two_503s_then_delivers_a_correctly_signed_body(receiver: Receiver) -> None:
    receiver.script["/hook"] = [Reply(503), Reply(503), Reply(200)]
    policy, delays = recording_policy(base_s=0.5)
    note = note_for(alert())
    outcome = WebhookNotifier(policy).send(Address("webhook", receiver.url + "/hook", SECRET), note)

    assert outcome.ok and outcome.attempts == 3, outcome
    got = receiver.on("/hook")
    assert len(got) == 3
    assert len({r.body for r in got}) == 1, "every attempt sends the same bytes"
    assert len({r.headers["x-lccm-delivery"] for r in got}) == 1, "the delivery id is constant across retries"
    for r in got:
        ts = r.headers["x-lccm-timestamp"]
        assert abs(int(ts) - time.time()) < 60
        assert hmac.compare_digest(r.headers["x-lccm-signature"], expected_signature(SECRET, ts, r.body))
        assert r.headers["x-lccm-signature"] != expected_signature("another-secret-0123456789", ts, r.body)
        assert r.headers["content-type"].startswith("application/json")
    doc = got[-1].json()
    assert doc["subject"] == "[วิกฤต] แจ้งเตือนใหม่: PM2.5 ที่ สถานีศาลากลาง"
    assert doc["kind"] == "alert" and doc["id"] == note.id
    assert doc["alerts"] == [alert().to_dict()]
    # Backoff before attempt n+1 is d/2 + U(0, d/2) with d = 0.5 * 2**(n-1): [0.25, 0.5], then [0.5, 1.0].
    assert len(delays) == 2
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0


def test_webhook_does_not_retry_a_4xx_and_reports_the_answer(receiver: Receiver) -> None:
    receiver.script["/hook"] = [Reply(400, body=b"unknown field 'alerts'")]
    policy, delays = recording_policy()
    outcome = WebhookNotifier(policy).send(Address("webhook", receiver.url + "/hook", SECRET), note_for(alert()))
    assert not outcome.ok and outcome.attempts == 1
    assert "HTTP 400" in outcome.error and "unknown field 'alerts'" in outcome.error
    assert len(receiver.on("/hook")) == 1 and delays == []


def test_webhook_429_waits_what_retry_after_says(receiver: Receiver) -> None:
    receiver.script["/hook"] = [Reply(429, {"Retry-After": "7"}), Reply(200)]
    policy, delays = recording_policy()
    outcome = WebhookNotifier(policy).send(Address("webhook", receiver.url + "/hook", SECRET), note_for(alert()))
    assert outcome.ok and outcome.attempts == 2
    assert delays == [7.0]


def test_webhook_retry_after_beyond_the_limit_fails_at_once(receiver: Receiver) -> None:
    receiver.script["/hook"] = [Reply(429, {"Retry-After": "3600"})]
    policy, delays = recording_policy()
    outcome = WebhookNotifier(policy).send(Address("webhook", receiver.url + "/hook", SECRET), note_for(alert()))
    assert not outcome.ok and outcome.attempts == 1 and delays == []
    assert "HTTP 429" in outcome.error and "3600 s is over the 300 s limit" in outcome.error


def test_webhook_gives_up_after_max_attempts_of_5xx(receiver: Receiver) -> None:
    receiver.script["/hook"] = [Reply(502)] * 10
    policy, delays = recording_policy(max_attempts=4)
    outcome = WebhookNotifier(policy).send(Address("webhook", receiver.url + "/hook", SECRET), note_for(alert()))
    assert not outcome.ok and outcome.attempts == 4
    assert "HTTP 502" in outcome.error and "gave up after 4 attempts" in outcome.error
    assert len(receiver.on("/hook")) == 4 and len(delays) == 3


def test_webhook_retries_connection_errors() -> None:
    port = free_port()  # nothing listens there
    policy, delays = recording_policy(max_attempts=3)
    outcome = WebhookNotifier(policy).send(
        Address("webhook", f"http://127.0.0.1:{port}/hook", SECRET), note_for(alert())
    )
    assert not outcome.ok and outcome.attempts == 3 and len(delays) == 2
    assert "ConnectError" in outcome.error


# -- LINE Messaging API ------------------------------------------------------------------------------------------


def test_line_push_request_and_constant_retry_key(receiver: Receiver) -> None:
    path = "/v2/bot/message/push"
    receiver.script[path] = [Reply(500), Reply(200, {"x-line-request-id": "req-123"})]
    policy, _ = recording_policy()
    note = note_for(alert(), language="both")
    outcome = LineNotifier(LINE_TOKEN, base_url=receiver.url, retry=policy).send(Address("line", LINE_USER), note)

    assert outcome.ok and outcome.attempts == 2 and outcome.detail == "request id req-123"
    got = receiver.on(path)
    assert len(got) == 2
    keys = {r.headers["x-line-retry-key"] for r in got}
    assert len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 5
    for r in got:
        assert r.headers["authorization"] == f"Bearer {LINE_TOKEN}"
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {"to": LINE_USER, "messages": [{"type": "text", "text": f"{note.subject}\n{note.body}"}]}
    text = got[0].json()["messages"][0]["text"]
    assert text.startswith("[วิกฤต] แจ้งเตือนใหม่: PM2.5 ที่ สถานีศาลากลาง / [Critical] Raised: PM2.5 at City Hall station")


def test_line_retry_key_survives_a_restart_and_differs_per_address(receiver: Receiver) -> None:
    policy, _ = recording_policy()
    note = note_for(alert())
    other = "C" + "fedcba9876543210" * 2
    LineNotifier(LINE_TOKEN, base_url=receiver.url, retry=policy).send(Address("line", LINE_USER), note)
    LineNotifier(LINE_TOKEN, base_url=receiver.url, retry=policy).send(Address("line", LINE_USER), note)
    LineNotifier(LINE_TOKEN, base_url=receiver.url, retry=policy).send(Address("line", other), note)
    keys = [r.headers["x-line-retry-key"] for r in receiver.requests]
    assert keys[0] == keys[1] != keys[2]


def test_line_409_means_already_accepted(receiver: Receiver) -> None:
    receiver.script["/v2/bot/message/push"] = [Reply(409, {"x-line-accepted-request-id": "req-first"})]
    policy, delays = recording_policy()
    outcome = LineNotifier(LINE_TOKEN, base_url=receiver.url, retry=policy).send(
        Address("line", LINE_USER), note_for(alert())
    )
    assert outcome.ok and outcome.attempts == 1 and delays == []
    assert outcome.detail == "already accepted (request id req-first)"


def test_line_401_is_reported_not_retried(receiver: Receiver) -> None:
    receiver.script["/v2/bot/message/push"] = [Reply(401, body=b'{"message":"Authentication failed"}')]
    policy, _ = recording_policy()
    outcome = LineNotifier("wrong", base_url=receiver.url, retry=policy).send(
        Address("line", LINE_USER), note_for(alert())
    )
    assert not outcome.ok and outcome.attempts == 1
    assert "HTTP 401" in outcome.error and "Authentication failed" in outcome.error


def utf16_units(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def test_line_splits_long_text_into_messages_of_at_most_5000_characters(receiver: Receiver) -> None:
    line = "12:00 [เตือน] แจ้งเตือนใหม่: PM2.5 ที่ สถานีศาลากลาง 45.2 µg/m³"  # 63 characters
    body = "\n".join(f"{i:04d} {line}" for i in range(190))  # 190 x 68 + 189 newlines = 13,109 characters
    assert len(body) == 190 * 68 + 189
    note = Notification(
        "3f0a6c1e-0000-5000-8000-000000000001", "digest", "duty", "th", "สรุป", body, (), datetime.now(UTC)
    )
    policy, _ = recording_policy()
    assert LineNotifier(LINE_TOKEN, base_url=receiver.url, retry=policy).send(Address("line", LINE_USER), note).ok

    texts = [m["text"] for m in receiver.requests[0].json()["messages"]]
    # 13,114 characters with the subject line. A message holds the subject and 72 lines (4 + 72 x 69 = 4,972),
    # the next 72 lines (68 + 71 x 69 = 4,967), the third the last 46: split only at line breaks, nothing lost.
    assert [t.count("\n") + 1 for t in texts] == [73, 72, 46]
    assert all(utf16_units(t) <= 5000 for t in texts)
    assert "\n".join(texts) == "สรุป\n" + body


def test_line_text_past_five_messages_is_cut_with_a_marker() -> None:
    text = "\n".join("ก" * 999 for _ in range(40))  # 40,000 characters with newlines: more than 5 x 5,000
    texts = split_text(text)
    assert len(texts) == 5
    assert all(utf16_units(t) <= 5000 for t in texts)
    assert texts[-1].endswith(TRUNCATED)
    # One line longer than a message is split hard, counting an emoji outside the BMP as two units.
    hard = split_text("😀" * 3000)
    assert [utf16_units(t) for t in hard] == [5000, 1000]
