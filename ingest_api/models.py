"""Request and response bodies of the ingest API, and the one error body every failure uses.

`LikeCreate` documents and validates what a client posts; `occurred_at` is checked against
the server clock separately (see `ingest_api.timestamps`) because the bound depends on
settings and on "now".
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "MAX_URL_CHARS",
    "MAX_USER_ID_CHARS",
    "BatchAccepted",
    "BatchFailed",
    "ErrorBody",
    "ErrorDetail",
    "EventAccepted",
    "EventResult",
    "FieldError",
    "Health",
    "LikeCreate",
    "Readiness",
]

MAX_URL_CHARS = 2048
MAX_USER_ID_CHARS = 512  # keeps every Like far below the broker's message size limit


def _utf8_text(value: str) -> str:
    """Reject what JSON allows but UTF-8 (Avro strings, Kafka keys) cannot carry."""
    if not value.strip():
        raise ValueError("must not be blank")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "contains an unpaired surrogate (\\ud800-\\udfff): not valid UTF-8"
        ) from None
    return value


Text = Annotated[str, AfterValidator(_utf8_text)]


class LikeCreate(BaseModel):
    """A user liked a URL. Unknown fields are rejected (they would be silently lost)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    url: Text = Field(min_length=1, max_length=MAX_URL_CHARS, description="The liked URL.")
    user_id: Text = Field(
        min_length=1, max_length=MAX_USER_ID_CHARS, description="Opaque id of the user."
    )
    occurred_at: str | int | None = Field(
        default=None,
        description=(
            "Event time: an RFC 3339 date-time with offset, or epoch milliseconds. "
            "Default: now. At most `LOGSTREAM_INGEST_MAX_FUTURE_MS` ahead of the server clock."
        ),
        examples=["2024-05-01T12:00:00Z", 1714564800000],
    )
    event_id: UUID | None = Field(
        default=None,
        strict=False,  # accept the UUID's text forms
        description="Client-chosen UUID, for deduplication and safe retries. Default: generated.",
    )
    referrer: Annotated[str, AfterValidator(_utf8_text)] | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="Page the user came from, if known (schema v2).",
    )


class EventAccepted(BaseModel):
    """Where the broker put the event: it is in the log."""

    event_id: str
    topic: str
    partition: int
    offset: int


class EventResult(BaseModel):
    """One event of a batch: `written` (in the log, with its place) or `failed`."""

    index: int
    event_id: str
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
