"""Pure backfill planning: from watermarks, stored positions and offsets-for-times to a Reset.

No I/O here, so every rule of invariant 3 (docs/architecture.md) can be unit-tested. The algorithm:

* Targets mirror `kafka-consumer-groups --reset-offsets` (see `resolve_targets`).
* Backward partitions B (target < stored) and forward partitions F (target > stored) are not
  mixed in one reset: the caller is asked to run two backfills.
* Every partition of every view topic goes back to its log start: a full rebuild, all state
  wiped (`Reset(drop_from_ms=None)`).
* Otherwise backward: T' = the view bucket holding the oldest event to recompute (the target
  time for --to-datetime/--by-duration, else the oldest event time in the ranges
  [target, stored) of B), lowered to any unfinished earlier backfill's guard time. Buckets
  >= T' are dropped. Every partition q restarts at min(target_q or stored_q, first offset
  with time >= T') and, up to where it stood, skips events older than T' (still counted).
  Events at or after the old position were never counted and are applied normally.
* Forward only: nothing dropped, positions move to the targets, the skipped offset ranges
  are recorded in the store (shown by `logstream views` and query freshness).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from logstream.backfill.targets import Mode, Target, format_ms
from logstream.errors import LogstreamError
from logstream.stores.base import Position, Reset, SkippedRange
from logstream.view import floor_to

__all__ = [
    "FAR_FUTURE_MS",
    "BackfillRefused",
    "Kind",
    "LogFacts",
    "PartitionPlan",
    "PartitionState",
    "Plan",
    "Requested",
    "backward_partitions",
    "build_plan",
    "decide_kind",
    "drop_time",
    "resolve_targets",
]

TP = tuple[str, int]

FAR_FUTURE_MS = 2**62
"""A drop time no bucket reaches: a Reset that drops nothing."""


class BackfillRefused(LogstreamError):
    """The backfill must not run as asked (exit code 4): active group, lost data, mixed."""


class LogFacts(Protocol):
    """What planning must know about the log (KafkaState reads it from the broker)."""

    def partitions(self, topics: Iterable[str]) -> list[TP]:
        """Every partition of the topics, sorted."""
        ...

    def watermarks(self, tps: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        """(log start, log end) per partition."""
        ...

    def offsets_for_time(
        self, tps: Iterable[TP], time_ms: int, ends: Mapping[TP, int]
    ) -> dict[TP, int]:
        """First offset with timestamp >= time_ms per partition, else its end in `ends`."""
        ...

    def oldest_timestamps(self, ranges: Mapping[TP, tuple[int, int]]) -> dict[TP, int | None]:
        """Oldest record timestamp per [start, end) range, None for an empty range."""
        ...


class Kind(StrEnum):
    REBUILD = "rebuild"
    DROP_FROM = "drop-from"
    FORWARD = "forward"
    NOTHING = "nothing"
    MIXED = "mixed"


@dataclass(frozen=True)
class PartitionState:
    """What is known about one partition before planning."""

    topic: str
    partition: int
    log_start: int
    log_end: int
    stored: Position | None

    @property
    def key(self) -> TP:
        return (self.topic, self.partition)

    @property
    def position(self) -> int:
        """Where the view stands, read as at least the log start (older offsets are gone)."""
        if self.stored is None:
            return self.log_start
        return max(self.stored.next_offset, self.log_start)

    @property
    def guard(self) -> Position | None:
        """The stored position if an earlier backfill's guard is still ahead of it."""
        s = self.stored
        if s is None or s.guard_offset is None or s.guard_min_ms is None:
            return None
        return s if s.next_offset < s.guard_offset else None

    @property
    def frontier(self) -> int:
        """First offset never counted in any form (past an unfinished guard, if any)."""
        guard = self.guard
        if guard is not None and guard.guard_offset is not None:
            return max(self.position, guard.guard_offset)
        return self.position


@dataclass(frozen=True)
class Requested:
    """A partition's target: as asked, and as Kafka's tool would set it (clamped)."""

    requested: int
    target: int


def resolve_targets(
    target: Target,
    states: Iterable[PartitionState],
    scope: set[TP],
    offsets_at_time: Mapping[TP, int] | None = None,
) -> dict[TP, Requested]:
    """Per in-scope partition, the offset Kafka's `--reset-offsets` would pick.

    to-earliest/to-latest: log start/end. to-datetime/by-duration: `offsets_at_time` (first
    offset with timestamp >= the time, log end if none). to-offset/from-file: the number;
    shift-by: stored (or log start) + N. Like Kafka these are clamped to [log start, log end];
    the unclamped value is kept so that `refusals` can reject a start below the log start.
    """
    resolved: dict[TP, Requested] = {}
    for state in states:
        key = state.key
        if key not in scope:
            continue
        if target.mode is Mode.TO_EARLIEST:
            wanted = state.log_start
        elif target.mode is Mode.TO_LATEST:
            wanted = state.log_end
        elif target.mode in (Mode.TO_DATETIME, Mode.BY_DURATION):
            if offsets_at_time is None or key not in offsets_at_time:
                raise ValueError(f"no offset-for-time given for {key}")
            wanted = offsets_at_time[key]
        elif target.mode is Mode.TO_OFFSET:
            assert target.offset is not None
            wanted = target.offset
        elif target.mode is Mode.SHIFT_BY:
            assert target.shift is not None
            base = state.stored.next_offset if state.stored is not None else state.log_start
            wanted = base + target.shift
        else:
            wanted = target.file_offsets[key]
        clamped = min(max(wanted, state.log_start), state.log_end)
        resolved[key] = Requested(wanted, clamped)
    return resolved


def refusals(
    target: Target, states: Iterable[PartitionState], resolved: Mapping[TP, Requested]
) -> list[str]:
    """Why --execute must refuse: an explicit start offset below the retained log."""
    if target.mode not in (Mode.TO_OFFSET, Mode.FROM_FILE):
        return []  # shift-by is clamped like Kafka; time and earliest never go below start
    reasons = []
    for state in states:
        r = resolved.get(state.key)
        if r is not None and r.requested < state.log_start:
            reasons.append(
                f"offset {r.requested} of {state.topic}:{state.partition} is below its log "
                f"start offset {state.log_start}: those events are no longer retained "
                "(use --to-earliest to replay what is left)"
            )
    return reasons


def backward_partitions(
    states: Iterable[PartitionState], resolved: Mapping[TP, Requested]
) -> dict[TP, tuple[int, int]]:
    """B: partitions whose target is before the view's position -> (target, position)."""
    out = {}
    for state in states:
        r = resolved.get(state.key)
        if r is not None and r.target < state.position:
            out[state.key] = (r.target, state.position)
    return out


def decide_kind(states: list[PartitionState], resolved: Mapping[TP, Requested]) -> Kind:
    """Which kind of reset the targets call for (see the module docstring)."""
    back = fwd = False
    for state in states:
        r = resolved.get(state.key)
        if r is None:
            continue
        back |= r.target < state.position
        fwd |= r.target > state.position
    if back and fwd:
        return Kind.MIXED
    if fwd:
        return Kind.FORWARD
    if not back:
        return Kind.NOTHING
    everything_to_start = all(
        state.key in resolved and resolved[state.key].target == state.log_start for state in states
    )
    return Kind.REBUILD if everything_to_start else Kind.DROP_FROM


def drop_time(
    bucket_ms: int,
    target_time_ms: int | None,
    oldest_replayed_ms: Iterable[int | None],
    states: Iterable[PartitionState],
) -> int:
    """T': the first bucket to drop for a backward reset.

    With a target time (--to-datetime, --by-duration) that time's bucket; otherwise the
    bucket of the oldest event in the backward ranges (FAR_FUTURE_MS if they hold none).
    Lowered to any unfinished earlier guard time, so the events that guard still skips are
    in dropped buckets and get applied by this replay.
    """
    if target_time_ms is not None:
        t = floor_to(target_time_ms, bucket_ms)
    else:
        known = [ms for ms in oldest_replayed_ms if ms is not None]
        t = floor_to(min(known), bucket_ms) if known else FAR_FUTURE_MS
    for state in states:
        guard = state.guard
        if guard is not None and guard.guard_min_ms is not None:
            t = min(t, guard.guard_min_ms)
    return t


@dataclass(frozen=True)
class PartitionPlan:
    """One partition's row of the plan."""

    state: PartitionState
    requested: Requested | None  # None: outside the --topic scope
    new: Position | None  # None: position left as it is

    @property
    def replay_from(self) -> int:
        return self.new.next_offset if self.new is not None else self.state.position

    @property
    def events_to_replay(self) -> int:
        """Offsets read again that the view had already read (older events get skipped)."""
        return max(0, self.state.frontier - self.replay_from)

    @property
    def events_to_skip(self) -> int:
        """Offsets a forward reset jumps over without counting them."""
        return max(0, self.replay_from - self.state.position)

    def to_json(self) -> dict[str, Any]:
        s = self.state
        return {
            "topic": s.topic,
            "partition": s.partition,
            "stored_offset": s.stored.next_offset if s.stored is not None else None,
            "target_offset": self.requested.target if self.requested else None,
            "requested_offset": self.requested.requested if self.requested else None,
            "replay_from_offset": self.replay_from,
            "events_to_replay": self.events_to_replay,
            "events_to_skip": self.events_to_skip,
            "log_start_offset": s.log_start,
            "log_end_offset": s.log_end,
            "guard_offset": self.new.guard_offset if self.new is not None else None,
        }


@dataclass(frozen=True)
class Plan:
    """Everything `--execute` will do, and everything the dry run prints."""

    view: str
    group: str
    target: str
    kind: Kind
    drop_from_ms: int | None  # DROP_FROM only
    partitions: list[PartitionPlan]
    refused: list[str]

    @property
    def dropped_buckets(self) -> str:
        """Which event-time buckets the reset deletes: all, none, or from an RFC 3339 time."""
        if self.kind is Kind.REBUILD:
            return "all"
        if self.kind is Kind.DROP_FROM and self.drop_from_ms is not None:
            if self.drop_from_ms >= FAR_FUTURE_MS:
                return "none"
            return f"from {format_ms(self.drop_from_ms)}"
        return "none"

    @property
    def new_offsets(self) -> dict[TP, int]:
        """Next offset per partition after the reset (also committed to Kafka)."""
        return {p.state.key: p.new.next_offset for p in self.partitions if p.new is not None}

    def reset(self) -> Reset | None:
        """The store reset that applies this plan in one transaction (None: nothing to do)."""
        if self.refused:
            raise BackfillRefused(self.refused[0])
        positions = [p.new for p in self.partitions if p.new is not None]
        if self.kind is Kind.REBUILD:
            return Reset(positions=positions, drop_from_ms=None)
        if self.kind is Kind.DROP_FROM:
            assert self.drop_from_ms is not None
            return Reset(positions=positions, drop_from_ms=self.drop_from_ms)
        if self.kind is Kind.FORWARD:
            skipped: list[SkippedRange] = [
                (p.state.topic, p.state.partition, p.state.position, p.replay_from)
                for p in self.partitions
                if p.events_to_skip > 0
            ]
            return Reset(positions=positions, drop_from_ms=FAR_FUTURE_MS, skipped=skipped)
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "group": self.group,
            "target": self.target,
            "kind": str(self.kind),
            "dropped_buckets": self.dropped_buckets,
            "drop_from_ms": self.drop_from_ms if self.kind is Kind.DROP_FROM else None,
            "events_to_replay": sum(p.events_to_replay for p in self.partitions),
            "events_to_skip": sum(p.events_to_skip for p in self.partitions),
            "partitions": [p.to_json() for p in self.partitions],
            "refused": list(self.refused),
        }


def build_plan(
    *,
    view: str,
    group: str,
    target: Target,
    states: list[PartitionState],
    resolved: Mapping[TP, Requested],
    drop_from_ms: int | None = None,
    first_offsets: Mapping[TP, int] | None = None,
) -> Plan:
    """Assemble the plan. DROP_FROM needs `drop_from_ms` (T', see `drop_time`) and
    `first_offsets`: per partition of the view, the first offset with timestamp >= T' (log
    end if none)."""
    kind = decide_kind(states, resolved)
    refused = refusals(target, states, resolved)
    if kind is Kind.MIXED:
        back = sorted(backward_partitions(states, resolved))
        refused.append(
            "the targets move some partitions back and others forward "
            f"(back: {_names(back)}); run two backfills, each scoped with --topic T:p1,p2"
        )
    rows = []
    for state in states:
        r = resolved.get(state.key)
        new = _new_position(kind, state, r, drop_from_ms, first_offsets)
        rows.append(PartitionPlan(state, r, new))
    return Plan(
        view=view,
        group=group,
        target=target.label,
        kind=kind,
        drop_from_ms=drop_from_ms if kind is Kind.DROP_FROM else None,
        partitions=rows,
        refused=refused,
    )


def _new_position(
    kind: Kind,
    state: PartitionState,
    r: Requested | None,
    drop_from_ms: int | None,
    first_offsets: Mapping[TP, int] | None,
) -> Position | None:
    topic, partition = state.key
    if kind is Kind.REBUILD:
        return Position(topic, partition, state.log_start)
    if kind is Kind.DROP_FROM:
        if drop_from_ms is None:
            raise ValueError("a drop-from plan needs drop_from_ms")
        start = r.target if r is not None and r.target < state.position else state.position
        if drop_from_ms >= FAR_FUTURE_MS:
            first = state.log_end
        elif first_offsets is None or state.key not in first_offsets:
            raise ValueError(f"a drop-from plan needs the first offset at T' of {state.key}")
        else:
            first = first_offsets[state.key]
        new = min(start, first)
        if new >= state.frontier:
            return Position(topic, partition, new)
        return Position(topic, partition, new, state.frontier, drop_from_ms)
    if kind is Kind.FORWARD and r is not None and r.target > state.position:
        guard = state.guard
        if guard is not None and guard.guard_offset is not None and r.target < guard.guard_offset:
            return Position(topic, partition, r.target, guard.guard_offset, guard.guard_min_ms)
        return Position(topic, partition, r.target)
    return None


def _names(keys: Iterable[TP]) -> str:
    return ", ".join(f"{t}:{p}" for t, p in keys)
