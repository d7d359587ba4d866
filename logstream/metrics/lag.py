"""How far a view stands behind its log, in offsets and in seconds (README "Operations").

Per partition, with *applied* = the next offset the view store holds (the log start when it
holds none, or when retention deleted records before the view applied them):

* lag in offsets = log end - applied (0 when caught up);
* lag in seconds = how long ago the oldest unapplied record (offset *applied*) arrived in
  the log: now - the time the log end passed *applied*, estimated from sampled log ends
  (`logstream.metrics.arrivals`, as kafka-lag-exporter does); 0 when lag in offsets is 0.
  Never the record timestamp: that is the client's event time (invariant 5);
* lost to retention = records deleted from the log before the view applied them (the log
  start - the stored next offset, when the store stands below the log start).

A view's lag in seconds is the largest of its partitions'.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from logstream.freshness import EndOffsets
from logstream.metrics.arrivals import LogEndHistory
from logstream.stores.base import Position

__all__ = ["PartitionLagNow", "ViewLag", "view_lag"]


@dataclass(frozen=True)
class PartitionLagNow:
    topic: str
    partition: int
    applied: int
    log_start: int
    log_end: int
    lag_offsets: int
    lag_seconds: float | None  # None: the partition's log end was never sampled
    lost_to_retention: int = 0  # deleted from the log before the view applied them


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
    def lost_to_retention(self) -> int:
        return sum(p.lost_to_retention for p in self.partitions)

    @property
    def progress(self) -> float:
        """Share of the retained log applied (1.0 caught up): a backfill's or a rebuild's
        progress."""
        total = sum(p.log_end - p.log_start for p in self.partitions)
        done = sum(p.applied - p.log_start for p in self.partitions)
        return 1.0 if total <= 0 else done / total


def view_lag(
    topics: Iterable[str],
    positions: dict[tuple[str, int], Position],
    ends: EndOffsets,
    history: LogEndHistory,
    now: float | None = None,
) -> ViewLag | None:
    """The view's lag per partition (None when the broker cannot be asked right now).
    `now` is `time.monotonic()` (the clock of `history`)."""
    rows: list[tuple[str, int, int, int, int, int]] = []
    for topic in topics:
        marks = history.sample(ends, topic)
        if marks is None:
            return None
        for partition, (low, high) in sorted(marks.items()):
            stored = positions.get((topic, partition))
            next_offset = stored.next_offset if stored is not None else 0
            rows.append((topic, partition, max(low, next_offset), low, high, low - next_offset))
    at = now if now is not None else time.monotonic()
    partitions = []
    for topic, partition, applied, low, high, lost in rows:
        lag = max(0, high - applied)
        seconds: float | None = 0.0
        if lag:
            arrived = history.arrived_at(topic, partition, applied)
            seconds = None if arrived is None else max(0.0, at - arrived)
        partitions.append(
            PartitionLagNow(topic, partition, applied, low, high, lag, seconds, max(0, lost))
        )
    return ViewLag(partitions)
