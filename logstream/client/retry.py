"""When to try a request again and how long to wait first, shared by both clients.

A send may always be retried: the client fixes each event's `event_id` before the first
attempt, and the views count an id once (README "Counted once, even when clients retry").
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["RETRY_STATUSES", "Outcome", "RetryPolicy", "is_retryable", "retry_after_s"]

# 503: ingest's broker is unavailable (or not ready), 429: rate limited, 502/504: a proxy in
# front lost its upstream, or (504 on a read) a read-your-writes wait ran out.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# No answer: the request may or may not have arrived. Not retried: a bad URL or protocol.
RETRY_ERRORS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)

Outcome = httpx.Response | httpx.TransportError


def is_retryable(outcome: Outcome) -> bool:
    if isinstance(outcome, httpx.Response):
        return outcome.status_code in RETRY_STATUSES
    return isinstance(outcome, RETRY_ERRORS)


def retry_after_s(response: httpx.Response, now: datetime | None = None) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), None if absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `max_retries` retries. Before each: the server's `Retry-After` when it sent one
    (capped at `retry_after_max_s`, so a wrong header cannot stall a client for hours), else
    exponential backoff from `backoff_s` up to `backoff_max_s`, with jitter so that clients
    cut off together do not all come back in the same instant."""

    max_retries: int = 10
    backoff_s: float = 0.2
    backoff_max_s: float = 10.0
    retry_after_max_s: float = 60.0
    jitter: float = 0.5  # the backoff is scaled by a factor in [1 - jitter, 1]
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_s < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("max_retries and backoff_s must be >= 0, jitter in [0, 1]")

    def delay_s(self, retry: int, outcome: Outcome) -> float:
        """Seconds to wait before retry number `retry` (1 for the first) after `outcome`."""
        if isinstance(outcome, httpx.Response):
            hinted = retry_after_s(outcome)
            if hinted is not None:
                return min(hinted, self.retry_after_max_s)
        backoff = min(self.backoff_max_s, self.backoff_s * 2 ** (retry - 1))
        return backoff * (1 - self.jitter * self.random())
