"""Event topics and their dead-letter twins: the log is the truth, so retention is forever."""

from __future__ import annotations

from logstream.kafka.admin import TopicSpec
from logstream.settings import Settings

__all__ = ["dlq_topic", "event_topic_specs", "resolve_topics"]

EVENT_TOPIC_CONFIG = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "message.timestamp.type": "CreateTime",
    "cleanup.policy": "delete",
}


def resolve_topics(settings: Settings, topics: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The topic names in this deployment: the catalogue's names behind `topic_prefix`."""
    return tuple(settings.topic_prefix + topic for topic in topics)


def dlq_topic(topic: str) -> str:
    """Where messages of `topic` that cannot be decoded or applied are parked."""
    return f"{topic}.dlq"


def event_topic_specs(
    settings: Settings,
    topics: list[str],
    *,
    partitions: int | None = None,
    replication_factor: int | None = None,
) -> list[TopicSpec]:
    """Specs for each event topic and its DLQ (one DLQ partition). With 3 or more replicas,
    `min.insync.replicas=2`: an acknowledged write survives the loss of any one broker."""
    parts = partitions or settings.topic_partitions
    replicas = replication_factor or settings.replication_for()
    config = dict(EVENT_TOPIC_CONFIG)
    if replicas >= 3:
        config["min.insync.replicas"] = "2"
    specs = []
    for topic in topics:
        specs.append(TopicSpec(topic, parts, replicas, config))
        specs.append(TopicSpec(dlq_topic(topic), 1, replicas, config))
    return specs
