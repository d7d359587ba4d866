"""Deltas and offsets gathered since the last flush, aggregated in memory."""

from __future__ import annotations

from logstream.stores.base import Counter, Flush, Position, SeriesKey

__all__ = ["PendingBatch"]

TopicPartitionKey = tuple[str, int]


class PendingBatch:
    """Counter deltas per (series, key, bucket) (with their aggregate states, folded by
    `logstream.aggregate_states.Folder.fold_event`) plus, per partition, where the batch started
    (the stored offset, for fencing) and the next offset to read after it."""

    def __init__(self) -> None:
        self.counters: dict[SeriesKey, Counter] = {}
        self.started_at: dict[TopicPartitionKey, int | None] = {}
        self.next_offsets: dict[TopicPartitionKey, int] = {}
        self.max_event_ms: int | None = None
        self.dead_letters = 0
        self.events = 0

    def track(self, positions: dict[TopicPartitionKey, Position | None]) -> None:
        """Start tracking partitions at their stored positions (None: no stored row yet)."""
        for tp, position in positions.items():
            self.started_at[tp] = position.next_offset if position else None

    def forget(self, tps: list[TopicPartitionKey]) -> None:
        for tp in tps:
            self.started_at.pop(tp, None)
            self.next_offsets.pop(tp, None)

    @property
    def dirty(self) -> bool:
        return bool(self.next_offsets)

    def to_flush(self) -> Flush:
        positions = [
            (tp[0], tp[1], self.started_at.get(tp), offset)
            for tp, offset in sorted(self.next_offsets.items())
        ]
        return Flush(
            self.counters, positions, self.max_event_ms, self.dead_letters, events=self.events
        )

    def committed(self) -> None:
        """The flush landed: the new offsets become the expected ones of the next batch."""
        self.started_at.update(self.next_offsets)
        self.clear()

    def clear(self) -> None:
        self.counters = {}
        self.next_offsets = {}
        self.max_event_ms = None
        self.dead_letters = 0
        self.events = 0
