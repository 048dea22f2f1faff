"""Retries of the HTTP and SMTP channels: the project's one retry policy (tenacity, exponential backoff with equal
jitter, as lccm/workers.py's ``Backoff``), plus HTTP Retry-After."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

from lccm.notify.model import SendOutcome


class Retryable(Exception):
    """An attempt failed in a way another attempt may not (a timeout, a 5xx, a 429, an SMTP 4xx)."""

    def __init__(self, error: str, retry_after_s: float | None = None) -> None:
        super().__init__(error)
        self.retry_after_s = retry_after_s  # what the server asked us to wait, if it said


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt n (1-based) that failed waits ``d/2 + uniform(0, d/2)`` with ``d = min(cap, base * 2**(n-1))``, or
    what the server's Retry-After says.

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

    def run(self, attempt: Callable[[int], SendOutcome]) -> SendOutcome:
        """Call ``attempt(n)`` until it returns an outcome, raising :class:`Retryable` up to ``max_attempts`` times;
        a last failure becomes a failed outcome that says why no further attempt was made."""
        retrying = Retrying(
            retry=retry_if_exception_type(Retryable),
            stop=stop_after_attempt(self.max_attempts) | _RetryAfterTooLong(self.max_retry_after_s),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(lambda: attempt(retrying.statistics["attempt_number"]))
        except Retryable as e:
            n = int(retrying.statistics["attempt_number"])
            if n < self.max_attempts and e.retry_after_s is not None:
                over = f"Retry-After {e.retry_after_s:.0f} s is over the {self.max_retry_after_s:.0f} s limit"
                return SendOutcome(False, n, f"{e} ({over})")
            return SendOutcome(False, n, f"{e} (gave up after {n} attempts)")

    def _wait(self, rs: RetryCallState) -> float:
        e = rs.outcome.exception() if rs.outcome is not None else None
        if isinstance(e, Retryable) and e.retry_after_s is not None:
            return e.retry_after_s
        return self.backoff_s(rs.attempt_number)


class _RetryAfterTooLong(stop_base):
    def __init__(self, limit_s: float) -> None:
        self._limit_s = limit_s

    def __call__(self, rs: RetryCallState) -> bool:
        e = rs.outcome.exception() if rs.outcome is not None else None
        return isinstance(e, Retryable) and e.retry_after_s is not None and e.retry_after_s > self._limit_s


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
