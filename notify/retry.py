"""Retry timing shared by the HTTP and SMTP channels: exponential backoff with jitter, and HTTP Retry-After."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt n (1-based) that failed waits ``d/2 + uniform(0, d/2)`` with ``d = min(cap, base * 2**(n-1))``.

    Half the delay is fixed so retries never bunch up at zero; the random half spreads many senders apart after an
    outage ("equal jitter"). A Retry-After above ``max_retry_after_s`` is not waited for: the attempt fails with
    the server's answer instead of blocking the dispatcher for an hour.
    """

    max_attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 60.0
    max_retry_after_s: float = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_s < 0 or self.cap_s < self.base_s:
            raise ValueError(f"need 0 <= base_s <= cap_s, got base {self.base_s}, cap {self.cap_s}")

    def backoff_s(self, failed_attempt: int) -> float:
        d = min(self.cap_s, self.base_s * 2 ** (failed_attempt - 1))
        return d / 2 + self.rng.uniform(0, d / 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date, RFC 9110 §10.2.3); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
