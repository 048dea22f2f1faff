"""Webhooks: POST the notification as JSON, signed so the receiver can prove it came from us.

Headers on every request:
- ``X-LCCM-Delivery``: a uuid per notification and address, the same on every retry and re-send (dedup key);
- ``X-LCCM-Timestamp``: Unix seconds of this attempt;
- ``X-LCCM-Signature``: ``sha256=`` + hex HMAC-SHA256 with the recipient's secret over ``<timestamp>.<body>``,
  the exact body bytes sent. Signing the timestamp with the body lets a receiver refuse replays: recompute the
  HMAC, compare in constant time, and reject timestamps more than a few minutes old.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from lccm.notify.http import post_with_retries
from lccm.notify.model import Address, Notification, SendOutcome, address_key
from lccm.notify.retry import RetryPolicy

SIGNATURE_HEADER = "X-LCCM-Signature"
TIMESTAMP_HEADER = "X-LCCM-Timestamp"
DELIVERY_HEADER = "X-LCCM-Delivery"
USER_AGENT = "lccm-notify/0.1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_body(note: Notification) -> bytes:
    """The JSON body: UTF-8 (Thai stays readable), keys sorted so the same notification is the same bytes."""
    return json.dumps(note.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


class WebhookNotifier:
    channel = "webhook"

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        clock_s: Callable[[], float] = time.time,
        client: httpx.Client | None = None,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._clock_s = clock_s
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, to: Address, note: Notification) -> SendOutcome:
        if to.channel != self.channel:
            raise ValueError(f"WebhookNotifier got a {to.channel!r} address")
        body = webhook_body(note)
        delivery = address_key(note.id, to)

        def headers() -> dict[str, str]:
            ts = str(int(self._clock_s()))
            return {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": USER_AGENT,
                DELIVERY_HEADER: delivery,
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sign(to.secret, ts, body),
            }

        return post_with_retries(self._client, to.to, body, headers, self._retry)

    def close(self) -> None:
        self._client.close()
