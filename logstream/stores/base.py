"""The view-store contract: event-time-bucketed counters plus the offsets that produced them.

A view's whole state is a set of counters keyed by (series, key, bucket_start_ms). The
runtime aggregates a batch of events into `Counter` deltas and hands them to `commit()`
together with the partition offsets they came from; both land in one transaction, which is
what makes a view exactly-once. Nothing here knows what a series means to a view.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from logstream.aggregates import Aggregate

__all__ = [
    "SCHEMA_VERSION",
    "BaseViewStore",
    "BucketRow",
    "Counter",
    "EventIdRange",
    "Flush",
    "Position",
    "Reset",
    "SeriesKey",
    "SkippedRange",
    "StoreStats",
    "Summary",
    "TotalRow",
    "ViewStore",
    "safe_name",
    "window_bounds",
]

# Bumped whenever the table layout changes; a store refuses a file/schema from the future.
# v2: the `event_ids` table (deduplication window).
# v3: one column group per declared aggregate in buckets and totals; meta `aggregates`;
#     skipped ranges carry `recorded_ms` on every dialect (docs/architecture.md).
SCHEMA_VERSION = 3

SeriesKey = tuple[str, str, int]
"""(series, key, bucket_start_ms): the address of one counter."""

BucketRow = tuple[str, str, int, int, int, int]
"""(series, key, bucket_ms, count, first_ms, last_ms) as stored."""

TotalRow = tuple[str, str, int, int, int]
"""(series, key, count, first_ms, last_ms) as stored in totals."""

SkippedRange = tuple[str, int, int, int]
"""(topic, partition, from_offset, to_offset): offsets a forward reset jumped over."""


@dataclass(slots=True)
class Counter:
    """How many events fell on one address, and the event-time span they cover.

    `aggs` holds one state per aggregate the view declares (None when it declares none),
    as `logstream.aggregate_states` folds them.
    """

    count: int
    first_ms: int
    last_ms: int
    aggs: list[Any] | None = None

    @classmethod
    def of(cls, ts_ms: int, count: int = 1) -> Counter:
        """A counter for `count` events at one timestamp."""
        return cls(count, ts_ms, ts_ms)

    def merge(self, count: int, ts_ms: int) -> None:
        """Add `count` events seen at `ts_ms`."""
        self.count += count
        if ts_ms < self.first_ms:
            self.first_ms = ts_ms
        if ts_ms > self.last_ms:
            self.last_ms = ts_ms

    def merge_counter(self, other: Counter) -> None:
        """Fold another counter for the same address into this one."""
        self.count += other.count
        if other.first_ms < self.first_ms:
            self.first_ms = other.first_ms
        if other.last_ms > self.last_ms:
            self.last_ms = other.last_ms


@dataclass(frozen=True)
class Summary:
    """What a key's buckets add up to over a time range: its count and event-time span, and
    per declared aggregate its answer (sum: number; min/max: number or None; latest: the
    decoded value or None; distinct: an int estimate)."""

    count: int
    first_ms: int
    last_ms: int
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Position:
    """Where a partition stands: the next offset to read, and an optional backfill guard.

    While reading offsets < `guard_offset`, the runtime must skip events whose timestamp is
    < `guard_min_ms`: a reset to a datetime dropped only buckets from `guard_min_ms` on, so
    the older events before the old position are still counted.
    """

    topic: str
    partition: int
    next_offset: int
    guard_offset: int | None = None
    guard_min_ms: int | None = None

    def skips(self, offset: int, ts_ms: int) -> bool:
        """True if the event at (offset, ts_ms) is already counted and must not be applied."""
        return (
            self.guard_offset is not None
            and self.guard_min_ms is not None
            and offset < self.guard_offset
            and ts_ms < self.guard_min_ms
        )


@dataclass(frozen=True)
class EventIdRange:
    """The event ids read from offsets [from_offset, to_offset) of one partition.

    `payload` is opaque to the store (the runtime's encoding, see
    `logstream.runtime.dedupe`); the store keeps it beside the counters so that the
    deduplication window is exactly as durable, and as fenced, as the counts it protects.
    """

    topic: str
    partition: int
    from_offset: int
    to_offset: int
    payload: bytes


@dataclass(frozen=True)
class Flush:
    """One batch to commit atomically.

    `positions` holds (topic, partition, expected_next_offset, new_next_offset); expected is
    the stored next_offset the batch started from, or None if the partition has no row yet.
    A mismatch means another consumer or a reset moved the partition: the store raises
    StaleOffsetError and applies nothing.
    """

    deltas: Mapping[SeriesKey, Counter]
    positions: Sequence[tuple[str, int, int | None, int]]
    max_event_ms: int | None = None
    dlq_increment: int = 0
    # Deduplication window: ranges to add, and per partition an offset below which whole
    # ranges (to_offset <= it) are no longer needed.
    event_ids: Sequence[EventIdRange] = ()
    event_ids_expire: Sequence[tuple[str, int, int]] = ()
    events: int = 0  # events this flush applies (for metrics: counted once it commits)


@dataclass(frozen=True)
class Reset:
    """A backfill step applied atomically: drop state, move offsets, remember skipped ranges.

    `drop_from_ms=None` wipes the whole view (buckets, totals, max_event_ms and every stored
    position, then writes `positions`); otherwise buckets with bucket_start >= drop_from_ms
    are dropped and totals adjusted, and only the listed partitions' rows are replaced, so
    the caller must list every partition of the group. The DLQ count is always kept.
    Event-id ranges reaching past a listed partition's new next_offset are dropped (the
    replay records them again); a full wipe drops them all.
    """

    positions: Sequence[Position]
    drop_from_ms: int | None
    skipped: Sequence[SkippedRange] = ()


@dataclass(frozen=True)
class StoreStats:
    """Bookkeeping of a view store, for `logstream status`, lag and tests."""

    positions: dict[tuple[str, int], Position]
    max_event_ms: int | None
    dlq_count: int
    skipped: list[SkippedRange] = field(default_factory=list)


@runtime_checkable
class ViewStore(Protocol):
    """What the consumer runtime and the query API need from a store."""

    totals_series: frozenset[str]
    aggregates: tuple[Aggregate, ...]  # what each bucket keeps besides its count

    def commit(self, flush: Flush) -> None:
        """Apply deltas, positions, DLQ count and max event time in one fenced transaction."""
        ...

    def positions(self) -> dict[tuple[str, int], Position]:
        """Every stored partition position, keyed by (topic, partition)."""
        ...

    def reset(self, reset: Reset) -> None:
        """Drop state and replace positions in one transaction (see `Reset`)."""
        ...

    def event_id_ranges(self, topic: str, partition: int, since_offset: int) -> list[EventIdRange]:
        """Stored event-id ranges of a partition ending after `since_offset`, by offset."""
        ...

    def total(self, series: str, key: str) -> Counter | None:
        """All-time counter of one key, or None if it has no events."""
        ...

    def top(
        self, series: str, limit: int, since_ms: int | None = None, until_ms: int | None = None
    ) -> list[tuple[str, int]]:
        """Keys ranked by count desc, then key asc; ranged on bucket_start if bounds given."""
        ...

    def windows(
        self,
        series: str,
        key: str,
        size_ms: int,
        since_ms: int,
        until_ms: int,
        limit: int,
        after_start_ms: int | None = None,
    ) -> list[tuple[int, int]]:
        """Non-empty epoch-aligned windows (start, count) of one key, ascending."""
        ...

    def summary(
        self, series: str, key: str, since_ms: int | None = None, until_ms: int | None = None
    ) -> Summary | None:
        """Count, span and aggregates of one key over all time or the buckets in
        [since, until); None if it has no events there."""
        ...

    def rank(
        self,
        series: str,
        by: str,
        limit: int,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> list[tuple[str, int | float]]:
        """Keys ranked by "count" or by a sum/min/max/distinct aggregate: value desc, key
        asc (ValueError for an unknown name or a latest aggregate)."""
        ...

    def window_summaries(
        self,
        series: str,
        key: str,
        size_ms: int,
        since_ms: int,
        until_ms: int,
        limit: int,
        after_start_ms: int | None = None,
    ) -> list[tuple[int, Summary]]:
        """Like `windows`, with each window's whole summary."""
        ...

    def bucket_rows(self, series: str | None = None) -> list[BucketRow]:
        """Every bucket row, sorted (tests and benchmarks)."""
        ...

    def totals_rows(self, series: str | None = None) -> list[TotalRow]:
        """Every totals row, sorted (tests and benchmarks)."""
        ...

    def stats(self) -> StoreStats:
        """Positions, max event time, DLQ count and skipped ranges, read consistently."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class BaseViewStore(ABC):
    """Argument checks and context management shared by the SQL stores."""

    totals_series: frozenset[str]

    def __init__(self, totals_series: Iterable[str]) -> None:
        self.totals_series = frozenset(totals_series)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""

    @staticmethod
    def _check_flush(flush: Flush) -> None:
        """Reject a flush that names a partition twice: the fencing would be ambiguous."""
        seen: set[tuple[str, int]] = set()
        for topic, partition, expected, new in flush.positions:
            if (topic, partition) in seen:
                raise ValueError(f"flush names partition {topic}[{partition}] twice")
            seen.add((topic, partition))
            if new < 0 or (expected is not None and expected < 0):
                raise ValueError(f"negative offset for {topic}[{partition}]")
        if flush.dlq_increment < 0:
            raise ValueError("dlq_increment must be >= 0")
        moved = {(t, p): new for t, p, _expected, new in flush.positions}
        for r in flush.event_ids:
            # Only a partition the flush fences may gain ranges, and only up to its new offset.
            if moved.get((r.topic, r.partition)) != r.to_offset or r.from_offset > r.to_offset:
                raise ValueError(
                    f"event-id range {r.topic}[{r.partition}] {r.from_offset}..{r.to_offset} "
                    "does not end at the partition's new offset in this flush"
                )

    @staticmethod
    def _check_reset(reset: Reset) -> None:
        seen: set[tuple[str, int]] = set()
        for pos in reset.positions:
            if (pos.topic, pos.partition) in seen:
                raise ValueError(f"reset names partition {pos.topic}[{pos.partition}] twice")
            seen.add((pos.topic, pos.partition))


def window_bounds(
    size_ms: int, since_ms: int, until_ms: int, after_start_ms: int | None
) -> tuple[int, int]:
    """Bucket-start bounds [lo, hi) selecting exactly the windows the query asks for.

    A bucket belongs to window floor(bucket/size)*size; that window is in
    [floor(since), until) and after the cursor iff floor(since) <= bucket < ceil(until) and
    bucket >= floor(after) + size, so the filter stays a range scan on the primary key.
    """
    if size_ms <= 0:
        raise ValueError("size_ms must be > 0")
    lo = since_ms - since_ms % size_ms
    if after_start_ms is not None:
        lo = max(lo, after_start_ms - after_start_ms % size_ms + size_ms)
    hi = -(-until_ms // size_ms) * size_ms
    return lo, hi


_UNSAFE = re.compile(r"[^a-z0-9_]+")


def safe_name(namespace: str) -> str:
    """A view namespace as a lowercase identifier: `likes-by-url@v2` -> `likes_by_url__v2`.

    Used for PostgreSQL schema names and SQLite file names; '@' (the version separator)
    becomes '__' so `a@v2` and `a-v2` stay apart.
    """
    if not namespace or not namespace.strip():
        raise ValueError("a view namespace must not be empty")
    base, _, version = namespace.strip().lower().partition("@")
    parts = [_UNSAFE.sub("_", base).strip("_")]
    if version:
        parts.append(_UNSAFE.sub("_", version).strip("_"))
    name = "__".join(parts)
    if not name.strip("_"):
        raise ValueError(f"view namespace {namespace!r} has no usable characters")
    if name[0].isdigit():
        name = "v_" + name
    return name
