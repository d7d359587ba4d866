"""What ingest holds per process, and how one posted event becomes a Kafka message.

Kept apart from the routes so that validation is one plain function for every event type:
a posted dict in, an `OutgoingMessage` (key = the `"logstream.key"` field, timestamp = the
`"logstream.timestamp"` field, value = Avro single-object) out, or `EventRejected` listing
every problem with its field. What each type accepts is compiled from its `.avsc` once
(`ingest_api.avro_validation`); `like` is one such type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ingest_api.avro_validation import EventModel, compile_event_models
from ingest_api.event_ids import new_event_id
from ingest_api.models import FieldError
from ingest_api.timestamps import InvalidTimestampError, parse_occurred_at
from logstream.codec import Codec, InvalidRecordError
from logstream.producer import EventProducer, OutgoingMessage
from logstream.settings import Settings

__all__ = ["LIKE", "EventRejected", "IngestState", "prepare_event", "prepare_like"]

LIKE = "like"


@dataclass(frozen=True)
class IngestState:
    """Everything a request needs; built in the lifespan, one per worker process.

    `models` (event type -> compiled validator) defaults to the latest version of every
    type in the codec's catalogue."""

    settings: Settings
    codec: Codec
    producer: EventProducer
    topics: dict[str, str]  # event type -> topic
    models: Mapping[str, EventModel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.models:
            object.__setattr__(self, "models", compile_event_models(self.codec.catalogue))


class EventRejected(Exception):
    """The event cannot be written; `fields` says what to fix (index added by the caller)."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in fields))
        self.fields = fields


def prepare_event(
    state: IngestState, model: EventModel, data: Any, *, now: int
) -> tuple[OutgoingMessage, str | None]:
    """Validate a posted event of `model`'s type and encode it; returns the message and its
    event id (None when the type has no event id field)."""
    if type(data) is not dict:
        kind = type(data).__name__ if data is not None else "null"
        fields = ", ".join(model.field_names)
        raise EventRejected(
            [FieldError(message=f"expected a JSON object with {fields}, got {kind}")]
        )
    stamp = model.timestamp_field
    problems: list[FieldError] = []
    record: dict[str, Any] | None = None
    try:
        record = model.validate(data)
    except ValidationError as exc:
        problems.extend(FieldError(field=f, message=m) for f, m in model.field_errors(exc, data))
    occurred_at = now
    raw_time = data.get(stamp) if stamp is not None else None
    if raw_time is not None:
        try:
            occurred_at = parse_occurred_at(
                raw_time, now=now, max_future_ms=state.settings.ingest_max_future_ms
            )
        except InvalidTimestampError as exc:
            problems.append(FieldError(field=stamp, message=str(exc)))
    if problems or record is None:
        raise EventRejected(problems)
    if stamp is not None:
        record[stamp] = occurred_at
    event_id: str | None = None
    id_field = model.event_id_field
    if id_field is not None:
        event_id = record.get(id_field) or new_event_id()
        record[id_field] = event_id
    key = model.key_of(record)
    try:
        value = state.codec.encode(model.event_type, record, validated=model.complete)
    except InvalidRecordError as exc:  # the model and the .avsc disagree: still the input's fault
        raise EventRejected([FieldError(message=str(exc))]) from exc
    return OutgoingMessage(state.topics[model.event_type], key, value, occurred_at), event_id


def prepare_like(state: IngestState, data: Any, *, now: int) -> tuple[OutgoingMessage, str]:
    """`prepare_event` for a like (which always has an event id)."""
    message, event_id = prepare_event(state, state.models[LIKE], data, now=now)
    assert event_id is not None  # like.avsc has an event id field
    return message, event_id
