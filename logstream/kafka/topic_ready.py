"""Wait until new topics can be used: every partition has a leader that answers for it.

Why: CreateTopics returns once the controller recorded the topic, before each partition's
leader has applied that record. A ListOffsets (watermarks) or a produce right after can get
NOT_LEADER_FOR_PARTITION or UNKNOWN_TOPIC_OR_PART (seen on a loaded machine). A ListOffsets
that succeeds for a partition proves its leader knows it leads it, so that is what we poll.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from logstream.errors import LogstreamError

__all__ = ["TopicNotReadyError", "wait_for_leaders"]

_POLL_S = 0.1


class TopicNotReadyError(LogstreamError):
    """A topic's partitions did not all get an answering leader within the bound."""


def _unready(admin: AdminClient, expected: dict[str, int], timeout_s: float) -> list[str]:
    """What is not ready yet, e.g. `likes[3]: no leader`; empty when everything is."""
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return [f"metadata: {exc.args[0]}"]
    problems: list[str] = []
    probe: dict[TopicPartition, OffsetSpec] = {}
    for topic, partitions in expected.items():
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            problems.append(f"{topic}: not in metadata yet")
            continue
        if len(info.partitions) < partitions:
            problems.append(f"{topic}: {len(info.partitions)} of {partitions} partitions known")
        for p, part in sorted(info.partitions.items()):
            if part.leader < 0 or part.error is not None:
                problems.append(f"{topic}[{p}]: no leader")
            else:
                probe[TopicPartition(topic, p)] = OffsetSpec.latest()
    if problems or not probe:
        return problems or ["no partitions"]
    futures = admin.list_offsets(probe, request_timeout=max(1.0, timeout_s))
    for tp, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            problems.append(f"{tp.topic}[{tp.partition}]: {exc.args[0]}")
    return problems


def wait_for_leaders(
    admin: AdminClient, expected: dict[str, int] | Iterable[tuple[str, int]], timeout_s: float
) -> None:
    """Return once every partition of each `topic -> partition count` answers from its
    leader; raise `TopicNotReadyError` naming what is missing after `timeout_s`."""
    wanted = dict(expected)
    if not wanted:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        problems = _unready(admin, wanted, min(5.0, max(0.5, left)))
        if not problems:
            return
        if time.monotonic() >= deadline:
            shown = "; ".join(problems[:3]) + (
                f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            )
            raise TopicNotReadyError(
                f"topics not ready after {timeout_s:g}s: {shown}; are all brokers running "
                "(logstream broker status)?"
            )
        time.sleep(_POLL_S)
