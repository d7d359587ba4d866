"""Import events from an export file (Avro) or NDJSON back into Kafka, all or nothing.

Why this shape:
- **Validate the whole file first, produce second.** A bad record anywhere (line numbers in
  the message) fails the import before a single event is produced: a half-imported file is
  the hardest state for a user to repair (which lines are in? re-running duplicates). The
  file is streamed twice, so memory does not grow with its size; the second pass re-checks
  every record with the same clock and stops if the file changed in between.
- **Same rules as ingest.** Each event type may have a rule (the CLI plugs in ingest's own
  validation for likes); events without one are checked against their schema. Old event
  times are fine; the "too far in the future" bound of ingest still applies.
- **Exact re-queue, by the contract.** Key and Kafka timestamp are derived from the event
  by its schema's rules (`"logstream.key"`, `"logstream.timestamp"`; for likes, ingest's
  own: the url and occurred_at), never taken on trust from the file: a record of an export
  whose stored key or timestamp disagrees with its event is refused (a tampered or foreign
  file would otherwise put an event in another partition or time bucket than its contract
  says). Headers are kept, but a record carrying dead-letter headers (`logstream.error`,
  `logstream.origin.*`: it was exported from a `.dlq` topic), or any record of a file whose
  `logstream.export.topic` metadata names a `.dlq` topic, is refused unless
  `allow_dead_letters` (`--allow-dead-letters`) says re-queueing dead letters is meant.
  Text holding a control character (C0 but TAB, LF, CR; DEL) is refused in every string
  field, naming it, by the rule ingest shares (`logstream/text_rules.py`).
  NDJSON likes need occurred_at ("now" is never a right default for historical data) and,
  without an `event_id`, get a UUID derived from the line's content, so importing the same
  file twice gives the same ids.
- **Durable and bounded.** acks=all idempotent producer, at most `max_in_flight` messages
  unacknowledged; the first failed delivery stops further sends, and the error says how
  many events are acknowledged (they are in the log).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, cast

import fastavro
from confluent_kafka import KafkaError, KafkaException, Producer

from logstream.codec import Codec
from logstream.errors import CodecError, ConfigError, LogstreamError
from logstream.kafka.config import producer_config
from logstream.kafka.timestamps import NO_TIMESTAMP, record_timestamp
from logstream.settings import Settings
from logstream.text_rules import control_character_errors
from logstream.topics import dlq_topic
from logstream.transfer.export import META_FORMAT, META_TOPIC, RECORD_NAME

__all__ = [
    "AVRO_MAGIC",
    "DeliveryFailedError",
    "Format",
    "ImportRejectedError",
    "ImportResult",
    "Incoming",
    "Prepared",
    "RecordRejected",
    "Rule",
    "avro_event_type",
    "check_timestamp",
    "dead_letter_headers",
    "detect_format",
    "import_file",
    "ndjson_event_id",
    "parse_ndjson_line",
    "read_avro",
    "read_ndjson",
    "schema_rule",
]

AVRO_MAGIC = b"Obj\x01"
# Headers a dead letter carries (logstream.runtime.dlq): a record with them came from a DLQ.
DLQ_HEADERS = frozenset({"logstream.error", "logstream.error.class", "logstream.view"})
DLQ_ORIGIN = "logstream.origin."
MAX_LINE_BYTES = 1024 * 1024
_MAX_LISTED = 20
_NDJSON_ID_NAMESPACE = uuid.UUID("6b0f3c55-4a43-4f1e-9d0b-1f1f6c0f7a11")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Format(StrEnum):
    AVRO = "avro"
    NDJSON = "ndjson"


class RecordRejected(LogstreamError):
    """One record cannot be imported; the message says why (the caller adds where)."""


class ImportRejectedError(LogstreamError):
    """The file has invalid records; nothing was produced. `problems` lists the first ones."""

    def __init__(self, path: Path, invalid: int, problems: list[str]) -> None:
        self.invalid = invalid
        self.problems = problems
        more = f"\n  ... and {invalid - len(problems)} more" if invalid > len(problems) else ""
        super().__init__(
            f"{path}: {invalid} invalid record(s); nothing was produced. Fix them and "
            "import again:\n  " + "\n  ".join(problems) + more
        )


class DeliveryFailedError(LogstreamError):
    """Some messages were not acknowledged; `delivered` of them are in the log."""

    def __init__(self, topic: str, delivered: int, failed: int, total: int, errors: list[str]):
        self.delivered = delivered
        self.failed = failed
        super().__init__(
            f"{failed} event(s) failed delivery to {topic!r} ({'; '.join(errors)}); "
            f"{delivered} of {total} were acknowledged and are in the log, the rest were not "
            "sent (a timed-out one may still have been written). Importing the whole file "
            "again duplicates the acknowledged ones."
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated, encoded event; key/timestamp None when the source must supply them."""

    value: bytes
    key: bytes | None = None
    timestamp_ms: int | None = None


# fields (base Avro types: ints, strs), now (epoch ms) -> Prepared; raises RecordRejected.
Rule = Callable[[dict[str, Any], int], Prepared]

_ORIGINAL_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Incoming:
    """One record as read from a file, before validation."""

    where: str  # "line 7" / "record 12 (likes[3]@881)"
    fields: dict[str, Any] | None
    error: str | None = None  # a record that could not even be parsed
    key: Any = _ORIGINAL_UNSET  # bytes | None from an export; unset: the rule decides
    timestamp_ms: int | None = None
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)


@dataclass
class ImportResult:
    path: Path
    topic: str
    event_type: str
    format: Format
    produced: int = 0


def detect_format(path: Path) -> Format:
    """By extension (.avro; .ndjson/.jsonl/.json), else by the Avro container's magic bytes."""
    suffix = path.suffix.lower()
    if suffix == ".avro":
        return Format.AVRO
    if suffix in (".ndjson", ".jsonl", ".json"):
        return Format.NDJSON
    with path.open("rb") as f:
        return Format.AVRO if f.read(4) == AVRO_MAGIC else Format.NDJSON


# ----- NDJSON ---------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_ndjson_line(raw: bytes) -> dict[str, Any]:
    """One line to a JSON object; strict JSON (no NaN), UTF-8, an object, not too long."""
    if len(raw) > MAX_LINE_BYTES:
        raise RecordRejected(f"longer than {MAX_LINE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordRejected(f"not valid UTF-8: {exc}") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise RecordRejected("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise RecordRejected(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise RecordRejected(f"expected a JSON object (one like per line), got {kind}")
    return value


def read_ndjson(path: Path) -> Iterator[Incoming]:
    """Stream the lines of `path` (1-based numbers; blank lines skipped; a BOM tolerated)."""
    with path.open("rb") as f:
        for number, line in enumerate(_lines(f), start=1):
            if number == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                yield Incoming(where, parse_ndjson_line(line.rstrip(b"\r\n")))
            except RecordRejected as exc:
                yield Incoming(where, None, error=str(exc))


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    """Lines, but never more than MAX_LINE_BYTES + 1 of one in memory."""
    while True:
        line = f.readline(MAX_LINE_BYTES + 2)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES + 1 and not line.endswith(b"\n"):
            while True:  # drop the rest of an overlong line
                rest = f.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line


# ----- Avro export files ----------------------------------------------------------------------
def avro_source_topic(path: Path) -> str | None:
    """The topic an export file was written from (`logstream.export.topic`), if it says."""
    with path.open("rb") as f:
        raw = _open_export(path, f)[0].metadata.get(META_TOPIC)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def avro_event_type(path: Path) -> str:
    """The event type (record full name) of an export file; checks that it is one."""
    with path.open("rb") as f:
        return str(_open_export(path, f)[1]["name"])


def read_avro(path: Path) -> Iterator[Incoming]:
    """The records of an export file as they stream, in base Avro types."""
    with path.open("rb") as f:
        reader, event = _open_export(path, f)
        logical = _logical_types(event)
        for n, rec in enumerate(reader, start=1):
            rec = cast(dict[str, Any], rec)
            where = f"record {n} ({rec['topic']}[{rec['partition']}]@{rec['offset']})"
            headers = [(h["key"], h["value"]) for h in rec.get("headers") or ()]
            try:
                values = _base_values(rec["event"], logical)
            except (TypeError, ValueError, OverflowError) as exc:
                yield Incoming(where, None, error=str(exc))
                continue
            yield Incoming(where, values, None, rec["key"], rec["timestamp_ms"], headers)


def _open_export(path: Path, f: IO[bytes]) -> tuple[Any, dict[str, Any]]:
    """A fastavro reader on `f` and the event's record schema, or a ConfigError saying why."""
    try:
        reader = fastavro.reader(f)
    except Exception as exc:  # fastavro raises several types for a bad header
        raise ConfigError(f"{path}: not an Avro object container file: {exc}") from exc
    schema = cast(dict[str, Any], reader.writer_schema)
    fields = {fd["name"]: fd for fd in schema.get("fields", [])}
    event = fields.get("event", {}).get("type")
    if (
        schema.get("name") != RECORD_NAME
        or not isinstance(event, dict)
        or reader.metadata.get(META_FORMAT) is None
    ):
        raise ConfigError(
            f"{path}: not a logstream export file (records must be {RECORD_NAME}; "
            "write it with `logstream export`, or import NDJSON)"
        )
    return reader, event


def _logical_types(record_schema: dict[str, Any]) -> dict[str, str]:
    """Field name -> logicalType for the event's fields (plain or in a union)."""
    found: dict[str, str] = {}
    for fd in record_schema.get("fields", []):
        branches = fd["type"] if isinstance(fd["type"], list) else [fd["type"]]
        for branch in branches:
            if isinstance(branch, dict) and "logicalType" in branch:
                found[fd["name"]] = str(branch["logicalType"])
    return found


def _base_values(event: dict[str, Any], logical: Mapping[str, str]) -> dict[str, Any]:
    """Undo fastavro's logical-type conversions: the codec works in base types."""
    values = dict(event)
    for name, kind in logical.items():
        value = values.get(name)
        if isinstance(value, datetime):
            unit = (
                timedelta(microseconds=1) if kind.endswith("micros") else timedelta(milliseconds=1)
            )
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            values[name] = (aware - _EPOCH) // unit
        elif isinstance(value, uuid.UUID):
            values[name] = str(value)
    return values


# ----- validation -----------------------------------------------------------------------------
def schema_rule(codec: Codec, event_type: str) -> Rule:
    """Schema-only validation, for event types without a rule of their own; key and
    timestamp come from the fields the schema names (`logstream.key`, `logstream.timestamp`)."""
    latest = codec.catalogue.latest(event_type)
    defaults = {f["name"]: f["default"] for f in latest.definition["fields"] if "default" in f}
    key_field, time_field = latest.key_field, latest.timestamp_field

    def prepare(fields: dict[str, Any], now: int) -> Prepared:
        record = {**defaults, **fields}
        try:
            value = codec.encode(event_type, record)
        except CodecError as exc:
            raise RecordRejected(str(exc)) from exc
        key = record.get(key_field) if key_field else None
        ts = record.get(time_field) if time_field else None
        return Prepared(
            value,
            key.encode("utf-8") if isinstance(key, str) else None,
            ts if isinstance(ts, int) else None,
        )

    return prepare


def check_timestamp(ts: int, *, now: int, max_future_ms: int) -> int:
    """Ingest's bound on event times: not before 1970, not beyond now + max_future_ms."""
    if ts < 0:
        raise RecordRejected(f"timestamp {ts} is before 1970: Kafka timestamps cannot be")
    if ts > now + max_future_ms:
        raise RecordRejected(
            f"timestamp {ts} is {(ts - now) / 1000:,.0f}s in the future; at most "
            f"{max_future_ms // 1000:,}s is accepted (LOGSTREAM_INGEST_MAX_FUTURE_MS)"
        )
    return ts


def ndjson_event_id(fields: Mapping[str, Any]) -> str:
    """A stable event_id for a line without one: the same content gives the same id."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(_NDJSON_ID_NAMESPACE, canonical))


@dataclass(frozen=True, slots=True)
class _Outgoing:
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: list[tuple[str, str | bytes | None]]


def dead_letter_headers(headers: list[tuple[str, str | bytes | None]]) -> list[str]:
    """The dead-letter headers among `headers` (what `logstream.runtime.dlq` adds)."""
    return [name for name, _ in headers if name in DLQ_HEADERS or name.startswith(DLQ_ORIGIN)]


def _prepare(
    item: Incoming, rule: Rule, now: int, max_future_ms: int, allow_dead_letters: bool
) -> _Outgoing:
    if item.fields is None:
        raise RecordRejected(item.error or "unreadable")
    found = dead_letter_headers(item.headers)
    if found and not allow_dead_letters:
        raise RecordRejected(
            f"carries dead-letter headers ({', '.join(sorted(found))}): it was exported from a "
            "DLQ; pass --allow-dead-letters to re-queue dead letters"
        )
    bad_text = control_character_errors(item.fields)
    if bad_text:
        raise RecordRejected("; ".join(f"field {name}: {why}" for name, why in bad_text[:5]))
    prepared = rule(item.fields, now)
    from_export = item.key is not _ORIGINAL_UNSET
    key, ts = prepared.key, prepared.timestamp_ms
    if from_export:
        key, ts = _agreeing(item, key, ts)
    if ts is None:
        raise RecordRejected("no event time (occurred_at is required)")
    return _Outgoing(
        key, prepared.value, check_timestamp(ts, now=now, max_future_ms=max_future_ms), item.headers
    )


def _agreeing(item: Incoming, key: bytes | None, ts: int | None) -> tuple[bytes | None, int | None]:
    """The key and time derived from an exported event, refused when the stored ones differ;
    the stored ones where the event type names no key or time field."""
    stored_ts = item.timestamp_ms
    if stored_ts == NO_TIMESTAMP:  # event time 0 as logged: see kafka.timestamps
        stored_ts = 0
    if key is None:
        key = item.key
    elif item.key != key:
        raise RecordRejected(
            f"its key {item.key!r} disagrees with the event's key field ({key!r}); "
            "the contract derives the key from the event"
        )
    if ts is None:
        ts = stored_ts
    elif stored_ts != ts:
        raise RecordRejected(
            f"its Kafka timestamp {item.timestamp_ms} disagrees with the event's time {ts}; "
            "the contract derives the timestamp from the event"
        )
    return key, ts


# ----- the import -----------------------------------------------------------------------------
def import_file(
    settings: Settings,
    codec: Codec,
    path: Path,
    *,
    fmt: Format | None = None,
    topic: str | None = None,
    rules: Mapping[str, Rule] | None = None,
    ndjson_event_type: str = "like",
    max_in_flight: int = 20_000,
    allow_dead_letters: bool = False,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Validate every record of `path`, then produce them all (see the module doc)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    event_type = _event_type(codec, path, fmt, ndjson_event_type)
    if fmt is Format.AVRO and not allow_dead_letters:
        _refuse_dead_letter_file(path)
    rules = rules or {}
    rule = rules.get(event_type) or schema_rule(codec, event_type)
    if fmt is Format.NDJSON and event_type not in rules:
        raise ConfigError(f"NDJSON import needs a rule for {event_type!r} events (key, time)")
    target = topic or codec.catalogue.topic_for(event_type)
    producer = _producer(settings, target, max_in_flight)  # fail fast on a missing topic
    result = ImportResult(path, target, event_type, fmt)
    now = int(time.time() * 1000)
    limit = settings.ingest_max_future_ms

    def prepared() -> Iterator[tuple[Incoming, _Outgoing | str]]:
        for item in _read(path, fmt):
            try:
                yield item, _prepare(item, rule, now, limit, allow_dead_letters)
            except RecordRejected as exc:
                yield item, str(exc)

    total, invalid = 0, 0
    problems: list[str] = []
    for item, outcome in prepared():
        total += 1
        if isinstance(outcome, str):
            invalid += 1
            if len(problems) < _MAX_LISTED:
                problems.append(f"{item.where}: {outcome}")
    if invalid:
        raise ImportRejectedError(path, invalid, problems)
    if total == 0:
        return result
    if on_total is not None:
        on_total(total)
    _produce(producer, target, prepared(), total, max_in_flight, result, on_progress)
    return result


def _event_type(codec: Codec, path: Path, fmt: Format, ndjson_event_type: str) -> str:
    if fmt is Format.NDJSON:
        return codec.catalogue.latest(ndjson_event_type).event_type
    name = avro_event_type(path)
    try:
        return codec.catalogue.latest(name).event_type
    except (KeyError, LogstreamError):
        raise ConfigError(f"{path}: event type {name} is not in the schema catalogue") from None


def _refuse_dead_letter_file(path: Path) -> None:
    """A file exported from a `.dlq` topic holds dead letters, whatever its records say."""
    source = avro_source_topic(path)
    if source is not None and source.endswith(dlq_topic("")):
        raise ConfigError(
            f"{path} was exported from the dead-letter topic {source}; pass "
            "--allow-dead-letters to re-queue dead letters"
        )


def _read(path: Path, fmt: Format) -> Iterator[Incoming]:
    return read_ndjson(path) if fmt is Format.NDJSON else read_avro(path)


class _Deliveries:
    """Counts delivery reports; remembers the first few errors."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.on_progress: Callable[[int], None] | None = None

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.ok += 1
            if self.on_progress is not None:
                self.on_progress(1)
            return
        self.failed += 1
        if len(self.errors) < 3:
            self.errors.append(err.str())


def _produce(
    producer: Producer,
    topic: str,
    items: Iterator[tuple[Incoming, _Outgoing | str]],
    total: int,
    max_in_flight: int,
    result: ImportResult,
    on_progress: Callable[[int], None] | None,
) -> None:
    reports = _Deliveries()
    reports.on_progress = on_progress
    sent = 0
    try:
        for item, outcome in items:
            if reports.failed:
                break
            if isinstance(outcome, str):  # the file changed since the validation pass
                raise LogstreamError(
                    f"{result.path} changed during the import ({item.where}: {outcome}); "
                    f"{sent} event(s) were sent before it was noticed"
                )
            while len(producer) >= max_in_flight:
                producer.poll(0.05)
            _send(producer, topic, outcome, reports)
            sent += 1
            producer.poll(0)
        while len(producer) > 0:
            producer.poll(0.1)
    except KeyboardInterrupt:
        producer.flush(30)
        raise LogstreamError(
            f"interrupted: {reports.ok} of {total} event(s) were acknowledged and are in the "
            f"log ({sent} sent)"
        ) from None
    finally:
        producer.flush(30)
    result.produced = reports.ok
    if reports.failed or reports.ok != total:
        failed = max(reports.failed, total - reports.ok)
        raise DeliveryFailedError(topic, reports.ok, failed, total, reports.errors or ["?"])


def _send(producer: Producer, topic: str, out: _Outgoing, reports: _Deliveries) -> None:
    while True:
        try:
            producer.produce(
                topic,
                value=out.value,
                key=out.key,
                timestamp=record_timestamp(out.timestamp_ms),
                headers=out.headers or None,
                on_delivery=reports,
            )
            return
        except BufferError:
            producer.poll(0.05)


def _producer(settings: Settings, topic: str, max_in_flight: int) -> Producer:
    """A durable producer, after checking the topic exists (no auto-created 1-partition topic)."""
    try:
        producer = Producer(
            producer_config(settings, **{"queue.buffering.max.messages": max_in_flight})
        )
    except KafkaException as exc:
        raise ConfigError(f"invalid producer configuration: {exc.args[0]}") from exc
    try:
        # All topics, not list_topics(topic): asking for one may auto-create it on the broker.
        metadata = producer.list_topics(timeout=15)
    except KafkaException as exc:
        raise LogstreamError(f"cannot reach the broker: {exc.args[0]}") from exc
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        raise LogstreamError(
            f"topic {topic!r} does not exist: create it first (logstream topics create) "
            "with the partitions you want"
        )
    return producer
