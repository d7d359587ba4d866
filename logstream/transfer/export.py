"""Export a topic (or an event-time slice of it) to an Avro object container file.

Why: the log is the truth, but retention, migrations and other clusters need the events
outside Kafka, in a file any Avro library reads, with everything needed to re-queue them
exactly (`logstream.transfer.importer`).

File format (`logstream.export.format` = "1" in the container's metadata): one record
`logstream.export.Record` per Kafka message:

    topic         string              source topic              (provenance)
    partition     int                 source partition          (provenance)
    offset        long                source offset             (provenance)
    timestamp_ms  long                Kafka record timestamp, epoch ms (= event time)
    key           null | bytes        original message key, byte for byte
    headers       array<Header>       original headers (key string, value null | bytes)
    writer_version int                schema version the message was written with
    event         <latest schema>     the event, decoded and resolved to the latest version
                                      (the `.avsc` itself, logical types and docs included)

The event type is the record name of `event` (e.g. `logstream.events.Like`), also in the
metadata as `logstream.export.event_type`, so a file describes itself and an import never
guesses. It is the event type written to TOPIC; for a topic no `.avsc` names (a copy, a
test topic) it is that of the first decodable message, and events of another type are
skipped and counted. Source partition and offset are provenance only: an import partitions
by key, like ingest, so the target topic may have another partition count. Values are stored
decoded, not as the original single-object bytes, so the file is
plain Avro for Spark, DuckDB or any language, and an import re-validates and re-encodes them
with the latest schema, like ingest does.

Scan: every partition from the first offset with timestamp >= `since` (offsets_for_times) up
to the end offsets seen at start; messages written later are not exported. Late events (an
older timestamp after newer ones) exist, so the scan never stops early at `until`: it filters
each message on `since <= timestamp < until`. Undecodable messages are skipped and counted.
Memory is bounded: records stream through fastavro's writer, which writes block by block.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import secrets
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Message, TopicPartition

from logstream.codec import Codec
from logstream.errors import CodecError, ConfigError, LogstreamError, UnknownSchemaError
from logstream.kafka.config import consumer_config
from logstream.schemas import SchemaVersion
from logstream.settings import Settings

__all__ = [
    "FORMAT_VERSION",
    "META_EVENT_TYPE",
    "META_FORMAT",
    "META_TOPIC",
    "RECORD_NAME",
    "ExportResult",
    "export_schema",
    "export_topic",
    "parse_time_bound",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
RECORD_NAME = "logstream.export.Record"
META_FORMAT = "logstream.export.format"
META_TOPIC = "logstream.export.topic"
META_EVENT_TYPE = "logstream.export.event_type"
META_SINCE = "logstream.export.since_ms"
META_UNTIL = "logstream.export.until_ms"
META_CREATED = "logstream.export.created_at"

_BATCH = 1000
_POLL_S = 1.0
_STALL_S = 60.0  # no message and no end of partition for this long: the broker is gone
_SAMPLES = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FATAL_CODES = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.OFFSET_OUT_OF_RANGE,
    }
)


@dataclass
class ExportResult:
    """What an export wrote and what it left out, and why."""

    path: Path
    topic: str
    exported: int = 0
    out_of_range: int = 0  # outside [since, until)
    undecodable: int = 0
    undecodable_samples: list[str] = field(default_factory=list)  # "topic[p]@offset: reason"


def export_schema(latest: SchemaVersion) -> dict[str, Any]:
    """The container's record schema for events of `latest`'s type (see the module doc)."""
    return {
        "type": "record",
        "name": "Record",
        "namespace": "logstream.export",
        "doc": "One Kafka message of a logstream topic, with what re-queueing it needs.",
        "fields": [
            {"name": "topic", "type": "string", "doc": "Source topic."},
            {"name": "partition", "type": "int", "doc": "Source partition."},
            {"name": "offset", "type": "long", "doc": "Source offset."},
            {
                "name": "timestamp_ms",
                "type": "long",
                "doc": "Kafka record timestamp, epoch milliseconds (the event time).",
            },
            {"name": "key", "type": ["null", "bytes"], "doc": "Original message key."},
            {
                "name": "headers",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Header",
                        "fields": [
                            {"name": "key", "type": "string"},
                            {"name": "value", "type": ["null", "bytes"]},
                        ],
                    },
                },
                "default": [],
                "doc": "Original message headers, in order.",
            },
            {
                "name": "writer_version",
                "type": "int",
                "doc": "Schema version the message value was written with.",
            },
            {
                "name": "event",
                "type": copy.deepcopy(dict(latest.definition)),
                "doc": "The event, resolved to the latest schema version.",
            },
        ],
    }


def parse_time_bound(text: str, option: str = "--since") -> int:
    """Epoch ms from `1767225600000` or an RFC 3339 date-time (no offset means UTC)."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: expected RFC 3339 (2026-01-02T12:00:00Z) or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def export_topic(
    settings: Settings,
    codec: Codec,
    topic: str,
    output: Path,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write the messages of `topic` with `since <= timestamp < until` to `output`.

    The file appears only when complete: written to a temporary file of a random name in
    the target folder (`.<name>.<random>.partial`), then renamed. That file is always new
    (O_EXCL|O_NOFOLLOW, mode 0644 less the umask), so nothing is ever written through a link
    planted there, and two exports to one path do not delete each other's work (the last
    rename wins; the rename replaces a link at `output` itself, never its target). A folder
    on the way that is a link owned by another user is refused.
    `on_total` gets the number of offsets to scan, `on_progress` the count scanned so far
    in increments.
    """
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise ConfigError(f"--until ({until_ms}) must be after --since ({since_ms})")
    result = ExportResult(path=output, topic=topic)
    _check_folders(output)
    partial = output.with_name(f".{output.name}.{secrets.token_hex(8)}.partial")
    created = False
    scan = _Scan(settings, topic, since_ms)
    try:
        if on_total is not None:
            on_total(scan.total)
        decoded = _decoded(scan, codec, result, since_ms, until_ms, on_progress)
        first = next(decoded, None)  # names the event type of a topic not in the catalogue
        latest = _event_version(codec, topic, first)
        metadata = {
            META_FORMAT: FORMAT_VERSION,
            META_TOPIC: topic,
            META_EVENT_TYPE: latest.full_name,
            META_CREATED: datetime.now(UTC).isoformat(timespec="milliseconds"),
            META_SINCE: "" if since_ms is None else str(since_ms),
            META_UNTIL: "" if until_ms is None else str(until_ms),
        }
        rest = chain([first] if first is not None else [], decoded)
        with _create_new(partial) as out:
            created = True
            fastavro.writer(
                out,
                fastavro.parse_schema(export_schema(latest)),
                _records(rest, latest, result),
                codec="deflate",
                metadata=metadata,
            )
        os.replace(partial, output)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                partial.unlink()
        raise
    finally:
        scan.close()
    return result


def _check_folders(output: Path) -> None:
    """Refuse a folder on the way to `output` that is a link owned by another user (who
    could point it elsewhere between our checks); root's and our own links are fine."""
    me = os.getuid()
    for folder in output.absolute().parents:
        try:
            st = folder.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, me):
            raise LogstreamError(
                f"refusing to export through {folder}: it is a link owned by uid {st.st_uid}"
            )


def _create_new(path: Path) -> BinaryIO:
    """A new file at `path` for writing; a file or link already there is an error, never
    a target (the name is random, so that means someone planted it)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise LogstreamError(f"{path} appeared while exporting; not writing through it") from None
    return os.fdopen(fd, "wb")


_Decoded = tuple[Message, SchemaVersion, dict[str, Any]]


def _event_version(codec: Codec, topic: str, first: _Decoded | None) -> SchemaVersion:
    """The latest version of the topic's event type: by topic name, else by its messages."""
    catalogue = codec.catalogue
    try:
        return catalogue.latest(catalogue.event_type_for_topic(topic))
    except UnknownSchemaError:
        pass
    if first is not None:
        return catalogue.latest(first[1].event_type)
    types = catalogue.event_types()
    if len(types) == 1:
        return catalogue.latest(types[0])
    raise ConfigError(f"topic {topic!r} has no decodable event in range and is no event's topic")


def _decoded(
    scan: _Scan,
    codec: Codec,
    result: ExportResult,
    since_ms: int | None,
    until_ms: int | None,
    on_progress: Callable[[int], None] | None,
) -> Iterator[_Decoded]:
    """In-range messages with their decoded events, as the scan goes (never the whole topic)."""
    for batch in scan.batches():
        if on_progress is not None:
            on_progress(len(batch))
        for msg in batch:
            ts_type, ts = msg.timestamp()
            if ts_type == TIMESTAMP_NOT_AVAILABLE:
                _skip(result, msg, "message has no timestamp")
                continue
            if (since_ms is not None and ts < since_ms) or (
                until_ms is not None and ts >= until_ms
            ):
                result.out_of_range += 1
                continue
            try:
                writer, event = codec.decode(msg.value())
            except CodecError as exc:
                _skip(result, msg, str(exc))
                continue
            yield msg, writer, event


def _records(
    decoded: Iterator[_Decoded], latest: SchemaVersion, result: ExportResult
) -> Iterator[dict[str, Any]]:
    """Export records of `latest`'s event type; an event of another type is skipped."""
    for msg, writer, event in decoded:
        if writer.full_name != latest.full_name:
            _skip(result, msg, f"a {writer.full_name} event, not {latest.full_name}")
            continue
        result.exported += 1
        yield {
            "topic": msg.topic(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "timestamp_ms": msg.timestamp()[1],
            "key": msg.key(),
            "headers": [{"key": k, "value": v} for k, v in _header_pairs(msg.headers())],
            "writer_version": writer.version,
            "event": event,
        }


def _skip(result: ExportResult, msg: Message, reason: str) -> None:
    result.undecodable += 1
    if len(result.undecodable_samples) < _SAMPLES:
        result.undecodable_samples.append(
            f"{msg.topic()}[{msg.partition()}]@{msg.offset()}: {reason}"
        )


class _Scan:
    """Reads each partition of a topic from a start offset to the end seen at start."""

    def __init__(self, settings: Settings, topic: str, since_ms: int | None) -> None:
        self.topic = topic
        self._timeout_s = 15.0
        group = f"logstream-export-{uuid.uuid4().hex[:8]}"  # never joins or commits
        self._consumer = Consumer(
            consumer_config(
                settings,
                group,
                **{"enable.partition.eof": True, "queued.max.messages.kbytes": 16384},
            )
        )
        try:
            self._plan(since_ms)
        except BaseException:
            self._consumer.close()
            raise

    def _plan(self, since_ms: int | None) -> None:
        metadata = self._consumer.list_topics(self.topic, timeout=self._timeout_s)
        info = metadata.topics.get(self.topic)
        if info is None or info.error is not None or not info.partitions:
            reason = info.error if info is not None and info.error is not None else "not found"
            raise LogstreamError(f"topic {self.topic!r}: {reason}")
        partitions = sorted(info.partitions)
        starts: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        for p in partitions:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=self._timeout_s, cached=False
            )
            starts[p], self.ends[p] = int(low), int(high)
        if since_ms is not None:
            request = [TopicPartition(self.topic, p, max(0, since_ms)) for p in partitions]
            for tp in self._consumer.offsets_for_times(request, timeout=self._timeout_s):
                if tp.error is not None:
                    raise LogstreamError(
                        f"offset for time of {self.topic}[{tp.partition}]: {tp.error}"
                    )
                # -1: no message at or after `since` in this partition.
                starts[tp.partition] = tp.offset if tp.offset >= 0 else self.ends[tp.partition]
        self.remaining = {p for p in partitions if starts[p] < self.ends[p]}
        self.total = sum(self.ends[p] - starts[p] for p in self.remaining)
        self._consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in self.remaining])

    def batches(self) -> Iterator[list[Message]]:
        """Lists of in-range messages, partition order kept, until every partition is done."""
        last_progress = time.monotonic()
        while self.remaining:
            before = len(self.remaining)
            batch: list[Message] = []
            for msg in self._consumer.consume(num_messages=_BATCH, timeout=_POLL_S):
                p: int = msg.partition()  # type: ignore[assignment]  # consumed: always set
                if p not in self.remaining:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        # Reached the readable end (with read_committed: the last stable
                        # offset); nothing more before the start snapshot can come.
                        self._done(p)
                        continue
                    if err.fatal() or err.code() in _FATAL_CODES:
                        raise LogstreamError(f"reading {self.topic}[{p}]: {err.str()}")
                    log.warning("reading %s[%s]: %s (retrying)", self.topic, p, err.str())
                    continue
                offset: int = msg.offset()  # type: ignore[assignment]  # consumed: set
                if offset >= self.ends[p]:
                    self._done(p)
                    continue
                batch.append(msg)
                if offset + 1 >= self.ends[p]:
                    self._done(p)
            if batch or len(self.remaining) < before:
                last_progress = time.monotonic()
                if batch:
                    yield batch
            elif time.monotonic() - last_progress > _STALL_S:
                raise LogstreamError(
                    f"no data from {self.topic} for {_STALL_S:.0f}s with "
                    f"{len(self.remaining)} partition(s) unfinished: is the broker reachable?"
                )

    def _done(self, partition: int) -> None:
        self.remaining.discard(partition)
        self._consumer.pause([TopicPartition(self.topic, partition)])

    def close(self) -> None:
        self._consumer.close()


def _header_pairs(headers: object) -> list[tuple[str, object]]:
    """A consumed message's headers are a list of pairs (the stubs also allow a dict)."""
    if not headers:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)  # type: ignore[call-overload]
