"""One POST with retries, shared by the webhook and LINE channels.

Retried: connection errors and timeouts, 5xx, 429 (waiting what Retry-After says when it says it). Not retried:
other 4xx and 3xx (the request itself is wrong; sending it again changes nothing). A channel may treat a status as
success (LINE answers 409 when the retry key was already accepted).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import httpx

from lccm.notify.model import SendOutcome
from lccm.notify.retry import Retryable, RetryPolicy, parse_retry_after

_MAX_ERROR_BODY = 300


def _describe(resp: httpx.Response) -> str:
    text = resp.text.strip().replace("\n", " ")
    if len(text) > _MAX_ERROR_BODY:
        text = text[:_MAX_ERROR_BODY] + "…"
    return f"HTTP {resp.status_code} {resp.reason_phrase}" + (f": {text}" if text else "")


def post_with_retries(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: Callable[[], dict[str, str]],
    policy: RetryPolicy,
    also_ok: Collection[int] = (),
    detail: Callable[[httpx.Response], str] = lambda _r: "",
) -> SendOutcome:
    """POST ``body`` (the same bytes on every attempt); ``headers()`` is called per attempt (fresh timestamps)."""

    def attempt(n: int) -> SendOutcome:
        try:
            resp = client.post(url, content=body, headers=headers())
        except httpx.TransportError as e:
            raise Retryable(f"{type(e).__name__}: {e}") from e
        if resp.is_success or resp.status_code in also_ok:
            return SendOutcome(True, n, detail=detail(resp))
        if resp.status_code != 429 and not resp.is_server_error:
            return SendOutcome(False, n, _describe(resp))
        raise Retryable(_describe(resp), parse_retry_after(resp.headers.get("retry-after")))

    return policy.run(attempt)
