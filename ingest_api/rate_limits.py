"""Per-key token buckets: one for requests, one for events, refilled continuously.

A bucket holds up to `rate * burst_s` tokens. A request (or a batch of n events) takes its
tokens if they are there; otherwise the answer is 429 with the seconds until they will be.
A batch larger than the whole bucket is let through when the bucket is full and leaves it
in debt, so the long-run rate holds for any batch size. Rate 0 means unlimited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from logstream.auth.keys import ApiKey

__all__ = ["RateLimiter", "TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    stamp: float

    def take(self, n: float, now: float) -> float:
        """0.0 if `n` tokens were taken, else the seconds to wait before asking again."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n or self.tokens >= self.capacity:
            self.tokens -= n
            return 0.0
        return (min(n, self.capacity) - self.tokens) / self.rate


class RateLimiter:
    """The buckets of every key that made a request (bounded by the number of keys)."""

    def __init__(
        self,
        requests_per_s: float,
        events_per_s: float,
        burst_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._defaults = (requests_per_s, events_per_s)
        self._burst_s = burst_s
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def take_request(self, key: ApiKey) -> int:
        """0 if allowed, else the whole seconds for Retry-After."""
        return self._take(key, "requests", 1, key.requests_per_s, self._defaults[0])

    def take_events(self, key: ApiKey, count: int) -> int:
        return self._take(key, "events", count, key.events_per_s, self._defaults[1])

    def _take(self, key: ApiKey, kind: str, n: int, own: float | None, default: float) -> int:
        rate = default if own is None else own
        if rate <= 0:
            return 0
        now = self._clock()
        bucket = self._buckets.get((key.id, kind))
        capacity = max(1.0, rate * self._burst_s)
        if bucket is None or bucket.rate != rate:
            bucket = TokenBucket(rate, capacity, capacity, now)
            self._buckets[(key.id, kind)] = bucket
        wait = bucket.take(n, now)
        return 0 if wait <= 0 else max(1, math.ceil(wait))
