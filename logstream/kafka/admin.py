"""Admin operations with every per-partition / per-topic error checked (docs/conventions.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from logstream.errors import LogstreamError
from logstream.kafka.config import admin_config
from logstream.kafka.topic_ready import wait_for_leaders
from logstream.settings import Settings

__all__ = ["TopicSpec", "create_topics", "make_admin", "topic_watermarks"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def make_admin(settings: Settings) -> AdminClient:
    return AdminClient(admin_config(settings))


def create_topics(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout_s: float = 30.0
) -> dict[str, str]:
    """Create missing topics; returns name -> "created" | "exists". Idempotent.

    Returns only once every partition of every topic has a leader that answers for it
    (bounded by `timeout_s`), so callers may produce or read watermarks right away.
    """
    specs = list(specs)
    if not specs:
        return {}
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                config=s.config,
            )
            for s in specs
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    outcome: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result()
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise LogstreamError(f"could not create topic {name!r}: {error}") from exc
    # A topic that existed keeps its own partition count: wait for whatever it has.
    wait_for_leaders(
        admin,
        {s.name: s.partitions if outcome[s.name] == "created" else 1 for s in specs},
        timeout_s,
    )
    return outcome


def topic_watermarks(
    consumer: Consumer, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[tuple[str, int], tuple[int, int]]:
    """(log start, log end) of every partition of `topics`; a missing topic is an error."""
    metadata = consumer.list_topics(timeout=timeout_s)
    marks: dict[tuple[str, int], tuple[int, int]] = {}
    for topic in topics:
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise LogstreamError(
                f"topic {topic!r} not found: create it first (logstream topics create)"
            )
        for partition in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s, cached=False
            )
            marks[(topic, partition)] = (low, high)
    return marks
