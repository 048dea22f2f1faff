"""E-mail against a real SMTP server process: aiosmtpd's own command line, running ``SpoolHandler`` below, which
writes each received message (the raw bytes) and its envelope to a folder. The tests parse what arrived."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lccm.notify.model import Address, AlertMessage, Notification, notification_id
from lccm.notify.render import render_alert
from lccm.notify.retry import RetryPolicy
from lccm.notify.smtp import SmtpConfig, SmtpNotifier
from lccm.services import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


class SpoolHandler:
    """aiosmtpd handler (``-c tests.test_notify_smtp.SpoolHandler <folder> [fail_first]``), run in the server
    process: answers 451 to the first ``fail_first`` DATA commands, refuses ``*@refused.test`` with 550, and writes
    ``NNN.eml`` (raw bytes) plus ``NNN.json`` (envelope, whether TLS was on) for every accepted message."""

    def __init__(self, folder: str, fail_first: int = 0) -> None:
        self.folder = Path(folder)
        self.fail_first = fail_first
        self.data_commands = 0
        self.saved = 0

    @classmethod
    def from_cli(cls, _parser: Any, *args: str) -> SpoolHandler:
        return cls(args[0], int(args[1]) if len(args) > 1 else 0)

    async def handle_RCPT(self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any) -> str:
        if address.endswith("@refused.test"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if self.data_commands <= self.fail_first:
            return "451 4.3.0 mailbox busy, try again later"
        self.saved += 1
        stem = self.folder / f"{self.saved:03d}"
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "tls": session.ssl is not None}
        stem.with_suffix(".json").write_text(json.dumps(meta))
        tmp = stem.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content)
        os.replace(tmp, stem.with_suffix(".eml"))  # the .eml appears whole: the test polls for it
        return "250 2.0.0 queued"


class SmtpServer:
    def __init__(self, folder: Path, fail_first: int = 0, cert: tuple[Path, Path] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}"]
        if cert is not None:
            cmd += ["--tlscert", str(cert[0]), "--tlskey", str(cert[1])]
        cmd += ["-c", "tests.test_notify_smtp.SpoolHandler", str(folder), str(fail_first)]
        self.log = (folder.parent / f"smtpd-{self.port}.log").open("wb")
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1", self.port, timeout_s=15)
        except TimeoutError:
            self.stop()
            raise

    def messages(self) -> list[tuple[bytes, dict[str, Any]]]:
        return [
            (p.read_bytes(), json.loads(p.with_suffix(".json").read_text())) for p in sorted(self.folder.glob("*.eml"))
        ]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def start_server(tmp_path: Path, name: str, **kw: Any) -> SmtpServer:
    folder = tmp_path / name
    folder.mkdir()
    return SmtpServer(folder, **kw)


@pytest.fixture
def smtpd(tmp_path: Path) -> Iterator[SmtpServer]:
    """Plain SMTP; the first DATA gets a 451 (temporary), so every successful send proves one retry."""
    server = start_server(tmp_path, "plain", fail_first=1)
    yield server
    server.stop()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a certificate for the STARTTLS test")
    crt, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return crt, key


def recorded_policy(max_attempts: int = 3) -> tuple[RetryPolicy, list[float]]:
    delays: list[float] = []
    return RetryPolicy(max_attempts, 1.0, 10.0, sleep=delays.append), delays


ALERT = AlertMessage(
    alert_id="A-7",
    rule_key="pm25_24h_orange",
    dedup_key="cm-02/pm25",
    city="chiang-mai",
    site_id="cm-02",
    metric="pm25",
    severity="warning",  # type: ignore[arg-type]
    transition="raised",  # type: ignore[arg-type]
    event_time=datetime(2026, 3, 14, 2, 30, tzinfo=UTC),  # 09:30 in Bangkok
    value=52.3,
    threshold=37.5,
    unit="ug/m3",
    site_name_th="โรงเรียนเทศบาล ๑",
    site_name_en="Municipal School 1",
    note_th="งดกิจกรรมกลางแจ้ง",
    note_en="Avoid outdoor activities",
)


def thai_note() -> Notification:
    subject, body = render_alert(ALERT, "th")
    return Notification(
        notification_id("env", ["alert", ALERT.message_id]),
        "alert",
        "env",
        "th",
        subject,
        body,
        (ALERT,),
        datetime.now(UTC),
    )


def test_thai_subject_and_body_arrive_decoded_after_a_temporary_451(smtpd: SmtpServer) -> None:
    policy, delays = recorded_policy()
    notifier = SmtpNotifier(SmtpConfig("127.0.0.1", smtpd.port, "alerts@city.test", security="plain"), policy)
    outcome = notifier.send(Address("email", "env@city.test"), thai_note())

    assert outcome.ok and outcome.attempts == 2, outcome
    assert len(delays) == 1
    [(raw, meta)] = smtpd.messages()
    assert meta == {"mail_from": "alerts@city.test", "rcpt_tos": ["env@city.test"], "tls": False}
    assert raw.isascii(), "headers are RFC 2047 encoded and the body base64: 7-bit clean on the wire"
    assert b"Subject: =?utf-8?" in raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "[เตือน] แจ้งเตือนใหม่: PM2.5 ที่ โรงเรียนเทศบาล ๑"
    assert msg["To"] == "env@city.test"
    assert msg["Content-Language"] == "th"
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    # Text in MIME has CRLF line ends (RFC 2046 §4.1.1 canonical form), also inside the base64.
    assert msg.get_content().replace("\r\n", "\n").rstrip("\n") == (
        "ค่าที่วัดได้ 52.3 µg/m³ (เกณฑ์ 37.5 µg/m³)\n"
        "เวลา 14 มี.ค. 2569 09:30 น.\n"
        "งดกิจกรรมกลางแจ้ง\n"
        "กฎ pm25_24h_orange · รหัสแจ้งเตือน A-7"
    )


def test_refused_recipient_is_a_permanent_failure(smtpd: SmtpServer) -> None:
    policy, delays = recorded_policy()
    notifier = SmtpNotifier(SmtpConfig("127.0.0.1", smtpd.port, "alerts@city.test", security="plain"), policy)
    outcome = notifier.send(Address("email", "ghost@refused.test"), thai_note())
    assert not outcome.ok and outcome.attempts == 1 and delays == []
    assert "550" in outcome.error and "ghost@refused.test" in outcome.error
    assert smtpd.messages() == []


def test_unreachable_server_is_retried_then_reported() -> None:
    policy, delays = recorded_policy(max_attempts=3)
    notifier = SmtpNotifier(SmtpConfig("127.0.0.1", free_port(), "alerts@city.test", security="plain"), policy)
    outcome = notifier.send(Address("email", "env@city.test"), thai_note())
    assert not outcome.ok and outcome.attempts == 3 and len(delays) == 2
    assert "unreachable" in outcome.error and "gave up after 3 attempts" in outcome.error


def test_starttls_is_used_and_plain_is_refused_by_a_tls_only_server(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    server = start_server(tmp_path, "tls", cert=cert)
    try:
        context = ssl.create_default_context(cafile=str(cert[0]))
        cfg = SmtpConfig("127.0.0.1", server.port, "alerts@city.test", security="starttls", ssl_context=context)
        policy, _ = recorded_policy()
        outcome = SmtpNotifier(cfg, policy).send(Address("email", "env@city.test"), thai_note())
        assert outcome.ok and outcome.attempts == 1, outcome
        [(raw, meta)] = server.messages()
        assert meta["tls"] is True
        subject = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
        assert subject == "[เตือน] แจ้งเตือนใหม่: PM2.5 ที่ โรงเรียนเทศบาล ๑"

        # The server requires STARTTLS: a plain session is answered 530, a permanent refusal.
        plain = SmtpConfig("127.0.0.1", server.port, "alerts@city.test", security="plain")
        outcome = SmtpNotifier(plain, policy).send(Address("email", "env@city.test"), thai_note())
        assert not outcome.ok and outcome.attempts == 1 and "530" in outcome.error

        # A certificate the client does not trust is refused, not bypassed.
        untrusted = SmtpConfig("127.0.0.1", server.port, "alerts@city.test", security="starttls")
        outcome = SmtpNotifier(untrusted, policy).send(Address("email", "env@city.test"), thai_note())
        assert not outcome.ok and outcome.attempts == 1 and "CERTIFICATE_VERIFY_FAILED" in outcome.error
        assert len(server.messages()) == 1
    finally:
        server.stop()


def test_starttls_required_but_not_offered_is_an_error(smtpd: SmtpServer) -> None:
    policy, delays = recorded_policy()
    cfg = SmtpConfig("127.0.0.1", smtpd.port, "alerts@city.test", security="starttls")
    outcome = SmtpNotifier(cfg, policy).send(Address("email", "env@city.test"), thai_note())
    assert not outcome.ok and outcome.attempts == 1 and delays == []
    assert "does not offer STARTTLS" in outcome.error
    assert smtpd.messages() == []
