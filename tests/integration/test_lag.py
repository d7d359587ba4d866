"""Lag against a real log whose start was moved by retention (delete-records): records
deleted before the view applied them are counted as lost, not hidden in the lag."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer, TopicPartition

from logstream.freshness import EndOffsets
from logstream.metrics.arrivals import LogEndHistory
from logstream.metrics.lag import view_lag
from logstream.settings import Settings
from logstream.stores.base import Position


def test_records_deleted_before_they_were_applied_count_as_lost(
    settings: Settings, make_topic: Any, admin: Any
):
    topic = make_topic(2)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for partition in (0, 1):
        for i in range(10):
            producer.produce(topic, b"x", partition=partition, key=str(i).encode())
    assert producer.flush(30) == 0
    [deleted] = admin.delete_records([TopicPartition(topic, 0, 6)]).values()
    deleted.result(timeout=30)  # partition 0 now starts at 6; partition 1 at 0

    ends = EndOffsets(settings, ttl_s=0)
    try:
        # The view stands at 2 in partition 0 (4 records gone unapplied), at 3 in partition 1.
        positions = {(topic, 0): Position(topic, 0, 2), (topic, 1): Position(topic, 1, 3)}
        lag = view_lag([topic], positions, ends, LogEndHistory())
        assert lag is not None
        by_partition = {p.partition: p for p in lag.partitions}
        assert (by_partition[0].lost_to_retention, by_partition[0].lag_offsets) == (4, 4)
        assert (by_partition[1].lost_to_retention, by_partition[1].lag_offsets) == (0, 7)
        assert lag.lost_to_retention == 4

        # A view that never stored a position lost all that was deleted; one past the gap
        # lost nothing.
        fresh = view_lag([topic], {}, ends, LogEndHistory())
        assert fresh is not None and fresh.lost_to_retention == 6
        past = {(topic, 0): Position(topic, 0, 8), (topic, 1): Position(topic, 1, 10)}
        moved = view_lag([topic], past, ends, LogEndHistory())
        assert moved is not None and moved.lost_to_retention == 0 and moved.offsets == 2
    finally:
        ends.close()
