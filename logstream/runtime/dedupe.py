"""Counted once even when clients retry: the event ids each partition saw recently.

Ingest answers 503 when the broker cannot confirm a write in time, and clients retry with the
same `event_id`; when the first attempt was in fact written, the log holds the event twice.
Both copies carry the same key, so they sit in the same partition. The rule that decides
which copy counts is a function of the log alone, so that a live build, a replay after a
crash or a rebalance, a backfill and a rebuild from scratch all decide alike:

    the event at offset o of a partition is a duplicate iff an event with the same id sits
    at an offset in [o - horizon, o) of the same partition.

`horizon` (`LOGSTREAM_DEDUPE_HORIZON_EVENTS`, per partition) is part of a view's definition:
change it, and rebuild the view to apply the new rule to the whole log.

The ids of the last `horizon` offsets live in memory (`seen`: id -> newest offset) and, in
ranges of offsets, in the view store, written in the same transaction as the counters they
protect (`EventIdRange`). When a partition starts at a stored offset S, the ranges that end
at S back to S - horizon are loaded; if they do not cover that span (a store written before
deduplication existed, or a backfill that moved the partition back), the missing ids are
read again from the log: the runtime seeks to S - horizon and only records the ids of the
offsets below S (`warm_until`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import orjson

from logstream.stores.base import EventIdRange

__all__ = ["EventIdWindow"]

TP = tuple[str, int]


@dataclass(slots=True)
class _Range:
    """Ids read from offsets [from_offset, ...) of one partition, in offset order."""

    from_offset: int
    offsets: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    to_offset: int = 0


@dataclass(slots=True)
class _Partition:
    seen: dict[str, int]
    open: _Range
    closed: deque[_Range] = field(default_factory=deque)
    expired: int = 0  # ids in ranges dropped since `seen` was last rebuilt


def _encode(rng: _Range) -> bytes:
    return orjson.dumps([rng.offsets, rng.ids])


def _decode(stored: EventIdRange) -> _Range:
    offsets, ids = orjson.loads(stored.payload)
    return _Range(stored.from_offset, offsets, ids, stored.to_offset)


def _covered_from(ranges: list[EventIdRange], start: int) -> int:
    """The lowest offset from which stored ranges cover [.., start) without a hole.

    Ranges may overlap (a warm-up stores its whole span beside older, shorter ranges), so
    coverage is extended by any range that reaches the covered part, until none does.
    """
    usable = [r for r in ranges if r.to_offset <= start]  # later ones cannot exist (fenced)
    covered = start
    while True:
        reaching = [r.from_offset for r in usable if r.from_offset < covered <= r.to_offset]
        if not reaching:
            return covered
        covered = min(reaching)


class EventIdWindow:
    """Per assigned partition: which ids appeared in the last `horizon` offsets."""

    def __init__(self, horizon: int) -> None:
        if horizon <= 0:
            raise ValueError("horizon must be > 0")
        self.horizon = horizon
        self._parts: dict[TP, _Partition] = {}
        # Partitions re-reading offsets below their start only to record ids: tp -> start.
        self.warm_until: dict[TP, int] = {}

    def start(self, tp: TP, next_offset: int, stored: list[EventIdRange]) -> int:
        """Begin `tp` at its stored `next_offset`; return the offset to seek to (lower when
        ids must be re-read from the log). `stored`: ranges ending after next - horizon."""
        needed = max(0, next_offset - self.horizon)
        self.warm_until.pop(tp, None)
        if next_offset == 0:
            self._parts[tp] = _Partition({}, _Range(0))
            return 0
        if _covered_from(stored, next_offset) <= needed:
            part = _Partition({}, _Range(next_offset))
            for stored_range in stored:
                if stored_range.to_offset > next_offset:
                    continue
                rng = _decode(stored_range)
                part.seen.update(zip(rng.ids, rng.offsets, strict=True))
                part.closed.append(rng)
            self._parts[tp] = part
            return next_offset
        # A hole: read [needed, next_offset) again; the open range then covers it all, so
        # the first flush of this partition stores the span whole.
        self._parts[tp] = _Partition({}, _Range(needed))
        self.warm_until[tp] = next_offset
        return needed

    def start_empty(self, tp: TP) -> None:
        """Begin `tp` with nothing stored: the partition is read from its log start."""
        self.start(tp, 0, [])

    def forget(self, tps: list[TP]) -> None:
        for tp in tps:
            self._parts.pop(tp, None)
            self.warm_until.pop(tp, None)

    def held(self, tp: TP) -> int:
        """How many ids `tp` keeps in memory (bounded by about horizon + one flush)."""
        part = self._parts.get(tp)
        return 0 if part is None else len(part.seen)

    def repeat(self, tp: TP, offset: int, event_id: str) -> bool:
        """Record the id at `offset`; True if it appeared within the horizon before it."""
        part = self._parts[tp]
        previous = part.seen.get(event_id)
        part.seen[event_id] = offset
        rng = part.open
        rng.offsets.append(offset)
        rng.ids.append(event_id)
        return previous is not None and previous >= offset - self.horizon

    def warmed(self, tp: TP, offset: int) -> bool:
        """True if `offset` is below `tp`'s start (record its id only, count nothing)."""
        until = self.warm_until.get(tp)
        if until is None:
            return False
        if offset >= until - 1:
            del self.warm_until[tp]  # the last re-read offset (or past it): warm-up is done
        return offset < until

    def close_ranges(
        self, next_offsets: dict[TP, int]
    ) -> tuple[list[EventIdRange], list[tuple[str, int, int]]]:
        """At a flush: the ranges to store (each ends at its partition's new offset) and,
        per partition, the offset below which stored ranges have expired."""
        ranges: list[EventIdRange] = []
        expire: list[tuple[str, int, int]] = []
        for tp, new in next_offsets.items():
            part = self._parts.get(tp)
            if part is None:
                continue
            rng = part.open
            rng.to_offset = new
            ranges.append(EventIdRange(tp[0], tp[1], rng.from_offset, new, _encode(rng)))
            part.closed.append(rng)
            part.open = _Range(new)
            horizon_start = new - self.horizon
            expire.append((tp[0], tp[1], horizon_start))
            self._evict(part, horizon_start)
        return ranges, expire

    @staticmethod
    def _evict(part: _Partition, horizon_start: int) -> None:
        """Drop ranges wholly below the horizon: no later offset can match their ids.

        `seen` may keep expired ids for a while (a lookup compares offsets, so they never
        match); it is rebuilt from the live ranges, in C, once the expired outnumber the live,
        which keeps memory within about twice the horizon at a small cost per event.
        """
        closed = part.closed
        while closed and closed[0].to_offset <= horizon_start:
            part.expired += len(closed.popleft().ids)
        if part.expired and part.expired >= len(part.seen) - part.expired:
            seen: dict[str, int] = {}
            for rng in closed:
                seen.update(zip(rng.ids, rng.offsets, strict=True))
            seen.update(zip(part.open.ids, part.open.offsets, strict=True))
            part.seen = seen
            part.expired = 0
