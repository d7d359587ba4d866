"""When a record arrived in the log, estimated from sampled log-end offsets.

Why not the record's timestamp: in logstream it is the client's event time (`occurred_at`:
an import may be from 1970, a device may be an hour ahead), which says nothing about how
long a record has waited. Kafka keeps no arrival time, so, like kafka-lag-exporter, the
process that serves the lag samples each partition's log end over time: a bounded table of
(monotonic time, end offset) points. The record at offset *o* arrived when the log end
passed *o*; between two samples that time is interpolated linearly, so the estimate is off
by at most one sampling interval (`LOGSTREAM_LAG_SAMPLE_INTERVAL_S`).

A record older than the table's first point (the process started after it was written)
gets that first point's time: its lag is then a lower bound that keeps growing. The table
holds at most `CAPACITY` points per partition; when full it drops every other point of its
older half, so old arrivals are known more coarsely (relative error stays small) while
recent ones keep the sampling resolution. A flat stretch (no writes) costs two points.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable

from logstream.freshness import EndOffsets

__all__ = ["CAPACITY", "EndOffsetTable", "LagSampler", "LogEndHistory"]

log = logging.getLogger(__name__)

CAPACITY = 512


class EndOffsetTable:
    """One partition's (monotonic seconds, log end offset) points, oldest first."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = max(4, capacity)
        self.points: list[tuple[float, int]] = []

    def add(self, at: float, end: int) -> None:
        points = self.points
        if points:
            last_at, last_end = points[-1]
            if at <= last_at:
                return  # a cached answer seen again: nothing new
            if end < last_end:
                points.clear()  # the topic was deleted and re-created: start over
            elif end == last_end and len(points) >= 2 and points[-2][1] == end:
                points[-1] = (at, end)  # a flat stretch: keep its first and latest point
                return
        points.append((at, end))
        if len(points) > self.capacity:
            half = len(points) // 2
            self.points = points[:half:2] + points[half:]

    def arrived_at(self, offset: int) -> float | None:
        """When the log end passed `offset` (its record was written); None if unsampled."""
        points = self.points
        if not points:
            return None
        if points[0][1] > offset:
            return points[0][0]  # before the first sample: at least that old
        for (t0, e0), (t1, e1) in itertools.pairwise(points):
            if e1 > offset:
                return t0 + (t1 - t0) * (offset + 1 - e0) / (e1 - e0)
        return points[-1][0]  # not yet seen past it: arrived just now


class LogEndHistory:
    """`EndOffsetTable`s of every partition sampled, shared by the sampler and the scrapes."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._tables: dict[tuple[str, int], EndOffsetTable] = {}
        self._lock = threading.Lock()

    def record(self, topic: str, at: float, marks: dict[int, tuple[int, int]]) -> None:
        """Log ends of `topic` as the broker answered at monotonic time `at`."""
        with self._lock:
            for partition, (_low, high) in marks.items():
                table = self._tables.get((topic, partition))
                if table is None:
                    table = self._tables[(topic, partition)] = EndOffsetTable(self._capacity)
                table.add(at, high)

    def arrived_at(self, topic: str, partition: int, offset: int) -> float | None:
        with self._lock:
            table = self._tables.get((topic, partition))
            return None if table is None else table.arrived_at(offset)

    def sample(self, ends: EndOffsets, topic: str) -> dict[int, tuple[int, int]] | None:
        """Ask `ends` for `topic`'s log start and end, record them, return them."""
        fetched = ends.marks_fetched(topic)
        if fetched is None:
            return None
        at, marks = fetched
        self.record(topic, at, marks)
        return marks


class LagSampler:
    """A daemon thread sampling every topic's log ends each `interval_s`, so that lag in
    seconds has that resolution whether or not anyone scrapes."""

    def __init__(
        self,
        history: LogEndHistory,
        ends: EndOffsets,
        topics: Callable[[], Iterable[str]],
        interval_s: float,
    ) -> None:
        self._history = history
        self._ends = ends
        self._topics = topics
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                for topic in sorted(set(self._topics())):
                    self._history.sample(self._ends, topic)
            except Exception as exc:  # a broker away: the next round tries again
                log.debug("lag sampling: %s", exc)
            self._stopped.wait(max(0.0, self._interval_s - (time.monotonic() - started)))
