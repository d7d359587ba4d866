"""Response bodies of the ingest API, and the one error body every failure uses.

What a client posts is validated and documented per event type from its `.avsc`
(`ingest_api.avro_validation`), not by a model written here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "BatchAccepted",
    "BatchFailed",
    "ErrorBody",
    "ErrorDetail",
    "EventAccepted",
    "EventResult",
    "FieldError",
    "Health",
    "Readiness",
]


class EventAccepted(BaseModel):
    """Where the broker put the event: it is in the log. `event_id` is null for an event
    type without an event id field."""

    event_id: str | None
    topic: str
    partition: int
    offset: int


class EventResult(BaseModel):
    """One event of a batch: `written` (in the log, with its place) or `failed`."""

    index: int
    event_id: str | None
    status: Literal["written", "failed"]
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str | None = None


class BatchAccepted(BaseModel):
    """Every event of the batch is in the log."""

    accepted: int
    events: list[EventResult]


class FieldError(BaseModel):
    """What is wrong, and where: `index` (batches only) and `field` (null: the whole event)."""

    index: int | None = None
    field: str | None = None
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: ErrorDetail


class BatchFailed(ErrorBody):
    """503 for a batch the broker failed in part: `events` says which ones are in the log."""

    accepted: int
    events: list[EventResult]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    broker: str
    topics: dict[str, str]
