"""Topic creation returns only when every partition's leader answers for it."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from logstream.kafka.admin import TopicSpec, create_topics
from logstream.kafka.topic_ready import TopicNotReadyError, wait_for_leaders


def test_watermarks_answer_right_after_creation(admin, kafka_bootstrap, unique_name):
    """The flake this guards against: NOT_LEADER_FOR_PARTITION from get_watermark_offsets
    straight after CreateTopics returned. Several topics, many partitions, no retry."""
    names = [unique_name("ready") for _ in range(3)]
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"r-{uuid.uuid4()}"})
    try:
        outcome = create_topics(admin, [TopicSpec(n, 12, 1, {}) for n in names], timeout_s=60)
        assert set(outcome.values()) == {"created"}
        for name in names:
            for p in range(12):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(name, p), timeout=10, cached=False
                )
                assert (low, high) == (0, 0)
    finally:
        consumer.close()
        for future in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


def test_missing_topic_fails_within_the_bound_naming_it(admin, unique_name):
    name = unique_name("never-created")
    with pytest.raises(TopicNotReadyError, match=rf"after 2s: {name}: not in metadata yet"):
        wait_for_leaders(admin, {name: 3}, timeout_s=2)
