"""Best-effort offset commits to Kafka, for lag tools only.

The view store holds the authoritative offsets (in the same transaction as the counters),
so the Kafka copy is a courtesy to `kafka-consumer-groups` and friends. It is therefore sent
asynchronously, by the consume thread, after the store accepted the offsets: a synchronous
commit waits for the group coordinator, and from the commit thread even an asynchronous one
blocks while the consume thread is in a rebalance callback (see committer.py). Failures are
reported by librdkafka through `on_commit` (during the loop's polls) and logged once per
outage.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

__all__ = ["KafkaOffsetCommits"]

log = logging.getLogger("logstream.runtime")


class KafkaOffsetCommits:
    """Sends offsets without waiting; logs the first failure and the recovery."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._failing = False

    def commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        """Queue the commit and return at once. Call it from the consume thread only: from
        any other thread it blocks while that thread is in a rebalance callback."""
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except (KafkaException, RuntimeError) as exc:  # RuntimeError: the consumer is closed
            log.warning("%s: Kafka offset commit not sent: %s", self._label, exc)

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's `on_commit` callback: the result of one asynchronous commit."""
        failure = err or next((tp.error for tp in partitions if tp.error is not None), None)
        if failure is not None and not self._failing:
            self._failing = True
            log.warning(
                "%s: Kafka offset commit failed (%s); lag tools may show old offsets until "
                "it succeeds again (the view store keeps the exact ones)",
                self._label,
                failure,
            )
        elif failure is None and self._failing:
            self._failing = False
            log.info("%s: Kafka offset commits succeed again", self._label)
