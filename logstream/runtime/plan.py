"""How far a view stands behind the log: per partition stored offset, end offset and lag."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer

from logstream.kafka.admin import topic_watermarks
from logstream.kafka.config import consumer_config
from logstream.settings import Settings
from logstream.stores.base import Position

__all__ = ["PartitionLag", "partition_lags"]


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    stored_offset: int | None
    log_start: int
    log_end: int

    @property
    def lag(self) -> int:
        """Events between the view's position (or the log start) and the log end."""
        start = self.stored_offset if self.stored_offset is not None else self.log_start
        return max(0, self.log_end - max(start, self.log_start))


def partition_lags(
    settings: Settings,
    topics: tuple[str, ...] | list[str],
    positions: dict[tuple[str, int], Position],
    timeout_s: float = 10.0,
) -> list[PartitionLag]:
    """Watermarks of every partition of `topics` joined with the store's positions."""
    consumer = Consumer(consumer_config(settings, "logstream-lag-probe"))
    try:
        marks = topic_watermarks(consumer, topics, timeout_s)
    finally:
        consumer.close()
    lags = []
    for (topic, partition), (low, high) in marks.items():
        stored = positions.get((topic, partition))
        lags.append(
            PartitionLag(topic, partition, stored.next_offset if stored else None, low, high)
        )
    return lags
