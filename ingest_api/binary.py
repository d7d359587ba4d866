"""Binary ingest: events posted already Avro single-object encoded, one or a sequence.

Why: a Java or Go producer that already writes the log's format (`BinaryMessageEncoder`,
hamba/avro plus the 10-byte header) can post the bytes it has instead of rebuilding JSON.

- `avro/binary`: the body is one single-object encoded event (`C3 01`, 8-byte fingerprint,
  Avro body), written with any version of the event type the catalogue knows.
- `application/vnd.logstream.avro-batch` (batch route): a sequence of events, each framed
  as an Avro `bytes` value: its length as an Avro `long` (zig-zag varint), then its
  single-object bytes; the body ends after the last event. It is what an Avro encoder's
  `writeBytes` emits (Java `BinaryEncoder.writeBytes`, Go `binary.PutVarint` or hamba's
  `Writer.WriteBytes`), so it needs no code beyond the library a producer already has; plain
  concatenation would not do, since a single-object body does not say where it ends.

A decoded event is handed to the JSON path's own validation (`prepare_event`): same fields,
same rules (UUID, event time bounds, lengths), same key and timestamp, and re-encoded
with the latest version, as every producer writes. Bytes that are not single-object Avro
are `malformed_avro` (400, like malformed JSON); a well-formed event with an unknown
fingerprint, another event type's fingerprint or an invalid field is `validation_failed`
(422) naming the fingerprint or the field.
"""

from __future__ import annotations

from typing import Any

from ingest_api.avro_validation import EventModel
from ingest_api.body import too_many_events
from ingest_api.errors import ApiError
from ingest_api.models import FieldError
from ingest_api.service import EventRejected, IngestState, prepare_event
from logstream.codec import HEADER_SIZE, MAGIC, Codec
from logstream.errors import CorruptMessageError, UnknownSchemaError
from logstream.producer import OutgoingMessage

__all__ = [
    "AVRO",
    "AVRO_BATCH",
    "MalformedEvent",
    "decode_batch",
    "decode_event",
    "malformed",
    "prepare_binary",
    "prepare_decoded",
    "split_batch",
]

AVRO = "avro/binary"
AVRO_BATCH = "application/vnd.logstream.avro-batch"
_MAX_VARINT_BYTES = 10  # an Avro long


class MalformedEvent(Exception):
    """The bytes are not a single-object encoded event (answered 400 `malformed_avro`)."""


def malformed(message: str, fields: list[FieldError] | None = None) -> ApiError:
    return ApiError(400, "malformed_avro", message, fields or [])


def split_batch(body: bytes, max_events: int) -> list[bytes]:
    """The events of an `application/vnd.logstream.avro-batch` body, in order.

    Raises 400 `malformed_avro` when a length is unreadable, negative or runs past the end,
    and 413 `too_many_events` as soon as there are more than `max_events` (before slicing
    them all: a body of tiny events must not become millions of objects).
    """
    events: list[bytes] = []
    pos, end = 0, len(body)
    while pos < end:
        at = pos
        try:
            length, pos = _read_long(body, pos)
        except ValueError as exc:
            raise malformed(f"event {len(events)} (byte {at}): {exc}") from None
        if length < 0 or pos + length > end:
            raise malformed(
                f"event {len(events)} (byte {at}): length {length} does not fit the "
                f"{end - pos} byte(s) left; each event is an Avro long length, then its bytes"
            )
        if len(events) == max_events:
            raise too_many_events(max_events)
        events.append(body[pos : pos + length])
        pos += length
    return events


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at `pos`; returns it and the position after it."""
    value = shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise ValueError("the body ends inside a length")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos + i + 1
        shift += 7
    raise ValueError(f"a length longer than {_MAX_VARINT_BYTES} bytes is not an Avro long")


def decode_event(codec: Codec, data: bytes, event_type: str) -> dict[str, Any]:
    """Read one single-object encoded event of `event_type` into a dict in the JSON path's
    shape (latest version, base types).

    MalformedEvent: not single-object Avro, or a body its own writer schema cannot read.
    EventRejected: a fingerprint of no known version of `event_type` (named in the message).
    """
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        shown = data[:2].hex() or "nothing"
        raise MalformedEvent(
            f"not Avro single-object encoding: {len(data)} byte(s) starting with {shown}; "
            f"expected {MAGIC.hex()}, an 8-byte schema fingerprint, then the Avro body"
        )
    try:
        writer, record = codec.decode(data)
    except UnknownSchemaError:
        raise EventRejected(
            [_unknown_fingerprint(codec, data[2:HEADER_SIZE], event_type)]
        ) from None
    except CorruptMessageError as exc:
        raise MalformedEvent(str(exc)) from None
    if writer.event_type != event_type:
        raise EventRejected(
            [
                FieldError(
                    message=f"fingerprint {writer.fingerprint_hex} is {writer.path.name}, "
                    f"a {writer.event_type!r} schema, not a {event_type!r} one"
                )
            ]
        )
    return record


def _unknown_fingerprint(codec: Codec, fingerprint: bytes, event_type: str) -> FieldError:
    known = ", ".join(
        f"{v.fingerprint_hex} ({v.path.name})" for v in codec.catalogue.versions(event_type)
    )
    return FieldError(
        message=f"unknown writer schema fingerprint {fingerprint.hex()}; "
        f"known {event_type} versions: {known} (GET /v1/schemas lists them)"
    )


def prepare_binary(
    state: IngestState, model: EventModel, data: bytes, *, now: int
) -> tuple[OutgoingMessage, str | None]:
    """One posted `avro/binary` body -> the message to write, validated like JSON.

    Raises 400 `malformed_avro` (ApiError) or EventRejected (422)."""
    try:
        record = decode_event(state.codec, data, model.event_type)
    except MalformedEvent as exc:
        raise malformed(
            f"the body is not a single-object encoded {model.event_type}: {exc}"
        ) from None
    return prepare_event(state, model, record, now=now)


def decode_batch(
    codec: Codec, events: list[bytes], event_type: str
) -> list[dict[str, Any] | EventRejected]:
    """Each event decoded, or the EventRejected it earned (validated later, with the rest).

    Every malformed event is listed in one 400, as malformed NDJSON lines are."""
    decoded: list[dict[str, Any] | EventRejected] = []
    problems: list[FieldError] = []
    for index, data in enumerate(events):
        try:
            decoded.append(decode_event(codec, data, event_type))
        except MalformedEvent as exc:
            problems.append(FieldError(index=index, message=str(exc)))
        except EventRejected as exc:
            decoded.append(exc)
    if problems:
        raise malformed(
            f"{len(problems)} of {len(events)} event(s) are not single-object encoded "
            f"{event_type}s; nothing was written",
            problems[:100],
        )
    return decoded


def prepare_decoded(
    state: IngestState, model: EventModel, item: dict[str, Any] | EventRejected, *, now: int
) -> tuple[OutgoingMessage, str | None]:
    """`prepare_event` for an item of `decode_batch`: a rejection found while decoding is
    reported with the others."""
    if isinstance(item, EventRejected):
        raise item
    return prepare_event(state, model, item, now=now)
