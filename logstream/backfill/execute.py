"""Plan a backfill against the live log and store, and execute it.

Execution order (the store is authoritative, Kafka's committed offsets follow it):
  1. refuse if the plan is refused or the group has active members (a running consumer
     would keep writing from its old positions);
  2. check the store still holds the positions the plan was made from;
  3. `store.reset(plan.reset())`: drop the view state and set positions (with the replay
     guards) in ONE store transaction;
  4. set the group's committed offsets in Kafka to the new positions, check every
     partition's error, and read them back.
A consumer that starts between 1 and 3 is fenced at its first flush (its expected offsets no
longer match the store) and rewinds to the new positions, so the view stays exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from logstream.backfill.kafka_state import KafkaState
from logstream.backfill.planner import (
    FAR_FUTURE_MS,
    BackfillRefused,
    Kind,
    LogFacts,
    PartitionState,
    Plan,
    backward_partitions,
    build_plan,
    decide_kind,
    drop_time,
    resolve_targets,
)
from logstream.backfill.targets import Mode, Scope, Target, TargetError
from logstream.errors import LogstreamError
from logstream.stores.base import Position, ViewStore
from logstream.view import View

__all__ = ["Executed", "execute_plan", "make_plan", "scope_keys"]

TP = tuple[str, int]


@dataclass(frozen=True)
class Executed:
    """What --execute did: the plan applied and the Kafka offsets set (and verified)."""

    plan: Plan
    committed: dict[TP, int]


def scope_keys(
    target: Target, scopes: list[Scope], partitions: Iterable[TP], topics: Iterable[str]
) -> set[TP]:
    """The partitions the target applies to: the --topic scope, the file's, or all."""
    known = set(partitions)
    view_topics = set(topics)
    if target.mode is Mode.FROM_FILE:
        if scopes:
            raise TargetError("--from-file names its partitions: leave out --topic")
        unknown = sorted(set(target.file_offsets) - known)
        if unknown:
            raise TargetError(
                f"--from-file names partitions the view does not read: "
                f"{', '.join(f'{t}:{p}' for t, p in unknown)}"
            )
        return set(target.file_offsets)
    if not scopes:
        return known
    chosen: set[TP] = set()
    for scope in scopes:
        if scope.topic not in view_topics:
            raise TargetError(
                f"--topic {scope.topic}: the view reads {', '.join(sorted(view_topics))}"
            )
        if scope.partitions is None:
            chosen |= {tp for tp in known if tp[0] == scope.topic}
            continue
        for partition in scope.partitions:
            if (scope.topic, partition) not in known:
                raise TargetError(f"--topic {scope.topic}: no partition {partition}")
            chosen.add((scope.topic, partition))
    return chosen


def make_plan(
    view: View,
    target: Target,
    scopes: list[Scope],
    *,
    positions: Mapping[TP, Position],
    log: LogFacts,
    group_id: str | None = None,
    topics: tuple[str, ...] | None = None,
    now_ms: int | None = None,
) -> Plan:
    """Plan from the stored `positions` and what `log` tells (no change is made).

    `log` is a KafkaState in production; `group_id` and `topics` default to the view's.
    """
    topics = topics or view.topics
    group = group_id or view.name
    all_tps = log.partitions(topics)
    in_scope = scope_keys(target, scopes, all_tps, topics)
    marks = log.watermarks(all_tps)
    states = [PartitionState(t, p, *marks[(t, p)], positions.get((t, p))) for t, p in all_tps]
    ends = {key: high for key, (_low, high) in marks.items()}
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    time_ms = target.time_at(now)
    at_time = None
    if time_ms is not None:
        at_time = log.offsets_for_time(sorted(in_scope), time_ms, ends)
    resolved = resolve_targets(target, states, in_scope, at_time)
    drop_ms = first = None
    if decide_kind(states, resolved) is Kind.DROP_FROM:
        oldest: Iterable[int | None] = ()
        if time_ms is None:
            oldest = log.oldest_timestamps(backward_partitions(states, resolved)).values()
        drop_ms = drop_time(view.bucket_ms, time_ms, oldest, states)
        if drop_ms < FAR_FUTURE_MS:
            first = log.offsets_for_time(all_tps, drop_ms, ends)
    return build_plan(
        view=view.name,
        group=group,
        target=target,
        states=states,
        resolved=resolved,
        drop_from_ms=drop_ms,
        first_offsets=first,
    )


def execute_plan(plan: Plan, *, store: ViewStore, kafka: KafkaState) -> Executed:
    """Apply a plan: one store transaction, then Kafka's committed offsets, verified."""
    if plan.refused:
        raise BackfillRefused(plan.refused[0])
    members = kafka.active_members(plan.group)
    if members:
        raise BackfillRefused(
            f"group {plan.group!r} has {members} active member(s): stop its consumers "
            "(every `logstream consume` of this view) and run the backfill again"
        )
    reset = plan.reset()
    if reset is None:
        return Executed(plan, {})
    now = store.positions()
    for row in plan.partitions:
        before = row.state.stored
        after = now.get(row.state.key)
        if (before.next_offset if before else None) != (after.next_offset if after else None):
            raise LogstreamError(
                f"the view moved on {row.state.topic}:{row.state.partition} while planning; "
                "run the backfill again"
            )
    store.reset(reset)
    offsets = plan.new_offsets
    kafka.set_committed_offsets(plan.group, offsets)
    return Executed(plan, offsets)
