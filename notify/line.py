"""LINE Messaging API push messages (LINE Notify was discontinued on 31 March 2025).

``POST {base_url}/v2/bot/message/push`` with the channel access token as a Bearer token and
``{"to": <user/group/room id>, "messages": [{"type": "text", "text": ...}, ...]}``. A text message holds at most
5,000 characters and a push at most 5 messages, so long digests are split on line breaks and, past 25,000
characters, cut with a visible marker.

``X-Line-Retry-Key`` (a uuid) makes retries idempotent: LINE accepts one request per key and answers a repeat with
409 Conflict, which therefore means "already delivered". The key is derived from the notification id and the
address, so it stays the same across retries and across a re-send after a crash.
"""

from __future__ import annotations

import json

import httpx

from lccm.notify.http import post_with_retries
from lccm.notify.model import Address, Notification, SendOutcome, address_key
from lccm.notify.retry import RetryPolicy

TEXT_LIMIT = 5000
MESSAGES_PER_PUSH = 5
TRUNCATED = "\n… [ข้อความยาวเกิน ตัดส่วนที่เหลือ / message too long, the rest was cut]"


def text_units(s: str) -> int:
    """Length as LINE counts it, in UTF-16 code units (an emoji outside the BMP counts twice); Thai is 1 each."""
    return len(s.encode("utf-16-le")) // 2


def _hard_split(line: str, limit: int) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for ch in line:
        n = text_units(ch)
        if size + n > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(ch)
        size += n
    parts.append("".join(current))
    return parts


def split_text(text: str, limit: int = TEXT_LIMIT, max_messages: int = MESSAGES_PER_PUSH) -> list[str]:
    """Pack lines into at most ``max_messages`` texts of at most ``limit`` units; cut with a marker beyond that."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        pieces = _hard_split(line, limit) if text_units(line) > limit else [line]
        for piece in pieces:
            candidate = piece if not current else current + "\n" + piece
            if current and text_units(candidate) > limit:
                chunks.append(current)
                candidate = piece
            current = candidate
    chunks.append(current)
    if len(chunks) <= max_messages:
        return chunks
    kept = chunks[:max_messages]
    last = kept[-1]
    while text_units(last) + text_units(TRUNCATED) > limit:
        last = last[: -max(1, text_units(last) + text_units(TRUNCATED) - limit)]
    kept[-1] = last + TRUNCATED
    return kept


class LineNotifier:
    channel = "line"

    def __init__(
        self,
        channel_access_token: str,
        base_url: str = "https://api.line.me",
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        if not channel_access_token:
            raise ValueError("LINE channel access token is empty")
        self._token = channel_access_token
        self._url = base_url.rstrip("/") + "/v2/bot/message/push"
        self._retry = retry or RetryPolicy()
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def send(self, to: Address, note: Notification) -> SendOutcome:
        if to.channel != self.channel:
            raise ValueError(f"LineNotifier got a {to.channel!r} address")
        texts = split_text(f"{note.subject}\n{note.body}")
        payload = {"to": to.to, "messages": [{"type": "text", "text": t} for t in texts]}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json; charset=utf-8",
            "X-Line-Retry-Key": address_key(note.id, to),
        }
        return post_with_retries(
            self._client, self._url, body, lambda: dict(headers), self._retry, also_ok=(409,), detail=_request_id
        )

    def close(self) -> None:
        self._client.close()


def _request_id(resp: httpx.Response) -> str:
    if resp.status_code == 409:
        return f"already accepted (request id {resp.headers.get('x-line-accepted-request-id', '?')})"
    return f"request id {resp.headers.get('x-line-request-id', '?')}"
