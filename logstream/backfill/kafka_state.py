"""The Kafka facts a backfill needs, and the group-offset writes it makes, errors checked.

Every admin result is checked per group and per partition (docs/conventions.md), because a
partial success here would leave Kafka's committed offsets silently different from the
store's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from logstream.errors import LogstreamError
from logstream.kafka.config import admin_config, consumer_config
from logstream.settings import Settings

__all__ = ["KafkaState"]

TP = tuple[str, int]

PROBE_GROUP = "logstream-backfill-probe"
"""Group id of the probe consumer: it only assigns, never joins a group or commits."""


class KafkaState:
    """Watermarks, offsets-for-times, scans and group offsets; clients created lazily."""

    def __init__(self, settings: Settings, timeout_s: float = 15.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(self._settings, PROBE_GROUP))
        return self._consumer

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(admin_config(self._settings))
        return self._admin

    # ----- the log -------------------------------------------------------------------------
    def partitions(self, topics: Iterable[str]) -> list[TP]:
        """Every partition of `topics`, sorted; a missing topic is an error."""
        metadata = self.consumer.list_topics(timeout=self._timeout_s)
        found: list[TP] = []
        for topic in topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                raise LogstreamError(f"topic {topic!r} not found (logstream topics create)")
            found.extend((topic, p) for p in info.partitions)
        return sorted(found)

    def watermarks(self, tps: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        """(log start, log end) per partition, fresh from the leader."""
        marks = {}
        for topic, partition in tps:
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self._timeout_s, cached=False
                )
            except KafkaException as exc:
                raise LogstreamError(f"watermarks of {topic}:{partition}: {exc}") from exc
            marks[(topic, partition)] = (int(low), int(high))
        return marks

    def offsets_for_time(
        self, tps: Iterable[TP], time_ms: int, ends: Mapping[TP, int]
    ) -> dict[TP, int]:
        """First offset with timestamp >= time_ms per partition; the log end if none."""
        request = [TopicPartition(t, p, max(0, time_ms)) for t, p in tps]
        if not request:
            return {}
        try:
            answer = self.consumer.offsets_for_times(request, timeout=self._timeout_s)
        except KafkaException as exc:
            raise LogstreamError(f"offsets for time {time_ms}: {exc}") from exc
        result: dict[TP, int] = {}
        for tp in answer:
            key = (tp.topic, tp.partition)
            if tp.error is not None:
                raise LogstreamError(f"offset for time of {tp.topic}:{tp.partition}: {tp.error}")
            result[key] = int(tp.offset) if tp.offset >= 0 else ends[key]
        return result

    def oldest_timestamps(
        self, ranges: Mapping[TP, tuple[int, int]], timeout_s: float = 300.0
    ) -> dict[TP, int | None]:
        """The oldest record timestamp in each [start, end) offset range (None if empty).

        Reads uncommitted too: an aborted record can only make the answer older, which drops
        more buckets and stays exact, and a scan must not stall at an open transaction.
        """
        oldest: dict[TP, int | None] = {key: None for key in ranges}
        todo = {key: span for key, span in ranges.items() if span[0] < span[1]}
        if not todo:
            return oldest
        scanner = Consumer(
            consumer_config(
                self._settings,
                PROBE_GROUP,
                **{"isolation.level": "read_uncommitted", "enable.partition.eof": True},
            )
        )
        deadline = time.monotonic() + timeout_s
        try:
            scanner.assign([TopicPartition(t, p, start) for (t, p), (start, _e) in todo.items()])
            while todo:
                if time.monotonic() > deadline:
                    raise LogstreamError(f"timed out scanning {sorted(todo)} for event times")
                for msg in scanner.consume(num_messages=5000, timeout=0.1):
                    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                    if topic is None or partition is None:
                        continue
                    key = (topic, partition)
                    span = todo.get(key)
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            todo.pop(key, None)
                            continue
                        raise LogstreamError(f"scan of {topic}:{partition}: {error.str()}")
                    if span is None or offset is None:
                        continue
                    if offset < span[1]:
                        ts = msg.timestamp()[1]
                        current = oldest[key]
                        oldest[key] = ts if current is None else min(current, ts)
                    if offset >= span[1] - 1:
                        todo.pop(key, None)
                        scanner.pause([TopicPartition(topic, partition)])
                for key in list(todo):  # control records may end a range: check positions
                    [pos] = scanner.position([TopicPartition(*key)])
                    if pos.offset >= todo[key][1]:
                        todo.pop(key)
        finally:
            scanner.close()
        return oldest

    # ----- the consumer group --------------------------------------------------------------
    def active_members(self, group: str) -> int:
        """How many members the group has now (0 for a group that does not exist)."""
        futures = self.admin.describe_consumer_groups([group], request_timeout=self._timeout_s)
        try:
            description = futures[group].result()
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return 0
            raise LogstreamError(f"cannot describe consumer group {group!r}: {error}") from exc
        return len(description.members or [])

    def committed_offsets(self, group: str, tps: Iterable[TP]) -> dict[TP, int | None]:
        """The group's committed offset per partition (None where nothing is committed)."""
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])]
        futures = self.admin.list_consumer_group_offsets(request, request_timeout=self._timeout_s)
        try:
            answer = _only(futures).result()
        except KafkaException as exc:
            raise LogstreamError(f"cannot read offsets of group {group!r}: {exc}") from exc
        result: dict[TP, int | None] = {}
        for tp in answer.topic_partitions:
            if tp.error is not None:
                raise LogstreamError(
                    f"committed offset of {group!r} on {tp.topic}:{tp.partition}: {tp.error}"
                )
            offset = int(tp.offset)
            result[(tp.topic, tp.partition)] = None if offset == OFFSET_INVALID else offset
        return result

    def set_committed_offsets(self, group: str, offsets: Mapping[TP, int]) -> None:
        """Set the group's committed offsets, check every partition, then read them back."""
        if not offsets:
            return
        request = [
            ConsumerGroupTopicPartitions(
                group, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
            )
        ]
        futures = self.admin.alter_consumer_group_offsets(request, request_timeout=self._timeout_s)
        try:
            answer = _only(futures).result()
        except KafkaException as exc:
            raise LogstreamError(
                f"Kafka refused to set the committed offsets of group {group!r} ({exc}); "
                "is a consumer of the group running?"
            ) from exc
        failed = [
            f"{tp.topic}:{tp.partition} ({tp.error})"
            for tp in answer.topic_partitions
            if tp.error is not None
        ]
        if failed:
            raise LogstreamError(f"setting offsets of group {group!r} failed: {', '.join(failed)}")
        readback = self.committed_offsets(group, offsets)
        wrong = {k: v for k, v in readback.items() if v != offsets[k]}
        if wrong or len(readback) != len(offsets):
            raise LogstreamError(
                f"group {group!r} committed offsets read back differ from those set: {wrong}"
            )


def _only(futures: Mapping[Any, Future[Any]]) -> Future[Any]:
    """The single future of a one-group admin request."""
    [future] = futures.values()
    return future
