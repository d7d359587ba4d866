"""How fresh a view's answer is: offsets applied per partition, newest event time, lag.

Log-end offsets come from the broker; a short TTL cache keeps a query from paying one
broker round trip per partition while still reporting lag within `ttl_s` of the truth, and a
background refresh keeps a dead broker from stalling reads (the lag is then flagged stale).
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
    """Log-start and log-end offsets per partition, cached for `ttl_s` and refreshed by one
    background thread, so no read ever waits on the broker behind another one.

    A read finding its topic's values older than `ttl_s` asks for a refresh and answers at
    once with the last known values, flagged stale; only the very first read of a topic
    waits, at most `first_wait_s`, and concurrent first reads wait together, not in turn.
    While the broker is down the refresher tries one topic at a time (`fetch_timeout_s`
    each), so the broker is never asked more than that. The client is created lazily.
    """

    def __init__(
        self,
        settings: Settings,
        ttl_s: float = 0.5,
        *,
        first_wait_s: float = 2.0,
        fetch_timeout_s: float = 2.0,
    ) -> None:
        self._settings = settings
        self._ttl_s = ttl_s
        self._first_wait_s = first_wait_s
        self._fetch_timeout_s = fetch_timeout_s
        self._consumer: Consumer | None = None
        self._cache: dict[str, tuple[float, dict[int, tuple[int, int]]]] = {}
        self._tried: dict[str, int] = {}  # topic -> refreshes attempted (ok or not)
        self._wanted: dict[str, None] = {}  # topics to refresh, in order (a set that keeps it)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def of(self, topic: str) -> dict[int, int] | None:
        """{partition: end offset}, or None when the broker could never be asked."""
        marks = self.marks(topic)
        return None if marks is None else {p: high for p, (_low, high) in marks.items()}

    def marks(self, topic: str) -> dict[int, tuple[int, int]] | None:
        """{partition: (log start, log end)}, or None when the broker could never be asked;
        waits (at most `first_wait_s`) for a refresh of stale values (metrics scrapes)."""
        fetched = self.marks_fetched(topic)
        return None if fetched is None else fetched[1]

    def marks_fetched(self, topic: str) -> tuple[float, dict[int, tuple[int, int]]] | None:
        """(time.monotonic() when the broker answered, {partition: (log start, log end)}),
        or None when the broker could never be asked (lag sampling needs when, not just
        what); waits like `marks`."""
        return self._entry(topic, self._first_wait_s)[0]

    def snapshot(
        self, topic: str, *, wait_s: float = 0.0
    ) -> tuple[dict[int, tuple[int, int]] | None, bool]:
        """(marks or None, stale): stale when older than the TTL (a refresh is on its way,
        or the broker does not answer). Stale values are answered at once unless `wait_s`
        says how long to wait for the refresh; with none known yet, waits `first_wait_s`."""
        entry, stale = self._entry(topic, wait_s)
        return (None if entry is None else entry[1]), stale

    def _entry(
        self, topic: str, wait_s: float
    ) -> tuple[tuple[float, dict[int, tuple[int, int]]] | None, bool]:
        with self._cond:
            cached = self._cache.get(topic)
            if cached is not None and time.monotonic() - cached[0] < self._ttl_s:
                return cached, False
            self._want(topic)
            wait = wait_s if cached is not None else self._first_wait_s
            if wait > 0:
                tried = self._tried.get(topic, 0)
                self._cond.wait_for(
                    lambda: self._tried.get(topic, 0) > tried or self._closed, timeout=wait
                )
                cached = self._cache.get(topic)
            if cached is None:
                return None, True
            return cached, time.monotonic() - cached[0] >= self._ttl_s

    def _want(self, topic: str) -> None:
        """Queue a refresh of `topic` (once) and make sure the refresher runs; under _cond."""
        if self._closed:
            return
        self._wanted[topic] = None
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._refresh_forever, name="logstream-end-offsets", daemon=True
            )
            self._thread.start()
        self._cond.notify_all()

    def _refresh_forever(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._wanted) or self._closed)
                if self._closed:
                    return
                topic = next(iter(self._wanted))
                del self._wanted[topic]
            try:
                marks: dict[int, tuple[int, int]] | None = self._fetch(topic)
            except Exception:  # the broker is away: keep the last known values
                marks = None
            with self._cond:
                if marks is not None:
                    self._cache[topic] = (time.monotonic(), marks)
                self._tried[topic] = self._tried.get(topic, 0) + 1
                self._cond.notify_all()

    def _fetch(self, topic: str) -> dict[int, tuple[int, int]]:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(self._settings, "logstream-freshness"))
        marks = topic_watermarks(self._consumer, [topic], timeout_s=self._fetch_timeout_s)
        return {partition: mark for (_topic, partition), mark in marks.items()}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self._fetch_timeout_s + 5)
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
    lag_stale: bool = False  # lag from log ends older than their TTL (broker slow or away)


def freshness_of(stats: StoreStats, topics: tuple[str, ...], ends: EndOffsets) -> Freshness:
    """Combine a store's bookkeeping with the log ends (lag None if the broker is away)."""
    offsets: dict[str, dict[str, int]] = {}
    for (topic, partition), position in sorted(stats.positions.items()):
        offsets.setdefault(topic, {})[str(partition)] = position.next_offset
    lag: int | None = 0
    stale = False
    for topic in topics:
        marks, topic_stale = ends.snapshot(topic)
        stale = stale or topic_stale
        if marks is None:
            lag = None
            break
        for partition, (_start, end) in marks.items():
            stored = stats.positions.get((topic, partition))
            lag = (lag or 0) + max(0, end - (stored.next_offset if stored else 0))
    skipped: list[dict[str, int | str]] = [
        {"topic": t, "partition": p, "from_offset": a, "to_offset": b}
        for t, p, a, b in stats.skipped
    ]
    return Freshness(offsets, stats.max_event_ms, lag, stats.dlq_count, skipped, stale)
