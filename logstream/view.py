"""What a view is: a name (= consumer group id), the topics it reads, and how one event
becomes counter keys. It never polls, commits or handles rebalances: the runtime does that.

A view's state is event-time-bucketed counters (see `logstream.stores.base`), so a backfill
can drop and recompute any time range from `bucket_ms` boundaries on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

__all__ = ["View", "floor_to"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def floor_to(ts_ms: int, size_ms: int) -> int:
    """The start of the epoch-aligned bucket of `size_ms` holding `ts_ms` (UTC)."""
    return ts_ms - ts_ms % size_ms


class View(ABC):
    """Subclass per view; instances are stateless and shared by the runtime and the API."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]
    bucket_ms: ClassVar[int]
    totals_series: ClassVar[frozenset[str]] = frozenset()
    # Keep a (series, bucket) index: only a view that ranks keys over an event-time range
    # (`top` with since/until) needs it, and every other view writes twice as fast without.
    time_index: ClassVar[bool] = False
    # The record field that identifies an event: a later copy with the same value within
    # the deduplication horizon is not applied (see logstream.runtime.dedupe). None: off.
    event_id_field: ClassVar[str | None] = "event_id"
    # The record field holding the event time, read only for a record written without a
    # timestamp (an event at time 0: librdkafka cannot write 0, see kafka.timestamps).
    event_time_field: ClassVar[str | None] = "occurred_at"

    @abstractmethod
    def keys(self, event: Mapping[str, Any], event_ms: int) -> Iterable[tuple[str, str, int]]:
        """The (series, key, bucket_start_ms) counters one event adds 1 to."""

    def namespace(self, version: str | None = None) -> str:
        """Store namespace: the name, or `name@version` for a side-by-side rebuild."""
        return self.name if not version else f"{self.name}@{version}"
