"""E-mail over SMTP (stdlib smtplib): plain, STARTTLS or implicit TLS, UTF-8 Thai subjects and bodies.

The subject goes out as RFC 2047 encoded words (``=?utf-8?b?...?=``) and the body as base64 UTF-8, so the message
is 7-bit clean and needs neither SMTPUTF8 nor 8BITMIME from the server. With ``starttls`` a server that does not
offer STARTTLS is an error, never a silent fall back to plain text.

Retried: connection errors, a dropped connection and 4xx replies (temporary, RFC 5321 §4.2.1). Not retried: 5xx
replies (a refused recipient, a failed login) and TLS certificate errors.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from typing import Literal

from lccm.notify.model import EMAIL_PATTERN, Address, Notification, NotifyConfigError, SendOutcome, address_key
from lccm.notify.retry import Retryable, RetryPolicy

Security = Literal["plain", "starttls", "tls"]
_CONTENT_LANGUAGE = {"th": "th", "en": "en", "both": "th, en"}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str  # From: address, e.g. alerts@city.go.th
    security: Security = "starttls"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)  # None: system CAs
    sender_name: str = "LCCM"

    def __post_init__(self) -> None:
        if self.security not in ("plain", "starttls", "tls"):
            raise NotifyConfigError(f"SMTP security {self.security!r} is not plain, starttls or tls")
        if not EMAIL_PATTERN.match(self.sender):
            raise NotifyConfigError(f"SMTP sender {self.sender!r} is not name@domain")


class _Permanent(Exception):
    """A failure that another attempt would repeat."""


class SmtpNotifier:
    channel = "email"

    def __init__(self, cfg: SmtpConfig, retry: RetryPolicy | None = None) -> None:
        self._cfg = cfg
        self._retry = retry or RetryPolicy()

    def build_message(self, to: Address, note: Notification) -> EmailMessage:
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["Subject"] = note.subject
        msg["From"] = f"{self._cfg.sender_name} <{self._cfg.sender}>" if self._cfg.sender_name else self._cfg.sender
        msg["To"] = to.to
        msg["Date"] = format_datetime(datetime.now(UTC))
        # Deterministic, so a re-sent notification can be recognised by the mail client.
        msg["Message-ID"] = f"<{address_key(note.id, to)}@lccm.notify>"
        msg["X-LCCM-Notification"] = note.id
        cte = "7bit" if note.body.isascii() else "base64"
        msg.set_content(note.body, subtype="plain", charset="utf-8", cte=cte)
        msg["Content-Language"] = _CONTENT_LANGUAGE[note.language]  # after set_content, which resets Content-*
        return msg

    def send(self, to: Address, note: Notification) -> SendOutcome:
        if to.channel != self.channel:
            raise ValueError(f"SmtpNotifier got a {to.channel!r} address")
        msg = self.build_message(to, note)

        def attempt(n: int) -> SendOutcome:
            try:
                self._deliver(to.to, msg)
            except _Permanent as e:
                return SendOutcome(False, n, str(e))
            return SendOutcome(True, n)

        return self._retry.run(attempt)

    def _deliver(self, rcpt: str, msg: EmailMessage) -> None:
        cfg = self._cfg
        where = f"SMTP {cfg.host}:{cfg.port}"
        try:
            with self._connect() as smtp:
                if cfg.security == "starttls":
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise _Permanent(f"{where} does not offer STARTTLS (security=starttls)")
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if cfg.username:
                    smtp.login(cfg.username, cfg.password)
                smtp.send_message(msg, from_addr=cfg.sender, to_addrs=[rcpt])
        except smtplib.SMTPRecipientsRefused as e:
            codes = {code for code, _ in e.recipients.values()}
            text = "; ".join(f"{a}: {c} {m.decode(errors='replace')}" for a, (c, m) in e.recipients.items())
            raise (Retryable if all(400 <= c < 500 for c in codes) else _Permanent)(f"{where} refused {text}") from e
        except smtplib.SMTPResponseException as e:
            text = f"{where} answered {e.smtp_code} {_decode(e.smtp_error)}"
            raise (Retryable if 400 <= e.smtp_code < 500 else _Permanent)(text) from e
        except smtplib.SMTPServerDisconnected as e:
            raise Retryable(f"{where} closed the connection: {e}") from e
        except smtplib.SMTPException as e:
            raise _Permanent(f"{where}: {type(e).__name__}: {e}") from e
        except ssl.SSLError as e:
            raise _Permanent(f"{where} TLS failed: {e}") from e
        except OSError as e:
            raise Retryable(f"{where} unreachable: {type(e).__name__}: {e}") from e

    def _connect(self) -> smtplib.SMTP:
        cfg = self._cfg
        if cfg.security == "tls":
            return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=self._context())
        return smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)

    def _context(self) -> ssl.SSLContext:
        return self._cfg.ssl_context or ssl.create_default_context()


def _decode(b: bytes | str) -> str:
    return b.decode("utf-8", errors="replace") if isinstance(b, bytes) else str(b)
