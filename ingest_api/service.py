"""What ingest holds per process, and how one posted event becomes a Kafka message.

Kept apart from the routes so that validation is one plain function: a posted dict in, an
`OutgoingMessage` (key = url, timestamp = occurred_at, value = Avro single-object) out, or
`EventRejected` listing every problem with its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ingest_api.event_ids import new_event_id
from ingest_api.models import FieldError, LikeCreate
from ingest_api.timestamps import InvalidTimestampError, parse_occurred_at
from logstream.codec import Codec, InvalidRecordError
from logstream.producer import EventProducer, OutgoingMessage
from logstream.settings import Settings

__all__ = ["EventRejected", "IngestState", "prepare_like"]

LIKE = "like"
_LIKE_FIELDS = ", ".join(LikeCreate.model_fields)


@dataclass(frozen=True)
class IngestState:
    """Everything a request needs; built in the lifespan, one per worker process."""

    settings: Settings
    codec: Codec
    producer: EventProducer
    topics: dict[str, str]  # event type -> topic


class EventRejected(Exception):
    """The event cannot be written; `fields` says what to fix (index added by the caller)."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in fields))
        self.fields = fields


def prepare_like(state: IngestState, data: Any, *, now: int) -> tuple[OutgoingMessage, str]:
    """Validate a posted Like and encode it; returns the message and its event_id."""
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "null"
        raise EventRejected(
            [FieldError(message=f"expected a JSON object with {_LIKE_FIELDS}, got {kind}")]
        )
    fields = dict(data)
    raw_time = fields.pop("occurred_at", None)
    problems: list[FieldError] = []
    like: LikeCreate | None = None
    try:
        like = LikeCreate.model_validate(fields)
    except ValidationError as exc:
        problems.extend(_field_error(err) for err in exc.errors())
    occurred_at = now
    if raw_time is not None:
        try:
            occurred_at = parse_occurred_at(
                raw_time, now=now, max_future_ms=state.settings.ingest_max_future_ms
            )
        except InvalidTimestampError as exc:
            problems.append(FieldError(field="occurred_at", message=str(exc)))
    if problems or like is None:
        raise EventRejected(problems)
    event_id = str(like.event_id) if like.event_id is not None else new_event_id()
    record: dict[str, Any] = {
        "event_id": event_id,
        "url": like.url,
        "user_id": like.user_id,
        "occurred_at": occurred_at,
    }
    if like.referrer is not None:  # absent means the schema default (null)
        record["referrer"] = like.referrer
    try:
        value = state.codec.encode(LIKE, record)
    except InvalidRecordError as exc:  # the model and the .avsc disagree: still the input's fault
        raise EventRejected([FieldError(message=str(exc))]) from exc
    return OutgoingMessage(state.topics[LIKE], like.url.encode(), value, occurred_at), event_id


def _field_error(err: Any) -> FieldError:
    loc = err.get("loc", ())
    field = str(loc[0]) if loc else None
    kind = err.get("type")
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = f"is not a field of a like (fields: {_LIKE_FIELDS})"
    else:
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    return FieldError(field=field, message=message)
