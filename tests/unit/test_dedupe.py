"""The deduplication window decides exactly as the rule on the whole log says, whatever the
flush boundaries, restarts and backfills (moves back) in between."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logstream.runtime.dedupe import EventIdWindow
from logstream.stores.base import EventIdRange

TP = ("t", 0)


def rule(ids: list[str | None], horizon: int) -> list[bool]:
    """Brute force: offset o repeats iff the same id sits in [o - horizon, o)."""
    out = []
    for o, event_id in enumerate(ids):
        window = ids[max(0, o - horizon) : o]
        out.append(event_id is not None and event_id in window)
    return out


class Simulated:
    """One partition read by a runtime that flushes, restarts and backfills; the store is a
    list of committed ranges plus the committed next offset."""

    def __init__(self, ids: list[str | None], horizon: int) -> None:
        self.ids = ids
        self.horizon = horizon
        self.stored: list[EventIdRange] = []
        self.committed = 0
        self.decisions: dict[int, bool] = {}
        self._restart(0)

    def _restart(self, at: int) -> None:
        self.window = EventIdWindow(self.horizon)
        since = at - self.horizon
        ranges = [
            r for r in sorted(self.stored, key=lambda r: r.from_offset) if r.to_offset > since
        ]
        self.position = self.window.start(TP, at, ranges) if at else 0
        if not at:
            self.window.start_empty(TP)
        self.next = at

    def read(self, count: int) -> None:
        """Read up to `count` offsets past the start (re-reads below it record only)."""
        while self.position < len(self.ids) and (self.position < self.next or count > 0):
            o = self.position
            self.position += 1
            event_id = self.ids[o]
            if self.window.warmed(TP, o):
                if event_id is not None:
                    self.window.repeat(TP, o, event_id)
                continue
            count -= 1
            repeat = event_id is not None and self.window.repeat(TP, o, event_id)
            if o in self.decisions:
                assert self.decisions[o] == repeat, f"offset {o} decided differently on replay"
            self.decisions[o] = repeat
            self.next = o + 1

    def flush(self) -> None:
        if self.next == self.committed:
            return
        ranges, expire = self.window.close_ranges({TP: self.next})
        for _topic, _partition, below in expire:
            self.stored = [r for r in self.stored if r.to_offset > below]
        for rng in ranges:
            assert rng.to_offset == self.next
            self.stored = [r for r in self.stored if r.from_offset != rng.from_offset]
            self.stored.append(rng)
        self.committed = self.next

    def crash(self) -> None:
        """Lose what was not flushed; start again from the store."""
        self._restart(self.committed)

    def backfill(self, to: int) -> None:
        """Move back to offset `to`: ranges reaching past it are dropped, as Reset does."""
        to = min(to, self.committed)
        self.stored = [r for r in self.stored if r.to_offset <= to]
        for o in range(to, len(self.ids)):
            self.decisions.pop(o, None)
        self.committed = to
        self._restart(to)


steps = st.lists(
    st.tuples(st.sampled_from(["read", "flush", "crash", "backfill"]), st.integers(0, 40)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(st.one_of(st.none(), st.sampled_from("abcdefghij")), min_size=1, max_size=120),
    horizon=st.integers(1, 30),
    plan=steps,
)
def test_decisions_follow_the_rule_through_flushes_crashes_and_backfills(ids, horizon, plan):
    sim = Simulated(ids, horizon)
    for action, n in plan:
        if action == "read":
            sim.read(n)
        elif action == "flush":
            sim.flush()
        elif action == "crash":
            sim.crash()
        else:
            sim.backfill(n)
    sim.read(len(ids))
    expected = rule(ids, horizon)
    assert [sim.decisions[o] for o in range(len(ids))] == expected


def test_expired_ranges_leave_memory_and_store():
    window = EventIdWindow(horizon=10)
    window.start_empty(TP)
    for o in range(25):
        window.repeat(TP, o, f"id-{o}")
        if o % 5 == 4:
            ranges, expire = window.close_ranges({TP: o + 1})
            assert [(r.from_offset, r.to_offset) for r in ranges] == [(o - 4, o + 1)]
            assert expire == [("t", 0, o + 1 - 10)]
    # Ranges ending at or below 25 - 10 = 15 are expired; ids 0..14 no longer match.
    assert window.repeat(TP, 25, "id-15")  # 15 >= 25 - 10
    assert not window.repeat(TP, 26, "id-14")


def test_a_hole_in_the_stored_ranges_is_read_again_from_the_log():
    window = EventIdWindow(horizon=100)
    stored = [EventIdRange("t", 0, 150, 200, b'[[150],["x"]]')]
    # Stored ranges cover [150, 200) only: the runtime must re-read from 200 - 100 = 100.
    assert window.start(TP, 200, stored) == 100
    assert window.warmed(TP, 100) and window.warmed(TP, 198)
    assert window.warmed(TP, 199)  # the last re-read offset ends the warm-up
    assert not window.warmed(TP, 200)
    covered = EventIdWindow(horizon=50)
    assert covered.start(TP, 200, stored) == 200  # [150, 200) is covered: no re-read
    assert covered.repeat(TP, 200, "x")


def test_memory_stays_within_about_twice_the_horizon():
    window = EventIdWindow(horizon=100)
    window.start_empty(TP)
    most = 0
    for o in range(20_000):
        window.repeat(TP, o, f"id-{o}")
        if o % 7 == 6:
            window.close_ranges({TP: o + 1})
            most = max(most, window.held(TP))
    assert 100 <= most <= 2 * (100 + 7)


def test_overlapping_ranges_after_a_warm_up_count_as_covered():
    """A warm-up stores its whole span beside older, shorter ranges: no false hole."""

    def rng(start: int, end: int) -> EventIdRange:
        ids = [f"id-{o}" for o in range(start, end)]
        payload = f"[{list(range(start, end))}, {ids}]".replace("'", '"').encode()
        return EventIdRange("t", 0, start, end, payload)

    window = EventIdWindow(horizon=1000)
    stored = [rng(0, 400), rng(100, 200), rng(200, 250)]
    assert window.start(TP, 400, stored) == 400  # covered from 0: nothing to re-read
    assert window.repeat(TP, 400, "id-150")
