"""The exception hierarchy: one root so callers can catch everything logstream raises."""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CodecError",
    "ConfigError",
    "CorruptMessageError",
    "LogstreamError",
    "SchemaCompatibilityError",
    "StaleLayoutError",
    "StaleOffsetError",
    "StoreError",
    "UnknownSchemaError",
    "ViewCodeError",
]


class LogstreamError(Exception):
    """Root of every error logstream raises; its message says what the user can do."""


class ConfigError(LogstreamError):
    """A setting is missing, malformed or unknown."""


class BrokerError(LogstreamError):
    """The local broker could not be assembled, started, stopped or reached."""


class CodecError(LogstreamError):
    """A message value could not be encoded or decoded."""


class UnknownSchemaError(CodecError):
    """A message names a writer-schema fingerprint that is not in the catalogue."""


class CorruptMessageError(CodecError):
    """A message value is not valid Avro single-object encoding for its schema."""


class SchemaCompatibilityError(LogstreamError):
    """A schema version cannot read data written with an older version."""


class StoreError(LogstreamError):
    """A view store could not be opened, read or written."""


class StaleLayoutError(StoreError):
    """A view store written by an older layout of its view that the view no longer reads;
    the message names the command that rebuilds it."""


class StaleOffsetError(StoreError):
    """A flush was fenced: the stored offset moved (rebalance or reset) since the batch began."""


class ViewCodeError(LogstreamError):
    """A view's own code raised on an event: the consumer stops at that event's offset.

    Not a dead letter: a bug in a new view would otherwise dead-letter the whole log. The
    store's offsets stay at the last good flush, so a fix and a restart continue exactly.
    """

    exit_code = 5  # `logstream consume` exits with it; the supervisor reports it

    def __init__(self, view: str, topic: str, partition: int, offset: int, cause: BaseException):
        self.view, self.topic, self.partition, self.offset = view, topic, partition, offset
        super().__init__(
            f"view {view!r} raised {type(cause).__name__}: {cause} on {topic}[{partition}] "
            f"offset {offset}; stopped there (nothing after the last good batch is committed): "
            "fix the view and restart it to continue exactly, or declare "
            'on_error="dead_letter"'
        )
