"""How far a view stands behind its log, in offsets and in seconds (README "Operations").

Per partition, with *applied* = the next offset the view store holds (the log start when it
holds none):

* lag in offsets = log end - applied (0 when caught up);
* lag in seconds = how old the oldest unapplied record is: now - the timestamp of the record
  at offset *applied*, 0 when lag in offsets is 0. The record timestamp is the event time
  (invariant 5), which ingest sets to the time it received the event unless the client sent
  `occurred_at`; a record "without timestamp" (event time 0) counts from the epoch.

A view's lag in seconds is the largest of its partitions'. Records never change, so the
timestamp read for an offset is cached; a scrape reads at most one record per partition that
moved since the last one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from logstream.freshness import EndOffsets
from logstream.kafka.config import consumer_config
from logstream.settings import Settings
from logstream.stores.base import Position

__all__ = ["PartitionLagNow", "RecordTimes", "ViewLag", "view_lag"]

TPO = tuple[str, int, int]
CACHE_SIZE = 4096
READ_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class PartitionLagNow:
    topic: str
    partition: int
    applied: int
    log_start: int
    log_end: int
    lag_offsets: int
    lag_seconds: float | None  # None: its oldest unapplied record could not be read now


@dataclass(frozen=True)
class ViewLag:
    partitions: list[PartitionLagNow]

    @property
    def offsets(self) -> int:
        return sum(p.lag_offsets for p in self.partitions)

    @property
    def seconds(self) -> float | None:
        """The largest partition lag in seconds; None when one of them is unknown."""
        values = [p.lag_seconds for p in self.partitions]
        if any(v is None for v in values):
            return None
        return max((v for v in values if v is not None), default=0.0)

    @property
    def progress(self) -> float:
        """Share of the retained log applied (1.0 caught up): a backfill's or a rebuild's
        progress."""
        total = sum(p.log_end - p.log_start for p in self.partitions)
        done = sum(p.applied - p.log_start for p in self.partitions)
        return 1.0 if total <= 0 else done / total


class RecordTimes:
    """The timestamp of the record at (topic, partition, offset), read from the log once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: Consumer | None = None
        self._cache: OrderedDict[TPO, int] = OrderedDict()
        self._lock = threading.Lock()

    def at(self, wanted: Iterable[TPO], timeout_s: float = READ_TIMEOUT_S) -> dict[TPO, int]:
        """Timestamps (ms; 0 for "no timestamp") of the records at `wanted`; a record that
        could not be read within `timeout_s` is left out."""
        with self._lock:
            found = {w: self._cache[w] for w in wanted if w in self._cache}
            missing = [w for w in wanted if w not in found]
            if missing:
                found.update(self._read(missing, timeout_s))
            return found

    def _read(self, missing: list[TPO], timeout_s: float) -> dict[TPO, int]:
        if self._consumer is None:
            # Reads a record here and there: keep its prefetch small.
            conf = consumer_config(self._settings, "logstream-lag-probe")
            conf["queued.max.messages.kbytes"] = 1024
            self._consumer = Consumer(conf)
        consumer = self._consumer
        by_tp = {(t, p): o for t, p, o in missing}
        consumer.assign([TopicPartition(t, p, o) for t, p, o in missing])
        read: dict[TPO, int] = {}
        deadline = time.monotonic() + timeout_s
        try:
            while by_tp and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=len(by_tp) * 4, timeout=0.2):
                    if msg.error() is not None:
                        continue
                    tp = (msg.topic() or "", msg.partition() or 0)
                    offset = by_tp.get(tp)
                    if offset is None or (msg.offset() or 0) < offset:
                        continue
                    key = (tp[0], tp[1], offset)
                    read[key] = max(0, msg.timestamp()[1])
                    del by_tp[tp]
        finally:
            consumer.unassign()
        for key, ts in read.items():
            self._cache[key] = ts
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return read

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def view_lag(
    topics: Iterable[str],
    positions: dict[tuple[str, int], Position],
    ends: EndOffsets,
    times: RecordTimes,
    now_ms: int | None = None,
) -> ViewLag | None:
    """The view's lag per partition (None when the broker cannot be asked right now)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    rows: list[tuple[str, int, int, int, int]] = []
    for topic in topics:
        marks = ends.marks(topic)
        if marks is None:
            return None
        for partition, (low, high) in sorted(marks.items()):
            stored = positions.get((topic, partition))
            applied = max(low, stored.next_offset if stored is not None else low)
            rows.append((topic, partition, applied, low, high))
    behind = [(t, p, a) for t, p, a, _low, high in rows if high > a]
    stamps = times.at(behind) if behind else {}
    partitions = []
    for topic, partition, applied, low, high in rows:
        lag = max(0, high - applied)
        seconds: float | None = 0.0
        if lag:
            ts = stamps.get((topic, partition, applied))
            # Unreadable right now (broker slow or away): unknown, never a made-up 0.
            seconds = max(0.0, (now - ts) / 1000) if ts is not None else None
        partitions.append(PartitionLagNow(topic, partition, applied, low, high, lag, seconds))
    return ViewLag(partitions)
