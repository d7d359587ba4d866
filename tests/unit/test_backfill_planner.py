"""Backfill planning without a broker: parsing, Kafka-like targets, and exactness.

The exactness tests replay plans against an in-memory log and a bucketed counter view that
applies the runtime's guard rule (`Position.skips`), so any planning bug that loses or
doubles a late event shows up as a count mismatch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from logstream.backfill.execute import make_plan, scope_keys
from logstream.backfill.planner import (
    FAR_FUTURE_MS,
    Kind,
    PartitionState,
    Plan,
    Requested,
    build_plan,
    decide_kind,
    drop_time,
    resolve_targets,
)
from logstream.backfill.targets import (
    Mode,
    Scope,
    Target,
    TargetError,
    format_ms,
    parse_datetime,
    parse_duration,
    parse_scope,
)
from logstream.stores.base import Position, Reset
from logstream.view import View

TP = tuple[str, int]
BUCKET = 10


class TinyView(View):
    name = "tiny"
    topics = ("t",)
    bucket_ms = BUCKET

    def keys(self, event, event_ms):
        return [("n", "", event_ms - event_ms % BUCKET)]


class MemoryLog:
    """The LogFacts of an in-memory log: timestamps per partition, offset = index."""

    def __init__(self, logs: Mapping[TP, list[int]], starts: Mapping[TP, int] | None = None):
        self.logs = dict(logs)
        self.starts = dict(starts or {})

    def partitions(self, topics: Iterable[str]) -> list[TP]:
        wanted = set(topics)
        return sorted(tp for tp in self.logs if tp[0] in wanted)

    def watermarks(self, tps: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        return {tp: (self.starts.get(tp, 0), len(self.logs[tp])) for tp in tps}

    def offsets_for_time(
        self, tps: Iterable[TP], time_ms: int, ends: Mapping[TP, int]
    ) -> dict[TP, int]:
        out = {}
        for tp in tps:
            start = self.starts.get(tp, 0)
            hits = [o for o, ts in enumerate(self.logs[tp]) if o >= start and ts >= time_ms]
            out[tp] = hits[0] if hits else ends[tp]
        return out

    def oldest_timestamps(self, ranges: Mapping[TP, tuple[int, int]]) -> dict[TP, int | None]:
        return {tp: min(self.logs[tp][a:b]) if a < b else None for tp, (a, b) in ranges.items()}


class SimView:
    """Counts per bucket plus stored positions, updated like the runtime and the store."""

    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.counts: Counter[int] = Counter()
        self.positions: dict[TP, Position] = {}

    def consume(self, limits: Mapping[TP, int] | None = None) -> None:
        for tp, events in self.log.logs.items():
            start = self.log.starts.get(tp, 0)
            pos = self.positions.get(tp) or Position(tp[0], tp[1], start)
            first = max(pos.next_offset, start)
            last = len(events) if limits is None else min(len(events), first + limits[tp])
            for offset in range(first, last):
                ts = events[offset]
                if not pos.skips(offset, ts):
                    self.counts[ts - ts % BUCKET] += 1
            if last > first or tp in self.positions:
                self.positions[tp] = Position(
                    tp[0], tp[1], max(last, pos.next_offset), pos.guard_offset, pos.guard_min_ms
                )

    def reset(self, reset: Reset) -> None:
        if reset.drop_from_ms is None:
            self.counts.clear()
            self.positions.clear()
        else:
            for bucket in [b for b in self.counts if b >= reset.drop_from_ms]:
                del self.counts[bucket]
        for p in reset.positions:
            self.positions[(p.topic, p.partition)] = p

    def expected(self) -> Counter[int]:
        out: Counter[int] = Counter()
        for tp, events in self.log.logs.items():
            for ts in events[self.log.starts.get(tp, 0) :]:
                out[ts - ts % BUCKET] += 1
        return out


def plan_for(sim: SimView, target: Target, scopes: list[Scope] | None = None, now=0) -> Plan:
    return make_plan(
        TinyView(), target, scopes or [], positions=sim.positions, log=sim.log, now_ms=now
    )


def apply(sim: SimView, plan: Plan) -> None:
    reset = plan.reset()
    if reset is not None:
        sim.reset(reset)


# ----- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("PT6H", 6 * 3_600_000),
        ("P2D", 2 * 86_400_000),
        ("P1DT12H", 36 * 3_600_000),
        ("PT1.5S", 1500),
        ("pt90m", 90 * 60_000),
        ("90m", 90 * 60_000),
        ("2d", 2 * 86_400_000),
        ("1h30m", 90 * 60_000),
        ("1w", 7 * 86_400_000),
        ("500ms", 500),
    ],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "P", "PT", "6", "six hours", "-PT6H", "PT0S", "0m", "2x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(TargetError):
        parse_duration(text)


def test_datetimes_are_rfc3339_and_default_to_utc_like_kafka() -> None:
    ms = 1_767_312_000_000  # 2026-01-02T00:00:00Z
    assert parse_datetime("2026-01-02T00:00:00Z") == ms
    assert parse_datetime("2026-01-02T00:00:00.000") == ms
    assert parse_datetime("2026-01-02T01:00:00+01:00") == ms
    assert format_ms(ms + 5) == "2026-01-02T00:00:00.005Z"
    for bad in ("2026-01-02", "yesterday", "2026-13-01T00:00:00Z"):
        with pytest.raises(TargetError):
            parse_datetime(bad)


def test_exactly_one_target() -> None:
    with pytest.raises(TargetError, match="exactly one"):
        Target.from_options()
    with pytest.raises(TargetError, match="--to-earliest, --shift-by"):
        Target.from_options(to_earliest=True, shift_by=-3)
    assert Target.from_options(shift_by=0).mode is Mode.SHIFT_BY
    assert Target.from_options(to_offset=0).offset == 0
    with pytest.raises(TargetError):
        Target.from_options(to_offset=-1)


def test_scope_and_csv(tmp_path: Path) -> None:
    assert parse_scope(["likes", "other:2,0"]) == [Scope("likes"), Scope("other", (0, 2))]
    for bad in ("likes:", ":1", "likes:a"):
        with pytest.raises(TargetError):
            parse_scope([bad])
    csv_file = tmp_path / "offsets.csv"
    csv_file.write_text("topic,partition,offset\nt,0,5\n\nt,1,7\n")
    target = Target.from_options(from_file=csv_file)
    assert target.file_offsets == {("t", 0): 5, ("t", 1): 7}
    csv_file.write_text("t,0,5\nt,0,6\n")
    with pytest.raises(TargetError, match="twice"):
        Target.from_options(from_file=csv_file)
    csv_file.write_text("t,0\n")
    with pytest.raises(TargetError, match=":1"):
        Target.from_options(from_file=csv_file)


def test_scope_keys_checks_topics_and_partitions() -> None:
    tps = [("t", 0), ("t", 1)]
    target = Target.from_options(to_earliest=True)
    assert scope_keys(target, [], tps, ["t"]) == set(tps)
    assert scope_keys(target, [Scope("t", (1,))], tps, ["t"]) == {("t", 1)}
    with pytest.raises(TargetError, match="reads t"):
        scope_keys(target, [Scope("u")], tps, ["t"])
    with pytest.raises(TargetError, match="no partition 5"):
        scope_keys(target, [Scope("t", (5,))], tps, ["t"])


# ----- targets like kafka-consumer-groups -------------------------------------------------------
def states(stored: Mapping[int, int | None], start: int = 10, end: int = 100):
    return [
        PartitionState("t", p, start, end, None if s is None else Position("t", p, s))
        for p, s in stored.items()
    ]


def test_targets_are_clamped_like_kafka_but_below_start_is_refused() -> None:
    st_ = states({0: 50, 1: None})
    scope = {("t", 0), ("t", 1)}
    resolve = lambda **kw: resolve_targets(Target.from_options(**kw), st_, scope)  # noqa: E731
    assert resolve(to_earliest=True)[("t", 0)] == Requested(10, 10)
    assert resolve(to_latest=True)[("t", 1)] == Requested(100, 100)
    assert resolve(to_offset=500)[("t", 0)] == Requested(500, 100)
    assert resolve(to_offset=3)[("t", 0)] == Requested(3, 10)
    assert resolve(shift_by=-45)[("t", 0)] == Requested(5, 10)
    assert resolve(shift_by=-5)[("t", 1)] == Requested(5, 10)  # no position: the log start
    below = build_plan(
        view="v",
        group="g",
        target=Target.from_options(to_offset=3),
        states=st_,
        resolved=resolve(to_offset=3),
        drop_from_ms=FAR_FUTURE_MS,
    )
    assert below.refused and "below its log start offset 10" in below.refused[0]
    shifted = Target.from_options(shift_by=-45)
    plan = build_plan(
        view="v",
        group="g",
        target=shifted,
        states=st_,
        resolved=resolve(shift_by=-45),
        drop_from_ms=FAR_FUTURE_MS,
    )
    assert plan.refused == []


def test_kinds() -> None:
    st_ = states({0: 50, 1: 60})
    all_tps = {("t", 0), ("t", 1)}
    earliest = resolve_targets(Target.from_options(to_earliest=True), st_, all_tps)
    assert decide_kind(st_, earliest) is Kind.REBUILD
    one = resolve_targets(Target.from_options(to_earliest=True), st_, {("t", 0)})
    assert decide_kind(st_, one) is Kind.DROP_FROM  # not every partition: keep the rest
    assert decide_kind(st_, {("t", 0): Requested(20, 20)}) is Kind.DROP_FROM
    assert decide_kind(st_, {("t", 0): Requested(70, 70)}) is Kind.FORWARD
    assert decide_kind(st_, {("t", 0): Requested(50, 50)}) is Kind.NOTHING
    mixed = {("t", 0): Requested(55, 55), ("t", 1): Requested(55, 55)}
    assert decide_kind(st_, mixed) is Kind.MIXED
    plan = build_plan(
        view="v", group="g", target=Target.from_options(to_offset=55), states=st_, resolved=mixed
    )
    assert plan.refused and "run two backfills" in plan.refused[0]


def test_drop_time_floors_and_respects_an_unfinished_guard() -> None:
    st_ = states({0: 50})
    assert drop_time(BUCKET, 1234, [], st_) == 1230
    assert drop_time(BUCKET, None, [57, None, 43], st_) == 40
    assert drop_time(BUCKET, None, [None], st_) == FAR_FUTURE_MS
    guarded = [PartitionState("t", 0, 0, 100, Position("t", 0, 30, 60, 20))]
    assert drop_time(BUCKET, 1234, [], guarded) == 20
    done = [PartitionState("t", 0, 0, 100, Position("t", 0, 70, 60, 20))]
    assert drop_time(BUCKET, 1234, [], done) == 1230


# ----- exactness against an in-memory log -----------------------------------------------------
LATE_LOG = {
    # offset:     0   1   2   3   4   5   6   7   8   9
    ("t", 0): [5, 12, 18, 3, 25, 31, 9, 40, 44, 27],
    ("t", 1): [1, 2, 15, 16, 4, 33, 35, 21, 50, 8],
}


def built(log: Mapping[TP, list[int]] = LATE_LOG) -> SimView:
    sim = SimView(MemoryLog(log))
    sim.consume()
    assert sim.counts == sim.expected()
    return sim


def test_reset_to_datetime_with_late_events_is_exact() -> None:
    sim = built()
    plan = plan_for(sim, Target.from_options(to_datetime="1970-01-01T00:00:00.025Z"))
    assert plan.kind is Kind.DROP_FROM and plan.drop_from_ms == 20
    assert plan.dropped_buckets == "from 1970-01-01T00:00:00.020Z"
    # target = first offset with ts >= 25; replay from the first with ts >= 20
    rows = {p.state.partition: p for p in plan.partitions}
    assert (rows[0].requested.target, rows[0].replay_from) == (4, 4)  # type: ignore[union-attr]
    assert (rows[1].requested.target, rows[1].replay_from) == (5, 5)  # type: ignore[union-attr]
    assert rows[0].new == Position("t", 0, 4, 10, 20)
    apply(sim, plan)
    sim.consume()
    assert sim.counts == sim.expected()


def test_scoped_offset_reset_recomputes_late_events_everywhere() -> None:
    sim = built()
    plan = plan_for(sim, Target.from_options(to_offset=6), [Scope("t", (0,))])
    # oldest event in t:0 offsets 6..9 is 9 -> T' = 0: everything from 0 on is redone
    assert plan.drop_from_ms == 0
    apply(sim, plan)
    sim.consume()
    assert sim.counts == sim.expected()


def test_second_reset_during_an_unfinished_replay_keeps_the_first_guard() -> None:
    sim = built()
    apply(sim, plan_for(sim, Target.from_options(to_datetime="1970-01-01T00:00:00.025Z")))
    sim.consume({("t", 0): 1, ("t", 1): 10})  # t:0 replays offset 4 only; guard up to 10
    assert sim.positions[("t", 0)] == Position("t", 0, 5, 10, 20)
    plan = plan_for(sim, Target.from_options(to_offset=8), [Scope("t", (1,))])
    rows = {p.state.partition: p for p in plan.partitions}
    # t:0 is out of scope but must keep skipping its already-counted old events up to 10
    assert rows[0].new is not None and rows[0].new.guard_offset == 10
    apply(sim, plan)
    sim.consume()
    assert sim.counts == sim.expected()


def test_forward_records_skipped_ranges_and_drops_nothing() -> None:
    sim = SimView(MemoryLog(LATE_LOG))
    sim.consume({("t", 0): 3, ("t", 1): 10})
    plan = plan_for(sim, Target.from_options(to_latest=True))
    assert plan.kind is Kind.FORWARD and plan.dropped_buckets == "none"
    reset = plan.reset()
    assert reset is not None and reset.drop_from_ms == FAR_FUTURE_MS
    assert list(reset.skipped) == [("t", 0, 3, 10)]
    assert [p.partition for p in reset.positions] == [0]


def test_full_rebuild_wipes_everything() -> None:
    sim = built()
    plan = plan_for(sim, Target.from_options(to_earliest=True))
    assert plan.kind is Kind.REBUILD and plan.dropped_buckets == "all"
    reset = plan.reset()
    assert reset is not None and reset.drop_from_ms is None
    apply(sim, plan)
    assert not sim.counts
    sim.consume()
    assert sim.counts == sim.expected()


def test_json_has_every_column() -> None:
    plan = plan_for(built(), Target.from_options(shift_by=-3))
    data = plan.to_json()
    assert data["kind"] == "drop-from" and data["refused"] == []
    row = data["partitions"][0]
    assert set(row) >= {
        "topic",
        "partition",
        "stored_offset",
        "target_offset",
        "replay_from_offset",
        "events_to_replay",
        "log_start_offset",
    }
    assert row["stored_offset"] == 10 and row["target_offset"] == 7


timestamps = st.lists(st.integers(min_value=0, max_value=99), min_size=0, max_size=25)


@st.composite
def targets(draw: st.DrawFn, log: Mapping[TP, list[int]]) -> tuple[Target, list[Scope]]:
    mode = draw(st.sampled_from(["earliest", "datetime", "offset", "shift", "file"]))
    scopes: list[Scope] = []
    if mode != "file" and draw(st.booleans()):
        scopes = [Scope("t", (draw(st.sampled_from(sorted(p for _, p in log))),))]
    if mode == "earliest":
        return Target(Mode.TO_EARLIEST, "e"), scopes
    if mode == "datetime":
        return Target(Mode.TO_DATETIME, "d", time_ms=draw(st.integers(0, 110))), scopes
    if mode == "offset":
        return Target(Mode.TO_OFFSET, "o", offset=draw(st.integers(0, 25))), scopes
    if mode == "shift":
        return Target(Mode.SHIFT_BY, "s", shift=draw(st.integers(-25, 0))), scopes
    offsets = {tp: draw(st.integers(0, len(ev))) for tp, ev in log.items() if draw(st.booleans())}
    assume(offsets)
    return Target(Mode.FROM_FILE, "f", file_offsets=offsets), []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), logs=st.lists(timestamps, min_size=1, max_size=3))
def test_any_sequence_of_backward_resets_is_exact(data: st.DataObject, logs: list) -> None:
    """Build partway, reset, replay partway, reset again, replay fully: counts are exact."""
    log = {("t", p): events for p, events in enumerate(logs)}
    sim = SimView(MemoryLog(log))
    sim.consume({tp: data.draw(st.integers(0, 25)) for tp in log})
    for _round in range(data.draw(st.integers(1, 3))):
        target, scopes = data.draw(targets(log))
        plan = plan_for(sim, target, scopes)
        if plan.refused or plan.kind in (Kind.FORWARD, Kind.MIXED):
            continue
        apply(sim, plan)
        sim.consume({tp: data.draw(st.integers(0, 6)) for tp in log})
    sim.consume()
    assert sim.counts == sim.expected()
