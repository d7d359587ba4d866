"""How fresh a view's answer is: offsets applied per partition, newest event time, lag.

Log-end offsets come from the broker; a short TTL cache keeps a query from paying one
broker round trip per partition while still reporting lag within `ttl_s` of the truth.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka import Consumer

from logstream.kafka.admin import topic_watermarks
from logstream.kafka.config import consumer_config
from logstream.settings import Settings
from logstream.stores.base import StoreStats

__all__ = ["EndOffsets", "Freshness", "freshness_of"]


class EndOffsets:
    """Log-start and log-end offsets per partition, cached for `ttl_s`; the client is
    created lazily."""

    def __init__(self, settings: Settings, ttl_s: float = 0.5) -> None:
        self._settings = settings
        self._ttl_s = ttl_s
        self._consumer: Consumer | None = None
        self._cache: dict[str, tuple[float, dict[int, tuple[int, int]]]] = {}
        self._lock = threading.Lock()

    def of(self, topic: str) -> dict[int, int] | None:
        """{partition: end offset}, or None when the broker cannot be asked right now."""
        marks = self.marks(topic)
        return None if marks is None else {p: high for p, (_low, high) in marks.items()}

    def marks(self, topic: str) -> dict[int, tuple[int, int]] | None:
        """{partition: (log start, log end)}, or None when the broker cannot be asked."""
        fetched = self.marks_fetched(topic)
        return None if fetched is None else fetched[1]

    def marks_fetched(self, topic: str) -> tuple[float, dict[int, tuple[int, int]]] | None:
        """(time.monotonic() when the broker answered, {partition: (log start, log end)}),
        or None when the broker cannot be asked (lag sampling needs when, not just what)."""
        with self._lock:
            cached = self._cache.get(topic)
            if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
                return cached
            try:
                marks = self._fetch(topic)
            except Exception:
                return cached
            self._cache[topic] = (time.monotonic(), marks)
            return self._cache[topic]

    def _fetch(self, topic: str) -> dict[int, tuple[int, int]]:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(self._settings, "logstream-freshness"))
        marks = topic_watermarks(self._consumer, [topic], timeout_s=2)
        return {partition: mark for (_topic, partition), mark in marks.items()}

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


@dataclass(frozen=True)
class Freshness:
    offsets: dict[str, dict[str, int]]
    newest_event_ms: int | None
    lag: int | None
    dead_letters: int
    skipped: list[dict[str, int | str]]


def freshness_of(stats: StoreStats, topics: tuple[str, ...], ends: EndOffsets) -> Freshness:
    """Combine a store's bookkeeping with the log ends (lag None if the broker is away)."""
    offsets: dict[str, dict[str, int]] = {}
    for (topic, partition), position in sorted(stats.positions.items()):
        offsets.setdefault(topic, {})[str(partition)] = position.next_offset
    lag: int | None = 0
    for topic in topics:
        end_offsets = ends.of(topic)
        if end_offsets is None:
            lag = None
            break
        for partition, end in end_offsets.items():
            stored = stats.positions.get((topic, partition))
            lag = (lag or 0) + max(0, end - (stored.next_offset if stored else 0))
    skipped: list[dict[str, int | str]] = [
        {"topic": t, "partition": p, "from_offset": a, "to_offset": b}
        for t, p, a, b in stats.skipped
    ]
    return Freshness(offsets, stats.max_event_ms, lag, stats.dlq_count, skipped)
